"""Text output of ``bnlint fix``: what was fixed, what was rejected and why, a summary."""
from __future__ import annotations

from bnlint.fix.runner import FixRun

__all__ = ["render_fix_run"]


def render_fix_run(run: FixRun, diff: bool = False) -> str:
    lines = []
    verb = "would fix" if diff else "fixed"
    for outcome in run.files:
        if outcome.rejected is not None:
            lines.append(f"{outcome.path}: fix rejected: {outcome.rejected} (file left unchanged)")
            continue
        if diff and outcome.diff:
            lines.append(outcome.diff.rstrip("\n"))
        for f in outcome.applied:
            lines.append(f"{f.path}:{f.line}:{f.column}: {f.code} {verb}: {f.fix.description}")
        for old, new in outcome.renamed:
            lines.append(f"    renamed state_dict key {old} -> {new}")
        for f in outcome.skipped:
            lines.append(f"{f.path}:{f.line}:{f.column}: {f.code} not fixed in this run: its edits overlap "
                         f"another fix; run 'bnlint fix' again")
        for note in outcome.notes:
            lines.append(f"{outcome.path}: note: {note}")
    n, m = run.fixed, max(run.remaining, 0)
    noun = "problem" if n == 1 else "problems"
    summary = f"{'Would fix' if diff else 'Fixed'} {n} {noun} ({m} remaining)"
    if run.unsafe_available:
        summary += f"; {run.unsafe_available} more fixable with --unsafe-fixes"
    lines.append(summary + ".")
    return "\n".join(lines) + "\n"
