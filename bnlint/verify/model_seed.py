"""One seed of a model verification: build the pair, measure, train, measure again.

Both models start from the before model's initial weights, see the same data in the
same order and draw the same dropout masks where their layers line up. Everything
returned is plain data (it crosses process boundaries on multi-GPU runs).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from bnlint.verify.batching import BatchSource, epoch_orders
from bnlint.verify.bnstats import BNShift, measurement_indices, variance_shift
from bnlint.verify.options import VerifyOptions
from bnlint.verify.speed import SpeedChoice
from bnlint.verify.tasks import TaskData
from bnlint.verify.training import evaluate, make_optimizer, train_model
from bnlint.verify.weights import copy_initial_weights

__all__ = ["ModelPair", "SeedWork", "build_pair", "measure_seed", "train_seed", "renamed_module",
           "summarise_shifts"]

ARMS = ("before", "after")


@dataclass
class ModelPair:
    """How to build the two versions (called once per seed, after seeding the RNG)."""

    build_before: Callable[[], nn.Module]
    build_after: Callable[[], nn.Module]
    example_inputs: Tuple[torch.Tensor, ...]
    before_label: str = "before"
    after_label: str = "after"
    task_dirs: Tuple[str, ...] = ()


@dataclass(frozen=True)
class SeedWork:
    """What every seed does (the same for all seeds of a run)."""

    recal_samples: int
    measure_samples: int
    judged: Tuple[str, ...]  # BN names (before model's namespace); empty: every BN
    options: VerifyOptions
    speed: SpeedChoice
    device: str


def _materialize(model: nn.Module, example: Sequence[torch.Tensor]) -> None:
    """Run lazy modules once so that their parameters exist before weights are copied."""
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        model.eval()
        with torch.no_grad():
            model(*example)


def build_pair(pair: ModelPair, seed: int, rename) -> Tuple[nn.Module, nn.Module]:
    """Both models, the after one holding the before one's initial weights."""
    torch.manual_seed(seed)
    before = pair.build_before()
    _materialize(before, pair.example_inputs)
    torch.manual_seed(seed)
    after = pair.build_after()
    _materialize(after, pair.example_inputs)
    copy_initial_weights(before, after, rename)
    return before, after


def renamed_module(name: str, rename: Sequence[Tuple[str, str]], inverse: bool = False) -> str:
    """A module path under the state_dict prefix renames (after -> before when ``inverse``)."""
    key = name + "."
    for old, new in rename:
        src, dst = (new, old) if inverse else (old, new)
        if key.startswith(src):
            return (dst + key[len(src):])[:-1]
    return name


def _geometric_mean(values: Sequence[float]) -> Optional[float]:
    if not values:
        return None
    if not all(v > 0 and math.isfinite(v) for v in values):
        return math.nan
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarise_shifts(shifts: Sequence[BNShift], judged: Sequence[str]) -> dict:
    """Per-BN list, the judged BNs' shift and ratio (geometric means: they are ratios)
    and the most shifted BN outside the judged set."""
    names = set(judged) if judged else {s.name for s in shifts}
    inside = [s for s in shifts if s.name in names]
    outside = [s for s in shifts if s.name not in names]
    worst = max(outside, key=lambda s: s.shift, default=None)
    return {
        "variance_shift": [s.to_dict() for s in shifts],
        "judged": _geometric_mean([s.shift for s in inside]),
        "judged_ratio": _geometric_mean([s.ratio for s in inside]),
        "other_max": worst.shift if worst else None,
        "other_max_name": worst.name if worst else None,
    }


def _prepared(pair: ModelPair, seed: int, work: SeedWork) -> Tuple[nn.Module, nn.Module]:
    device = torch.device(work.device)
    before, after = build_pair(pair, seed, work.options.rename)
    return work.speed.prepare(before.to(device)), work.speed.prepare(after.to(device))


def _measure(model: nn.Module, arm: str, train_src: BatchSource, val_src: BatchSource, seed: int,
             work: SeedWork) -> dict:
    recal = measurement_indices(len(train_src), work.recal_samples, seed)
    measure = torch.arange(min(work.measure_samples, len(val_src)))
    shifts = variance_shift(model, train_src, recal, val_src, measure, work.options.batch_size, seed)
    if arm == "after" and work.options.rename:
        shifts = [BNShift(renamed_module(s.name, work.options.rename, inverse=True), s.ratio, s.shift, s.li_shift,
                          s.channels, s.values) for s in shifts]
    return summarise_shifts(shifts, work.judged)


def _sources(task: TaskData, work: SeedWork) -> Tuple[BatchSource, BatchSource]:
    device = torch.device(work.device)
    return work.speed.source(task.train, device), work.speed.source(task.val, device)


def measure_seed(pair: ModelPair, task: TaskData, seed: int, work: SeedWork, initial_validation: bool) -> dict:
    """Phase 1: the variance shift of both untrained models (and, when training
    follows, their validation loss before training)."""
    start = time.perf_counter()
    models = dict(zip(ARMS, _prepared(pair, seed, work)))
    train_src, val_src = _sources(task, work)
    record: Dict[str, object] = {"seed": seed}
    for arm in ARMS:
        side = {"at_init": _measure(models[arm], arm, train_src, val_src, seed, work)}
        if initial_validation:
            loss, acc = evaluate(models[arm], val_src, task.loss_fn, task.is_classification)
            side.update(initial_val_loss=loss, initial_val_acc=acc)
        record[arm] = side
    record["seconds"] = time.perf_counter() - start
    return record


def train_seed(pair: ModelPair, task: TaskData, seed: int, work: SeedWork, epochs: int,
               deadline: Optional[float] = None, on_epoch: Optional[Callable[[], None]] = None) -> Optional[dict]:
    """Phase 2: train both models for ``epochs`` epochs (same order, same masks), then
    measure again. None when ``deadline`` (``time.monotonic()``) stopped it."""
    start = time.perf_counter()
    models = dict(zip(ARMS, _prepared(pair, seed, work)))
    train_src, val_src = _sources(task, work)
    orders = epoch_orders(len(train_src), epochs, seed=seed, mode="rr")
    opts = work.options
    record: Dict[str, object] = {"seed": seed}
    for arm in ARMS:
        model = models[arm]
        curve: List[dict] = []

        def after_epoch(epoch: int, mean_loss: float, model=model, curve=curve) -> None:
            val_loss, val_acc = evaluate(model, val_src, task.loss_fn, task.is_classification)
            curve.append({"epoch": epoch + 1, "train_loss": mean_loss, "val_loss": val_loss, "val_acc": val_acc})
            if on_epoch is not None:
                on_epoch()

        opt = make_optimizer(model, opts.lr, opts.momentum, train_src.amp)
        result = train_model(model, train_src, orders, task.loss_fn, opts.batch_size, opt, seed, after_epoch,
                             deadline=deadline)
        if result.out_of_time:
            return None
        side = {"trained": _measure(model, arm, train_src, val_src, seed, work), "curve": curve,
                "steps": result.steps, "diverged": result.diverged, "first_train_loss": result.first_loss}
        last = curve[-1] if curve else {"val_loss": math.nan, "val_acc": None}
        side.update(val_loss=last["val_loss"], val_acc=last["val_acc"])
        record[arm] = side
    record["seconds"] = time.perf_counter() - start
    return record
