"""Names in training scripts resolved to the project's functions, classes and modules.

``Resolver.resolve(file, expr)`` answers what a name or dotted name written in ``file``
refers to, as Python would bind it: a function or class defined in the file, a
module-level alias (``train_fn = train``), an import (absolute or relative, with ``as``),
a re-export through a package ``__init__`` (``from .resnet import resnet50`` in
``models/__init__.py`` makes ``models.resnet50`` the function in ``models/resnet.py``),
a star import, a submodule (``import utils.data as ud; ud.make_loader``) or a method
looked up on a class (``Trainer.fit``, bases included). Each answer is a ``Symbol``
whose ``qualname`` is the module's dotted name plus the definition's name
(``data.loaders.build_train_loader``), the key under which the interprocedural walk
(``bnlint.script.walker``) and the rules know a function, whatever file asks.

Library names (``torch.utils.data.DataLoader``) do not resolve here: they stay the
qualified spelling that ``ImportTable.qualify`` gives, matched by ``bnlint.script.known``.

Usage, for a rule or a fixer that needs cross-file facts::

    sym = project.resolver.resolve(file, call.func)
    if sym is not None and sym.kind == "function":
        ...  # sym.file, sym.node (a libcst FunctionDef), sym.qualname
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import libcst as cst

from bnlint.script.names import dotted

__all__ = ["Symbol", "Resolver", "MAX_HOPS"]

MAX_HOPS = 12  # re-export chains followed at most this deep


@dataclass(frozen=True, eq=False)
class Symbol:
    """A definition in the project.

    ``kind``: ``function`` (module-level), ``class`` (``node`` is a ``ClassInfo``),
    ``method`` (``node`` a FunctionDef, ``owner`` the ``ClassInfo`` defining it) or
    ``module`` (``node`` None). ``file`` is the ``FileInfo`` holding the definition.
    """

    kind: str
    file: Any
    node: Any
    qualname: str
    owner: Any = None

    @property
    def key(self) -> Tuple[str, str]:
        """A stable key: (the defining file's path in the project, qualified name)."""
        return self.file.abs_path, self.qualname


def _qual(file, name: str) -> str:
    return f"{file.module_name}.{name}" if file.module_name else name


class Resolver:
    """Resolves names for one ``bnlint.script.project.Project`` (memoised per file)."""

    def __init__(self, project) -> None:
        self.project = project
        self._memo: Dict[Tuple[int, str], Optional[Symbol]] = {}

    def resolve(self, file, expr: cst.BaseExpression) -> Optional[Symbol]:
        text = dotted(expr)
        if text is None:
            return None
        return self.resolve_dotted(file, text)

    def resolve_dotted(self, file, text: str) -> Optional[Symbol]:
        key = (id(file), text)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = None  # a cycle of aliases resolves to nothing
        parts = text.split(".")
        start = 1
        sym = None
        origin = file.imports.origins.get(parts[0])
        if origin is not None and origin[2] is None and origin[1] == parts[0] and len(parts) > 1:
            # ``import a.b`` then ``a.b.f``: the longest module prefix (a namespace package
            # ``a`` without ``__init__.py`` has no file of its own).
            for i in range(len(parts) - 1, 0, -1):
                target = self.project.module_file(file, 0, ".".join(parts[:i]))
                if target is not None:
                    sym, start = self.module_symbol(target), i
                    break
        if sym is None:
            sym = self.name_in_module(file, parts[0], 0)
        for attr in parts[start:]:
            if sym is None:
                break
            sym = self.attribute(sym, attr, 0)
        self._memo[key] = sym
        return sym

    # -- one step at a time ------------------------------------------------------------
    def module_symbol(self, file) -> Symbol:
        return Symbol("module", file, None, file.module_name)

    def name_in_module(self, file, name: str, hops: int) -> Optional[Symbol]:
        """What ``name`` means at the top level of ``file``."""
        if file is None or hops > MAX_HOPS:
            return None
        if name in file.functions:
            return Symbol("function", file, file.functions[name], _qual(file, name))
        if name in file.classes:
            return Symbol("class", file, file.classes[name], _qual(file, name), owner=file)
        alias = file.aliases.get(name)
        if alias is not None and dotted(alias) != name:
            parts = dotted(alias).split(".")
            sym = self.name_in_module(file, parts[0], hops + 1)
            for attr in parts[1:]:
                if sym is None:
                    break
                sym = self.attribute(sym, attr, hops + 1)
            if sym is not None:
                return sym
        origin = file.imports.origins.get(name)
        if origin is not None:
            level, module, imported = origin
            if imported is None:  # import a.b (as x)
                return self._module(file, level, module)
            target = self.project.module_file(file, level, module)
            if target is not None and target is not file:
                sym = self.name_in_module(target, imported, hops + 1)
                if sym is not None:
                    return sym
            return self._module(file, level, f"{module}.{imported}" if module else imported)
        for level, module in file.imports.stars:
            if name.startswith("_"):
                break
            target = self.project.module_file(file, level, module)
            if target is not None and target is not file:
                sym = self.name_in_module(target, name, hops + 1)
                if sym is not None:
                    return sym
        return None

    def _module(self, file, level: int, module: str) -> Optional[Symbol]:
        target = self.project.module_file(file, level, module)
        return self.module_symbol(target) if target is not None else None

    def attribute(self, sym: Symbol, attr: str, hops: int) -> Optional[Symbol]:
        """``sym.attr``: a module's member or submodule, a class's method."""
        if sym.kind == "module":
            found = self.name_in_module(sym.file, attr, hops + 1)
            if found is not None:
                return found
            if sym.file.abs_path.endswith("__init__.py"):  # a submodule of a package
                return self._module(sym.file, 1, attr)
            return None
        if sym.kind == "class":
            hit = self.project.method(sym.node, attr)
            if hit is not None:
                owner, fn = hit
                return Symbol("method", owner.file, fn, f"{owner.qualname}.{attr}", owner=owner)
        return None

    def functions_named(self, name: str) -> List[Symbol]:
        """Every function and method called ``name`` in the scanned files."""
        out = []
        for f in self.project.files:
            if name in f.functions:
                out.append(Symbol("function", f, f.functions[name], _qual(f, name)))
            for cls in f.classes.values():
                if name in cls.methods:
                    out.append(Symbol("method", f, cls.methods[name], f"{cls.qualname}.{name}", owner=cls))
        return out
