"""Which constructor arguments make a model build a class it holds only in some settings.

Research models pick their building blocks with constructor flags: ``if bottleneck ==
True: block = BottleneckBlock else: block = BasicBlock`` (DenseNet-BC), ``if
block_name.lower() == 'bottleneck': block = Bottleneck`` (CIFAR ResNets), ``if
aux_logits: self.aux1 = InceptionAux(...)`` (GoogLeNet). A model built with its
defaults or its project's arguments holds one of them; the other block is never built
and would go unanalysed although its code is the project's. :func:`selecting_values`
reads a class's ``__init__`` for the if-tests (and conditional expressions) that
guard a reference to the block and solves them for the constructor's parameters: the
values of a second build (a *variant*, bnlint.model.plan) that holds the block.

Only tests on the parameters themselves are solved: ``p``, ``not p``, ``p == const``,
``p != const``, ``p is True``, ``p.lower() == 'name'``, ``p.startswith('cifar')``,
``p in ('a', 'b')``, and ``and`` / ``or`` of those. A reference under a test on
anything else (a depth table, ``stride != 1``) is left alone.
"""
from __future__ import annotations

import ast
import copy
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

__all__ = ["guarded_references", "selecting_values", "hold", "class_span"]

_CASE = ("lower", "upper", "strip", "casefold")


def class_span(tree: ast.Module, name: str) -> Optional[Tuple[int, int]]:
    """(first line, last line) of a top-level class (its decorators included)."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return first, node.end_lineno or node.lineno
    return None


def guarded_references(tree: ast.Module, class_name: str, ref: str) -> List[Tuple[Tuple[ast.expr, bool], ...]]:
    """The if-tests (test, outcome) that each reference to ``ref`` in
    ``class_name.__init__`` runs under, outermost first; () for an unconditional one. A
    reference inside a list, tuple or dict literal is left out: which element is built
    depends on a lookup (``{18: BasicBlock, 50: Bottleneck}[depth]``)."""
    init = _init_of(tree, class_name)
    if init is None:
        return []
    # ``self.dataset = dataset`` then ``if self.dataset.startswith('cifar'):``: a test on
    # the parameter
    aliases: Dict[str, str] = {}
    params = {a.arg for a in init.args.args + init.args.kwonlyargs}
    for stmt in init.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.value, ast.Name) \
                and stmt.value.id in params:
            target = stmt.targets[0]
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                aliases[target.attr] = stmt.value.id

    class Unalias(ast.NodeTransformer):
        def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
            if isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in aliases:
                return ast.copy_location(ast.Name(id=aliases[node.attr], ctx=ast.Load()), node)
            return self.generic_visit(node)

    return [tuple((Unalias().visit(copy.deepcopy(test)), outcome) for test, outcome in chain)
            for chain in _references(init.body, ref, ())]


def selecting_values(guards: Sequence[Tuple[ast.expr, bool]], params: Set[str]) -> Optional[Dict[str, Any]]:
    """Parameter values under which every test has its outcome, or None when a test is
    not one on the parameters that can be solved. Tests whose outcome only rules a
    value out (``p != 'cifar'``) add nothing: check the values with :func:`hold`."""
    return _solve_all(guards, params)


def hold(guards: Sequence[Tuple[ast.expr, bool]], values: Dict[str, Any]) -> Optional[bool]:
    """Whether every test has its outcome with these parameter values; None when a test
    cannot be evaluated with them alone."""
    for test, outcome in guards:
        try:
            code = compile(ast.Expression(body=test), "<test>", "eval")
            result = bool(eval(code, {"__builtins__": {}}, dict(values)))  # noqa: S307 (literals only)
        except Exception:
            return None
        if result != outcome:
            return False
    return True


def _init_of(tree: ast.Module, class_name: str) -> Optional[ast.FunctionDef]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    return item
    return None


def _references(body: Sequence[ast.AST], ref: str, guards: Tuple[Tuple[ast.expr, bool], ...]
                ) -> List[Tuple[Tuple[ast.expr, bool], ...]]:
    """The if-tests (test, outcome) each reference to ``ref`` in ``body`` runs under."""
    out: List[Tuple[Tuple[ast.expr, bool], ...]] = []
    for node in body:
        out += _in_node(node, ref, guards)
    return out


def _in_node(node: ast.AST, ref: str, guards) -> List[Tuple[Tuple[ast.expr, bool], ...]]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
                         ast.Dict, ast.List, ast.Tuple, ast.Set)):
        return []
    if isinstance(node, ast.If):
        out = _in_node(node.test, ref, guards)
        out += _references(node.body, ref, guards + ((node.test, True),))
        out += _references(node.orelse, ref, guards + ((node.test, False),))
        return out
    if isinstance(node, ast.IfExp):
        out = _in_node(node.test, ref, guards)
        out += _in_node(node.body, ref, guards + ((node.test, True),))
        out += _in_node(node.orelse, ref, guards + ((node.test, False),))
        return out
    if isinstance(node, ast.Name) and node.id == ref and isinstance(node.ctx, ast.Load):
        return [guards]
    if isinstance(node, ast.Attribute) and node.attr == ref and isinstance(node.ctx, ast.Load):
        return [guards]  # ``blocks.BasicBlock``
    out = []
    for child in ast.iter_child_nodes(node):
        out += _in_node(child, ref, guards)
    return out


def _solve_all(guards: Sequence[Tuple[ast.expr, bool]], params: Set[str]) -> Optional[Dict[str, Any]]:
    out: Dict[str, Any] = {}
    for test, outcome in guards:
        solved = _solve(test, outcome, params)
        if solved is None:
            return None
        for k, v in solved.items():
            if k in out and out[k] != v:
                return None
            out[k] = v
    return out


def _param(node: ast.AST, params: Set[str]) -> Optional[str]:
    """``p`` or ``p.lower()`` (case changes keep a literal that is already in that case)."""
    if isinstance(node, ast.Name) and node.id in params:
        return node.id
    if isinstance(node, ast.Call) and not node.args and isinstance(node.func, ast.Attribute) \
            and node.func.attr in _CASE and isinstance(node.func.value, ast.Name) and node.func.value.id in params:
        return node.func.value.id
    return None


def _solve(test: ast.expr, outcome: bool, params: Set[str]) -> Optional[Dict[str, Any]]:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _solve(test.operand, not outcome, params)
    if isinstance(test, ast.Name):
        return {test.id: outcome} if test.id in params else None
    if isinstance(test, ast.BoolOp):
        if isinstance(test.op, ast.And) == outcome:  # every part must have this outcome
            return _solve_all([(v, outcome) for v in test.values], params)
        for value in test.values:  # one part with this outcome decides
            solved = _solve(value, outcome, params)
            if solved is not None:
                return solved
        return None
    if isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) \
            and test.func.attr in ("startswith", "endswith") and len(test.args) == 1 and outcome:
        name = _param(test.func.value, params)
        arg = test.args[0]
        if name is not None and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return {name: arg.value}
        return None
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, op, right = test.left, test.ops[0], test.comparators[0]
        if _param(left, params) is None and _param(right, params) is not None \
                and isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)):
            left, right = right, left
        name = _param(left, params)
        if name is None:
            return None
        if isinstance(op, (ast.In, ast.NotIn)):
            if outcome != isinstance(op, ast.In) or not isinstance(right, (ast.Tuple, ast.List, ast.Set)):
                return None
            values = [e.value for e in right.elts if isinstance(e, ast.Constant)]
            return {name: values[0]} if values else None
        if not isinstance(right, ast.Constant):
            return None
        equal = outcome if isinstance(op, (ast.Eq, ast.Is)) else not outcome if isinstance(op, (ast.NotEq, ast.IsNot)) \
            else None
        if equal is None:
            return None
        if equal:
            return {name: right.value}
        if isinstance(right.value, bool) and isinstance(left, ast.Name):
            return {name: not right.value}
        return {}  # only rules a value out
    return None
