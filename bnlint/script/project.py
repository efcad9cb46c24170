"""The analysed files as one project: parsed modules, imports, functions and classes.

Everything here is static: files are parsed with libcst and indexed; nothing is
imported or executed. Which files belong to an analysis is decided by
``bnlint.script.layout``; names are resolved across them by ``bnlint.script.resolve``. Classes get a few facts the rules need (does the class contain
BatchNorm, does it define a ``set_epoch`` that its ``__iter__`` depends on, is it an
IterableDataset).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Set

import libcst as cst

from bnlint.script.known import BN_NAMES, library_model_has_bn
from bnlint.script.names import ImportTable, dotted, last_part

__all__ = ["FileInfo", "ClassInfo", "Project", "index_file", "iter_nodes", "calls_in"]

_SKIP_FIELDS = (
    "whitespace", "lpar", "rpar", "comma", "leading_lines", "lines_after", "header",
    "footer", "newline", "semicolon", "trailing_whitespace", "colon", "equal", "dot",
    "first_line", "lbracket", "rbracket", "lbrace", "rbrace", "star", "arrow", "operator",
    "asynchronous", "prefix", "quote", "empty_lines", "default_indent", "default_newline",
    "encoding", "has_trailing_newline", "indent", "relative", "semicolon",
)
_FIELDS: Dict[type, tuple] = {}


def _child_fields(cls: type) -> tuple:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(
            f.name for f in dataclasses.fields(cls)
            if not f.name.startswith(_SKIP_FIELDS)
        )
        _FIELDS[cls] = names
    return names


_IS_NODE: Dict[type, bool] = {}
_DEFS = (cst.FunctionDef, cst.ClassDef, cst.Lambda)


def _is_node(cls: type) -> bool:
    """``issubclass(cls, CSTNode)``, memoised (CSTNode is an ABC: isinstance is slow)."""
    hit = _IS_NODE.get(cls)
    if hit is None:
        hit = _IS_NODE[cls] = issubclass(cls, cst.CSTNode)
    return hit


def iter_nodes(node: cst.CSTNode, skip_defs: bool = False) -> Iterator[cst.CSTNode]:
    """Every node under ``node`` (pre-order), without the whitespace nodes.

    Reads dataclass fields directly, which is much faster than ``node.children``.
    With ``skip_defs`` nested function and class bodies are not entered.
    """
    stack = [node]
    fields = _FIELDS
    is_node = _IS_NODE
    while stack:
        current = stack.pop()
        yield current
        cls = type(current)
        if skip_defs and current is not node and cls in _DEFS:
            continue
        names = fields.get(cls)
        if names is None:
            names = _child_fields(cls)
        for name in names:
            value = getattr(current, name)
            vcls = type(value)
            if vcls is list or vcls is tuple:
                if value:
                    stack.extend(reversed([v for v in value if is_node.get(type(v)) or _is_node(type(v))]))
            elif is_node.get(vcls) or (vcls not in is_node and _is_node(vcls)):
                stack.append(value)


def calls_in(node: cst.CSTNode, skip_defs: bool = True) -> Iterator[cst.Call]:
    for n in iter_nodes(node, skip_defs=skip_defs):
        if isinstance(n, cst.Call):
            yield n


@dataclasses.dataclass(eq=False)
class ClassInfo:
    name: str
    node: cst.ClassDef
    file: "FileInfo"
    bases: List[str]
    methods: Dict[str, cst.FunctionDef]
    _has_bn: Optional[bool] = None

    @property
    def qualname(self) -> str:
        return f"{self.file.module_name}.{self.name}" if self.file.module_name else self.name


@dataclasses.dataclass(eq=False)
class FileInfo:
    """One parsed file. ``path`` is the path findings are reported under, ``abs_path``
    its place in the project layout, ``module_name`` its dotted name (``models.resnet``).
    ``aliases`` are module-level ``name = other.name`` assignments; ``scanned`` files are
    walked from their own entry points (the others only when code reaches them)."""

    path: str
    module: cst.Module
    module_name: str
    imports: ImportTable
    functions: Dict[str, cst.FunctionDef]
    classes: Dict[str, ClassInfo]
    abs_path: str = ""
    aliases: Dict[str, cst.BaseExpression] = dataclasses.field(default_factory=dict)
    scanned: bool = True
    text: Optional[str] = None  # the source the module was parsed from, when kept


def _statements(body) -> Iterator[cst.CSTNode]:
    """Every statement, nested ones included (no expressions are visited)."""
    stack = list(reversed(body))
    while stack:
        stmt = stack.pop()
        yield stmt
        for name in ("body", "orelse", "finalbody", "handlers"):
            part = getattr(stmt, name, None)
            if part is None:
                continue
            if isinstance(part, (list, tuple)):
                stack.extend(reversed(part))
            elif isinstance(part, cst.BaseSuite):
                if isinstance(part, cst.IndentedBlock):
                    stack.extend(reversed(part.body))
            elif isinstance(part, cst.CSTNode):
                stack.append(part)


def _top_level(body) -> Iterator[cst.CSTNode]:
    """Module-level statements, including those inside module-level ``if``/``try``
    blocks (``try: from apex import amp``, ``if HAS_X: def f(): ...``), but not the
    ``if __name__ == "__main__":`` block."""
    stack = list(reversed(body))
    while stack:
        stmt = stack.pop()
        yield stmt
        if isinstance(stmt, cst.If):
            if _is_main_guard(stmt.test):
                continue
            blocks = [stmt.body, stmt.orelse]
        elif isinstance(stmt, cst.Try):
            blocks = [stmt.body, *stmt.handlers, stmt.orelse, stmt.finalbody]
        else:
            continue
        for block in reversed(blocks):
            if block is None:
                continue
            if isinstance(block, cst.If):
                stack.append(block)
                continue
            suite = getattr(block, "body", None)
            if isinstance(suite, cst.IndentedBlock):
                stack.extend(reversed(suite.body))


def _is_main_guard(test: cst.BaseExpression) -> bool:
    return (isinstance(test, cst.Comparison) and isinstance(test.left, cst.Name)
            and test.left.value == "__name__")


def index_file(path: str, module: cst.Module, module_name: str = "", abs_path: str = "",
               scanned: bool = True) -> FileInfo:
    """Index one parsed module: its imports, functions, classes and name aliases."""
    imports = ImportTable()
    functions: Dict[str, cst.FunctionDef] = {}
    classes: Dict[str, ClassInfo] = {}
    info = FileInfo(path, module, module_name or _module_name(path), imports, functions, classes,
                    abs_path=abs_path or path, scanned=scanned)
    for node in _statements(module.body):
        if isinstance(node, cst.SimpleStatementLine):
            for small in node.body:
                if isinstance(small, cst.Import):
                    imports.add_import(small)
                elif isinstance(small, cst.ImportFrom):
                    imports.add_import_from(small)
    for stmt in _top_level(module.body):
        if isinstance(stmt, cst.FunctionDef):
            functions.setdefault(stmt.name.value, stmt)
        elif isinstance(stmt, cst.ClassDef):
            methods = {
                s.name.value: s for s in stmt.body.body if isinstance(s, cst.FunctionDef)
            } if isinstance(stmt.body, cst.IndentedBlock) else {}
            bases = [dotted(a.value) or "" for a in stmt.bases]
            classes.setdefault(stmt.name.value, ClassInfo(stmt.name.value, stmt, info, bases, methods))
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if (isinstance(small, cst.Assign) and len(small.targets) == 1
                        and isinstance(small.targets[0].target, cst.Name)
                        and isinstance(small.value, (cst.Name, cst.Attribute)) and dotted(small.value)):
                    info.aliases.setdefault(small.targets[0].target.value, small.value)
    return info


class Project:
    """The parsed files of one analysis, with lookups across them.

    ``files`` are the scanned files, parsed up front. Other project files are parsed
    when a lookup needs them (``file_at``), through ``load(abs_path) -> FileInfo | None``;
    ``layout`` (a ``bnlint.script.layout.Layout``) maps imports to files. Names are
    resolved by ``bnlint.script.resolve.Resolver`` (``self.resolver``).
    """

    def __init__(self, files: List[FileInfo], layout=None, load=None) -> None:
        from bnlint.script.resolve import Resolver

        self.files = files
        self.layout = layout
        self._load = load
        self._by_path: Dict[str, Optional[FileInfo]] = {f.abs_path: f for f in files}
        self.resolver = Resolver(self)

    @classmethod
    def from_modules(cls, modules: Dict[str, cst.Module], texts: Optional[Dict[str, str]] = None) -> "Project":
        """Parsed modules held in memory, module names from their paths (tests, API)."""
        from bnlint.script.layout import Layout

        layout = Layout.virtual(texts or {p: m.code for p, m in modules.items()})
        files = []
        for path, mod in modules.items():
            abs_path = layout.abs(path)
            files.append(index_file(path, mod, layout.module_name(abs_path), abs_path))
        return cls(files, layout)

    # -- files ---------------------------------------------------------------------
    def file_at(self, abs_path: Optional[str]) -> Optional[FileInfo]:
        """The parsed file at ``abs_path`` (parsed now if needed), or None."""
        if abs_path is None:
            return None
        if abs_path in self._by_path:
            return self._by_path[abs_path]
        info = self._load(abs_path) if self._load is not None else None
        self._by_path[abs_path] = info
        return info

    def module_file(self, importer: FileInfo, level: int, module: str) -> Optional[FileInfo]:
        if self.layout is None:
            return None
        return self.file_at(self.layout.resolve_module(importer.abs_path, level, module))

    # -- lookups -----------------------------------------------------------------
    def lookup_in(self, file: FileInfo, expr: cst.BaseExpression):
        """What ``expr`` (a name or dotted name in ``file``) refers to in the project:
        ``(FileInfo, FunctionDef)``, ``(FileInfo, ClassInfo)`` or ``(ClassInfo, FunctionDef)``
        for a method looked up on a class; None for anything else."""
        sym = self.resolver.resolve(file, expr)
        if sym is None or sym.kind == "module":
            return None
        return sym.owner, sym.node

    def class_for(self, file: FileInfo, expr: cst.BaseExpression) -> Optional[ClassInfo]:
        sym = self.resolver.resolve(file, expr)
        return sym.node if sym is not None and sym.kind == "class" else None

    def base_classes(self, info: ClassInfo) -> Iterator[ClassInfo]:
        seen = {id(info)}
        todo = [info]
        while todo:
            cur = todo.pop()
            yield cur
            for base in cur.node.bases:
                b = self.class_for(cur.file, base.value)
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    todo.append(b)

    def method(self, info: ClassInfo, name: str):
        for c in self.base_classes(info):
            if name in c.methods:
                return c, c.methods[name]
        return None

    def base_names(self, info: ClassInfo) -> Set[str]:
        out = set()
        for c in self.base_classes(info):
            for base in c.node.bases:
                q = c.file.imports.qualify(base.value) or dotted(base.value) or ""
                out.add(last_part(q))
        return out

    # -- class facts ---------------------------------------------------------------
    def class_has_bn(self, info: ClassInfo, _depth: int = 0) -> bool:
        if info._has_bn is not None:
            return info._has_bn
        info._has_bn = False  # recursion guard
        found = False
        for c in self.base_classes(info):
            if self.node_has_bn(c.file, c.node, _depth):
                found = True
                break
        info._has_bn = found
        return found

    def node_has_bn(self, file: FileInfo, node: cst.CSTNode, _depth: int = 0) -> bool:
        """Does code under ``node`` build a BatchNorm (directly or via a class/factory)?"""
        for n in iter_nodes(node):
            if isinstance(n, (cst.Name, cst.Attribute)) and last_part(dotted(n)) in BN_NAMES:
                return True
            if isinstance(n, cst.Call) and _depth < 4:
                cls = self.class_for(file, n.func)
                if cls is not None and self.class_has_bn(cls, _depth + 1):
                    return True
                q = file.imports.qualify(n.func)
                lib = library_model_has_bn(q, _first_str(n))
                if lib:
                    return True
        return False

    def sampler_needs_set_epoch(self, info: ClassInfo) -> bool:
        """A class whose ``__iter__`` order depends on what ``set_epoch`` stores."""
        found = self.method(info, "set_epoch")
        it = self.method(info, "__iter__")
        if found is None or it is None:
            return False
        stored = {
            n.target.attr.value
            for n in iter_nodes(found[1])
            if isinstance(n, cst.AssignTarget) and isinstance(n.target, cst.Attribute)
        }
        used = {n.attr.value for n in iter_nodes(it[1]) if isinstance(n, cst.Attribute)}
        return bool(stored & used)

    def is_iterable_dataset(self, info: ClassInfo) -> bool:
        names = self.base_names(info)
        return "IterableDataset" in names or "IterDataPipe" in names


def _first_str(call: cst.Call) -> Optional[str]:
    for arg in call.args:
        if arg.keyword is None or arg.keyword.value in ("model_name", "name"):
            if isinstance(arg.value, cst.SimpleString):
                return arg.value.evaluated_value if isinstance(arg.value.evaluated_value, str) else None
            return None
    return None
