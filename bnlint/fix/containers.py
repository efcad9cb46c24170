"""Where an ``nn.Sequential``'s children are written, in order, and how to move one.

A Sequential's children can be spelled in several ways that all register them in
order: the arguments of ``nn.Sequential(...)``, a list literal (``nn.Sequential(*[...])``,
``layers.extend([...])``, ``layers += [...]``), ``OrderedDict([("name", module), ...])``,
a run of ``layers.append(module)`` statements (in a loop or straight-line code, some
under ``if flag:``), ``seq.add_module("name", module)`` statements, or attribute
assignments in the ``__init__`` of an ``nn.Sequential`` subclass. Each is a ``Run`` of
``Unit`` values: the pieces of source that register one or more children and that a fix
moves as a whole (an element, or a statement with its whole lines).

Children registered by index are renumbered when a unit moves; children registered by
name keep their keys. ``renames`` says which keys move, for every instance of the
container in the traced model (a loop body or a block class builds many), from the
graph's module paths. Pure: no torch, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import libcst as cst

from bnlint.findings import Edit
from bnlint.fix.cstindex import SourceIndex, callee_name, is_pure_expression

__all__ = ["NoContainerMove", "Unit", "Run", "run_of", "move_edits", "Instance", "shifted_keys"]

_REGISTER_ONE = ("append", "add_module")
_REGISTER_MANY = ("extend",)


class NoContainerMove(Exception):
    """The children's source cannot be reordered mechanically; the message says why."""


@dataclass(frozen=True)
class Unit:
    """A piece of source registering ``elements`` (module expressions) in order."""

    node: cst.CSTNode
    elements: Tuple[cst.BaseExpression, ...]
    guarded: bool = False  # an ``if`` statement: registers its elements or nothing


@dataclass(frozen=True)
class Run:
    """Consecutive units of one container, as written."""

    units: Tuple[Unit, ...]
    statements: bool  # units are whole statements (moved by lines), else literal elements
    named: bool  # children are registered by name: moving them keeps state_dict keys
    spelling: str  # for messages: "nn.Sequential(...)", "list literal", "append calls", ...

    def unit_of(self, idx: SourceIndex, line: int, col: int) -> Optional[Tuple[int, int]]:
        """(unit, element offset) whose element expression starts at (line, col)."""
        for u, unit in enumerate(self.units):
            for e, elem in enumerate(unit.elements):
                if idx.start(elem) == (line, col):
                    return u, e
        return None


def _receiver(call: cst.Call) -> Optional[str]:
    return cst.Module([]).code_for_node(call.func.value) if isinstance(call.func, cst.Attribute) else None


def _registration(stmt: cst.CSTNode, receiver: Optional[str], named: bool) -> Optional[Unit]:
    """The unit a statement is, when it registers children of ``receiver`` (any
    receiver when None): ``R.append(m)``, ``R.extend([...])``, ``R += [...]``,
    ``R.add_module(name, m)``, ``self.name = m`` (named containers), or one of these
    alone under ``if <pure test>:``."""
    if isinstance(stmt, cst.If):
        body = stmt.body
        if (stmt.orelse is None and isinstance(body, cst.IndentedBlock) and len(body.body) == 1
                and is_pure_expression(stmt.test)):
            inner = _registration(body.body[0], receiver, named)
            if inner is not None and not inner.guarded:
                return Unit(stmt, inner.elements, guarded=True)
        return None
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    small = stmt.body[0]
    code = cst.Module([]).code_for_node
    if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
        call = small.value
        name = callee_name(call)
        if _receiver(call) is None or (receiver is not None and _receiver(call) != receiver):
            return None
        args = [a for a in call.args]
        if any(a.star or (a.keyword is not None and name != "add_module") for a in args):
            return None
        if name == "append" and not named and len(args) == 1:
            return Unit(stmt, (args[0].value,))
        if name == "add_module" and named and len(args) == 2:
            return Unit(stmt, (args[1].value,))
        if name in _REGISTER_MANY and not named and len(args) == 1 and isinstance(args[0].value, (cst.List, cst.Tuple)):
            elems = args[0].value.elements
            if all(isinstance(e, cst.Element) for e in elems):
                return Unit(stmt, tuple(e.value for e in elems))
        return None
    if (isinstance(small, cst.AugAssign) and isinstance(small.operator, cst.AddAssign) and not named
            and isinstance(small.value, (cst.List, cst.Tuple))
            and (receiver is None or code(small.target) == receiver)
            and all(isinstance(e, cst.Element) for e in small.value.elements)):
        return Unit(stmt, tuple(e.value for e in small.value.elements))
    if (isinstance(small, cst.Assign) and named and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Attribute)
            and (receiver is None or code(small.targets[0].target.value) == receiver)
            and isinstance(small.value, cst.Call)):
        return Unit(stmt, (small.value,))
    return None


def _statement_receiver(stmt: cst.SimpleStatementLine) -> Optional[str]:
    small = stmt.body[0]
    code = cst.Module([]).code_for_node
    if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
        return _receiver(small.value)
    if isinstance(small, cst.AugAssign):
        return code(small.target)
    if isinstance(small, cst.Assign):
        return code(small.targets[0].target.value)  # type: ignore[union-attr]
    return None


def _statement_run(idx: SourceIndex, stmt: cst.SimpleStatementLine, named: bool) -> Tuple[Run, int]:
    first = _registration(stmt, None, named)
    if first is None:
        raise NoContainerMove("its registration is not a plain append/extend/add_module statement")
    receiver = _statement_receiver(stmt)
    parent = idx.parent(stmt)
    mover: cst.CSTNode = stmt
    if isinstance(parent, cst.IndentedBlock) and len(parent.body) == 1 and isinstance(idx.parent(parent), cst.If):
        owner = idx.parent(parent)
        if _registration(owner, receiver, named) is not None:
            mover, parent = owner, idx.parent(owner)
    if not isinstance(parent, (cst.IndentedBlock, cst.Module)):
        raise NoContainerMove("its registration is not a statement of its own")
    body = list(parent.body)
    at = body.index(mover)
    lo = hi = at
    while lo > 0 and _registration(body[lo - 1], receiver, named) is not None:
        lo -= 1
    while hi + 1 < len(body) and _registration(body[hi + 1], receiver, named) is not None:
        hi += 1
    units = tuple(_registration(s, receiver, named) for s in body[lo:hi + 1])
    spelling = "add_module calls" if named else f"{receiver}.append calls"
    return Run(units, True, named, spelling), at - lo  # type: ignore[arg-type]


def run_of(idx: SourceIndex, ctor: cst.CSTNode, named: bool) -> Tuple[Run, int, int]:
    """(run, unit index, element offset) of the module expression ``ctor``.

    ``named``: the container registers children by name (the graph says so); then only
    the named spellings are accepted, else only the indexed ones.
    """
    holder = idx.parent(ctor)
    if isinstance(holder, cst.Arg):
        owner = idx.parent(holder)
        if not isinstance(owner, cst.Call):
            raise NoContainerMove("it is not written where its container is built")
        name = callee_name(owner)
        if name == "Sequential" and not named:
            if any(a.keyword is not None or a.star for a in owner.args):
                raise NoContainerMove("the nn.Sequential(...) call also unpacks other lists")
            units = tuple(Unit(a.value, (a.value,)) for a in owner.args)
            return Run(units, False, False, "nn.Sequential(...)"), [u.node for u in units].index(ctor), 0
        if name in _REGISTER_ONE:
            stmt = idx.parent(owner)
            stmt = idx.parent(stmt) if isinstance(stmt, cst.Expr) else None
            if isinstance(stmt, cst.SimpleStatementLine):
                run, u = _statement_run(idx, stmt, named)
                return run, u, 0
        raise NoContainerMove("it is not listed in an nn.Sequential(...), a list literal or a run of "
                              "append/add_module calls")
    if isinstance(holder, cst.Element):
        seq = idx.parent(holder)
        if isinstance(seq, cst.Tuple) and named and len(seq.elements) == 2 and seq.elements[1] is holder:
            # OrderedDict([("name", module), ...])
            elem = idx.parent(seq)
            outer = idx.parent(elem) if isinstance(elem, cst.Element) else None
            if isinstance(outer, (cst.List, cst.Tuple)) and all(
                    isinstance(e, cst.Element) and isinstance(e.value, cst.Tuple) and len(e.value.elements) == 2
                    for e in outer.elements):
                units = tuple(Unit(e.value, (e.value.elements[1].value,)) for e in outer.elements)
                return Run(units, False, True, "OrderedDict([...])"), list(outer.elements).index(elem), 0
            raise NoContainerMove("its OrderedDict is not a literal list of (name, module) pairs")
        if isinstance(seq, (cst.List, cst.Tuple)) and not named:
            if not all(isinstance(e, cst.Element) for e in seq.elements):
                raise NoContainerMove("the list literal also unpacks other lists")
            # Also the literal of ``layers.extend([...])`` / ``layers += [...]``: its
            # elements are consecutive children wherever the list starts.
            units = tuple(Unit(e.value, (e.value,)) for e in seq.elements)
            return Run(units, False, False, "list literal"), list(seq.elements).index(holder), 0
        raise NoContainerMove("it is not listed in an nn.Sequential(...), a list literal or a run of "
                              "append/add_module calls")
    if isinstance(holder, cst.Assign) and named:
        stmt = idx.parent(holder)
        if isinstance(stmt, cst.SimpleStatementLine):
            run, u = _statement_run(idx, stmt, named)
            return run, u, 0
    raise NoContainerMove("it is not listed in an nn.Sequential(...), a list literal or a run of "
                          "append/add_module calls")


# ---------------------------------------------------------------- edits

def _lines(idx: SourceIndex, node: cst.CSTNode) -> Tuple[int, int]:
    return idx.start(node)[0], idx.end(node)[0]


def move_edits(idx: SourceIndex, run: Run, src: int, dst: int, after: bool) -> List[Edit]:
    """Edits that move unit ``src`` to just after (``after``) or before unit ``dst``."""
    units = [u.node for u in run.units]
    moving = units[src]
    if run.statements:
        first, last = _lines(idx, moving)
        if idx.indent_of(first) != idx.line_text(first)[:idx.start(moving)[1]]:
            raise NoContainerMove("its statement shares a line with other code")
        text = idx.between((first, 0), (last + 1, 0))
        if not text.endswith("\n"):
            text += "\n"
        at = (_lines(idx, units[dst])[1] + 1, 0) if after else (_lines(idx, units[dst])[0], 0)
        return [Edit(idx.path, (first, 0), (last + 1, 0), ""), Edit(idx.path, at, at, text)]
    text = idx.code(moving)
    n = len(units)
    near = src + 1 if src + 1 < n else src - 1  # the separator next to the moving element
    sep = idx.between(idx.end(units[min(src, near)]), idx.start(units[max(src, near)]))
    if src + 1 < n:
        remove = Edit(idx.path, idx.start(moving), idx.start(units[src + 1]), "")
    else:
        remove = Edit(idx.path, idx.end(units[src - 1]), idx.end(moving), "")
    if after and dst + 1 == n:  # becomes the last element
        at = idx.end(units[dst])
        return [remove, Edit(idx.path, at, at, sep + text)]
    at = idx.start(units[dst + 1] if after else units[dst])
    return [remove, Edit(idx.path, at, at, text + sep)]


# ---------------------------------------------------------------- renames

@dataclass(frozen=True)
class Instance:
    """One built copy of the container: its module path and the index of the moving
    unit's first element in it."""

    container: str
    index: int


def _sub(parent: str, index: int) -> str:
    return f"{parent}.{index}" if parent else str(index)


def shifted_keys(run: Run, src: int, dst: int, after: bool, instances: Sequence[Instance],
                 present: Callable[[str, int, Unit], bool], has_state: Callable[[str, int], bool],
                 ) -> Tuple[Tuple[str, str], ...]:
    """Key prefix renames (``"net.3."`` -> ``"net.2."``) that moving unit ``src`` next to
    ``dst`` causes in every instance: the children registered by the units it passes
    shift by the moving unit's size. ``present(container, index, unit)`` says whether a
    guarded unit registered its elements in that instance at that index; ``has_state``
    whether that child has parameters or buffers (others need no rename)."""
    if run.named:
        return ()
    moving = run.units[src]
    renames: Dict[str, str] = {}
    for inst in instances:
        size = len(moving.elements)
        if after:
            passed = run.units[src + 1:dst + 1]
            cursor, step = inst.index + size, 1
        else:
            passed = run.units[dst:src][::-1]
            cursor, step = inst.index - 1, -1
        indices: List[int] = []
        for unit in passed:
            n = len(unit.elements)
            if unit.guarded:
                probe = cursor if step > 0 else cursor - n + 1
                if not present(inst.container, probe, unit):
                    continue
            span = range(cursor, cursor + n) if step > 0 else range(cursor - n + 1, cursor + 1)
            indices.extend(span)
            cursor += step * n
        for m in indices:
            if has_state(inst.container, m):
                renames[_sub(inst.container, m) + "."] = _sub(inst.container, m - step * size) + "."
    return tuple(sorted(renames.items(), key=lambda kv: (len(kv[0]), kv[0])))
