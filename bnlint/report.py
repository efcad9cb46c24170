"""Rendering findings: text (``path:line:col: CODE message [*]``) and JSON."""
from __future__ import annotations

import json
from typing import List, Sequence

from bnlint.findings import Finding, Severity

__all__ = ["render_text", "render_json", "summary_line", "counted"]


def counted(findings: Sequence[Finding]) -> List[Finding]:
    """Findings that count as problems (info notes never do)."""
    return [f for f in findings if f.severity is not Severity.INFO]


def summary_line(findings: Sequence[Finding]) -> str:
    problems = counted(findings)
    if not problems:
        return "All checks passed!"
    fixable = sum(1 for f in problems if f.fixable)
    noun = "problem" if len(problems) == 1 else "problems"
    line = f"Found {len(problems)} {noun}"
    if fixable:
        line += f" ({fixable} fixable with 'bnlint fix')"
    return line + "."


def render_text(findings: Sequence[Finding], verbose: bool = False) -> str:
    lines = []
    for f in findings:
        if f.severity is Severity.INFO and not verbose:
            continue
        mark = " [*]" if f.fixable else ""
        lines.append(f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}{mark}")
    lines.append(summary_line(findings))
    return "\n".join(lines) + "\n"


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps([f.to_dict() for f in findings], indent=2) + "\n"
