"""Plain facts about training scripts, as computed by ``bnlint.script.walker``.

Abstract values (what a name may hold: a loader, a sampler, a permutation, ...),
loops, and the events the rules reason over (a loader iterated by a training loop,
a ``set_epoch`` call, a seeding call, an indexed permutation). Every value and event
remembers the stack of loops it happened in, across function calls, so that "inside
the epoch loop" is a question about loop identity, not about spelling.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import libcst as cst

__all__ = [
    "VARIES", "Loop", "Value", "TrainUse", "SetEpochCall", "SeedCall", "IndexUse",
    "ScriptFacts",
]

# Marker in a dependency set: the value changes from call to call (random, time, ...).
VARIES = -1
_ids = itertools.count(1)


class Loop:
    """One ``for``/``while`` loop as reached by the walk (a loop walked in two call
    contexts is two ``Loop`` values)."""

    __slots__ = ("id", "node", "file", "trains", "models", "is_range")

    def __init__(self, node: cst.CSTNode, file, trains: bool, is_range: bool = False):
        self.id = next(_ids)
        self.node = node
        self.file = file
        self.trains = trains
        self.models: List["Value"] = []
        self.is_range = is_range


class Value:
    """An abstract value. ``kind`` is one of: loader, sampler, batch_sampler, perm,
    permuted, dataset, hfds, cycle, iter, wrap, cached, generator, rng, model,
    instance, gen, const, list, item, tuple, func."""

    __slots__ = ("kind", "node", "file", "loops", "attrs")

    def __init__(self, kind: str, node: Optional[cst.CSTNode], file, loops: Tuple[Loop, ...], /, **attrs):
        self.kind = kind
        self.node = node
        self.file = file
        self.loops = loops
        self.attrs: Dict[str, Any] = attrs

    def get(self, key: str, default=None):
        return self.attrs.get(key, default)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<{self.kind} {sorted(self.attrs)}>"


@dataclass
class TrainUse:
    """A value iterated by a loop that trains (backward / optimizer step)."""

    value: Value
    loops: Tuple[Loop, ...]  # all loops at the point of iteration, outermost first
    iter_loop: Loop  # the loop that draws the batches
    node: cst.CSTNode
    file: Any
    order: int


@dataclass
class SetEpochCall:
    target: Optional[Value]  # None when the receiver could not be resolved
    loops: Tuple[Loop, ...]
    node: cst.CSTNode


@dataclass
class SeedCall:
    lib: str  # torch / numpy / random / all / generator
    deps: FrozenSet[int]
    loops: Tuple[Loop, ...]
    node: cst.CSTNode
    file: Any
    order: int
    generator: Optional[Value] = None


@dataclass
class IndexUse:
    """``value[...]`` where value is a permutation, permuted data or cached batches."""

    value: Value
    loops: Tuple[Loop, ...]
    node: cst.CSTNode
    index_from_perm: Optional[Value] = None


@dataclass
class ScriptFacts:
    train_uses: List[TrainUse] = field(default_factory=list)
    set_epochs: List[SetEpochCall] = field(default_factory=list)
    seeds: List[SeedCall] = field(default_factory=list)
    index_uses: List[IndexUse] = field(default_factory=list)
    handed_off: set = field(default_factory=set)  # ids of values given to a framework
    models: List[Value] = field(default_factory=list)
    perms: List[Value] = field(default_factory=list)  # every permutation drawn

    # -- queries the rules share ------------------------------------------------------
    def epoch_loops(self, use: TrainUse, *created: Optional[Value]) -> Tuple[Loop, ...]:
        """Loops around a training iteration that do not also surround the creation of
        ``created`` values: each of their iterations replays what was made once."""
        inner = {id(l) for v in created if v is not None for l in v.loops}
        return tuple(
            l for l in use.loops if l is not use.iter_loop and id(l) not in inner
        )

    def is_handed_off(self, *values: Optional[Value]) -> bool:
        return any(v is not None and id(v) in self.handed_off for v in values)

    def trains_models(self, loops) -> List[Value]:
        out: List[Value] = []
        for loop in loops:
            for m in loop.models:
                if m not in out:
                    out.append(m)
        return out
