"""Options of a verification run (frozen: passed explicitly, never global)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional, Tuple

__all__ = ["VerifyOptions", "VerifyError", "DEFAULT_CPU_BUDGET", "DEFAULT_GPU_BUDGET"]

DEFAULT_CPU_BUDGET = 120.0
DEFAULT_GPU_BUDGET = 600.0


class VerifyError(Exception):
    """A problem the user must fix (bad file, model, task or option); exit code 2."""


@dataclass(frozen=True)
class VerifyOptions:
    """How to train and compare the before/after versions.

    ``kind`` is ``"model"`` (BNL1xx: train both models), ``"shuffle"`` (BNL2xx: single
    shuffle vs random reshuffle) or ``"auto"`` (model when the two models differ).
    ``rename`` maps before-keys to after-keys by prefix, for unsafe fixes that renumber
    parameters (e.g. ``(("body.3.", "body.4."),)``).
    """

    seeds: int = 3
    epochs: Optional[int] = None  # None: as many as fit the budget (up to target_steps); 0: no training
    budget: Optional[float] = None  # seconds; None: 120 on CPU, 600 on GPU
    device: Optional[str] = None  # None: CUDA when available
    task: Optional[str] = None  # "module:function" returning (train, val[, loss])
    kind: str = "auto"
    rename: Tuple[Tuple[str, str], ...] = ()
    batch_size: int = 32
    lr: float = 0.02
    momentum: float = 0.9
    target_steps: int = 300  # default epochs give about this many optimizer steps
    n_train: int = 512
    n_val: int = 256
    first_seed: int = 0
    # Validation margin: accuracy may drop by at most this much (absolute) and the
    # validation loss may rise by at most this fraction of the before value.
    acc_margin: float = 0.02
    loss_margin: float = 0.05
    progress: bool = True
    # Speed settings (bnlint.verify.speed): None / "auto" times the candidates and keeps
    # the fastest (small models: fp32, one thread); a value pins the setting.
    cpu_threads: Optional[int] = None
    precision: str = "auto"  # auto, fp32, bf16, fp16 (CUDA only)
    channels_last: Optional[bool] = None
    # Shuffle experiment
    permutation_seeds: int = 3

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise VerifyError("--seeds must be at least 1")
        if self.epochs is not None and self.epochs < 0:
            raise VerifyError("--epochs must be 0 (measure at initialisation only) or more")
        if self.budget is not None and self.budget <= 0:
            raise VerifyError("--budget must be a positive number of seconds")
        if self.kind not in ("auto", "model", "shuffle"):
            raise VerifyError(f"unknown verification kind {self.kind!r}; use model, shuffle or auto")
        if self.batch_size < 2:
            raise VerifyError("batch size must be at least 2 (BatchNorm needs two values per channel)")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise VerifyError("CPU threads must be at least 1")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise VerifyError(f"unknown precision {self.precision!r}; use auto, fp32, bf16 or fp16")
        if self.permutation_seeds < 1:
            raise VerifyError("permutation seeds must be at least 1")

    def with_changes(self, **kwargs: Any) -> "VerifyOptions":
        return replace(self, **kwargs)

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out["rename"] = [list(pair) for pair in self.rename]
        return out
