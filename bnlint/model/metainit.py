"""Weight initialisation that does nothing on the meta device.

Models are built on the meta device (no memory, no data): only their structure is
analysed. A meta tensor holds no values, so filling it with random numbers changes
nothing; yet several of torch's fills (``normal_``, which ``nn.init.normal_``,
``kaiming_normal_`` and ``xavier_normal_`` call, and ``erfinv_``/``clamp_``, which
truncated-normal initialisers call) have Python reference implementations on the meta
device that import ``torch._dynamo`` on first use: about 2 s, more than analysing a
typical model file.

While :func:`initialisation_skipped_on_meta` is active, those in-place methods return
their tensor at once when it is a plain meta tensor with a floating dtype, every other
argument is a plain number (no tensors, no generator), autograd would allow the write,
and the arguments pass the checks torch makes (e.g. ``std >= 0``). In every other case
the real method runs, with its errors: a model that fails to build keeps failing.
The methods are restored on exit; this runs only in the analysis worker process.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Dict, Iterator, Optional

import torch

__all__ = ["initialisation_skipped_on_meta", "SKIPPED_ON_META"]


def _number(x) -> bool:
    return type(x) in (int, float) and math.isfinite(x)


def _normal(mean=0.0, std=1.0) -> bool:
    return _number(mean) and _number(std) and std >= 0


def _log_normal(mean=1.0, std=2.0) -> bool:
    return _number(mean) and _number(std) and std > 0


def _exponential(lambd=1.0) -> bool:
    return _number(lambd) and lambd > 0


def _cauchy(median=0.0, sigma=1.0) -> bool:
    return _number(median) and _number(sigma) and sigma > 0


def _geometric(p) -> bool:
    return _number(p) and 0 < p < 1


def _erfinv() -> bool:
    return True


def _clamp(min=None, max=None) -> bool:
    given = [v for v in (min, max) if v is not None]
    return bool(given) and all(_number(v) for v in given)


# Method name -> a check of its arguments (besides the tensor): True when torch would
# accept them, so that skipping the call changes nothing but the import.
SKIPPED_ON_META: Dict[str, Callable[..., bool]] = {
    "normal_": _normal,
    "log_normal_": _log_normal,
    "exponential_": _exponential,
    "cauchy_": _cauchy,
    "geometric_": _geometric,
    "erfinv_": _erfinv,
    "clamp_": _clamp,
}

_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _skippable(tensor, accepts: Callable[..., bool], args, kwargs) -> bool:
    if type(tensor) not in _PLAIN or tensor.device.type != "meta" or not tensor.dtype.is_floating_point:
        return False
    if torch.is_grad_enabled() and tensor.requires_grad:
        return False  # in-place on a leaf that requires grad: torch raises, let it
    if kwargs.get("generator", None) is not None:
        return False
    kwargs = {k: v for k, v in kwargs.items() if k != "generator"}
    try:
        return bool(accepts(*args, **kwargs))
    except TypeError:  # arguments torch would reject (or read differently)
        return False


def _skipping(name: str, original: Callable, accepts: Callable[..., bool]) -> Callable:
    def method(self, *args, **kwargs):
        if _skippable(self, accepts, args, kwargs):
            return self
        return original(self, *args, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"Tensor.{name}"
    method.__doc__ = original.__doc__
    return method


@contextlib.contextmanager
def initialisation_skipped_on_meta() -> Iterator[None]:
    """While inside: random fills of meta tensors are no-ops (see the module docs)."""
    saved: Dict[str, Optional[object]] = {}
    try:
        for name, accepts in SKIPPED_ON_META.items():
            original = getattr(torch.Tensor, name, None)
            if original is None:
                continue
            saved[name] = torch.Tensor.__dict__.get(name)  # None: inherited from TensorBase
            setattr(torch.Tensor, name, _skipping(name, original, accepts))
        yield
    finally:
        for name, before in saved.items():
            if before is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, before)
