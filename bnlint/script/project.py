"""The checked files as one project: parsed modules, imports, functions and classes.

Everything here is static: files are parsed with libcst and indexed; nothing is
imported or executed. Classes get a few facts the rules need (does the class contain
BatchNorm, does it define a ``set_epoch`` that its ``__iter__`` depends on, is it an
IterableDataset).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Dict, Iterator, List, Optional, Set

import libcst as cst

from bnlint.script.known import BN_NAMES, library_model_has_bn
from bnlint.script.names import ImportTable, dotted, last_part

__all__ = ["FileInfo", "ClassInfo", "Project", "iter_nodes", "calls_in"]

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


def iter_nodes(node: cst.CSTNode, skip_defs: bool = False) -> Iterator[cst.CSTNode]:
    """Every node under ``node`` (pre-order), without the whitespace nodes.

    Reads dataclass fields directly, which is much faster than ``node.children``.
    With ``skip_defs`` nested function and class bodies are not entered.
    """
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if skip_defs and current is not node and isinstance(current, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        for name in _child_fields(type(current)):
            value = getattr(current, name)
            if isinstance(value, cst.CSTNode):
                stack.append(value)
            elif isinstance(value, (list, tuple)):
                stack.extend(reversed([v for v in value if isinstance(v, cst.CSTNode)]))


def calls_in(node: cst.CSTNode, skip_defs: bool = True) -> Iterator[cst.Call]:
    for n in iter_nodes(node, skip_defs=skip_defs):
        if isinstance(n, cst.Call):
            yield n


@dataclasses.dataclass
class ClassInfo:
    name: str
    node: cst.ClassDef
    file: "FileInfo"
    bases: List[str]
    methods: Dict[str, cst.FunctionDef]
    _has_bn: Optional[bool] = None


@dataclasses.dataclass
class FileInfo:
    path: str
    module: cst.Module
    module_name: str
    imports: ImportTable
    functions: Dict[str, cst.FunctionDef]
    classes: Dict[str, ClassInfo]


def _module_name(path: str) -> str:
    norm = os.path.normpath(path)
    if norm.endswith(".py"):
        norm = norm[:-3]
    parts = [p for p in norm.split(os.sep) if p not in ("", ".", "..")]
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


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


_CALLED = re.compile(r"(?<![\w.])(?<!def )(?<!class )([A-Za-z_]\w*)\s*\(|\.([A-Za-z_]\w*)\s*\(")


def _index_file(path: str, module: cst.Module) -> FileInfo:
    imports = ImportTable()
    functions: Dict[str, cst.FunctionDef] = {}
    classes: Dict[str, ClassInfo] = {}
    info = FileInfo(path, module, _module_name(path), imports, functions, classes)
    for node in _statements(module.body):
        if isinstance(node, cst.SimpleStatementLine):
            for small in node.body:
                if isinstance(small, cst.Import):
                    imports.add_import(small)
                elif isinstance(small, cst.ImportFrom):
                    imports.add_import_from(small)
    for stmt in module.body:
        if isinstance(stmt, cst.If):  # if __name__ == "__main__": / try-import blocks
            continue
        if isinstance(stmt, cst.FunctionDef):
            functions[stmt.name.value] = stmt
        elif isinstance(stmt, cst.ClassDef):
            methods = {
                s.name.value: s for s in stmt.body.body if isinstance(s, cst.FunctionDef)
            }
            bases = [dotted(a.value) or "" for a in stmt.bases]
            classes[stmt.name.value] = ClassInfo(stmt.name.value, stmt, info, bases, methods)
    return info


class Project:
    """All parsed files, with lookups across them."""

    def __init__(self, files: List[FileInfo], texts: Optional[Dict[str, str]] = None) -> None:
        self.files = files
        self._by_module: Dict[str, FileInfo] = {}
        for f in files:
            parts = f.module_name.split(".")
            for i in range(len(parts)):
                self._by_module.setdefault(".".join(parts[i:]), f)
        # Names that appear called anywhere (from the text: cheaper than a tree walk).
        self.called_names: Set[str] = set()
        for f in files:
            text = (texts or {}).get(f.path)
            if text is None:
                text = f.module.code
            for plain, attr in _CALLED.findall(text):
                self.called_names.add(plain or attr)

    @classmethod
    def from_modules(cls, modules: Dict[str, cst.Module], texts: Optional[Dict[str, str]] = None) -> "Project":
        return cls([_index_file(path, mod) for path, mod in modules.items()], texts)

    # -- lookups -----------------------------------------------------------------
    def file_for_module(self, module: str) -> Optional[FileInfo]:
        return self._by_module.get(module)

    def lookup(self, qualname: str):
        """A function or class of the checked files by qualified name."""
        module, _, name = qualname.rpartition(".")
        f = self.file_for_module(module)
        if f is None:
            return None
        if name in f.functions:
            return f, f.functions[name]
        if name in f.classes:
            return f, f.classes[name]
        return None

    def class_for(self, file: FileInfo, expr: cst.BaseExpression) -> Optional[ClassInfo]:
        text = dotted(expr)
        if text is None:
            return None
        if text in file.classes:
            return file.classes[text]
        q = file.imports.qualify(expr)
        if q:
            hit = self.lookup(q)
            if hit and isinstance(hit[1], ClassInfo):
                return hit[1]
        return None

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
