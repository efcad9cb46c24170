"""Moving a dropout call in forward code: take it out where it is, put the same call
(same callee, same arguments, same ``if`` condition) around another expression.

``take_out`` removes ``x = drop(x)`` (with the ``if flag:`` that guards it, whose test
is kept) or replaces ``drop(expr)`` by ``expr``. ``put_in`` applies the call around the
target expression: inline (``conv(drop(relu(bn(x))))``) when the dropout was not
guarded, else as a guarded statement next to the target's statement, so that the
condition (``if self.drop_rate > 0:``) still decides whether dropout runs::

    out = self.relu(self.bn2(out))
    if self.drop_rate > 0:
        out = F.dropout(out, p=self.drop_rate, training=self.training)
    out = self.conv2(out)

The call's arguments and the condition are evaluated at the new place, so every local
name they read must keep its value between the two places (checked). Pure: no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Set, Tuple

import libcst as cst

from bnlint.findings import Edit
from bnlint.fix.cstindex import Pos, SourceIndex, first_input, is_pure_expression

__all__ = ["NoMove", "TakenOut", "take_out", "put_in"]

_STORE_PARENTS = (cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor, cst.AsName,
                  cst.NamedExpr, cst.Param)


class NoMove(Exception):
    """The call cannot be moved mechanically; the message says why."""


@dataclass(frozen=True)
class TakenOut:
    edits: Tuple[Edit, ...]
    at: Pos  # where the dropout was
    guard: Optional[str] = None  # the test of the ``if`` that guarded it
    step: str = "    "  # one indentation level of that ``if``'s body


def _nodes(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        stack.extend(cur.children)


def _delete_lines(idx: SourceIndex, stmt: cst.CSTNode) -> Edit:
    return Edit(idx.path, (idx.start(stmt)[0], 0), (idx.end(stmt)[0] + 1, 0), "")


def take_out(idx: SourceIndex, dcall: cst.Call) -> TakenOut:
    """Edits removing the dropout call, and the condition it ran under."""
    arg = first_input(dcall)
    if arg is None:
        raise NoMove("the dropout call has no plain input argument")
    parent = idx.parent(dcall)
    if (isinstance(parent, cst.Assign) and parent.value is dcall and len(parent.targets) == 1
            and isinstance(parent.targets[0].target, cst.Name) and isinstance(arg.value, cst.Name)
            and parent.targets[0].target.value == arg.value.value):
        stmt = idx.parent(parent)
        if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
            block = idx.parent(stmt)
            if not (isinstance(block, cst.IndentedBlock) and len(block.body) == 1):
                return TakenOut((_delete_lines(idx, stmt),), idx.start(stmt))
            tests: List[str] = []
            node: cst.CSTNode = stmt
            step = ""
            while isinstance(block, cst.IndentedBlock) and len(block.body) == 1:
                owner = idx.parent(block)
                if not (isinstance(owner, cst.If) and owner.orelse is None and is_pure_expression(owner.test)):
                    break
                tests.append(idx.code(owner.test))
                step = idx.indent_of(idx.start(node)[0])[len(idx.indent_of(idx.start(owner)[0])):]
                node, block = owner, idx.parent(owner)
            if not tests:
                return TakenOut((Edit(idx.path, idx.start(stmt), idx.end(stmt), "pass"),), idx.start(stmt))
            guard = tests[0] if len(tests) == 1 else " and ".join(f"({t})" for t in reversed(tests))
            return TakenOut((_delete_lines(idx, node),), idx.start(node), guard, step or "    ")
    return TakenOut((Edit(idx.path, idx.start(dcall), idx.start(arg.value), ""),
                     Edit(idx.path, idx.end(arg.value), idx.end(dcall), "")), idx.start(dcall))


def _stored_names(idx: SourceIndex, func: cst.CSTNode) -> List[Tuple[str, Pos]]:
    """(name, position) of every local binding in ``func``."""
    out = []
    for node in _nodes(func):
        if not isinstance(node, cst.Name):
            continue
        child, parent = node, idx.parent(node)
        while isinstance(parent, (cst.Element, cst.Tuple, cst.List, cst.StarredElement)):
            child, parent = parent, idx.parent(parent)
        if isinstance(parent, _STORE_PARENTS) and getattr(parent, "target", getattr(parent, "name", None)) is child:
            out.append((node.value, idx.start(node)))
    return out


def _read_names(exprs) -> Set[str]:
    names: Set[str] = set()
    for expr in exprs:
        skip = set()
        for node in _nodes(expr):
            if isinstance(node, cst.Attribute):
                skip.add(id(node.attr))
            elif isinstance(node, cst.Arg) and node.keyword is not None:
                skip.add(id(node.keyword))
            elif isinstance(node, cst.Name) and id(node) not in skip:
                names.add(node.value)
    return names


def _require_stable(idx: SourceIndex, func: cst.CSTNode, exprs, a: Pos, b: Pos) -> None:
    lo, hi = min(a, b), max(a, b)
    reads = _read_names(exprs)
    for name, pos in _stored_names(idx, func):
        if name in reads and lo < pos < hi:
            raise NoMove(f"'{name}', which the dropout's arguments or condition read, is assigned between "
                         f"its old and new place")


def _hoistable(idx: SourceIndex, target: cst.CSTNode, small: cst.CSTNode) -> bool:
    """Whether ``target`` is evaluated before anything with side effects in its
    statement (so it can be computed one statement earlier)."""
    node = target
    while node is not small:
        parent = idx.parent(node)
        if isinstance(parent, cst.Arg):
            call = idx.parent(parent)
            if not isinstance(call, cst.Call) or not is_pure_expression(call.func):
                return False
            before = call.args[:list(call.args).index(parent)]
            if not all(is_pure_expression(a.value) for a in before):
                return False
            node = call
        elif isinstance(parent, cst.Attribute) and parent.value is node:
            call = idx.parent(parent)
            if not (isinstance(call, cst.Call) and call.func is parent):
                return False
            node = call
        elif isinstance(parent, cst.BinaryOperation) and parent.left is node:
            node = parent
        elif isinstance(parent, (cst.Assign, cst.Return, cst.Expr, cst.AnnAssign)) and parent is small:
            return getattr(parent, "value", None) is node
        else:
            return False
    return False


def _fresh(idx: SourceIndex, func: cst.CSTNode, base: str = "h") -> str:
    used = {n.value for n in _nodes(func) if isinstance(n, cst.Name)}
    name, k = base, 1
    while name in used:
        k += 1
        name = f"{base}{k}"
    return name


def put_in(idx: SourceIndex, dcall: cst.Call, target: cst.BaseExpression, taken: TakenOut,
           func: cst.CSTNode) -> List[Edit]:
    """Edits applying ``dcall`` (same callee, arguments and condition) to ``target``."""
    arg = first_input(dcall)
    assert arg is not None
    prefix = idx.between(idx.start(dcall), idx.start(arg.value))
    suffix = idx.between(idx.end(arg.value), idx.end(dcall))
    others = [a.value for a in dcall.args if a is not arg]
    if taken.guard is None:
        _require_stable(idx, func, others, taken.at, idx.start(target))
        return [Edit(idx.path, idx.start(target), idx.start(target), prefix),
                Edit(idx.path, idx.end(target), idx.end(target), suffix)]
    stmt = idx.statement(target)
    if stmt is None or len(stmt.body) != 1 or idx.function(stmt) is not func:
        raise NoMove("the new place is not a simple statement of the same function")
    small = stmt.body[0]
    indent = idx.indent_of(idx.start(stmt)[0])
    if idx.line_text(idx.start(stmt)[0])[:idx.start(stmt)[1]] != indent:
        raise NoMove("the new place shares a line with other code")
    guard_expr = cst.parse_expression(taken.guard)
    assign_to = (small.targets[0].target.value if isinstance(small, cst.Assign) and len(small.targets) == 1
                 and isinstance(small.targets[0].target, cst.Name) else None)

    def guarded(name: str) -> str:
        return f"{indent}if {taken.guard}:\n{indent}{taken.step}{name} = {prefix}{name}{suffix}\n"

    if isinstance(small, cst.Assign) and small.value is target and assign_to is not None:
        at = (idx.end(stmt)[0] + 1, 0)  # x = bn(x)  ->  then: if c: x = drop(x)
        _require_stable(idx, func, others + [guard_expr], taken.at, at)
        return [Edit(idx.path, at, at, guarded(assign_to))]
    at = (idx.start(stmt)[0], 0)
    _require_stable(idx, func, others + [guard_expr], taken.at, at)
    if isinstance(target, cst.Name) and assign_to == target.value:
        return [Edit(idx.path, at, at, guarded(target.value))]  # x = conv(x): drop x first
    if not _hoistable(idx, target, small):
        raise NoMove("the expression to apply the dropout to cannot be computed one statement earlier")
    elsewhere = [n for n in _nodes(small) if isinstance(n, cst.Name) and n.value == assign_to
                 and not (idx.start(target) <= idx.start(n) and idx.end(n) <= idx.end(target))]
    name = assign_to if assign_to is not None and len(elsewhere) == 1 else _fresh(idx, func)
    text = f"{indent}{name} = {idx.code(target)}\n" + guarded(name)
    return [Edit(idx.path, at, at, text), Edit(idx.path, idx.start(target), idx.end(target), name)]
