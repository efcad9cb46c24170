"""Frozen data types shared across bnlint: findings, source spans and fixes.

Everything that crosses a module boundary (rule -> engine -> reporter -> fixer) is one
of these plain, immutable values. Nothing here imports torch or libcst.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

__all__ = [
    "Severity",
    "FixSafety",
    "SourceSpan",
    "Edit",
    "Fix",
    "Finding",
]


class Severity(str, enum.Enum):
    """How a finding counts. ``info`` notes never change the exit code."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class FixSafety(str, enum.Enum):
    """A fix is *safe* when state_dict keys and eval-mode outputs are unchanged."""

    SAFE = "safe"
    UNSAFE = "unsafe"


@dataclass(frozen=True)
class SourceSpan:
    """A place in a source file. Lines are 1-based, columns 1-based (as printed)."""

    path: str
    line: int
    column: int = 1
    end_line: Optional[int] = None
    end_column: Optional[int] = None

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
        }


@dataclass(frozen=True)
class Edit:
    """Replace the text between two (line, column) positions of a file.

    Positions are 1-based lines and 0-based columns (libcst's convention); the end is
    exclusive. Fixes are lists of edits; the fixer applies them in one pass and
    refuses overlapping edits.
    """

    path: str
    start: Tuple[int, int]
    end: Tuple[int, int]
    replacement: str


@dataclass(frozen=True)
class Fix:
    """A proposed change. ``edits`` may be empty when the fix is computed by the fixer."""

    safety: FixSafety
    description: str
    edits: Tuple[Edit, ...] = ()
    data: Tuple[Tuple[str, Any], ...] = ()

    def to_dict(self) -> dict:
        return {"safety": self.safety.value, "description": self.description}


@dataclass(frozen=True)
class Finding:
    """One reported problem, ready to print."""

    code: str
    name: str
    severity: Severity
    path: str
    line: int
    column: int
    message: str
    fix: Optional[Fix] = None
    end_line: Optional[int] = None
    end_column: Optional[int] = None
    # Free-form, JSON-serialisable extra facts (model name, module path, count, ...).
    details: Tuple[Tuple[str, Any], ...] = field(default=(), compare=False)

    @property
    def fixable(self) -> bool:
        return self.fix is not None

    def sort_key(self):
        return (self.path, self.line, self.column, self.code, self.message)

    def to_dict(self) -> dict:
        out = {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.value,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "message": self.message,
            "fix": self.fix.to_dict() if self.fix else None,
        }
        if self.details:
            out["details"] = dict(self.details)
        return out
