"""Import a user's model file as a *definitions-only* view (bnlint.model.definitions),
and find its model targets.

Runs inside the worker subprocess only. A file's top level is filtered before it is
executed, with line numbers kept so tracebacks and stack traces point at the real
source. Local modules the file imports (below the same project root) get the same
treatment through an import hook, which also tells each module which of its names
the others import (``from config import cfg`` keeps ``cfg = CfgNode(...)`` in
config.py). When a kept statement still raises at import (``os.environ["RANK"]``),
it is left out with everything that reads what it binds, and the import starts again
(``ImportNote`` says so).
"""
from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import traceback
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from bnlint.model.definitions import FilterResult, definitions_only, filter_definitions
from bnlint.model.sites import is_library_file

__all__ = [
    "ImportNote",
    "definitions_only",
    "load_definitions",
    "install_definitions_hook",
    "find_auto_targets",
    "required_parameters",
    "project_root",
    "is_definitions_file",
]

# How many times an import starts again after leaving out a statement that raised.
MAX_ATTEMPTS = 25


@dataclass(frozen=True)
class ImportNote:
    """A statement left out because it raised when the definitions were imported."""

    path: str
    line: int
    message: str


class _LoadState:
    """What the hook knows across the modules of one import (and its retries)."""

    def __init__(self) -> None:
        self.needs: Dict[str, Set[str]] = {}  # module name -> names other modules import from it
        self.forced_out: Dict[str, Set[int]] = {}  # file -> first lines of statements left out
        self.results: Dict[str, FilterResult] = {}  # file -> its filter result
        self.compiled_with: Dict[str, FrozenSet[str]] = {}  # file -> the needs it was filtered with
        self.names: Dict[str, str] = {}  # module name -> file, filtered in this attempt
        self.notes: List[ImportNote] = []

    def compile(self, fullname: str, path: str, source: bytes, is_package: bool) -> types.CodeType:
        tree = ast.parse(source, filename=path)
        needed = frozenset(self.needs.get(fullname, ()))
        result = filter_definitions(tree, needed, self.forced_out.get(path, ()))
        self.results[path] = result
        self.compiled_with[path] = needed
        self.names[fullname] = path
        package = fullname if is_package else fullname.rpartition(".")[0]
        for module, level, names in result.imports:
            target = _absolute(module, level, package)
            if target and names:
                self.needs.setdefault(target, set()).update(names)
        for module, attribute in result.module_attribute_reads:
            self.needs.setdefault(module, set()).add(attribute)
        return compile(result.module, path, "exec", dont_inherit=True)

    def recover(self, exc: BaseException) -> bool:
        """Adjust the view after ``exc`` ended an import attempt; False when nothing
        would change (the error is the user's to fix)."""
        if _import_read_submodule(exc):
            return True
        if isinstance(exc, ImportError) and not isinstance(exc, ModuleNotFoundError) and exc.name in self.names:
            m = re.search(r"cannot import name '(\w+)'", str(exc))
            path = self.names[exc.name]
            result = self.results.get(path)
            if m and result is not None and m.group(1) in result.left_out_names \
                    and m.group(1) not in self.compiled_with.get(path, ()):
                # A module imported it after this one was filtered without it.
                self.needs.setdefault(exc.name, set()).add(m.group(1))
                return True
        for frame, lineno in reversed(list(traceback.walk_tb(exc.__traceback__))):
            if frame.f_code.co_name != "<module>":
                continue
            path = os.path.abspath(frame.f_code.co_filename)
            result = self.results.get(path)
            if result is None:
                continue
            first = result.droppable_leaf_at(lineno)
            if first is None or first in self.forced_out.get(path, ()):
                return False
            self.forced_out.setdefault(path, set()).add(first)
            self.notes.append(ImportNote(path, first, _describe(exc)))
            return True
        return False


_NO_ATTRIBUTE = re.compile(r"^module '([\w.]+)' has no attribute '(\w+)'$")


def _import_read_submodule(exc: BaseException) -> bool:
    """``import packaging`` then ``packaging.version.parse(...)``: the code reads a
    submodule of an installed package that it never imports, which works where another
    package has imported it (here the stand-ins of missing packages do not). Import it,
    as that package would have; True when it was not imported and now is."""
    if not isinstance(exc, AttributeError):
        return False
    m = _NO_ATTRIBUTE.match(str(exc))
    if m is None:
        return False
    package, attr = m.groups()
    owner = sys.modules.get(package)
    if owner is None or not getattr(owner, "__path__", None) or f"{package}.{attr}" in sys.modules:
        return False
    if getattr(owner, "__file__", None) and not is_library_file(owner.__file__):
        return False  # the project's own package: its code is the user's to fix
    try:
        importlib.import_module(f"{package}.{attr}")
    except Exception:
        return False
    return hasattr(owner, attr)


def _absolute(module: str, level: int, package: str) -> str:
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return ""
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}"[:300] if text else type(exc).__name__


def compile_definitions(source: bytes, path: str) -> types.CodeType:
    tree = ast.parse(source, filename=path)
    return compile(definitions_only(tree), path, "exec", dont_inherit=True)


# path -> the file whose source is imported in its place (bnlint fix checks a fixed
# copy under the original's module name, so the project's other modules import it).
_SOURCE_OVERRIDES: Dict[str, str] = {}


def override_source(path: str, replacement: Optional[str]) -> None:
    """Import ``replacement``'s source wherever ``path`` is imported (None: stop)."""
    if replacement is None:
        _SOURCE_OVERRIDES.pop(os.path.abspath(path), None)
    else:
        _SOURCE_OVERRIDES[os.path.abspath(path)] = os.path.abspath(replacement)


def purge_definitions() -> None:
    """Forget every module imported through the definitions filter, so the next import
    of the project runs its (possibly overridden) sources again."""
    for name, module in list(sys.modules.items()):
        if isinstance(getattr(module, "__loader__", None), _DefinitionsLoader):
            del sys.modules[name]


class _DefinitionsLoader(importlib.machinery.SourceFileLoader):
    """Loads a local module through the definitions-only filter, never from bytecode."""

    def __init__(self, fullname: str, path: str, state: _LoadState, is_package: bool = False):
        super().__init__(fullname, path)
        self.state = state
        self.package = is_package

    def get_code(self, fullname):  # noqa: D401 - importlib protocol
        source = self.get_data(_SOURCE_OVERRIDES.get(os.path.abspath(self.path), self.path))
        if self.path.endswith(".ipynb"):  # a notebook: the Python of its code cells
            from bnlint.notebook import notebook_lines_for_import

            source = notebook_lines_for_import(self.path, source)
        return self.state.compile(fullname, self.path, source, self.package)


_OWN_DIRS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), d) + os.sep
                  for d in ("bnlint", "rules"))


class _DefinitionsFinder(importlib.abc.MetaPathFinder):
    def __init__(self, roots: Sequence[str]):
        self.roots = [os.path.abspath(r) + os.sep for r in roots]
        self.state = _LoadState()

    def find_spec(self, fullname, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        origin = os.path.abspath(spec.origin)
        if "site-packages" in origin or "dist-packages" in origin or origin.startswith(_OWN_DIRS):
            return None  # installed code, and bnlint itself (e.g. when checking bnlint's own checkout)
        if not any(origin.startswith(r) for r in self.roots):
            return None
        loader = _DefinitionsLoader(fullname, origin, self.state, spec.submodule_search_locations is not None)
        new = importlib.util.spec_from_file_location(
            fullname, origin, loader=loader,
            submodule_search_locations=spec.submodule_search_locations,
        )
        return new


def install_definitions_hook(roots: Sequence[str]) -> _DefinitionsFinder:
    """Route local imports below ``roots`` through the filter (one finder, shared)."""
    sys.dont_write_bytecode = True
    for finder in sys.meta_path:
        if isinstance(finder, _DefinitionsFinder):
            finder.roots.extend(r for r in (os.path.abspath(x) + os.sep for x in roots) if r not in finder.roots)
            return finder
    finder = _DefinitionsFinder(roots)
    sys.meta_path.insert(0, finder)
    return finder


def is_definitions_file(path: str) -> bool:
    """Whether ``path`` (absolute) was imported through the definitions filter."""
    for finder in sys.meta_path:
        if isinstance(finder, _DefinitionsFinder):
            return path in finder.state.results
    return False


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


def _same_file(a: Optional[str], b: str) -> bool:
    try:
        return a is not None and os.path.samefile(a, b)
    except OSError:
        return False


def load_definitions(path: str, notes: Optional[List[ImportNote]] = None) -> types.ModuleType:
    """Import ``path`` with its top level filtered to definitions. Statements that
    raise are left out and the import starts again; ``notes`` receives one
    ``ImportNote`` for each."""
    name, root = _module_name_for(path)
    project = project_root(root)
    namespaced = _namespace_name(path, name, project)
    if namespaced is not None:
        # ``from .op import x`` in a folder without __init__.py: the project imports it
        # as ``models.network`` (a namespace package); its folder stays on the path too.
        name, folder = namespaced, root
        root = project
        if folder not in sys.path:
            sys.path.insert(0, folder)
    if root not in sys.path:
        sys.path.insert(0, root)
    roots = [root]
    if project is not None and project != root:
        if project not in sys.path:
            sys.path.insert(sys.path.index(root) + 1, project)
        roots.append(project)
    state = install_definitions_hook(roots).state
    existing = sys.modules.get(name)
    if existing is not None and _same_file(getattr(existing, "__file__", None), path):
        # Already imported through the hook (a package's __init__ imported it while
        # the checked file loaded): the same module, its relative imports resolved.
        return existing
    if name in sys.modules or name in sys.builtin_module_names or name in getattr(sys, "stdlib_module_names", ()):
        name = "_bnlint_target_" + name.replace(".", "_")
    first_note = len(state.notes)
    try:
        for attempt in range(MAX_ATTEMPTS):
            before = set(sys.modules)
            state.names.clear()
            try:
                return _load_once(name, path, state)
            except Exception as exc:  # the user's top-level code may raise anything
                if attempt == MAX_ATTEMPTS - 1 or not state.recover(exc):
                    raise
                for mod in set(sys.modules) - before:
                    if mod in state.names or mod == name:
                        del sys.modules[mod]
        raise AssertionError("unreachable")
    finally:
        if notes is not None:
            notes.extend(state.notes[first_note:])


def _namespace_name(path: str, name: str, project: Optional[str]) -> Optional[str]:
    """The dotted name from the project root for a file outside any __init__.py package
    that uses relative imports, or None."""
    if "." in name or project is None:
        return None
    relative = os.path.relpath(os.path.abspath(path), project)
    parts = relative[:-3].split(os.sep) if relative.endswith(".py") else []
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        return None
    try:
        with open(path, "rb") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return None
    if not any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in tree.body):
        return None
    return ".".join(parts)


def _load_once(name: str, path: str, state: _LoadState) -> types.ModuleType:
    if "." in name:
        # Import the packages first, as Python does: a package whose __init__ imports
        # this very module (``from .net import Net``) must find it complete, not the
        # half-run module this function would otherwise register.
        importlib.import_module(name.rsplit(".", 1)[0])
        if name in sys.modules:
            return sys.modules[name]
    loader = _DefinitionsLoader(name, os.path.abspath(path), state, os.path.basename(path) == "__init__.py")
    spec = importlib.util.spec_from_file_location(name, os.path.abspath(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    if "." in name:
        module.__package__ = name.rsplit(".", 1)[0]
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
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


def _standin_without_forward(cls: type, nn_module: type) -> bool:
    """A class that is an nn.Module only because it derives from a stand-in for a
    missing package (``class Config(yacs.config.CfgNode)``) and defines no forward of
    its own is not a model."""
    standin = any(k.__dict__.get("_bnlint_standin_of") for k in cls.__mro__)
    if not standin:
        return False
    return not any("forward" in k.__dict__ for k in cls.__mro__
                   if k is not nn_module and not k.__module__.startswith(("bnlint.", "torch.")))


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
            if not issubclass(obj, nn.Module) or inspect.isabstract(obj) or _standin_without_forward(obj, nn.Module):
                continue
            required = required_parameters(obj)
            out[name] = ("class", obj, required)
        elif inspect.isfunction(obj):
            if not _returns_module(obj, module, nn.Module):
                continue
            out[name] = ("factory", obj, required_parameters(obj))
    return out
