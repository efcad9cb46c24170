"""The training loop shared by both experiments, and evaluation.

Kept lean on purpose (benchmark 3 holds it to at most 1.15x a hand-written loop): no
per-step host synchronisation, one optional callback per epoch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch

from bnlint.verify.batching import BatchSource, batches_of
from bnlint.verify.environment import amp_dtype, autocast_for

__all__ = ["TrainResult", "train_model", "evaluate", "make_optimizer"]


@dataclass
class TrainResult:
    epoch_losses: List[float] = field(default_factory=list)  # mean train-mode loss per epoch
    steps: int = 0
    diverged: bool = False  # a non-finite loss stopped training


def make_optimizer(model: torch.nn.Module, lr: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


def train_model(
    model: torch.nn.Module,
    source: BatchSource,
    orders: Sequence[torch.Tensor],
    loss_fn: Callable,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    seed: int,
    on_epoch: Optional[Callable[[int, float], None]] = None,
    on_step: Optional[Callable[[], None]] = None,
) -> TrainResult:
    """Train for ``len(orders)`` epochs, visiting examples in the given orders.

    The global RNG is seeded with ``seed`` first, so two models with the same layers
    draw the same dropout masks. ``on_epoch(epoch, mean_loss)`` runs after each epoch.
    """
    device = source.device
    dtype = amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    torch.manual_seed(seed)
    result = TrainResult()
    for epoch, order in enumerate(orders):
        model.train()
        total = torch.zeros((), device=device)
        count = 0
        for idx in batches_of(order, batch_size):
            inputs, target = source.batch(idx)
            with autocast_for(device):
                out = model(*inputs)
            if isinstance(out, (tuple, list)):
                out = out[0]
            loss = loss_fn(out.float(), target)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            total += loss.detach()
            count += 1
            if on_step is not None:
                on_step()
        result.steps += count
        mean_loss = float(total) / max(1, count)
        result.epoch_losses.append(mean_loss)
        if on_epoch is not None:
            on_epoch(epoch, mean_loss)
        if not math.isfinite(mean_loss):
            result.diverged = True
            break
    return result


@torch.no_grad()
def evaluate(model: torch.nn.Module, source: BatchSource, loss_fn: Callable, classification: bool,
             batch_size: int = 256, train_mode: bool = False):
    """Mean loss (and accuracy, else None) over the whole dataset.

    ``train_mode`` evaluates with batch statistics and dropout on, restoring the BN
    running buffers afterwards so that evaluation never changes the model.
    """
    saved = None
    if train_mode:
        saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train(train_mode)
    total, correct, n = 0.0, 0, 0
    try:
        for inputs, target in source.all_batches(batch_size):
            if train_mode and len(target) < 2:
                continue
            with autocast_for(source.device):
                out = model(*inputs)
            if isinstance(out, (tuple, list)):
                out = out[0]
            out = out.float()
            total += float(loss_fn(out, target)) * len(target)
            if classification:
                correct += int((out.argmax(1) == target).sum())
            n += len(target)
    finally:
        if saved is not None:
            model.load_state_dict(saved)
        model.eval()
    loss = total / max(1, n)
    return loss, (correct / max(1, n) if classification else None)
