"""BatchNorm statistics: Li et al.'s variance shift, measured so that it does not
depend on how long the model trained, and the full-batch-BN risk.

Variance shift (Li et al., CVPR 2019, arXiv 1801.05134, Sec. 3): a BN's running
variance is collected in training mode, with dropout on; at test time the BN's input
has its eval-mode variance. Measured here in two steps, on a copy of the model:

1. **Re-estimate** every BN's running statistics in training mode (dropout on) as a
   cumulative average (``momentum=None``) over the recalibration batches. This is the
   train-time variance the BN's running estimate converges to, whatever the training
   length: read directly off ``running_var`` after a few dozen steps with momentum
   0.1, the estimate would still be mostly its initial value 1.0 (0.9^n is left).
2. **Measure** each BN's per-channel input variance in eval mode (dropout off, every BN
   normalising with the re-estimated statistics) on *other* batches.

BNs written as ``F.batch_norm(x, self.running_mean, self.running_var, ...)`` on plain
buffers (meta-learning code) are measured too, through a temporary wrapper of
``torch.nn.functional.batch_norm`` that recognises their running-variance buffer
(named after it, e.g. ``running_var``).

Per BN: ``ratio`` = running variance / eval-mode input variance as a geometric mean
over channels (at least 1/(1-p) at a BN that a dropout of rate p feeds directly; about
1 where no dropout reaches it), ``shift`` = max(ratio, 1/ratio), and ``li_shift`` =
Li et al.'s per-channel max(r, 1/r) averaged over channels (biased upwards by sampling
noise, so the verdict uses ``shift``).
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnlint.verify.batching import BatchSource

__all__ = ["BNShift", "batchnorm_layers", "functional_batchnorm_buffers", "reestimated_copy", "variance_shift",
           "bn_input_positions", "full_batch_bn_risk", "measurement_indices", "mean_shift"]


@dataclass(frozen=True)
class BNShift:
    """One BN layer's variance shift (see the module docstring)."""

    name: str
    ratio: float  # running var / eval-mode input var (geometric mean over channels)
    shift: float  # max(ratio, 1 / ratio)
    li_shift: float  # Li et al.: mean over channels of max(r_c, 1 / r_c)
    channels: int
    values: int  # values per channel the eval-mode variance was measured on

    def to_dict(self) -> dict:
        return {"name": self.name, "ratio": self.ratio, "shift": self.shift, "li_shift": self.li_shift,
                "channels": self.channels, "values": self.values}


def batchnorm_layers(model: nn.Module) -> List[Tuple[str, _BatchNorm]]:
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


def functional_batchnorm_buffers(model: nn.Module) -> Dict[int, str]:
    """``id(running_var) -> name`` of running-variance buffers that no BN module owns
    (used by ``F.batch_norm`` calls in the model's forward)."""
    owned = {id(m.running_var) for _, m in batchnorm_layers(model)}
    return {id(buf): name for name, buf in model.named_buffers()
            if name.split(".")[-1].endswith("running_var") and id(buf) not in owned and buf.dim() == 1}


class _FunctionalBatchNorms:
    """While active, ``F.batch_norm`` calls on the buffers of
    :func:`functional_batchnorm_buffers` are re-estimated (momentum 1/k at the k-th
    training call: the cumulative average nn.BatchNorm computes with momentum=None) and
    their eval-mode inputs measured."""

    def __init__(self, model: nn.Module):
        self.names = functional_batchnorm_buffers(model)
        self.calls: Dict[int, int] = {}
        self.moments: Dict[int, _MomentAccumulator] = {k: _MomentAccumulator() for k in self.names}
        self.running: Dict[int, torch.Tensor] = {}
        self.eps: Dict[int, float] = {}

    @contextlib.contextmanager
    def active(self):
        if not self.names:
            yield self
            return
        original = F.batch_norm

        def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                       eps=1e-5):
            key = id(running_var) if running_var is not None else None
            if key in self.names:
                self.running[key], self.eps[key] = running_var, eps
                if training:
                    self.calls[key] = self.calls.get(key, 0) + 1
                    momentum = 1.0 / self.calls[key]
                else:
                    self.moments[key](None, (input,), None)
            return original(input, running_mean, running_var, weight, bias, training, momentum, eps)

        F.batch_norm = batch_norm
        try:
            yield self
        finally:
            F.batch_norm = original


def _rng_devices(device: torch.device) -> List[int]:
    return [device.index or 0] if device.type == "cuda" else []


def _forward(model: nn.Module, source: BatchSource, inputs) -> None:
    with source.autocast():
        model(*inputs)


@torch.no_grad()
def reestimated_copy(model: nn.Module, source: BatchSource, indices: torch.Tensor, batch_size: int,
                     seed: int) -> nn.Module:
    """A copy of ``model`` whose BN running statistics are re-estimated in training
    mode (dropout on) as a cumulative average over the examples ``indices`` of
    ``source``. The model itself and the global RNG are left untouched."""
    probe = copy.deepcopy(model)
    for _, bn in batchnorm_layers(probe):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over all batches
    probe.train()
    with torch.random.fork_rng(devices=_rng_devices(source.device)), _FunctionalBatchNorms(probe).active():
        torch.manual_seed(seed)
        for inputs, _ in source.batches(indices, batch_size):
            _forward(probe, source, inputs)
    probe.eval()
    return probe


def _shift(name: str, running: torch.Tensor, real: torch.Tensor, values: int) -> BNShift:
    per_channel = running / real
    log_mean = float(per_channel.log().mean())
    li = float(torch.maximum(per_channel, 1.0 / per_channel).mean())
    return BNShift(name, math.exp(log_mean), math.exp(abs(log_mean)), li, int(per_channel.numel()), values)


@torch.no_grad()
def variance_shift(model: nn.Module, recal: BatchSource, recal_indices: torch.Tensor, measure: BatchSource,
                   measure_indices: torch.Tensor, batch_size: int, seed: int) -> List[BNShift]:
    """Every BN's variance shift: statistics re-estimated on ``recal_indices`` of
    ``recal`` (train mode), eval-mode input variance measured on ``measure_indices`` of
    ``measure``. BNs the measurement batches never reach are left out."""
    probe = reestimated_copy(model, recal, recal_indices, batch_size, seed)
    layers = batchnorm_layers(probe)
    functional = _FunctionalBatchNorms(probe)
    if not layers and not functional.names:
        return []
    accumulators = [_MomentAccumulator() for _ in layers]
    handles = [m.register_forward_hook(acc) for (_, m), acc in zip(layers, accumulators)]
    try:
        with functional.active():
            for inputs, _ in measure.batches(measure_indices, batch_size):
                _forward(probe, measure, inputs)
    finally:
        for h in handles:
            h.remove()
    shifts = []
    for (name, bn), acc in zip(layers, accumulators):
        if acc.count:
            shifts.append(_shift(name, bn.running_var.detach().double() + bn.eps, acc.variance() + bn.eps, acc.count))
    for key, name in functional.names.items():
        acc = functional.moments[key]
        if acc.count and key in functional.running:
            eps = functional.eps[key]
            shifts.append(_shift(name, functional.running[key].detach().double() + eps, acc.variance() + eps,
                                 acc.count))
    return shifts


@torch.no_grad()
def bn_input_positions(model: nn.Module, source: BatchSource, names: Optional[Sequence[str]] = None) -> int:
    """The fewest values per channel per example any BN (or any of ``names``) sees:
    1 for BatchNorm1d on vectors, H*W for BatchNorm2d. Runs one eval-mode batch."""
    wanted = set(names) if names else None
    counts: Dict[str, int] = {}

    def hook(name):
        def record(module, args, output):
            x = args[0]
            counts[name] = x.numel() // (x.shape[0] * x.shape[1]) if x.dim() > 1 else 1
        return record

    layers = [(n, m) for n, m in batchnorm_layers(model) if wanted is None or n in wanted]
    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    functional = _FunctionalBatchNorms(model)
    was_training = model.training
    model.eval()
    examples = min(2, len(source))
    try:
        inputs, _ = source.batch(torch.arange(examples))
        with functional.active():
            _forward(model, source, inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for key, name in functional.names.items():
        if functional.moments[key].count and (wanted is None or name in wanted):
            counts[name] = max(1, functional.moments[key].count // examples)
    return max(1, min(counts.values())) if counts else 1


def measurement_indices(n: int, count: int, seed: int) -> torch.Tensor:
    """``count`` example indices out of ``n``: seeded permutations, concatenated when
    ``count > n`` (each pass draws new dropout masks in the re-estimation)."""
    gen = torch.Generator().manual_seed(seed)
    passes = [torch.randperm(n, generator=gen) for _ in range(max(1, math.ceil(count / n)))]
    return torch.cat(passes)[:count]


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
        with source.autocast():
            out = model(*inputs)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return float(loss_fn(out.float(), target))
    finally:
        model.load_state_dict(saved)
        model.eval()


def mean_shift(shifts: Iterable[BNShift], names: Optional[Iterable[str]] = None) -> Optional[float]:
    """Mean ``shift`` over the BNs ``names`` (all when None); None when none was measured."""
    wanted = set(names) if names is not None else None
    values = [s.shift for s in shifts if wanted is None or s.name in wanted]
    return sum(values) / len(values) if values else None
