"""Small helpers of model libraries, provided when the library is not installed.

Research code copies the same few imports from timm into every vision transformer
(``from timm.models.layers import DropPath, to_2tuple, trunc_normal_``). With timm
missing, those names would be stand-ins (bnlint.model.standins) and a model that calls
``to_2tuple(img_size)`` could not be built. These helpers hold no dropout and no
normalisation, so bnlint provides them with equivalent definitions of its own and the
rest of the library stays a stand-in: a model that needs more of it is still reported
as needing the package. Imported in the worker only (it imports torch).
"""
from __future__ import annotations

import collections.abc
import itertools
from typing import Callable, Dict, List, Tuple

import torch
import torch.fx
import torch.nn as nn

__all__ = ["PROVIDED", "provide"]


def _ntuple(n: int) -> Callable:
    def parse(x):
        if isinstance(x, collections.abc.Iterable) and not isinstance(x, str):
            return tuple(x)
        return tuple(itertools.repeat(x, n))
    return parse


to_1tuple, to_2tuple, to_3tuple, to_4tuple = (_ntuple(n) for n in (1, 2, 3, 4))
to_ntuple = _ntuple


def drop_path(x, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True):
    """Stochastic depth: zero whole samples of a residual branch with probability
    ``drop_prob`` while training (the kept ones scaled by 1 / (1 - drop_prob))."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    if keep > 0.0 and scale_by_keep:
        mask.div_(keep)
    return x * mask


torch.fx.wrap("drop_path")  # one call in the traced graph, whatever the batch size


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0):
    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


_HELPERS = {"to_1tuple": to_1tuple, "to_2tuple": to_2tuple, "to_3tuple": to_3tuple, "to_4tuple": to_4tuple,
            "to_ntuple": to_ntuple, "drop_path": drop_path, "DropPath": DropPath, "trunc_normal_": trunc_normal_}
_TUPLES = ("to_1tuple", "to_2tuple", "to_3tuple", "to_4tuple", "to_ntuple")

# module of the missing library -> the helpers provided in it
PROVIDED: Dict[str, Tuple[str, ...]] = {}
for _prefix in ("timm.layers", "timm.models.layers"):
    PROVIDED[_prefix] = tuple(_HELPERS)
    PROVIDED[_prefix + ".helpers"] = _TUPLES
    PROVIDED[_prefix + ".drop"] = ("drop_path", "DropPath")
    PROVIDED[_prefix + ".weight_init"] = ("trunc_normal_",)


def provide(module) -> List[str]:
    """Put the provided helpers of ``module`` (a stand-in module) in it; their names."""
    names = list(PROVIDED.get(module.__name__, ()))
    for name in names:
        setattr(module, name, _HELPERS[name])
    return names
