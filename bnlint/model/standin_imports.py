"""The import hooks that put stand-ins (bnlint.model.standins) in place of packages
that are not installed, in the worker subprocess.

Only top-level packages that genuinely cannot be found are stubbed; never torch,
never a module of the project itself (a missing local module is a real error), never
an import inside ``try: ... except ImportError:`` (the code has its own fallback, even
when another module already stubbed the package), and never when code only asks
whether a package exists (``importlib.util.find_spec``). ``mock-imports`` packages are
stubbed even when installed; ``no-mock-imports`` ones never (``"*"``: none at all).

Modules torch has since removed (``torch._six``) are no stand-ins: they are provided
with their former contents, under the same conditions. A few helpers of missing model
libraries (timm's ``to_2tuple``, ``trunc_normal_``, ``DropPath``) are provided inside
their stand-in modules (bnlint.model.provided).
"""
from __future__ import annotations

import ast
import functools
import importlib.abc
import importlib.machinery
import os
import sys
from typing import Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from bnlint.model.standins import StandInModule

__all__ = ["StandIns", "installed_standins"]

# Never stubbed, whatever the configuration says.
NEVER_STUBBED = frozenset({"torch", "bnlint", "__main__", "builtins"})


def _torch_six(module) -> None:
    import collections.abc
    import math

    module.container_abcs = collections.abc
    module.string_classes = (str, bytes)
    module.int_classes = int
    module.inf, module.nan = math.inf, math.nan
    module.PY2, module.PY3, module.PY37 = False, True, True


# Modules torch has removed that research code of its time still imports, with what
# they held: provided as they were when torch no longer has them (not stand-ins: code
# that uses them gets the real values).
REMOVED_TORCH_MODULES = {"torch._six": ("torch 2.0", _torch_six)}

class _FormerModuleLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        REMOVED_TORCH_MODULES[module.__name__][1](module)


class _StandInLoader(importlib.abc.Loader):
    def __init__(self, package: str, owner: Optional["StandIns"] = None):
        self.package = package
        self.owner = owner

    def create_module(self, spec):
        return StandInModule(spec.name, self.package)

    def exec_module(self, module):
        from bnlint.model.provided import PROVIDED, provide

        if module.__name__ in PROVIDED and self.package not in getattr(self.owner, "forced", ()):
            names = provide(module)
            if self.owner is not None:
                self.owner.provided.setdefault(self.package, set()).update(names)


@functools.lru_cache(maxsize=256)
def _guarded_lines(filename: str) -> Tuple[Tuple[int, int], ...]:
    """Line ranges of ``try:`` bodies in ``filename`` whose handlers catch ImportError."""
    try:
        with open(filename, "rb") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return ()
    catching = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}

    def catches(h: ast.ExceptHandler) -> bool:
        if h.type is None:
            return True
        names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        return any((n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else "") in catching
                   for n in names)

    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(catches(h) for h in node.handlers) and node.body:
            out.append((node.body[0].lineno, max(getattr(s, "end_lineno", s.lineno) for s in node.body)))
    return tuple(out)


def _has_fallback(file: Optional[str], line: int) -> bool:
    """Whether line ``line`` of ``file`` sits in a ``try:`` whose handlers catch
    ImportError (the code has its own fallback for a missing module)."""
    return file is not None and any(a <= line <= b for a, b in _guarded_lines(file))


def _importer() -> Tuple[Optional[str], int, bool]:
    """(file, line) of the code that is importing, and whether it only asks whether
    the module exists (importlib.util.find_spec)."""
    frame = sys._getframe(2)
    here = os.path.abspath(__file__)
    while frame is not None:
        name = frame.f_code.co_filename
        if frame.f_code.co_name in ("find_spec", "find_loader") and (name == "<frozen importlib.util>" or name.endswith(
                (os.path.join("importlib", "util.py"), "pkgutil.py"))):
            return None, 0, True
        if not (name.startswith("<frozen importlib") or os.path.abspath(name) == here
                or name.endswith(os.path.join("importlib", "__init__.py"))):
            return name, frame.f_lineno, False
        frame = frame.f_back
    return None, 0, False


def _project_module_names(root: Optional[str], limit: int = 20000) -> FrozenSet[str]:
    """Top-level names the project's own files could be imported by: every ``x.py``
    and every folder holding Python files, anywhere below ``root``."""
    if not root:
        return frozenset()
    names: Set[str] = set()
    seen = 0
    skip = {"__pycache__", "node_modules", "site-packages", "dist-packages", "venv", "env"}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip]
        seen += len(files) + len(dirs)
        if any(f.endswith(".py") for f in files):
            names.add(os.path.basename(folder))
        names.update(f[:-3] for f in files if f.endswith(".py"))
        if seen > limit:
            break
    return frozenset(n for n in names if n.isidentifier())


class StandIns:
    """The stand-in import hooks of one worker and what they stubbed."""

    def __init__(self, project_root: Optional[str], mock: Sequence[str] = (), never: Sequence[str] = ()):
        self.project_root = project_root
        self.forced = frozenset(m.split(".")[0] for m in mock) - NEVER_STUBBED
        self.never = frozenset(n.split(".")[0] for n in never if n != "*") | NEVER_STUBBED
        self.enabled = "*" not in never
        self.stubbed: Dict[str, Tuple[Optional[str], int]] = {}  # package -> first importer (file, line)
        self.former: Dict[str, Tuple[Optional[str], int]] = {}  # removed torch module -> first importer
        # missing package -> its helpers provided with bnlint's own definitions (bnlint.model.provided)
        self.provided: Dict[str, Set[str]] = {}
        self._local: Optional[FrozenSet[str]] = None
        self.front = _FrontFinder(self)
        self.back = _BackFinder(self)

    def install(self) -> "StandIns":
        if self.front not in sys.meta_path:
            sys.meta_path.insert(0, self.front)
        if self.back not in sys.meta_path:
            sys.meta_path.append(self.back)
        import builtins

        if not getattr(builtins.__import__, "_bnlint_standins", False):
            builtins.__import__ = _guarded_import(builtins.__import__, self)
        return self

    def local_names(self) -> FrozenSet[str]:
        if self._local is None:
            self._local = _project_module_names(self.project_root)
        return self._local

    def from_project(self, file: Optional[str]) -> bool:
        """Whether ``file`` (an importer) is the project's code, not an installed
        package's: ``import tensorboard`` inside torch means the package, even when
        the project has a utils/tensorboard.py."""
        if not file or not self.project_root:
            return False
        path = os.path.abspath(file)
        return path.startswith(os.path.abspath(self.project_root) + os.sep) and not any(
            part in path for part in ("site-packages", "dist-packages"))

    def missing(self) -> List[str]:
        """Stubbed packages that are genuinely not installed (not forced ones)."""
        return sorted(p for p in self.stubbed if p not in self.forced)

    def spec(self, fullname: str, top: str, importer: Tuple[Optional[str], int]):
        self.stubbed.setdefault(top, importer)
        return importlib.machinery.ModuleSpec(fullname, _StandInLoader(top, self), is_package=True)


def _guarded_import(original, owner: StandIns):
    """``__import__`` that keeps a package already stubbed missing for an import inside
    ``try: ... except ImportError:`` (the stand-in sits in sys.modules, where no finder
    is asked again)."""

    def __import__(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            top = name.partition(".")[0]
            if top in owner.stubbed and top not in owner.forced:
                caller = sys._getframe(1)
                file = caller.f_code.co_filename
                if _has_fallback(file, caller.f_lineno):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return original(name, globals, locals, fromlist, level)

    __import__._bnlint_standins = True  # type: ignore[attr-defined]
    return __import__


class _FrontFinder(importlib.abc.MetaPathFinder):
    """Stubs ``mock-imports`` packages even when installed, and the submodules of
    packages already stubbed."""

    def __init__(self, owner: StandIns):
        self.owner = owner

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in self.owner.forced or ("." in fullname and top in self.owner.stubbed):
            file, line, probe = _importer()
            if probe and top not in self.owner.forced:
                return None
            return self.owner.spec(fullname, top, (file, line))
        return None


class _BackFinder(importlib.abc.MetaPathFinder):
    """Consulted after every other finder: a top-level package nobody found."""

    def __init__(self, owner: StandIns):
        self.owner = owner

    def find_spec(self, fullname, path=None, target=None):
        owner = self.owner
        if fullname in REMOVED_TORCH_MODULES and owner.enabled:
            file, line, probe = _importer()
            if probe or _has_fallback(file, line):
                return None  # the code checks for it, or has its own fallback
            owner.former.setdefault(fullname, (file, line))
            return importlib.machinery.ModuleSpec(fullname, _FormerModuleLoader())
        if "." in fullname or not owner.enabled or fullname in owner.never:
            return None
        if fullname in getattr(sys, "stdlib_module_names", ()):
            return None
        file, line, probe = _importer()
        if probe:
            return None
        if _has_fallback(file, line):
            return None  # try: import x / except ImportError: the code has a fallback
        if owner.from_project(file) and fullname in owner.local_names():
            return None  # the project's own module, not on the path: a real error
        return owner.spec(fullname, fullname, (file, line))


def installed_standins() -> Optional[StandIns]:
    """The ``StandIns`` whose hooks this process has installed, if any."""
    for finder in sys.meta_path:
        if isinstance(finder, _FrontFinder):
            return finder.owner
    return None
