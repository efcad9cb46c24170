"""How the harness runs a model fast: intra-op threads, mixed precision, memory format.

Chosen per model by timing, because the best setting depends on the model and the
machine (measured on a 2-core AMD EPYC VM, WRN-16-4, batch 32, one thread: fp32
forward 0.51 s, channels-last 0.35 s, bfloat16 autocast + channels-last 0.18 s; a
two-layer MLP is fastest in plain fp32, and on a loaded machine a second thread
made steps slower). Candidates are timed on a no-grad forward of one batch (the
warm-up call is not counted, best of two); a candidate replaces plain fp32 only when
it is clearly faster (``GAIN``), so small models stay in fp32 with one thread and
their results do not depend on timing noise. Options pin any of the three.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import nn

from bnlint.verify.batching import BatchSource
from bnlint.verify.environment import amp_dtype, available_cpus, cpu_bf16_supported
from bnlint.verify.options import VerifyError

__all__ = ["SpeedChoice", "choose_speed", "GAIN", "SMALL_FORWARD_SECONDS", "PRECISIONS"]

GAIN = 0.85  # a candidate must take at most this fraction of the current best's time
SMALL_FORWARD_SECONDS = 0.02  # forwards faster than this: plain fp32, one thread, no probing
LONG_FORWARD_SECONDS = 0.1  # forwards slower than this are timed once after the warm-up
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class SpeedChoice:
    """The chosen settings and the forward timings behind the choice."""

    threads: Optional[int]  # CPU intra-op threads; None on CUDA
    amp: torch.dtype  # autocast dtype; torch.float32 means no autocast
    channels_last: bool
    forward_seconds: float  # no-grad eval forward of one batch with these settings (mean of the timed calls)
    batch_size: int
    tried: Tuple[Tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        parts = [str(self.amp).replace("torch.", "").replace("float32", "fp32").replace("bfloat16", "bf16 autocast")
                 .replace("float16", "fp16 autocast")]
        if self.channels_last:
            parts.append("channels-last")
        if self.threads is not None:
            parts.append(f"{self.threads} thread{'s' if self.threads > 1 else ''}")
        return ", ".join(parts)

    def source(self, dataset, device: torch.device) -> BatchSource:
        return BatchSource(dataset, device, amp=self.amp, channels_last=self.channels_last)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Put ``model`` in the chosen memory format (in place; returns it)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def to_dict(self) -> dict:
        return {"label": self.label, "threads": self.threads,
                "mixed_precision": None if self.amp == torch.float32 else str(self.amp).replace("torch.", ""),
                "channels_last": self.channels_last, "forward_seconds_per_batch": self.forward_seconds,
                "batch_size": self.batch_size, "tried": [{"setting": s, "forward_seconds": t} for s, t in self.tried]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _time_forward(model: nn.Module, source: BatchSource, batch_size: int) -> Tuple[float, float]:
    """(fastest, mean) seconds of a no-grad eval forward of one batch: a warm-up call,
    then two timed calls (one when a call takes over ``LONG_FORWARD_SECONDS``)."""
    inputs, _ = source.batch(torch.arange(min(batch_size, len(source))))
    model.eval()
    times: List[float] = []
    for i in range(3):
        _sync(source.device)
        start = time.perf_counter()
        with source.autocast():
            model(*inputs)
        _sync(source.device)
        elapsed = time.perf_counter() - start
        if i:  # the first call warms up (allocator, kernel selection)
            times.append(elapsed)
        if elapsed > LONG_FORWARD_SECONDS and times:
            break
    return min(times), sum(times) / len(times)


def _has_4d_input(dataset) -> bool:
    try:
        item = dataset[0]
    except Exception:
        return False
    first = item[0] if isinstance(item, (tuple, list)) else item
    return isinstance(first, torch.Tensor) and first.dim() == 3 and first.is_floating_point()


def _fixed_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    if precision not in PRECISIONS:
        raise VerifyError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return None
    dtype = _DTYPES[precision]
    if dtype == torch.float16 and device.type != "cuda":
        raise VerifyError("fp16 autocast needs a CUDA device; use bf16 or fp32 on CPU")
    return dtype


def choose_speed(model: nn.Module, dataset, device: torch.device, batch_size: int, precision: str = "auto",
                 channels_last: Optional[bool] = None, threads: Optional[int] = None) -> SpeedChoice:
    """Time the candidate settings on a copy of ``model`` and return the fastest.

    ``precision`` ("auto", "fp32", "bf16", "fp16"), ``channels_last`` and ``threads``
    pin a setting instead of timing it. The global RNG and thread count are restored.
    """
    fixed_dtype = _fixed_dtype(precision, device)
    on_cpu = device.type == "cpu"
    four_d = _has_4d_input(dataset)
    base_dtype = fixed_dtype or (torch.float32 if on_cpu else (amp_dtype(device) or torch.float32))
    start_threads = torch.get_num_threads()
    rng = torch.random.get_rng_state()
    tried: List[Tuple[str, float]] = []

    means = {}

    def timed(dtype: torch.dtype, cl: bool, n_threads: Optional[int]) -> float:
        if n_threads is not None:
            torch.set_num_threads(n_threads)
        probe = copy.deepcopy(model).to(device)
        if cl:
            probe.to(memory_format=torch.channels_last)
        fastest, mean = _time_forward(probe, BatchSource(dataset, device, amp=dtype, channels_last=cl), batch_size)
        means[(dtype, cl, n_threads)] = mean
        tried.append((SpeedChoice(n_threads, dtype, cl, fastest, batch_size).label, fastest))
        return fastest

    try:
        base_threads = (threads or 1) if on_cpu else None
        best = (base_dtype, bool(channels_last), base_threads)
        best_s = timed(*best)
        if best_s >= SMALL_FORWARD_SECONDS:
            for cand in _candidates(best, fixed_dtype, channels_last, four_d, on_cpu):
                seconds = timed(*cand)
                if seconds < GAIN * best_s:
                    best, best_s = cand, seconds
            cpus = available_cpus()
            if on_cpu and threads is None and cpus > 1:
                cand = (best[0], best[1], cpus)
                seconds = timed(*cand)
                if seconds < GAIN * best_s:
                    best, best_s = cand, seconds
    finally:
        torch.set_num_threads(start_threads)
        torch.random.set_rng_state(rng)
    return SpeedChoice(best[2], best[0], best[1], means[best], batch_size, tuple(tried))


def _candidates(base: tuple, fixed_dtype: Optional[torch.dtype], channels_last: Optional[bool], four_d: bool,
                on_cpu: bool) -> List[tuple]:
    """Settings to time after ``base``, most promising first. On CPU, bfloat16 autocast
    is tried only where oneDNN runs it natively, and for image models only together
    with channels-last (oneDNN's fast bfloat16 convolutions are channels-last)."""
    dtype0, cl0, threads = base
    bf16 = on_cpu and fixed_dtype is None and cpu_bf16_supported()
    layouts = [channels_last] if channels_last is not None else ([True, False] if four_d else [False])
    out = []
    for cl in layouts:
        if bf16 and (cl or not four_d or channels_last is not None):
            out.append((torch.bfloat16, cl, threads))
        out.append((dtype0, cl, threads))
    return [c for c in out if c[:2] != (dtype0, cl0)]
