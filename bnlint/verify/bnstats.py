"""BatchNorm statistics: Li et al.'s variance shift and full-batch-BN risk.

Variance shift (Li et al., CVPR 2019, arXiv 1801.05134, Sec. 3): for each BN layer,
``real_var`` is the per-channel variance of its input in eval mode (dropout off),
collected with a forward hook; the shift is ``max(real_var / running_var,
running_var / real_var)`` averaged over channels. 1.0 means no shift.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnlint.verify.batching import BatchSource
from bnlint.verify.environment import autocast_for

__all__ = ["BNShift", "batchnorm_layers", "variance_shift", "full_batch_bn_risk"]


@dataclass(frozen=True)
class BNShift:
    """One BN layer: Li et al.'s shift and the mean raw ratio real_var / running_var."""

    name: str
    shift: float
    ratio: float
    channels: int

    def to_dict(self) -> dict:
        return {"name": self.name, "shift": self.shift, "ratio": self.ratio, "channels": self.channels}


def batchnorm_layers(model: nn.Module) -> List[tuple]:
    """``(name, module)`` of every BN that tracks running statistics, in model order."""
    return [
        (name, m) for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_var is not None
    ]


class _MomentAccumulator:
    """Per-channel sums of x and x^2 (float64) of a BN's input."""

    def __init__(self) -> None:
        self.s1: Optional[torch.Tensor] = None
        self.s2: Optional[torch.Tensor] = None
        self.count = 0

    def __call__(self, module: nn.Module, args, output) -> None:
        x = args[0].detach().double()
        dims = [d for d in range(x.dim()) if d != 1]
        s1, s2 = x.sum(dims), (x * x).sum(dims)
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.count += x.numel() // x.shape[1]

    def variance(self) -> torch.Tensor:
        mean = self.s1 / self.count
        return (self.s2 / self.count - mean * mean).clamp_min(0.0)


@torch.no_grad()
def variance_shift(model: nn.Module, source: BatchSource, batch_size: int = 256) -> List[BNShift]:
    """Li et al.'s variance shift of every BN layer, measured on ``source`` in eval mode."""
    layers = batchnorm_layers(model)
    if not layers:
        return []
    accumulators = [_MomentAccumulator() for _ in layers]
    handles = [m.register_forward_hook(acc) for (_, m), acc in zip(layers, accumulators)]
    model.eval()
    try:
        for inputs, _ in source.all_batches(batch_size):
            with autocast_for(source.device):
                model(*inputs)
    finally:
        for h in handles:
            h.remove()
    shifts = []
    for (name, bn), acc in zip(layers, accumulators):
        if acc.count == 0:
            continue  # a BN that this input never reaches
        real = acc.variance() + bn.eps
        running = bn.running_var.detach().double() + bn.eps
        ratio = real / running
        shift = torch.maximum(ratio, 1.0 / ratio)
        shifts.append(BNShift(name, float(shift.mean()), float(ratio.mean()), int(ratio.numel())))
    return shifts


@torch.no_grad()
def full_batch_bn_risk(model: nn.Module, source: BatchSource, loss_fn: Callable) -> float:
    """Loss on the whole dataset with every BN normalising by full-batch statistics.

    Dropout stays off; BN running buffers are restored afterwards.
    """
    layers = batchnorm_layers(model)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    for _, bn in layers:
        bn.train()
    try:
        inputs, target = source.batch(torch.arange(len(source)))
        with autocast_for(source.device):
            out = model(*inputs)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return float(loss_fn(out.float(), target))
    finally:
        model.load_state_dict(saved)
        model.eval()
