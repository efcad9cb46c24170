"""From the per-seed records of a model verification to the comparisons it is judged on.

Pure functions of plain data (the records ``bnlint.verify.model_seed`` returns):

- the mechanistic metric, ``variance_shift``: the judged BNs' shift at initialisation
  (both versions have the same weights there, only the change differs), compared as
  a ratio (log scale) with a 2% margin; ``variance_shift_other_max`` (the most
  shifted BN outside the judged ones) and ``variance_shift_trained`` are information;
- validation metrics, which count only when training went far enough to move them
  (``validation_counts``);
- divergence: an after model that diverged in every seed (at least 3) where the
  before model did not is a regression.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple

from bnlint.verify.options import VerifyOptions
from bnlint.verify.stats import MIN_SEEDS, REGRESSED, Comparison, MetricSpec, compare_metric

__all__ = ["merge_records", "shift_comparisons", "validation_counts", "validation_comparisons", "divergence",
           "VAL_PROGRESS", "SHIFT_MARGIN"]

VAL_PROGRESS = 0.8  # validation counts once a model's validation loss fell to this x its initial value
SHIFT_MARGIN = math.log(1.02)  # variance shifts within 2% of each other do not differ
ARMS = ("before", "after")


def merge_records(phase1: List[dict], trained: Optional[List[dict]]) -> List[dict]:
    """One record per seed: phase 1's measurement, phase 2's training when it ran."""
    by_seed = {r["seed"]: r for r in (trained or [])}
    merged = []
    for rec in phase1:
        out = {"seed": rec["seed"], "phase1_seconds": rec["seconds"]}
        extra = by_seed.get(rec["seed"])
        if extra is not None:
            out["phase2_seconds"] = extra["seconds"]
        for arm in ARMS:
            side = dict(rec[arm])
            if extra is not None:
                side.update(extra[arm])
            side["variance_shift"] = side["at_init"]["variance_shift"]
            out[arm] = side
        merged.append(out)
    return merged


def _compare(seeds: List[dict], value: Callable[[dict], Optional[float]], spec: MetricSpec) -> Comparison:
    def num(x) -> float:
        return math.nan if x is None else float(x)

    return compare_metric(spec, [num(value(s["before"])) for s in seeds], [num(value(s["after"])) for s in seeds])


def _everywhere(seeds: List[dict], value: Callable[[dict], Optional[float]]) -> bool:
    return bool(seeds) and all(value(s[arm]) is not None for s in seeds for arm in ARMS)


def shift_comparisons(seeds: List[dict], trained: bool) -> List[Comparison]:
    """The variance-shift comparisons; none when the models have no measurable BN."""
    def judged(side):
        return side["at_init"]["judged"]

    def other(side):
        return side["at_init"]["other_max"]

    if not _everywhere(seeds, judged):
        return []
    out = [_compare(seeds, judged, MetricSpec("variance_shift", "lower", "mechanistic", tolerance=SHIFT_MARGIN,
                                              log=True))]
    if _everywhere(seeds, other):
        out.append(_compare(seeds, other, MetricSpec("variance_shift_other_max", "lower", "info",
                                                     tolerance=SHIFT_MARGIN, log=True)))
    if trained:
        out.append(_compare(seeds, lambda side: side["trained"]["judged"],
                            MetricSpec("variance_shift_trained", "lower", "info", tolerance=SHIFT_MARGIN, log=True)))
    return out


def validation_counts(seeds: List[dict], trained: Optional[List[dict]], epochs: int,
                      requested_zero: bool = False) -> Tuple[bool, str]:
    """Validation counts when training went far enough to move it: in every seed, at
    least one of the two models brought its validation loss to at most ``VAL_PROGRESS``
    times its initial value (a model that did not learn while the other did is a
    result; two that did not move are not). Returns (counts, why)."""
    if not trained:
        if epochs:
            return False, "training did not finish in the budget"
        return False, "the models were not trained" + (" (--epochs 0)" if requested_zero else
                                                       " (see the note on the budget)")
    worst = None
    for s in seeds:
        best = None
        for arm in ARMS:
            initial, final = s[arm].get("initial_val_loss"), s[arm].get("val_loss")
            if initial is None or final is None or not math.isfinite(final) or not initial > 0:
                continue
            if best is None or final / initial < best:
                best = final / initial
        if best is None:
            return False, f"seed {s['seed']}: neither model has a finite validation loss"
        if worst is None or best > worst[0]:
            worst = (best, s["seed"])
    assert worst is not None
    steps = seeds[0]["before"].get("steps", 0)
    if worst[0] > VAL_PROGRESS:
        return False, (f"{epochs} epochs ({steps} steps) brought the validation loss only to {worst[0]:.2g}x its "
                       f"initial value (seed {worst[1]}, the better model); it counts from {VAL_PROGRESS}x")
    return True, (f"{epochs} epochs ({steps} steps) brought the validation loss to at most {worst[0]:.2g}x its "
                  f"initial value in every seed (the better of the two models)")


def validation_comparisons(seeds: List[dict], classification: bool, counted: bool,
                           options: VerifyOptions) -> List[Comparison]:
    role = "validation" if counted else "info"
    if classification:
        return [_compare(seeds, lambda side: side["val_acc"],
                         MetricSpec("val_acc", "higher", role, margin=options.acc_margin)),
                _compare(seeds, lambda side: side["val_loss"], MetricSpec("val_loss", "lower", "info",
                                                                           tolerance=0.005))]
    return [_compare(seeds, lambda side: side["val_loss"],
                     MetricSpec("val_loss", "lower", role, tolerance=0.005, margin=options.loss_margin,
                                relative_margin=True))]


def divergence(seeds: List[dict]) -> Tuple[Optional[Tuple[str, str]], Optional[str]]:
    """(verdict override or None, note or None) from the models that diverged."""
    differ = [s for s in seeds if s["after"]["diverged"] != s["before"]["diverged"]]
    if len(seeds) >= MIN_SEEDS and all(s["after"]["diverged"] and not s["before"]["diverged"] for s in seeds):
        return (REGRESSED, "the after model diverged (non-finite loss) in every seed; the before model did not"), None
    if differ:
        return None, "a model diverged (non-finite loss) in some seeds: " + ", ".join(
            f"seed {s['seed']}: {'/'.join(a for a in ARMS if s[a]['diverged'])}" for s in differ)
    return None, None
