"""Keyword arguments as training scripts really pass them: dicts built and updated
before the call, ``**kw`` expansion, positional arguments, values set on some paths only.

A dict is an abstract ``Value`` of kind ``dict`` holding its *writes* in program order:
``(op, key, value, conds)`` where ``op`` is ``set`` (a literal entry, ``d[k] = v``,
``d.update(...)``, ``dict(k=v)``), ``default`` (``d.setdefault(k, v)``), ``delete``
(``d.pop(k)``, ``del d[k]``) or ``any`` (an entry bnlint cannot see: ``**other`` or
``update(other)`` of an unknown mapping, a computed key); ``conds`` are the branch
conditions the write happened under (``bnlint.script.facts.Cond``), relative to where
the dict was made. ``argument`` answers "what may this call's parameter be", as a list
of ``(value, conds)`` alternatives where the value is an evaluated ``(Value, deps)``,
``ABSENT`` (not passed: the parameter's default) or ``UNKNOWN``.

The mnist example's

    train_kwargs = {"batch_size": args.batch_size}
    if use_accel:
        train_kwargs.update({"num_workers": 1, "shuffle": True})
    DataLoader(dataset, **train_kwargs)

gives ``shuffle``: ``[(True, {use_accel}), (ABSENT, {not use_accel})]``.
"""
from __future__ import annotations

from typing import FrozenSet, List, Optional, Sequence, Tuple

import libcst as cst

from bnlint.script.facts import Cond, Value, options

__all__ = ["ABSENT", "UNKNOWN", "new_dict", "write", "merge", "copy_dict", "key_options",
           "argument", "truth_options", "DATALOADER_PARAMS", "string_key"]


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return self.name


ABSENT = _Marker("ABSENT")
UNKNOWN = _Marker("UNKNOWN")
_NO_CONDS: FrozenSet[Cond] = frozenset()

# torch.utils.data.DataLoader's positional parameters, in order.
DATALOADER_PARAMS = (
    "dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "num_workers", "collate_fn",
    "pin_memory", "drop_last", "timeout", "worker_init_fn", "multiprocessing_context", "generator",
)

Alternatives = List[Tuple[object, FrozenSet[Cond]]]


def string_key(expr: cst.BaseExpression) -> Optional[str]:
    if isinstance(expr, cst.SimpleString):
        value = expr.evaluated_value
        return value if isinstance(value, str) else None
    return None


def new_dict(node, file, loops, conds: Sequence[Cond]) -> Value:
    return Value("dict", node, file, loops, writes=[], base=frozenset(conds))


def _relative(d: Value, conds: Sequence[Cond]) -> FrozenSet[Cond]:
    return frozenset(conds) - d.get("base", _NO_CONDS)


def write(d: Value, op: str, key: Optional[str], value, conds: Sequence[Cond]) -> None:
    """Record one write; ``key`` None is a key bnlint cannot read (an ``any`` write)."""
    rel = _relative(d, conds)
    if key is None and op in ("set", "default"):
        d.attrs["writes"].append(("any", None, None, rel))
    else:
        d.attrs["writes"].append((op, key, value, rel))


def merge(d: Value, other: Optional[Value], conds: Sequence[Cond]) -> None:
    """``d.update(other)`` / ``{**other}``: the other dict's writes, or an unknown entry."""
    rel = _relative(d, conds)
    if other is not None and other.kind == "dict":
        for op, key, value, wconds in other.get("writes", ()):
            d.attrs["writes"].append((op, key, value, wconds | rel))
    else:
        d.attrs["writes"].append(("any", None, None, rel))


def copy_dict(other: Value, node, file, loops, conds: Sequence[Cond]) -> Value:
    d = new_dict(node, file, loops, conds)
    d.attrs["writes"] = list(other.get("writes", ()))
    return d


def key_options(d: Value, key: str) -> Alternatives:
    """What ``d[key]`` may be after all writes so far: ``(value, conds)`` alternatives."""
    states: Alternatives = [(ABSENT, _NO_CONDS)]
    for op, k, value, conds in d.get("writes", ()):
        if op != "any" and k != key:
            continue
        if op == "any":
            new: Alternatives = [(UNKNOWN, _NO_CONDS)]
        elif op == "default":
            new = [((value if s is ABSENT else s), c) for s, c in states]
        elif op == "delete":
            new = [(ABSENT, _NO_CONDS)]
        else:
            new = [(value, _NO_CONDS)]
        if not conds:
            states = new
            continue
        # Written only under ``conds``: the old states hold when they are false. Only a
        # single condition has a simple negation; otherwise the old states keep theirs.
        negation = frozenset([next(iter(conds)).negated()]) if len(conds) == 1 else _NO_CONDS
        states = [(v, c | conds) for v, c in new] + [(s, c | negation) for s, c in states]
    return states


def argument(call: cst.Call, args, name: str, position: Optional[int]) -> Alternatives:
    """What parameter ``name`` (``position`` among the positional ones) may be in ``call``;
    ``args`` are the call's ``(cst.Arg, (Value, deps))`` pairs, evaluated."""
    index = 0
    star_seen = False
    for arg, value in args:
        if arg.keyword is not None:
            if arg.keyword.value == name:
                return [(value, _NO_CONDS)]
            continue
        if arg.star == "*":
            star_seen = True
            continue
        if arg.star:
            continue
        if position is not None and index == position and not star_seen:
            return [(value, _NO_CONDS)]
        index += 1
    if star_seen and position is not None and index <= position:
        return [(UNKNOWN, _NO_CONDS)]
    out: Alternatives = [(ABSENT, _NO_CONDS)]
    for arg, (value, _) in args:
        if arg.star != "**":
            continue
        if value is None or value.kind != "dict":
            return [(UNKNOWN, _NO_CONDS)]
        found = key_options(value, name)
        # A later ``**`` repeating a key would be a TypeError: the first one that may
        # set it decides, where it does not the earlier alternatives stand.
        if all(v is ABSENT for v, _ in out):
            out = found
    return out


def truth_options(alternatives: Alternatives, default: bool = False) -> List[Tuple[Optional[bool], FrozenSet[Cond]]]:
    """Each alternative as True/False (None: unknown); ``ABSENT`` is ``default``."""
    out: List[Tuple[Optional[bool], FrozenSet[Cond]]] = []
    for alt, conds in alternatives:
        if alt is ABSENT:
            out.append((default, conds))
            continue
        if alt is UNKNOWN:
            out.append((None, conds))
            continue
        value = alt[0] if isinstance(alt, tuple) else alt
        for opt, opt_conds in options(value):
            if opt is not None and opt.kind == "const" and "py" in opt.attrs:
                py = opt.get("py")
                out.append((bool(py) if py is not None else default, conds | opt_conds))
            else:
                out.append((None, conds | opt_conds))
    return out
