"""Same initial weights for the before and after models, and the eval-equivalence check.

A safe fix keeps state_dict keys, so the before model's weights load as they are; an
unsafe one promises renames (key prefixes), applied here. Dropout is the identity in
eval mode, so a moved dropout must leave eval outputs exactly unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from bnlint.verify.options import VerifyError

__all__ = ["rename_state_dict", "copy_initial_weights", "EquivalenceResult", "check_eval_equivalence"]


def rename_state_dict(state: Dict[str, torch.Tensor], rename: Sequence[Tuple[str, str]]) -> Dict[str, torch.Tensor]:
    """Apply prefix renames (first matching prefix wins) to the keys of ``state``."""
    out = {}
    for key, value in state.items():
        new = key
        for old_prefix, new_prefix in rename:
            if key.startswith(old_prefix):
                new = new_prefix + key[len(old_prefix):]
                break
        if new in out:
            raise VerifyError(f"rename map sends two keys to {new!r}")
        out[new] = value
    return out


def copy_initial_weights(before: nn.Module, after: nn.Module, rename: Sequence[Tuple[str, str]] = ()) -> None:
    """Load ``before``'s state_dict into ``after`` (strictly), after renaming keys."""
    state = rename_state_dict(before.state_dict(), rename)
    target = after.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        def show(keys):
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
        parts = []
        if missing:
            parts.append(f"after-only keys: {show(missing)}")
        if unexpected:
            parts.append(f"before-only keys: {show(unexpected)}")
        raise VerifyError(
            "the two models' state_dict keys differ (" + "; ".join(parts) + "); "
            "pass --rename OLD_PREFIX=NEW_PREFIX for parameters the change renamed"
        )
    shapes = [k for k in state if state[k].shape != target[k].shape]
    if shapes:
        k = shapes[0]
        raise VerifyError(
            f"parameter {k!r} has shape {tuple(state[k].shape)} before and {tuple(target[k].shape)} after; "
            "the two versions must have the same parameters"
        )
    after.load_state_dict(state, strict=True)


@dataclass(frozen=True)
class EquivalenceResult:
    equivalent: bool
    max_abs_diff: float
    trials: int

    def to_dict(self) -> dict:
        return {"equivalent": self.equivalent, "max_abs_diff": self.max_abs_diff, "trials": self.trials}


@torch.no_grad()
def check_eval_equivalence(before: nn.Module, after: nn.Module, example: Sequence[torch.Tensor],
                           seed: int = 0, trials: int = 3, rtol: float = 1e-4, atol: float = 1e-5) -> EquivalenceResult:
    """Compare eval-mode outputs on the example inputs and on random inputs like them."""
    gen = torch.Generator().manual_seed(seed)
    before.eval()
    after.eval()
    worst, ok = 0.0, True
    for t in range(trials):
        if t == 0:
            inputs = tuple(example)
        else:
            inputs = tuple(
                torch.randn(x.shape, generator=gen).to(dtype=x.dtype, device=x.device) if x.is_floating_point() else x
                for x in example
            )
        a, b = before(*inputs), after(*inputs)
        a = a[0] if isinstance(a, (tuple, list)) else a
        b = b[0] if isinstance(b, (tuple, list)) else b
        if a.shape != b.shape:
            return EquivalenceResult(False, float("inf"), t + 1)
        diff = float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
        worst = max(worst, diff)
        ok = ok and bool(torch.allclose(a.float(), b.float(), rtol=rtol, atol=atol))
    return EquivalenceResult(ok, worst, trials)
