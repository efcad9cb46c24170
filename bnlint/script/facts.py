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
    "ScriptFacts", "Cond", "options", "union", "describe_conds", "compatible", "ModelCall",
]

# Marker in a dependency set: the value changes from call to call (random, time, ...).
VARIES = -1
_ids = itertools.count(1)


class Loop:
    """One ``for``/``while`` loop as reached by the walk (a loop walked in two call
    contexts is two ``Loop`` values)."""

    __slots__ = ("id", "node", "file", "trains", "models", "is_range", "source")

    def __init__(self, node: cst.CSTNode, file, trains: bool, is_range: bool = False):
        self.id = next(_ids)
        self.node = node
        self.file = file
        self.trains = trains
        self.models: List["Value"] = []
        self.is_range = is_range
        self.source: Optional["Value"] = None  # what a ``for`` loop iterates, when known


class Value:
    """An abstract value. ``kind`` is one of: loader, sampler, batch_sampler, perm,
    permuted, dataset, hfds, cycle, iter, wrap, cached, generator, rng, model,
    instance, gen, const (``py``: the Python value when known), list, item, tuple,
    func, dict (``writes``: see ``bnlint.script.kwargs``) and union (``options``: the
    values a name may hold on different paths, each with the conditions of its path)."""

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


class Cond:
    """One branch condition: the ``if`` test (or conditional-expression test) ``node`` of
    ``file``, true (``positive``) or false on the path taken."""

    __slots__ = ("node", "positive", "file")

    def __init__(self, node: cst.CSTNode, positive: bool, file) -> None:
        self.node = node
        self.positive = positive
        self.file = file

    def __eq__(self, other) -> bool:
        return isinstance(other, Cond) and other.node is self.node and other.positive == self.positive

    def __hash__(self) -> int:
        return hash((id(self.node), self.positive))

    def negated(self) -> "Cond":
        return Cond(self.node, not self.positive, self.file)

    def text(self) -> str:
        node = self.node
        positive = self.positive
        while isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
            node, positive = node.expression, not positive
        try:
            code = " ".join(self.file.module.code_for_node(node).split())
        except Exception:  # pragma: no cover - a node outside its module
            code = "?"
        if positive:
            return code
        simple = isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript))
        return f"not {code}" if simple else f"not ({code})"


def compatible(a: FrozenSet[Cond], b: FrozenSet[Cond]) -> bool:
    """False when one path requires a condition that the other path denies."""
    if not a or not b:
        return True
    return not any(c.negated() in b for c in a)


def describe_conds(conds) -> str:
    return " and ".join(sorted({c.text() for c in conds}))


def options(value: Optional["Value"]) -> List[Tuple[Optional["Value"], FrozenSet[Cond]]]:
    """The values ``value`` stands for, each with the conditions of its path (a value
    that is not a union stands for itself, unconditionally)."""
    if value is not None and value.kind == "union":
        return value.get("options", [])
    return [(value, frozenset())]


def union(alternatives, file, loops, origin: str = "branch", limit: int = 8) -> Optional["Value"]:
    """One value for ``[(value, conds), ...]``: nested unions are flattened, repeated
    values merged; a single alternative is returned as it is."""
    flat: List[Tuple[Optional[Value], FrozenSet[Cond]]] = []
    for value, conds in alternatives:
        for inner, inner_conds in options(value):
            merged = frozenset(conds) | inner_conds
            for i, (seen, seen_conds) in enumerate(flat):
                if seen is inner:
                    # The same value on two paths: it holds under either path's conditions,
                    # so only the conditions both share remain.
                    flat[i] = (seen, seen_conds & merged)
                    break
            else:
                flat.append((inner, merged))
    if len(flat) == 1:
        return flat[0][0]
    if len(flat) > limit:
        flat = flat[:limit]
    return Value("union", None, file, loops, options=flat, origin=origin)


@dataclass
class TrainUse:
    """A value iterated by a loop that trains (backward / optimizer step)."""

    value: Value
    loops: Tuple[Loop, ...]  # all loops at the point of iteration, outermost first
    iter_loop: Loop  # the loop that draws the batches
    node: cst.CSTNode
    file: Any
    order: int
    alternative: bool = False  # one of the values a union may hold on some path


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
class ModelCall:
    """A model called (``model(x)``, ``model.forward(x)``) with the train/eval modes it
    may be in there (``bnlint.script.modes``), and whether gradients are off."""

    model: Value
    loops: Tuple[Loop, ...]
    node: cst.CSTNode
    file: Any
    modes: FrozenSet[str]
    no_grad: bool  # under torch.no_grad()/inference_mode(), here or in a caller
    stack: Tuple[Any, ...]  # the FunctionDefs of the call chain, outermost first


@dataclass
class ScriptFacts:
    train_uses: List[TrainUse] = field(default_factory=list)
    set_epochs: List[SetEpochCall] = field(default_factory=list)
    seeds: List[SeedCall] = field(default_factory=list)
    index_uses: List[IndexUse] = field(default_factory=list)
    handed_off: set = field(default_factory=set)  # ids of values given to a framework
    models: List[Value] = field(default_factory=list)
    perms: List[Value] = field(default_factory=list)  # every permutation drawn
    model_calls: List[ModelCall] = field(default_factory=list)

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
