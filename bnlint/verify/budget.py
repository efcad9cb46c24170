"""Fit a run into the time budget: time a few training steps, then choose epochs."""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Optional, Tuple

import torch

from bnlint.verify.batching import BatchSource
from bnlint.verify.training import make_optimizer, train_model

__all__ = ["time_training_step", "time_one_step", "fit_epochs", "EVAL_OVERHEAD"]

# Per-epoch validation and the final metrics cost about this much extra.
EVAL_OVERHEAD = 1.3


def time_training_step(model: torch.nn.Module, source: BatchSource, loss_fn: Callable, batch_size: int,
                       lr: float, momentum: float, steps: int = 3, rounds: int = 6,
                       max_seconds: float = 2.0) -> float:
    """Seconds per optimizer step, measured on a throwaway copy (the RNG is restored)."""
    state = torch.random.get_rng_state()
    probe = copy.deepcopy(model)
    opt = make_optimizer(probe, lr, momentum, source.amp)
    n = min(len(source), batch_size * steps)
    order = [torch.arange(n)]
    # The first steps of a fresh process are slow (allocator, lazy kernels): repeat and
    # keep the fastest round, within a small time cap.
    best = float("inf")
    spent_start = time.perf_counter()
    for _ in range(rounds):
        if source.device.type == "cuda":
            torch.cuda.synchronize(source.device)
        start = time.perf_counter()
        result = train_model(probe, source, order, loss_fn, batch_size, opt, seed=0)
        if source.device.type == "cuda":
            torch.cuda.synchronize(source.device)
        best = min(best, (time.perf_counter() - start) / max(1, result.steps))
        if time.perf_counter() - spent_start > max_seconds:
            break
    torch.random.set_rng_state(state)
    return best


def time_one_step(model: torch.nn.Module, source: BatchSource, loss_fn: Callable, batch_size: int, lr: float,
                  momentum: float, prepare: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m) -> float:
    """Seconds per optimizer step on a throwaway copy: one warm-up step, then the
    faster of two (for large models on CPU, where one step can take seconds).
    ``prepare`` puts the copy in the run's memory format. The RNG is restored."""
    with torch.random.fork_rng(devices=[source.device.index or 0] if source.device.type == "cuda" else []):
        probe = prepare(copy.deepcopy(model))
        opt = make_optimizer(probe, lr, momentum, source.amp)
        order = [torch.arange(min(len(source), batch_size))]
        best = float("inf")
        for i in range(3):
            if source.device.type == "cuda":
                torch.cuda.synchronize(source.device)
            start = time.perf_counter()
            train_model(probe, source, order, loss_fn, batch_size, opt, seed=0)
            if source.device.type == "cuda":
                torch.cuda.synchronize(source.device)
            if i:
                best = min(best, time.perf_counter() - start)
    return best


def fit_epochs(wanted: int, steps_per_epoch: int, runs: int, step_seconds: float,
               budget: float) -> Tuple[int, Optional[str]]:
    """Largest epoch count <= ``wanted`` whose estimated time fits ``budget``."""
    per_epoch = runs * steps_per_epoch * step_seconds * EVAL_OVERHEAD
    if per_epoch <= 0 or wanted * per_epoch <= budget:
        return wanted, None
    epochs = max(1, int(math.floor(budget / per_epoch)))
    note = (f"epochs reduced from {wanted} to {epochs} to fit the {budget:.0f} s budget "
            f"(about {step_seconds * 1000:.1f} ms per step); raise --budget for a longer run")
    return epochs, note
