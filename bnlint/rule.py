"""The rule type. Each file in ``rules/`` defines one module-level ``RULE``.

A rule's ``check`` is a small pure function: graph rules take a networkx DiGraph of
plain facts (see ``bnlint.graph``), script rules take the parsed script facts
(see ``bnlint.script``), runtime rules take what ``bnlint run`` observed (see
``bnlint.runtime.orders``). None imports torch. They yield ``Hit`` values; the engine
turns hits into ``Finding`` values with paths, lines and suppressions.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Tuple

from bnlint.findings import Fix, Severity, SourceSpan

__all__ = ["RuleKind", "Rule", "Hit", "DOC_HEADINGS"]

# Ruff's fixed doc schema; every rule docstring uses these headings (tested).
DOC_HEADINGS = (
    "## What it does",
    "## Why is this bad?",
    "## Example",
    "## Use instead",
    "## Fix safety",
    "## References",
)


class RuleKind(str, enum.Enum):
    GRAPH = "graph"  # BNL1xx: traced models
    SCRIPT = "script"  # BNL2xx: training-script source
    ANALYSIS = "analysis"  # BNL0xx: diagnostics about the analysis itself
    RUNTIME = "runtime"  # BNL206: what ``bnlint run`` observed while a script ran


@dataclass(frozen=True)
class Hit:
    """What a rule reports, before the engine attaches paths and suppressions.

    Graph rules set ``node`` (a graph node id; the engine resolves its source
    location). Script rules set ``span`` directly.
    """

    message: str
    node: Optional[str] = None
    span: Optional[SourceSpan] = None
    severity: Optional[Severity] = None
    fix: Optional[Fix] = None
    related: Tuple[str, ...] = ()
    data: Tuple[Tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    summary: str
    kind: RuleKind
    severity: Severity
    doc: str
    fixable: bool = False
    default_enabled: bool = True
    check: Optional[Callable[..., Iterable[Hit]]] = None

    def __post_init__(self):
        if not (self.code.startswith("BNL") and len(self.code) == 6 and self.code[3:].isdigit()):
            raise ValueError(f"bad rule code {self.code!r}")
