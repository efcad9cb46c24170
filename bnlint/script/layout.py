"""The project a checked file lives in: its root, its Python files, their module names
and the imports between them. No parsing (imports are read with a regular expression),
no libcst, nothing imported or run.

A file's script findings depend on code in other files only along imports: a helper in
``data/loaders.py`` is called by the scripts that import it, and they call the helpers
they import. So the files that decide the findings in a set of files ``F`` are

    importers*(F) = F and every project file that imports one of them, transitively,
    context(F)    = importers*(F) and everything those files import, transitively.

``context`` is what the script analysis parses; it depends only on ``F`` and the
project, never on which other files are on the command line. A file that does not
import a checked file (directly or through others) cannot reach its code, so leaving
it out changes nothing in the checked file's findings.

Imports resolve as Python would for a script or a test run from the project root: an
absolute import looks in the importing file's folder (``sys.path[0]`` of a script),
then above the importing file's top-level package, then at the project root, then in
``src/``; relative imports count the dots from the importing file's package.

    >>> layout = Layout.virtual({"train.py": "from data import loaders", "data/loaders.py": ""})
    >>> [layout.rel(p) for p in layout.context([layout.abs("data/loaders.py")])]
    ['data/loaders.py', 'train.py']
"""
from __future__ import annotations

import hashlib
import os
import stat
import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

__all__ = [
    "PROJECT_MARKERS", "SKIP_DIRS", "ImportRef", "Layout", "project_root", "find_project_root", "scan_imports",
    "MAX_PROJECT_FILES",
]

# As pytest finds its rootdir (and bnlint's model loader its import root).
PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "tox.ini", "pytest.ini", "conftest.py", ".git")
SKIP_DIRS = {
    ".git", ".hg", ".svn", ".venv", "venv", "env", ".env", "__pycache__", ".tox", ".nox",
    "build", "dist", "node_modules", "site-packages", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".bnlint_cache", ".eggs", ".ipynb_checkpoints",
}
# Files left by an interrupted 'bnlint fix' / 'fix --verify' are never context.
_TEMP_PREFIXES = ("_bnlint_fix_", "_bnlint_verify_")
MAX_PROJECT_FILES = 5000  # files listed per project at most (a home folder with .git)


def find_project_root(path: str, _memo: Optional[Dict[str, Optional[str]]] = None) -> Optional[str]:
    """The nearest folder at or above ``path``'s folder with a project marker
    (``pyproject.toml``, ``setup.py``, ``.git``, ...), or None. ``_memo`` (folder ->
    root) saves the walk up for files that share folders."""
    current = os.path.dirname(os.path.abspath(path))
    seen = []
    found = None
    while True:
        if _memo is not None and current in _memo:
            found = _memo[current]
            break
        seen.append(current)
        if any(os.path.exists(os.path.join(current, m)) for m in PROJECT_MARKERS):
            found = current
            break
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    if _memo is not None:
        for folder in seen:
            _memo[folder] = found
    return found


def project_root(path: str) -> str:
    """``find_project_root``, else the file's own folder (a loose script: its folder
    and the packages in it are its project, see ``Layout(shallow=True)``)."""
    return find_project_root(path) or os.path.dirname(os.path.abspath(path))


@dataclass(frozen=True)
class ImportRef:
    """One imported module: ``import a.b`` is ``(0, "a.b", ())``, ``from ..x import y, z``
    is ``(2, "x", ("y", "z"))``; ``names`` holds ``"*"`` for a star import."""

    level: int
    module: str
    names: Tuple[str, ...] = ()


_IMPORT_RE = re.compile(
    r"^[ \t]*(?:from[ \t]+(\.*)[ \t]*([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)"
    r"|import[ \t]+([^\n#;]*))",
    re.M,
)


def _alias_names(text: str) -> Tuple[str, ...]:
    out = []
    for part in text.strip().strip("()").replace("\n", " ").split(","):
        name = part.split("#", 1)[0].strip().split(" as ", 1)[0].strip()
        if name == "*" or name.isidentifier():
            out.append(name)
    return tuple(out)


def scan_imports(text: str) -> Tuple[ImportRef, ...]:
    """Every import statement of ``text``, at any indentation (a regular expression over
    the lines: an import quoted in a docstring counts too, which only adds context)."""
    if "import" not in text:
        return ()
    if "\\\n" in text:
        text = text.replace("\\\n", " ")
    out: List[ImportRef] = []
    for dots, module, names, plain in _IMPORT_RE.findall(text):
        if plain:
            for part in plain.split(","):
                name = part.strip().split(" as ", 1)[0].strip()
                if name and all(p.isidentifier() for p in name.split(".")):
                    out.append(ImportRef(0, name))
        elif dots or module:
            if module and not all(p.isidentifier() for p in module.split(".")):
                continue
            out.append(ImportRef(len(dots), module, _alias_names(names)))
    return tuple(out)


class _Disk:
    """The real file system."""

    def __init__(self) -> None:
        self._isfile: Dict[str, bool] = {}
        self._isdir: Dict[str, bool] = {}
        self._names: Dict[str, Set[str]] = {}

    def isfile(self, path: str) -> bool:
        hit = self._isfile.get(path)
        if hit is None:
            hit = self._isfile[path] = os.path.isfile(path)
        return hit

    def isdir(self, path: str) -> bool:
        hit = self._isdir.get(path)
        if hit is None:
            hit = self._isdir[path] = os.path.isdir(path)
        return hit

    def read(self, path: str) -> Optional[bytes]:
        """A regular file's bytes; None for anything else (opening a named pipe would
        wait for a writer forever) or an unreadable file."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with os.fdopen(fd, "rb") as fh:
                fd = -1
                return fh.read()
        except OSError:
            return None
        finally:
            if fd >= 0:
                os.close(fd)

    def stat(self, path: str):
        try:
            return os.stat(path)
        except OSError:
            return None

    def names(self, folder: str) -> Set[str]:
        """Entries of ``folder`` (memoised): an import's first name is looked up here
        before any path is built."""
        hit = self._names.get(folder)
        if hit is None:
            try:
                hit = set(os.listdir(folder))
            except OSError:
                hit = set()
            self._names[folder] = hit
        return hit

    def listing(self, root: str, shallow: bool = False) -> List[str]:
        out: List[str] = []
        seen: Set[str] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(
                d for d in dirnames
                if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
                and (not shallow or os.path.isfile(os.path.join(dirpath, d, "__init__.py")))
            )
            for name in sorted(filenames):
                if name.endswith(".py") and not name.startswith(_TEMP_PREFIXES):
                    out.append(os.path.join(dirpath, name))
                    if len(out) >= MAX_PROJECT_FILES:
                        return out
        return out


class _Memory:
    """Files held in memory (``run_script_rules`` on sources, tests)."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = dict(files)
        self.dirs: Set[str] = set()
        for path in self.files:
            folder = os.path.dirname(path)
            while folder not in self.dirs:
                self.dirs.add(folder)
                parent = os.path.dirname(folder)
                if parent == folder:
                    break
                folder = parent

    def isfile(self, path: str) -> bool:
        return path in self.files

    def isdir(self, path: str) -> bool:
        return path in self.dirs

    def names(self, folder: str) -> Set[str]:
        prefix = folder.rstrip(os.sep) + os.sep
        return {p[len(prefix):].split(os.sep, 1)[0] for p in self.files if p.startswith(prefix)}

    def read(self, path: str) -> Optional[bytes]:
        return self.files.get(path)

    def stat(self, path: str):
        return None

    def listing(self, root: str, shallow: bool = False) -> List[str]:
        prefix = root.rstrip(os.sep) + os.sep
        return sorted(p for p in self.files if p.startswith(prefix) and p.endswith(".py"))


@dataclass(frozen=True)
class _FileFacts:
    """What the layout knows of one file without parsing it (kept in the file index)."""

    digest: str
    imports: Tuple[ImportRef, ...]
    hinted: bool  # may hold or start script findings (see ``Layout.hint``)


class Layout:
    """The files of one project and the import graph between them.

    ``index`` (a ``bnlint.cache.FileIndex``) keeps each file's digest, imports and hint
    by its stat signature, so an unchanged project is mapped without reading its files.
    ``hint(text) -> bool`` says whether a file may hold or start script findings.
    """

    _FIELD = "script-layout-1"

    def __init__(self, root: str, fs=None, *, index=None, hint: Optional[Callable[[str], bool]] = None,
                 overrides: Optional[Mapping[str, str]] = None, shallow: bool = False) -> None:
        self.root = os.path.abspath(root) if fs is None else root
        # A folder with no project marker: its own files and the packages in it only
        # (never every .py file below a home or a temporary folder).
        self.shallow = shallow
        self.fs = fs or _Disk()
        self.index = index
        self.hint = hint or (lambda text: True)
        self.overrides = dict(overrides or {})  # abs path -> text (a notebook's Python, a buffer)
        self._facts: Dict[str, _FileFacts] = {}
        self._files: Optional[List[str]] = None
        self._resolved: Dict[Tuple[str, int, str], Optional[str]] = {}
        self._deps: Dict[str, Tuple[str, ...]] = {}
        self._importers: Optional[Dict[str, List[str]]] = None
        self._top: Dict[str, str] = {}

    @classmethod
    def virtual(cls, files: Mapping[str, str], root: str = "/project") -> "Layout":
        """A layout of in-memory files (relative paths are placed under ``root``)."""
        data = {os.path.normpath(os.path.join(root, p)): t.encode("utf-8") for p, t in files.items()}
        return cls(root, _Memory(data))

    # -- paths ------------------------------------------------------------------------
    def abs(self, rel: str) -> str:
        return os.path.normpath(os.path.join(self.root, rel))

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    def files(self) -> List[str]:
        """Every ``.py`` file of the project (build, VCS and environment folders left out)."""
        if self._files is None:
            self._files = self.fs.listing(self.root, self.shallow)
        return self._files

    def package_base(self, path: str) -> str:
        """The folder above ``path``'s top-level package (its own folder for a script)."""
        folder = os.path.dirname(path)
        hit = self._top.get(folder)
        if hit is None:
            current = folder
            while self.fs.isfile(os.path.join(current, "__init__.py")):
                parent = os.path.dirname(current)
                if parent == current or not os.path.basename(current).isidentifier():
                    break
                current = parent
            hit = self._top[folder] = current
        return hit

    def module_name(self, path: str) -> str:
        """The dotted name Python gives ``path`` (``models/resnet.py`` in a package:
        ``models.resnet``; a script: its stem)."""
        rel = os.path.relpath(path, self.package_base(path))
        parts = rel[:-3].split(os.sep) if rel.endswith(".py") else rel.split(os.sep)
        if parts and parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)

    # -- facts --------------------------------------------------------------------------
    def text(self, path: str) -> Optional[str]:
        """The file's text (decoded leniently: this is for imports and hints only)."""
        if path in self.overrides:
            return self.overrides[path]
        raw = self.fs.read(path)
        if raw is None:
            return None
        return raw.decode("utf-8", errors="replace")

    def facts(self, path: str) -> Optional[_FileFacts]:
        hit = self._facts.get(path)
        if hit is not None:
            return hit
        st = None
        if self.index is not None and path not in self.overrides:
            st = self.fs.stat(path)
            known = self.index.lookup(path, st, self._FIELD)
            if isinstance(known, _FileFacts):
                self._facts[path] = known
                return known
        if path in self.overrides:
            raw = self.overrides[path].encode("utf-8")
        else:
            raw = self.fs.read(path)
        if raw is None:
            return None
        text = raw.decode("utf-8", errors="replace")
        facts = _FileFacts(hashlib.sha256(raw).hexdigest(), scan_imports(text), bool(self.hint(text)))
        self._facts[path] = facts
        if st is not None:
            self.index.store(path, st, facts, self._FIELD)
        return facts

    def digest(self, path: str) -> str:
        facts = self.facts(path)
        return facts.digest if facts is not None else "missing"

    def hinted(self, path: str) -> bool:
        facts = self.facts(path)
        return bool(facts and facts.hinted)

    # -- import resolution -----------------------------------------------------------
    def _bases(self, importer: str) -> List[str]:
        out = []
        for base in (os.path.dirname(importer), self.package_base(importer), self.root,
                     os.path.join(self.root, "src")):
            if base not in out:
                out.append(base)
        return out

    def _module_file(self, base: str, dotted: str) -> Optional[str]:
        if dotted:
            head = dotted.split(".", 1)[0]
            names = self.fs.names(base)
            if head not in names and head + ".py" not in names:
                return None  # not here (torch, numpy, ...): no path built, no stat
        stem = os.path.join(base, *dotted.split(".")) if dotted else base
        for cand in (os.path.join(stem, "__init__.py"), stem + ".py"):  # a package wins, as in Python
            if self.fs.isfile(cand):
                return cand
        return None

    def resolve_module(self, importer: str, level: int, dotted: str) -> Optional[str]:
        """The file of module ``dotted`` as imported from ``importer`` (``level`` leading
        dots), or None when it is not a project file (a library)."""
        key = (os.path.dirname(importer), level, dotted)  # the bases depend on the folder only
        if key in self._resolved:
            return self._resolved[key]
        found = None
        if level:
            base = os.path.dirname(importer)
            for _ in range(level - 1):
                base = os.path.dirname(base)
            found = self._module_file(base, dotted)
        elif dotted:
            for base in self._bases(importer):
                found = self._module_file(base, dotted)
                if found is not None:
                    break
        self._resolved[key] = found
        return found

    def _packages_on_the_way(self, importer: str, level: int, dotted: str) -> List[str]:
        """``import a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``."""
        parts = dotted.split(".") if dotted else []
        out = []
        for i in range(1, len(parts)):
            hit = self.resolve_module(importer, level, ".".join(parts[:i]))
            if hit is not None and hit.endswith("__init__.py"):
                out.append(hit)
        return out

    def imports_of(self, path: str) -> Tuple[str, ...]:
        """Project files ``path`` imports directly (packages run on the way included)."""
        hit = self._deps.get(path)
        if hit is not None:
            return hit
        facts = self.facts(path)
        out: List[str] = []
        for ref in (facts.imports if facts is not None else ()):
            found = self.resolve_module(path, ref.level, ref.module)
            targets = self._packages_on_the_way(path, ref.level, ref.module)
            if found is not None:
                targets.append(found)
            for name in ref.names:
                if name != "*":
                    sub = self.resolve_module(path, ref.level, f"{ref.module}.{name}" if ref.module else name)
                    if sub is not None:
                        targets.append(sub)
            for t in targets:
                if t != path and t not in out:
                    out.append(t)
        self._deps[path] = tuple(sorted(out))
        return self._deps[path]

    def importers_of(self, path: str) -> List[str]:
        """Project files that import ``path`` directly."""
        if self._importers is None:
            rev: Dict[str, List[str]] = {}
            for f in self.files():
                for dep in self.imports_of(f):
                    rev.setdefault(dep, []).append(f)
            self._importers = rev
        return self._importers.get(path, [])

    # -- the analysis context ------------------------------------------------------------
    def _closure(self, start: Iterable[str], step) -> List[str]:
        seen: Set[str] = set()
        order: List[str] = []
        stack = list(start)
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            order.append(cur)
            stack.extend(step(cur))
        return order

    def importers_closure(self, paths: Sequence[str]) -> List[str]:
        return sorted(self._closure(paths, self.importers_of))

    def context(self, paths: Sequence[str]) -> List[str]:
        """``paths``, the files that import them (transitively), and everything those
        import (transitively): the files whose code can reach code in ``paths``."""
        up = self._closure(paths, self.importers_of)
        return sorted(self._closure(up, self.imports_of))

    def context_key(self, path: str) -> str:
        """A digest of everything ``context([path])`` holds (paths and contents)."""
        h = hashlib.sha256()
        for f in self.context([path]):
            h.update(self.rel(f).encode() + b"\0" + self.digest(f).encode() + b"\0")
        return h.hexdigest()
