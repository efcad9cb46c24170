"""Findings of the runtime rules from what a ``bnlint run`` observed.

The runtime rules (``RuleKind.RUNTIME``) are pure functions of a ``RuntimeRecord``;
this module turns their hits into ``Finding`` values: paths as the user would write
them (relative to the current folder when inside it), ``per-file-ignores`` and
``# noqa`` / ``# bnlint: ignore[...]`` comments on the reported line honoured, and a
rule that crashes reported as a BNL001 diagnostic instead of a crashed run.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

from bnlint.config import Config
from bnlint.findings import Finding, Severity
from bnlint.rule import Rule, RuleKind
from bnlint.runtime.orders import RuntimeRecord

__all__ = ["runtime_findings", "display_path"]


def display_path(path: str, cwd: Optional[str] = None) -> str:
    """``path`` relative to ``cwd`` when it is inside it, else absolute."""
    full = os.path.abspath(path)
    here = os.path.abspath(cwd or os.getcwd())
    try:
        rel = os.path.relpath(full, here)
    except ValueError:  # another drive
        return full
    return full if rel.startswith(os.pardir + os.sep) or rel == os.pardir else rel


def _suppressed(finding: Finding, full_path: str, cache: Dict[str, object], config: Config) -> bool:
    from bnlint.sources import SourceError, read_source
    from bnlint.suppress import parse_suppressions

    codes = config.per_file_ignored_codes(finding.path)
    if any(finding.code.startswith(c.upper()) or c.upper() == "ALL" for c in codes):
        return True
    if full_path not in cache:
        try:
            cache[full_path] = parse_suppressions(read_source(full_path).text)
        except SourceError:
            cache[full_path] = None
    sup = cache[full_path]
    return sup is not None and sup.suppresses(finding.line, finding.code)  # type: ignore[attr-defined]


def runtime_findings(record: RuntimeRecord, rules: Sequence[Rule], config: Config,
                     cwd: Optional[str] = None) -> List[Finding]:
    """Sorted findings of the selected runtime rules on ``record``."""
    findings: List[Finding] = []
    cache: Dict[str, object] = {}
    for rule in rules:
        if rule.kind is not RuleKind.RUNTIME or rule.check is None:
            continue
        try:
            hits = list(rule.check(record))
        except Exception as exc:  # a crashing rule is a diagnostic, never a crashed run
            findings.append(Finding("BNL001", "analysis-failed", Severity.ERROR, "<bnlint run>", 1, 1,
                                    f"rule {rule.code} crashed: {type(exc).__name__}: {exc}"))
            continue
        for hit in hits:
            if hit.span is None:
                continue
            full = hit.span.path
            finding = Finding(
                code=rule.code, name=rule.name, severity=hit.severity or rule.severity,
                path=display_path(full, cwd), line=hit.span.line, column=hit.span.column,
                message=hit.message, fix=hit.fix, details=tuple(sorted(dict(hit.data).items())),
            )
            if not _suppressed(finding, full, cache, config):
                findings.append(finding)
    return sorted(findings, key=Finding.sort_key)
