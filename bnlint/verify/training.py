"""The training loop shared by both experiments, and evaluation.

Kept lean on purpose (benchmark 3 holds it to at most 1.15x a hand-written loop): no
per-step host synchronisation, one optional callback per epoch. Mixed precision and
memory format come from the ``BatchSource`` (see ``bnlint.verify.speed``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch

from bnlint.verify.batching import BatchSource, batches_of

__all__ = ["TrainResult", "MomentumSGD", "train_model", "evaluate", "make_optimizer"]


@dataclass
class TrainResult:
    epoch_losses: List[float] = field(default_factory=list)  # mean train-mode loss per epoch
    steps: int = 0
    diverged: bool = False  # a non-finite loss stopped training
    out_of_time: bool = False  # the deadline stopped training before the last epoch ended
    first_loss: float = math.nan  # train-mode loss of the first batch (the untrained model)


class MomentumSGD:
    """SGD with momentum, exactly ``torch.optim.SGD(params, lr, momentum)``'s update
    (no dampening, weight decay or Nesterov): ``buf = momentum * buf + grad`` (``buf =
    grad`` at the first step), then ``p -= lr * buf``.

    Written out because constructing any ``torch.optim`` optimizer imports
    ``torch._dynamo`` on first use: about 0.7x the time of ``import torch`` itself
    (3 s on an idle 2-core VM, 17 s on a busy one), paid by every verification worker.
    """

    def __init__(self, params, lr: float, momentum: float):
        self.params = [p for p in params if p.requires_grad]
        self.lr = lr
        self.momentum = momentum
        self.buffers: list = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in live]
        grads = [self.params[i].grad for i in live]
        if not params:
            return
        if self.momentum == 0:
            torch._foreach_add_(params, grads, alpha=-self.lr)
            return
        fresh = [i for i in live if self.buffers[i] is None]
        for i in fresh:
            self.buffers[i] = self.params[i].grad.detach().clone()
        old = [i for i in live if i not in set(fresh)]
        if old:
            bufs = [self.buffers[i] for i in old]
            torch._foreach_mul_(bufs, self.momentum)
            torch._foreach_add_(bufs, [self.params[i].grad for i in old])
        torch._foreach_add_(params, [self.buffers[i] for i in live], alpha=-self.lr)


def make_optimizer(model: torch.nn.Module, lr: float, momentum: float, amp: Optional[torch.dtype] = None):
    """The harness's optimizer: :class:`MomentumSGD`; ``torch.optim.SGD`` under float16
    autocast, whose gradient scaler needs a torch optimizer."""
    if amp == torch.float16:
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    return MomentumSGD(model.parameters(), lr, momentum)


def train_model(
    model: torch.nn.Module,
    source: BatchSource,
    orders: Sequence[torch.Tensor],
    loss_fn: Callable,
    batch_size: int,
    optimizer,
    seed: int,
    on_epoch: Optional[Callable[[int, float], None]] = None,
    on_step: Optional[Callable[[], None]] = None,
    deadline: Optional[float] = None,
) -> TrainResult:
    """Train for ``len(orders)`` epochs, visiting examples in the given orders.

    The global RNG is seeded with ``seed`` first, so two models with the same layers
    draw the same dropout masks. ``on_epoch(epoch, mean_loss)`` runs after each epoch.
    ``deadline`` (a ``time.monotonic()`` value) stops training between steps once
    passed; the result then says ``out_of_time``.
    """
    device = source.device
    scaler = torch.amp.GradScaler(device.type) if source.amp == torch.float16 else None
    torch.manual_seed(seed)
    result = TrainResult()
    for epoch, order in enumerate(orders):
        model.train()
        total = torch.zeros((), device=device)
        count = 0
        for idx in batches_of(order, batch_size):
            if deadline is not None and time.monotonic() > deadline:
                result.out_of_time = True
                result.steps += count
                return result
            inputs, target = source.batch(idx)
            with source.autocast():
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
            if result.steps == 0 and count == 0:
                result.first_loss = float(loss.detach())
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
            with source.autocast():
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
