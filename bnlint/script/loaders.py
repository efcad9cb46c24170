"""How a DataLoader orders its data, path by path.

A loader's arguments may differ by branch (``sampler = DistributedSampler(ds) if
distributed else None``, ``shuffle=(sampler is None)``, a ``**kwargs`` dict updated under
``if use_cuda:``). ``variants(loader)`` lists the combinations that can happen together
(branch conditions that contradict each other are never combined), and ``order(...)``
says for one combination whether every epoch draws a new order. The rules report on
these: BNL201 when some path has a sampler that needs ``set_epoch``, BNL203 when no
path shuffles, or (a warning) when shuffling depends on a condition.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import FrozenSet, List, Optional, Tuple

from bnlint.script.facts import Cond, Value, compatible

__all__ = ["Variant", "variants", "order", "samplers_of", "SHUFFLES", "NEVER", "UNKNOWN", "EXEMPT",
           "SEQUENTIAL", "PERMUTED"]

SHUFFLES = "shuffles"  # a new order every epoch (a shuffling sampler, shuffle=True)
NEVER = "never"  # the same order every epoch: no shuffling at all
SEQUENTIAL = "sequential"  # a sampler that never shuffles (SequentialSampler, DistributedSampler(shuffle=False))
PERMUTED = "permuted"  # the order of a permutation drawn once (Subset(ds, perm), sampler=perm)
EXEMPT = "exempt"  # the dataset's own business (IterableDataset, streaming), or batch_size=None
UNKNOWN = "unknown"  # an argument bnlint cannot resolve

_LIMIT = 64


@dataclass(frozen=True)
class Variant:
    """One combination of a loader's arguments that can happen on some path."""

    sampler: Optional[Value]  # None: no sampler on this path
    sampler_known: bool
    batch_sampler: Optional[Value]
    batch_sampler_known: bool
    shuffle: Optional[bool]  # None: unknown
    conds: FrozenSet[Cond]
    branched: bool  # the sampler differs between paths


def variants(loader: Value) -> List[Variant]:
    samplers = loader.get("samplers") or [("absent", None, frozenset())]
    batch_samplers = loader.get("batch_samplers") or [("absent", None, frozenset())]
    shuffles = loader.get("shuffles") or [(False, frozenset())]
    branched = len({id(v) for _, v, _ in samplers}) > 1
    out: List[Variant] = []
    for (s_state, s_val, s_conds), (b_state, b_val, b_conds), (shuf, f_conds) in itertools.product(
            samplers, batch_samplers, shuffles):
        if not (compatible(s_conds, b_conds) and compatible(s_conds, f_conds) and compatible(b_conds, f_conds)):
            continue
        out.append(Variant(s_val, s_state != "unknown", b_val, b_state != "unknown", shuf,
                           s_conds | b_conds | f_conds, branched))
        if len(out) >= _LIMIT:
            break
    return out


def samplers_of(variant: Variant) -> Optional[Value]:
    """The sampler deciding the order on this path (a batch sampler's inner sampler)."""
    if variant.sampler is not None:
        return variant.sampler
    if variant.batch_sampler is not None and variant.batch_sampler.kind == "batch_sampler":
        return variant.batch_sampler.get("sampler")
    return None


def order(loader: Value, variant: Variant, perm_of) -> Tuple[str, Optional[Value]]:
    """``(kind, anchor)``: how this path orders the data, and the value to point at
    (the permutation, the sampler or the loader)."""
    if not variant.sampler_known or not variant.batch_sampler_known:
        return UNKNOWN, None
    data = loader.get("dataset")
    if variant.sampler is not None or variant.batch_sampler is not None:
        sampler = samplers_of(variant)
        if sampler is None:
            return UNKNOWN, None
        perm = perm_of(sampler)
        if perm is not None and sampler.kind in ("perm", "permuted"):
            return PERMUTED, perm
        if sampler.kind != "sampler":
            return UNKNOWN, None
        if sampler.get("kind") == "sequential":
            inner = perm_of(sampler.get("data")) or perm_of(data)
            if inner is not None:
                return PERMUTED, inner
            return SEQUENTIAL, sampler
        if sampler.get("kind") == "distributed" and sampler.get("shuffle") is False:
            return SEQUENTIAL, sampler
        return SHUFFLES, sampler
    if loader.get("batch_none"):
        return EXEMPT, None
    if variant.shuffle is None:
        return UNKNOWN, None
    if variant.shuffle:
        return SHUFFLES, loader
    perm = perm_of(data)
    if perm is not None:
        return PERMUTED, perm
    if data is not None and (data.get("iterable") or (data.kind == "hfds" and data.get("streaming"))):
        return EXEMPT, None
    return NEVER, loader
