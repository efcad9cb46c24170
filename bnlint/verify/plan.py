"""Fit a model verification into its time budget, seeds first.

A verdict needs several paired seeds, and the variance-shift measurement
(``bnlint.verify.bnstats``) needs no training at all, so the budget goes first to
measuring every seed at step 0 (phase 1), then, if enough is left for training to
matter, to training every seed's pair (phase 2) and measuring again. The plan is made
from measured costs (a no-grad forward, one optimizer step, building a pair) and uses
only ``SAFETY`` of the time left, because the machine may be shared and slow down;
after phase 1 the training length is planned again from phase 1's real duration.

Everything here is arithmetic on plain numbers (no torch), so it is tested directly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ["Costs", "Sizes", "RunPlan", "make_plan", "SAFETY", "VALUES_PER_CHANNEL", "MIN_VALUES_PER_CHANNEL",
           "MAX_RECAL_SAMPLES", "MIN_AUTO_EPOCHS", "TRAIN_FORWARD_FACTOR", "MEASURE_OVERHEAD"]

SAFETY = 0.75  # plan to use this fraction of the time left; the rest absorbs a slower machine
VALUES_PER_CHANNEL = 4096  # re-estimation and measurement target per BN channel
MIN_VALUES_PER_CHANNEL = 512  # never fewer (down from the target only to fit the budget)
MAX_RECAL_SAMPLES = 4096
MIN_AUTO_EPOCHS = 3  # shorter training moves nothing worth reporting: do not train at all
TRAIN_FORWARD_FACTOR = 1.15  # train-mode forward (dropout, batch statistics) vs eval forward
MEASURE_OVERHEAD = 1.5  # a measurement pass vs bare forwards (model copy, float64 moment hooks)
OPTIMISTIC_STEP_FACTOR = 2.0  # a step costs at least about two forwards of its batch


@dataclass(frozen=True)
class Costs:
    """Measured seconds."""

    forward_per_sample: float  # no-grad eval forward, per example
    build_pair: float  # building both models and copying the weights
    step: Optional[float] = None  # one optimizer step of one batch; None: not measured yet


@dataclass(frozen=True)
class Sizes:
    """What one seed works on."""

    seeds: int
    batch_size: int
    n_train: int
    n_val: int
    positions: int  # values per channel per example at the judged BNs (H*W, or 1)
    wanted_epochs: int
    epochs_requested: bool  # --epochs given: train even if short, reduce only to fit

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.n_train // self.batch_size)


@dataclass(frozen=True)
class RunPlan:
    recal_samples: int
    measure_samples: int
    epochs: int  # 0: no training (phase 1 only)
    phase1_seed_seconds: float  # estimated, per seed
    phase2_seed_seconds: float  # estimated, per seed (0 without training)
    needs_step_time: bool  # training may fit: measure a step and plan again
    notes: Tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"recal_samples": self.recal_samples, "measure_samples": self.measure_samples, "epochs": self.epochs,
                "phase1_seed_seconds": self.phase1_seed_seconds, "phase2_seed_seconds": self.phase2_seed_seconds,
                "notes": list(self.notes)}


def _round_up(x: int, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


def _sample_counts(values: int, sizes: Sizes) -> Tuple[int, int]:
    need = int(math.ceil(values / max(1, sizes.positions)))
    low = 2 * sizes.batch_size
    recal = min(MAX_RECAL_SAMPLES, _round_up(max(need, low), sizes.batch_size))
    measure = max(2, min(sizes.n_val, max(need, low)))
    return recal, measure


def _measure_seconds(costs: Costs, recal: int, measure: int) -> float:
    """Both models' variance-shift measurement."""
    return 2 * MEASURE_OVERHEAD * costs.forward_per_sample * (TRAIN_FORWARD_FACTOR * recal + measure)


def make_plan(costs: Costs, sizes: Sizes, seconds_left: float, slowdown: float = 1.0, phase1_done: bool = False,
              samples: Optional[Tuple[int, int]] = None, seed_seconds: Optional[float] = None) -> RunPlan:
    """The plan for ``sizes.seeds`` seeds in ``seconds_left`` (see the module docstring).

    ``slowdown`` scales every measured cost (phase 1 ran this many times slower than
    estimated). Phase 1 gets at most half of the usable time; the sample counts shrink
    to fit, down to ``MIN_VALUES_PER_CHANNEL``. With ``phase1_done`` (planning again
    after phase 1) only training is planned, with the given ``samples``; then
    ``seed_seconds``, phase 1's measured time per seed, replaces the estimate of
    building and measuring a pair.
    """
    scaled = Costs(costs.forward_per_sample * slowdown, costs.build_pair * slowdown,
                   None if costs.step is None else costs.step * slowdown)
    usable = SAFETY * max(0.0, seconds_left)
    n = sizes.seeds
    notes = []
    values = VALUES_PER_CHANNEL
    recal, measure = samples if samples is not None else _sample_counts(values, sizes)
    while samples is None:
        phase1 = scaled.build_pair + _measure_seconds(scaled, recal, measure)
        if n * phase1 <= usable / 2 or values <= MIN_VALUES_PER_CHANNEL:
            break
        values = max(MIN_VALUES_PER_CHANNEL, values // 2)
        recal, measure = _sample_counts(values, sizes)
    phase1 = 0.0 if phase1_done else scaled.build_pair + _measure_seconds(scaled, recal, measure)
    if values < VALUES_PER_CHANNEL:
        notes.append(f"the variance shift is measured on about {values} values per BN channel (target "
                     f"{VALUES_PER_CHANNEL}) to fit the budget")
    # Phase 2, per seed: build, initial validation of both models, epochs (steps plus a
    # validation pass each), the second measurement.
    val_pass = scaled.forward_per_sample * sizes.n_val
    step = scaled.step if scaled.step is not None else (
        OPTIMISTIC_STEP_FACTOR * scaled.forward_per_sample * sizes.batch_size)
    per_epoch = 2 * (sizes.steps_per_epoch * step + val_pass)
    rebuild_and_measure = seed_seconds if seed_seconds is not None else (
        scaled.build_pair + _measure_seconds(scaled, recal, measure))
    fixed2 = rebuild_and_measure + 2 * val_pass
    left = usable - n * phase1
    fit = int(max(0.0, left - n * fixed2) // (n * per_epoch)) if per_epoch > 0 else sizes.wanted_epochs
    epochs = min(sizes.wanted_epochs, fit)
    minimum = 1 if sizes.epochs_requested else MIN_AUTO_EPOCHS
    if epochs < minimum:
        epochs = 0
    needs_step = epochs > 0 and scaled.step is None
    if sizes.wanted_epochs == 0:
        notes.append("no training (--epochs 0): the variance shift is measured at initialisation and validation "
                     "metrics are not measured")
    elif scaled.step is not None or epochs == 0:
        if sizes.epochs_requested and epochs < sizes.wanted_epochs:
            notes.append(f"epochs reduced from {sizes.wanted_epochs} to {epochs} to fit the budget "
                         f"(about {step * 1000:.0f} ms per step); raise --budget for a longer run")
        elif epochs == 0:
            notes.append(_no_training_note(sizes, step, scaled.step is not None, per_epoch, n, fixed2, phase1,
                                           seconds_left))
    phase2 = fixed2 + epochs * per_epoch if epochs else 0.0
    return RunPlan(recal, measure, epochs, phase1, phase2, needs_step, tuple(notes))


def _no_training_note(sizes: Sizes, step: float, step_measured: bool, per_epoch: float, n: int, fixed2: float,
                      phase1: float, seconds_left: float) -> str:
    epochs = 1 if sizes.epochs_requested else MIN_AUTO_EPOCHS
    needed = n * (phase1 + fixed2 + epochs * per_epoch) / SAFETY
    per_step = f"{'about' if step_measured else 'at least'} {step * 1000:.0f} ms per step"
    return (f"no training: {epochs} epoch{'s' if epochs > 1 else ''} of {sizes.steps_per_epoch} steps for {n} "
            f"seed{'s' if n > 1 else ''} x 2 models ({per_step}) do not fit the {max(0.0, seconds_left):.0f} s of the "
            f"budget left, "
            f"so the variance shift is measured at initialisation and validation metrics are not measured "
            f"(measuring and training would take about {needed:.0f} s: raise --budget, or use a GPU)")
