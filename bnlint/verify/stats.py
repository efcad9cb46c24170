"""Paired statistics across seeds and the verdict.

For each metric the per-seed difference ``after - before`` is turned into a gain ``g``
(positive = after is better). Rules (stated in the report):

- A metric is **better** when the mean gain exceeds the metric's tolerance and the
  evidence agrees: with 5 or more seeds the 95% t-interval of the gain lies above the
  tolerance; with fewer seeds every seed must gain more than the tolerance (a
  unanimous sign test), and with 3 or 4 seeds the t-interval must also exclude zero.
  **Worse** is the mirror image.
- The verdict is **confirmed** when the mechanistic metric is better and the
  validation metric's mean is not worse than its margin; **regressed** when the
  mechanistic metric is worse or the validation metric is worse beyond its margin
  (by the same rule); otherwise **inconclusive**.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

__all__ = ["MetricSpec", "Comparison", "compare_metric", "t_quantile_975", "sign_test_p", "verdict_from",
           "CONFIRMED", "INCONCLUSIVE", "REGRESSED", "FEW_SEEDS"]

CONFIRMED, INCONCLUSIVE, REGRESSED = "confirmed", "inconclusive", "regressed"
FEW_SEEDS = 5

_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class MetricSpec:
    """``better``: "lower" or "higher". ``role``: "mechanistic", "validation" or "info".
    ``tolerance``: differences this small count as ties. ``margin`` (validation only):
    absolute, or relative to the before mean when ``relative_margin``."""

    name: str
    better: str
    role: str
    tolerance: float = 0.0
    margin: float = 0.0
    relative_margin: bool = False


@dataclass(frozen=True)
class Comparison:
    spec: MetricSpec
    before: tuple
    after: tuple
    before_mean: float
    after_mean: float
    diff_mean: float  # after - before
    ci_low: Optional[float]  # 95% t-interval of after - before
    ci_high: Optional[float]
    wins: int  # seeds where after is better beyond the tolerance
    losses: int
    ties: int
    sign_p: float
    decision: str  # "better", "worse", "no clear difference"; validation: "within margin", ...
    margin: float  # the validation margin in absolute units (0 for other roles)
    beyond_margin_worse: bool

    def to_dict(self) -> dict:
        return {
            "metric": self.spec.name, "better": self.spec.better, "role": self.spec.role,
            "before": list(self.before), "after": list(self.after),
            "before_mean": self.before_mean, "after_mean": self.after_mean, "diff_mean": self.diff_mean,
            "ci95": [self.ci_low, self.ci_high], "wins": self.wins, "losses": self.losses, "ties": self.ties,
            "sign_test_p": self.sign_p, "decision": self.decision, "tolerance": self.spec.tolerance,
            "margin": self.margin, "worse_beyond_margin": self.beyond_margin_worse,
        }


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _interval(xs: Sequence[float]):
    n = len(xs)
    if n < 2:
        return None, None
    m = _mean(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return m - half, m + half


def _clearly_positive(gains: Sequence[float], threshold: float) -> bool:
    """The gains exceed ``threshold`` by the rule in the module docstring."""
    n = len(gains)
    if not _mean(gains) > threshold:
        return False
    low, _ = _interval(gains) if all(math.isfinite(g) for g in gains) else (None, None)
    if n >= FEW_SEEDS:
        return low is not None and low > threshold
    if not all(g > threshold for g in gains):
        return False
    return n < 3 or (low is not None and low > 0)


def compare_metric(spec: MetricSpec, before: Sequence[float], after: Sequence[float]) -> Comparison:
    if len(before) != len(after) or not before:
        raise ValueError("paired metrics need the same, non-zero number of seeds")
    sign = -1.0 if spec.better == "lower" else 1.0
    diffs = [a - b for a, b in zip(after, before)]
    finite = all(math.isfinite(d) for d in diffs)
    gains = [sign * d if math.isfinite(d) else (-math.inf if not math.isfinite(a) else math.inf)
             for d, a in zip(diffs, after)]
    tol = spec.tolerance
    wins = sum(g > tol for g in gains)
    losses = sum(g < -tol for g in gains)
    ties = len(gains) - wins - losses
    low, high = _interval(diffs) if finite else (None, None)
    if _clearly_positive(gains, tol):
        decision = "better"
    elif _clearly_positive([-g for g in gains], tol):
        decision = "worse"
    else:
        decision = "no clear difference"
    before_mean = _mean(before)
    margin = 0.0
    beyond = False
    if spec.role == "validation":
        margin = spec.margin * abs(before_mean) if spec.relative_margin else spec.margin
        beyond = _clearly_positive([-g for g in gains], margin)
        if beyond:
            decision = "worse beyond margin"
        elif decision != "better":
            decision = "within margin" if _mean(gains) >= -margin else "mean beyond margin"
    return Comparison(spec, tuple(before), tuple(after), before_mean, _mean(after), _mean(diffs), low, high,
                      wins, losses, ties, sign_test_p(wins, losses), decision, margin, beyond)


def verdict_from(comparisons: List[Comparison]) -> tuple:
    """(verdict, reason) from the mechanistic and validation comparisons."""
    mech = [c for c in comparisons if c.spec.role == "mechanistic"]
    val = [c for c in comparisons if c.spec.role == "validation"]
    if not mech:
        return INCONCLUSIVE, "no mechanistic metric could be measured"
    primary = mech[0]
    for c in val:
        if c.beyond_margin_worse:
            return REGRESSED, f"{c.spec.name} is worse beyond the margin ({c.margin:.3g})"
    if primary.decision == "worse":
        return REGRESSED, f"{primary.spec.name} is worse after the change"
    if primary.decision != "better":
        return INCONCLUSIVE, f"{primary.spec.name} shows no clear difference across {len(primary.before)} seed(s)"
    for c in val:
        gain = -c.diff_mean if c.spec.better == "lower" else c.diff_mean
        if gain < -c.margin:
            return INCONCLUSIVE, f"{primary.spec.name} improved but mean {c.spec.name} dropped by more than {c.margin:.3g}"
    return CONFIRMED, f"{primary.spec.name} improved and {', '.join(c.spec.name for c in val) or 'the validation metric'} stayed within its margin"
