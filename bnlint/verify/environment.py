"""Device choice, mixed precision and the environment recorded in reports."""
from __future__ import annotations

import contextlib
import os
import platform
from typing import Optional

import torch

from bnlint.verify.options import DEFAULT_CPU_BUDGET, DEFAULT_GPU_BUDGET, VerifyError

__all__ = ["pick_device", "autocast_for", "amp_dtype", "cpu_bf16_supported", "environment_info", "default_budget",
           "cpu_threads", "available_cpus"]


def pick_device(requested: Optional[str]) -> torch.device:
    """``None`` -> CUDA when available, else CPU. Checks a requested device exists."""
    if requested is None or requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise VerifyError(f"--device {requested!r} is not a device name (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VerifyError(f"--device {requested}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VerifyError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise VerifyError(f"--device {requested}: only cpu and cuda are supported")
    return device


def default_budget(device: torch.device) -> float:
    return DEFAULT_GPU_BUDGET if device.type == "cuda" else DEFAULT_CPU_BUDGET


def amp_dtype(device: torch.device) -> Optional[torch.dtype]:
    """Mixed precision on CUDA (bfloat16 where supported, else float16); none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 convolutions and matmuls natively (oneDNN)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def autocast_for(device: torch.device, dtype: Optional[torch.dtype] = None):
    """Autocast to ``dtype`` (default: :func:`amp_dtype` of the device); none for float32."""
    dtype = amp_dtype(device) if dtype is None else dtype
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _cpu_model_name() -> Optional[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def environment_info(device: torch.device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model_name() or platform.processor() or platform.machine() or "cpu"
    dtype = amp_dtype(device)
    return {
        "device": str(device),
        "device_name": name,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "mixed_precision": str(dtype).replace("torch.", "") if dtype else None,
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }


@contextlib.contextmanager
def cpu_threads(device: torch.device, threads: Optional[int]):
    """Use ``threads`` intra-op threads while training on CPU; restore afterwards."""
    if device.type != "cpu" or not threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
