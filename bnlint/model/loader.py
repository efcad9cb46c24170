"""Import a user's model file as a *definitions-only* view, and build its models.

Runs inside the worker subprocess only. A file's top level is filtered before it is
executed: imports, classes, functions, docstrings and constant-like assignments stay;
everything else (training loops, file writes, ``if __name__ == "__main__":``) is
dropped, with line numbers kept so tracebacks and stack traces point at the real
source. Local modules the file imports (below the same project root) get the same
treatment through an import hook.
"""
from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "definitions_only",
    "load_definitions",
    "install_definitions_hook",
    "find_auto_targets",
    "required_parameters",
]

# Calls that are safe (and common) on the right-hand side of a module-level assignment.
SAFE_CALLS = {
    "partial", "namedtuple", "NamedTuple", "TypeVar", "getLogger", "dict", "list", "tuple",
    "set", "frozenset", "OrderedDict", "defaultdict", "field", "getattr", "Enum", "IntEnum",
    "object", "str", "int", "float", "bool", "compile", "dataclass", "Path", "cast",
    "get_logger", "namedtuple",
}


def _is_constantish(node: ast.AST) -> bool:
    if isinstance(node, (ast.Constant, ast.Name, ast.Lambda)):
        return True
    if isinstance(node, ast.Attribute):
        return _is_constantish(node.value)
    if isinstance(node, ast.Subscript):
        return _is_constantish(node.value) and _is_constantish(node.slice)
    if isinstance(node, ast.Slice):
        return all(_is_constantish(p) for p in (node.lower, node.upper, node.step) if p is not None)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_is_constantish(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(_is_constantish(k) for k in node.keys if k is not None) and all(
            _is_constantish(v) for v in node.values
        )
    if isinstance(node, ast.BinOp):
        return _is_constantish(node.left) and _is_constantish(node.right)
    if isinstance(node, ast.UnaryOp):
        return _is_constantish(node.operand)
    if isinstance(node, ast.BoolOp):
        return all(_is_constantish(v) for v in node.values)
    if isinstance(node, ast.Compare):
        return _is_constantish(node.left) and all(_is_constantish(c) for c in node.comparators)
    if isinstance(node, ast.IfExp):
        return all(_is_constantish(p) for p in (node.test, node.body, node.orelse))
    if isinstance(node, ast.Starred):
        return _is_constantish(node.value)
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        return (
            name in SAFE_CALLS
            and all(_is_constantish(a) for a in node.args)
            and all(_is_constantish(k.value) for k in node.keywords)
        )
    return False


def _is_main_guard(test: ast.AST) -> bool:
    return (
        isinstance(test, ast.Compare)
        and any(isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(test))
    )


def _filter_body(body: Sequence[ast.stmt]) -> List[ast.stmt]:
    kept: List[ast.stmt] = []
    for i, stmt in enumerate(body):
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Pass)):
            kept.append(stmt)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            kept.append(stmt)
        elif isinstance(stmt, ast.Assign) and _is_constantish(stmt.value) and all(
            isinstance(t, (ast.Name, ast.Tuple, ast.List)) for t in stmt.targets
        ):
            kept.append(stmt)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and (
            stmt.value is None or _is_constantish(stmt.value)
        ):
            kept.append(stmt)
        elif isinstance(stmt, ast.If) and not _is_main_guard(stmt.test) and _is_constantish(stmt.test):
            new = ast.If(test=stmt.test, body=_filter_body(stmt.body) or [ast.Pass()],
                         orelse=_filter_body(stmt.orelse))
            kept.append(ast.copy_location(new, stmt))
        elif isinstance(stmt, ast.Try):
            handlers = []
            for h in stmt.handlers:
                nh = ast.ExceptHandler(type=h.type, name=h.name, body=_filter_body(h.body) or [ast.Pass()])
                handlers.append(ast.copy_location(nh, h))
            new = ast.Try(body=_filter_body(stmt.body) or [ast.Pass()], handlers=handlers,
                          orelse=_filter_body(stmt.orelse), finalbody=_filter_body(stmt.finalbody))
            kept.append(ast.copy_location(new, stmt))
    for stmt in kept:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Pass) and not hasattr(node, "lineno"):
                ast.copy_location(node, stmt)
    return kept


def definitions_only(tree: ast.Module) -> ast.Module:
    """The module with only definitions left at its top level (see module docstring)."""
    module = ast.Module(body=_filter_body(tree.body), type_ignores=[])
    return ast.fix_missing_locations(module)


def compile_definitions(source: bytes, path: str) -> types.CodeType:
    tree = ast.parse(source, filename=path)
    return compile(definitions_only(tree), path, "exec", dont_inherit=True)


class _DefinitionsLoader(importlib.machinery.SourceFileLoader):
    """Loads a local module through the definitions-only filter, never from bytecode."""

    def get_code(self, fullname):  # noqa: D401 - importlib protocol
        source = self.get_data(self.path)
        if self.path.endswith(".ipynb"):  # a notebook: the Python of its code cells
            from bnlint.notebook import notebook_lines_for_import

            source = notebook_lines_for_import(self.path, source)
        return compile_definitions(source, self.path)


_OWN_DIRS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), d) + os.sep
                  for d in ("bnlint", "rules"))


class _DefinitionsFinder(importlib.abc.MetaPathFinder):
    def __init__(self, roots: Sequence[str]):
        self.roots = [os.path.abspath(r) + os.sep for r in roots]

    def find_spec(self, fullname, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        origin = os.path.abspath(spec.origin)
        if "site-packages" in origin or "dist-packages" in origin or origin.startswith(_OWN_DIRS):
            return None  # installed code, and bnlint itself (e.g. when checking bnlint's own checkout)
        if not any(origin.startswith(r) for r in self.roots):
            return None
        loader = _DefinitionsLoader(fullname, origin)
        new = importlib.util.spec_from_file_location(
            fullname, origin, loader=loader,
            submodule_search_locations=spec.submodule_search_locations,
        )
        return new


def install_definitions_hook(roots: Sequence[str]) -> None:
    """Route local imports below ``roots`` through the filter (one finder, shared)."""
    sys.dont_write_bytecode = True
    for finder in sys.meta_path:
        if isinstance(finder, _DefinitionsFinder):
            finder.roots.extend(r for r in (os.path.abspath(x) + os.sep for x in roots) if r not in finder.roots)
            return
    sys.meta_path.insert(0, _DefinitionsFinder(roots))


def _module_name_for(path: str) -> Tuple[str, str]:
    """(dotted module name, sys.path entry) for a file, following __init__.py packages."""
    path = os.path.abspath(path)
    folder, filename = os.path.split(path)
    parts = [os.path.splitext(filename)[0]]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, pkg = os.path.split(folder)
        if not pkg.isidentifier():
            break
        parts.insert(0, pkg)
    if parts[-1] == "__init__":
        parts.pop()
    name = ".".join(parts) if all(p.isidentifier() for p in parts) else "_bnlint_target"
    return name, folder


PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "tox.ini", "pytest.ini", "conftest.py", ".git")


def project_root(folder: str) -> Optional[str]:
    """The nearest folder at or above ``folder`` that looks like a project's root (as
    pytest finds its rootdir): tests and scripts there import the project's packages
    by their names, e.g. ``tests/test_net.py`` doing ``from models import Net``."""
    current = os.path.abspath(folder)
    while True:
        if any(os.path.exists(os.path.join(current, m)) for m in PROJECT_MARKERS):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def load_definitions(path: str) -> types.ModuleType:
    """Import ``path`` with its top level filtered to definitions."""
    name, root = _module_name_for(path)
    if root not in sys.path:
        sys.path.insert(0, root)
    roots = [root]
    project = project_root(root)
    if project is not None and project != root:
        if project not in sys.path:
            sys.path.insert(sys.path.index(root) + 1, project)
        roots.append(project)
    if name in sys.modules or name in sys.builtin_module_names or name in getattr(sys, "stdlib_module_names", ()):
        name = "_bnlint_target_" + name.replace(".", "_")
    install_definitions_hook(roots)
    if "." in name:
        # Import the packages first, as Python does: a package whose __init__ imports
        # this very module (``from .net import Net``) must find it complete, not the
        # half-run module this function would otherwise register.
        importlib.import_module(name.rsplit(".", 1)[0])
        if name in sys.modules:
            return sys.modules[name]
    loader = _DefinitionsLoader(name, os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(name, os.path.abspath(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    if "." in name:
        module.__package__ = name.rsplit(".", 1)[0]
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def required_parameters(func: Callable) -> List[str]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return ["?"]
    return [
        p.name for p in sig.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _returns_module(func: Callable, module: types.ModuleType, nn_module: type) -> bool:
    ann = getattr(func, "__annotations__", {}).get("return")
    if ann is None:
        return False
    if isinstance(ann, str):
        try:
            ann = eval(ann, vars(module))  # the annotation of the user's own factory
        except Exception:
            return ann.split(".")[-1] in ("Module", "Sequential") or ann.endswith("Net")
    if isinstance(ann, type):
        return issubclass(ann, nn_module)
    return False


def find_auto_targets(module: types.ModuleType, candidates: Sequence[str]) -> Dict[str, Any]:
    """No-argument ``nn.Module`` classes and annotated no-argument factories.

    Returns {name: (kind, object, why_skipped_or_None)}.
    """
    import torch.nn as nn

    out: Dict[str, Any] = {}
    for name in candidates:
        obj = getattr(module, name, None)
        if obj is None:
            continue
        if inspect.isclass(obj):
            if not issubclass(obj, nn.Module) or inspect.isabstract(obj):
                continue
            required = required_parameters(obj)
            out[name] = ("class", obj, required)
        elif inspect.isfunction(obj):
            if not _returns_module(obj, module, nn.Module):
                continue
            out[name] = ("factory", obj, required_parameters(obj))
    return out
