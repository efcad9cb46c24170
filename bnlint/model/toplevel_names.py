"""Names a piece of module-level code reads and binds (pure AST work), for the
definitions-only view (bnlint.model.definitions)."""
from __future__ import annotations

import ast
from typing import FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple

__all__ = ["target_names", "root_name", "stored_names", "Reads", "reader", "reads", "dotted"]


def target_names(target: ast.AST) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from target_names(target.value)


def root_name(node: ast.AST) -> Optional[str]:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def stored_names(nodes: Iterable[ast.AST], declared: Optional[Set[str]] = None) -> Set[str]:
    """Names bound in ``nodes`` in their own scope (nested functions and classes bind
    only their own name). ``declared`` receives the names of ``global`` / ``nonlocal``
    statements of that scope."""
    out: Set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
            return
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                out.add(node.id)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    out.add(alias.asname or alias.name.split(".")[0])
            return
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            if declared is not None:
                declared.update(node.names)
            return
        if isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.expr_context, ast.Constant)):
                continue
            visit(child)

    for n in nodes:
        visit(n)
    return out


class Reads:
    """Names a piece of code reads from the module's globals.

    ``deep``: also inside function bodies (what the code may read when called later);
    otherwise only what runs at once (decorators, defaults, class bodies, values).
    """

    def __init__(self, deep: bool, future_annotations: bool):
        self.deep = deep
        self.lazy_annotations = future_annotations
        self.names: Set[str] = set()
        self.attributes: Set[Tuple[str, str]] = set()  # (name, attribute) for ``name.attribute``

    def expr(self, node: Optional[ast.AST], local: FrozenSet[str] = frozenset()) -> None:
        if node is None:
            return
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load) and node.id not in local:
                self.names.add(node.id)
            return
        if isinstance(node, ast.Lambda):
            self._arguments(node.args)
            if self.deep:
                params = {a.arg for a in all_args(node.args)}
                self.expr(node.body, local | params)
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            bound = set(local)
            for gen in node.generators:
                self.expr(gen.iter, frozenset(bound))
                bound.update(target_names(gen.target))
                for cond in gen.ifs:
                    self.expr(cond, frozenset(bound))
            elts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            for e in elts:
                self.expr(e, frozenset(bound))
            return
        if isinstance(node, ast.NamedExpr):
            self.expr(node.value, local)
            return
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id not in local:
            self.attributes.add((node.value.id, node.attr))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self.stmt(child, local)
            else:
                self.expr(child, local)

    def _arguments(self, args: ast.arguments) -> None:
        for d in list(args.defaults) + [d for d in args.kw_defaults if d is not None]:
            self.expr(d)

    def _annotation(self, node: Optional[ast.AST]) -> None:
        if node is not None and not self.lazy_annotations:
            self.expr(node)

    def stmt(self, node: ast.stmt, local: FrozenSet[str] = frozenset()) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for d in node.decorator_list:
                self.expr(d, local)
            self._arguments(node.args)
            for a in all_args(node.args):
                self._annotation(a.annotation)
            self._annotation(node.returns)
            if self.deep:
                params = {a.arg for a in all_args(node.args)}
                declared: Set[str] = set()
                own = (stored_names(node.body, declared) | params) - declared
                for s in node.body:
                    self.stmt(s, local | frozenset(own))
            return
        if isinstance(node, ast.ClassDef):
            for d in node.decorator_list + node.bases + [k.value for k in node.keywords]:
                self.expr(d, local)
            class_local = local | frozenset(stored_names(node.body))
            for s in node.body:
                # Methods see the module's globals, not the class body's names.
                inner = local if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) else class_local
                self.stmt(s, inner)
            return
        if isinstance(node, ast.AnnAssign):
            self._annotation(node.annotation)
            self.expr(node.value, local)
            self.expr(node.target, local)
            return
        if isinstance(node, ast.AugAssign):
            if isinstance(node.target, ast.Name) and node.target.id not in local:
                self.names.add(node.target.id)  # x += 1 reads x
            self.expr(node.target, local)
            self.expr(node.value, local)
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self.stmt(child, local)
            elif isinstance(child, ast.ExceptHandler):
                self.expr(child.type, local)
                for s in child.body:
                    self.stmt(s, local)
            else:
                self.expr(child, local)


def all_args(args: ast.arguments) -> List[ast.arg]:
    out = list(args.posonlyargs) + list(args.args) + list(args.kwonlyargs)
    if args.vararg:
        out.append(args.vararg)
    if args.kwarg:
        out.append(args.kwarg)
    return out


def reads(node: ast.AST, deep: bool, future: bool) -> Set[str]:
    return reader(node, deep, future).names


def reader(node: ast.AST, deep: bool, future: bool) -> Reads:
    r = Reads(deep, future)
    if isinstance(node, ast.stmt):
        r.stmt(node)
    else:
        r.expr(node)
    return r


def dotted(node: ast.AST) -> Optional[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))
