"""The verification report: verdict, comparisons, per-seed records, table and JSON."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import List, Optional

from bnlint.verify.stats import CONFIRMED, Comparison

__all__ = ["VerifyReport", "SCHEMA_VERSION"]

SCHEMA_VERSION = 2


def _fmt(x: Optional[float]) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.4g}"


def _jsonable(value):
    """Floats that JSON cannot hold (inf, nan) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class VerifyReport:
    """Everything a verification run measured. ``to_dict`` is the JSON report."""

    kind: str  # "model" or "shuffle"
    verdict: str
    reason: str
    before: str
    after: str
    comparisons: List[Comparison]
    seeds: List[dict]
    task: str
    environment: dict
    options: dict
    equivalence: Optional[dict] = None
    epochs: int = 0
    notes: List[str] = field(default_factory=list)
    timing: dict = field(default_factory=dict)
    judged: Optional[dict] = None  # model verifications: the BNs the verdict is judged at
    validation: Optional[dict] = None  # {"counted": bool, "reason": str}

    @property
    def confirmed(self) -> bool:
        return self.verdict == CONFIRMED

    def to_dict(self) -> dict:
        return _jsonable({
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "verdict": self.verdict,
            "reason": self.reason,
            "before": self.before,
            "after": self.after,
            "task": self.task,
            "epochs": self.epochs,
            "equivalence": self.equivalence,
            "judged_batchnorms": self.judged,
            "validation": self.validation,
            "metrics": [c.to_dict() for c in self.comparisons],
            "seeds": self.seeds,
            "notes": list(self.notes),
            "environment": self.environment,
            "options": self.options,
            "timing": self.timing,
        })

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def render_table(self) -> str:
        header = ("metric", "before", "after", "difference", "95% interval", "better/worse", "decision")
        rows = [header]
        for c in self.comparisons:
            diff, interval = c.factor_text()
            role = {"mechanistic": "*", "validation": "+"}.get(c.spec.role, "")
            rows.append((c.spec.name + role, _fmt(c.before_mean), _fmt(c.after_mean), diff,
                         interval, f"{c.wins}/{c.losses}", c.decision))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        speed = self.environment.get("speed", {}).get("label")
        lines = [f"{self.kind} verification: {self.before} -> {self.after}", f"task: {self.task}; "
                 f"{len(self.seeds)} seed(s), {self.epochs} epoch(s); device {self.environment.get('device_name')}"
                 + (f" ({speed})" if speed else "")]
        if self.equivalence is not None:
            eq = self.equivalence
            lines.append("eval-mode outputs: " + ("equal" if eq["equivalent"] else
                         f"DIFFERENT (max |diff| {_fmt(eq['max_abs_diff'])})"))
        lines.append("")
        for r in rows:
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())
        lines.append("(* mechanistic metric, + validation metric, others for information; difference = after - before, "
                     "mean over paired seeds; xF: after/before for ratios, geometric means)")
        for note in self.notes:
            lines.append(f"note: {note}")
        lines.append(f"verdict: {self.verdict} ({self.reason})")
        return "\n".join(lines) + "\n"
