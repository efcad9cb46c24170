"""Paired statistics across seeds and the verdict: only from evidence.

For each metric the per-seed difference ``after - before`` is turned into a gain ``g``
(positive = after is better). A metric's **margin** is the smallest difference that
matters (``MetricSpec.tolerance``; for validation metrics ``margin``). Rules (stated
in every report):

- Ratio metrics (``MetricSpec.log``, e.g. the variance shift) are compared on the log
  scale: differences are log-ratios, means are geometric means, the margin is a
  log-ratio (``ln 1.02``: 2%), and the table shows factors (``x0.67``). A ratio metric
  that is 20 in one seed and 120 in the next is then as clear as it looks.
- **Evidence** that the gains exceed a threshold needs at least ``MIN_SEEDS`` (3)
  paired seeds, and either the 95% paired t-interval of the gain lying entirely above
  the threshold, or an exact two-sided sign test (gains above the threshold vs the
  rest, ties counted against) with p < 0.05 (possible from 6 seeds). Fewer seeds, or
  neither test, is no evidence, however large the difference.
- A metric is **better** when there is evidence that the gain exceeds its margin,
  **worse** when there is evidence that the loss exceeds it.
- The verdict is **confirmed** when the mechanistic metric is better and no counted
  validation metric is worse beyond its margin (nor its mean below it);
  **regressed** when the mechanistic metric is worse, or a counted validation metric
  is worse beyond its margin; otherwise **inconclusive**, with the reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

__all__ = ["MetricSpec", "Comparison", "compare_metric", "t_quantile_975", "sign_test_p", "has_evidence",
           "verdict_from", "CONFIRMED", "INCONCLUSIVE", "REGRESSED", "MIN_SEEDS", "ALPHA"]

CONFIRMED, INCONCLUSIVE, REGRESSED = "confirmed", "inconclusive", "regressed"
MIN_SEEDS = 3
ALPHA = 0.05

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
    ``tolerance``: the margin of mechanistic and info metrics (smaller differences do
    not matter; a log-ratio when ``log``). ``margin`` (validation only): absolute, or
    relative to the before mean when ``relative_margin``. ``log``: a positive ratio
    metric, compared on the log scale."""

    name: str
    better: str
    role: str
    tolerance: float = 0.0
    margin: float = 0.0
    relative_margin: bool = False
    log: bool = False


@dataclass(frozen=True)
class Comparison:
    spec: MetricSpec
    before: tuple
    after: tuple
    before_mean: float  # geometric means for log metrics
    after_mean: float
    diff_mean: float  # after - before (log metrics: ln(after / before))
    ci_low: Optional[float]  # 95% t-interval of after - before
    ci_high: Optional[float]
    wins: int  # seeds where after is better beyond the margin
    losses: int
    ties: int
    sign_p: float
    decision: str  # "better", "worse", "no clear difference", "too few seeds"; validation: "within margin", ...
    margin: float  # the margin in absolute units
    beyond_margin_worse: bool

    @property
    def seeds(self) -> int:
        return len(self.before)

    def to_dict(self) -> dict:
        return {
            "metric": self.spec.name, "better": self.spec.better, "role": self.spec.role,
            "before": list(self.before), "after": list(self.after),
            "before_mean": self.before_mean, "after_mean": self.after_mean, "diff_mean": self.diff_mean,
            "ci95": [self.ci_low, self.ci_high], "wins": self.wins, "losses": self.losses, "ties": self.ties,
            "sign_test_p": self.sign_p, "decision": self.decision, "tolerance": self.spec.tolerance,
            "margin": self.margin, "worse_beyond_margin": self.beyond_margin_worse,
            "scale": "log" if self.spec.log else "linear",
        }

    def factor_text(self) -> tuple:
        """(difference, interval) as printed: factors for log metrics."""
        if self.spec.log:
            diff = f"x{_exp(self.diff_mean):.3g}"
            interval = "-" if self.ci_low is None else f"[x{_exp(self.ci_low):.3g}, x{_exp(self.ci_high):.3g}]"
            return diff, interval
        interval = "-" if self.ci_low is None else f"[{self.ci_low:.4g}, {self.ci_high:.4g}]"
        return f"{self.diff_mean:.4g}", interval


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _log(x: float) -> float:
    return math.log(x) if x > 0 else math.nan


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _interval(xs: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    n = len(xs)
    if n < 2 or not all(math.isfinite(x) for x in xs):
        return None, None
    m = _mean(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return m - half, m + half


def has_evidence(gains: Sequence[float], threshold: float) -> bool:
    """Evidence that the paired gains exceed ``threshold`` (rules in the module docstring)."""
    n = len(gains)
    if n < MIN_SEEDS or any(math.isnan(g) for g in gains):
        return False
    low, _ = _interval(gains)
    if low is not None and low > threshold:
        return True
    above = sum(g > threshold for g in gains)
    return above > n - above and sign_test_p(above, n - above) < ALPHA


def compare_metric(spec: MetricSpec, before: Sequence[float], after: Sequence[float]) -> Comparison:
    if len(before) != len(after) or not before:
        raise ValueError("paired metrics need the same, non-zero number of seeds")
    sign = -1.0 if spec.better == "lower" else 1.0
    raw_before, raw_after = tuple(before), tuple(after)
    if spec.log:
        before, after = [_log(x) for x in before], [_log(x) for x in after]
    diffs = [a - b for a, b in zip(after, before)]
    gains = [sign * d if math.isfinite(d) else (-math.inf if not math.isfinite(a) else math.inf)
             for d, a in zip(diffs, after)]
    before_mean = _mean(before)
    if spec.role == "validation":
        margin = spec.margin * abs(before_mean) if spec.relative_margin else spec.margin
    else:
        margin = spec.tolerance
    wins = sum(g > margin for g in gains)
    losses = sum(g < -margin for g in gains)
    ties = len(gains) - wins - losses
    low, high = _interval(diffs)
    if len(gains) < MIN_SEEDS:
        decision = "too few seeds"
    elif has_evidence(gains, margin):
        decision = "better"
    elif has_evidence([-g for g in gains], margin):
        decision = "worse"
    else:
        decision = "no clear difference"
    beyond = decision == "worse" and spec.role == "validation"
    if spec.role == "validation" and decision not in ("better", "too few seeds"):
        if beyond:
            decision = "worse beyond margin"
        else:
            decision = "within margin" if _mean(gains) >= -margin else "mean beyond margin"
    n = len(gains)
    sign_p = min(sign_test_p(wins, n - wins), sign_test_p(losses, n - losses))  # ties count against
    after_mean = _mean(after)
    if spec.log:
        before_mean, after_mean = _exp(before_mean), _exp(after_mean)
    return Comparison(spec, raw_before, raw_after, before_mean, after_mean, _mean(diffs), low, high,
                      wins, losses, ties, sign_p, decision, margin, beyond)


def verdict_from(comparisons: List[Comparison]) -> Tuple[str, str]:
    """(verdict, reason) from the mechanistic and validation comparisons."""
    mech = [c for c in comparisons if c.spec.role == "mechanistic"]
    val = [c for c in comparisons if c.spec.role == "validation"]
    if not mech:
        return INCONCLUSIVE, "no mechanistic metric could be measured"
    primary = mech[0]
    name = primary.spec.name
    if primary.seeds < MIN_SEEDS:
        return INCONCLUSIVE, (f"{primary.seeds} paired seed{'s' if primary.seeds != 1 else ''}: a verdict needs at "
                              f"least {MIN_SEEDS}")
    for c in val:
        if c.beyond_margin_worse:
            return REGRESSED, f"{c.spec.name} is worse beyond its margin ({c.margin:.3g}) in {c.seeds} paired seeds"
    if primary.decision == "worse":
        return REGRESSED, f"{name} is worse after the change ({_evidence_text(primary)})"
    if primary.decision != "better":
        margin = f"x{_exp(primary.margin):.3g}" if primary.spec.log else f"{primary.margin:.3g}"
        return INCONCLUSIVE, (f"{name} shows no difference beyond its margin ({margin}) that "
                              f"{primary.seeds} paired seeds support ({_evidence_text(primary)})")
    for c in val:
        gain = -c.diff_mean if c.spec.better == "lower" else c.diff_mean
        if gain < -c.margin:
            return INCONCLUSIVE, f"{name} improved but mean {c.spec.name} dropped by more than {c.margin:.3g}"
    tail = (f"; {', '.join(c.spec.name for c in val)} stayed within its margin" if val else "")
    return CONFIRMED, f"{name} improved ({_evidence_text(primary)}){tail}"


def _evidence_text(c: Comparison) -> str:
    _, interval = c.factor_text()
    what = "after/before" if c.spec.log else "difference"
    interval = "no interval" if c.ci_low is None else f"95% interval of the {what} {interval}"
    return f"{interval}, sign test p = {c.sign_p:.2g}, {c.seeds} seeds"
