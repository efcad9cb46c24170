"""The project a model file lives in: its files and name resolution across them.

Before a worker imports a model file, the CLI works out from the project itself what
to build (bnlint.model.plan). :class:`Project` lists every ``.py`` file below the
project root (the nearest folder with ``.git``, ``pyproject.toml``, ``setup.py``, ...;
else the top of the file's package), reads each file's facts on first use
(bnlint.model.facts, cached by stat signature in the results cache's file index),
and resolves names across files: imports, re-exports through package ``__init__``
files, star imports and relative imports.

The project of a file never depends on the other files named on the command line,
so neither does anything planned from it.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from bnlint.model.commands import MAX_DOC_FILES, CommandLine, find_command_lines, is_doc_file
from bnlint.model.facts import (Assignment, CallSite, Definition, ModuleFacts, Param, may_imply_size, module_facts,
                                parse_for_facts, size_hints)

__all__ = [
    "Param", "Definition", "CallSite", "Assignment", "ModuleFacts", "Binding", "Project", "project_root_of",
    "package_root", "module_facts", "SKIP_DIRS",
]

# A module-level write two attributes deep (``_C.MODEL.DEPTH = 50``): the file may hold
# a configuration object (Project.config_files).
_CONFIG_LINE = re.compile(rb"(?m)^[A-Za-z_]\w*(?:\.\w+){2,}[ \t]*=[^=]")

SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", ".venv", "venv", "env", ".env", "__pycache__", ".tox", ".nox",
    "build", "dist", "node_modules", "site-packages", "dist-packages", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".bnlint_cache", ".eggs", ".ipynb_checkpoints",
})
MAX_PROJECT_FILES = 20000
# the key of a file's facts in the results cache's file index (a new one when the
# facts gain a field, so that facts an older bnlint kept are not read)
FACTS_KEY = "project-facts-2"


# ---------------------------------------------------------------- project root

PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "tox.ini", "pytest.ini", "conftest.py", ".git")


def package_root(path: str) -> str:
    """The folder that holds the top-most package of ``path`` (its sys.path entry)."""
    folder = os.path.dirname(os.path.abspath(path))
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        parent = os.path.dirname(folder)
        if parent == folder or not os.path.basename(folder).isidentifier():
            break
        folder = parent
    return folder


def project_root_of(path: str) -> str:
    """The nearest folder at or above ``path`` with a project marker (``.git``,
    ``pyproject.toml``, ``setup.py``, ...), as pytest finds its rootdir; without one,
    the folder holding the file's top-level package."""
    start = os.path.dirname(os.path.abspath(path))
    current = start
    while True:
        if any(os.path.exists(os.path.join(current, m)) for m in PROJECT_MARKERS):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return package_root(path)
        current = parent


# ---------------------------------------------------------------- the project

@dataclass(frozen=True)
class Binding:
    """What a name means at the top level of a project module."""

    kind: str  # "def" | "module" | "external" | "constant"
    path: Optional[str] = None  # the project file (def, module, constant)
    name: Optional[str] = None  # def / constant name; external: dotted name


class Project:
    """The ``.py`` files below a project root, their facts (parsed on first use, and
    kept in the results cache's file index when there is one) and name resolution."""

    def __init__(self, root: str, files: Sequence[str], index=None, docs: Sequence[str] = ()):
        self.root = root
        self.files = sorted(files)
        # text files that may document command lines (bnlint.model.commands)
        self.docs = sorted(docs)
        self._file_set = frozenset(self.files)
        self.index = index
        self._raw: Dict[str, Optional[bytes]] = {}
        self._facts: Dict[str, ModuleFacts] = {}
        self._modules: Dict[Tuple[str, str, int], Optional[str]] = {}
        self._mentions: Dict[str, List[str]] = {}
        self._lookups: Dict[Tuple[str, str], Optional["Binding"]] = {}
        self._hints: Dict[str, Tuple[int, ...]] = {}  # size_hints_of, this run

    # -- files

    @classmethod
    def scan(cls, root: str, index=None, exclude=None) -> "Project":
        files: List[str] = []
        docs: List[str] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(
                d for d in dirnames
                if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
                and not (exclude and exclude(os.path.join(dirpath, d)))
            )
            for name in filenames:
                if name.endswith(".py") and not name.startswith(("_bnlint_fix_", "_bnlint_verify_")):
                    full = os.path.join(dirpath, name)
                    # Regular files only: opening a named pipe would wait for a writer.
                    if os.path.isfile(full) and not os.path.islink(full) and not (exclude and exclude(full)):
                        files.append(os.path.abspath(full))
                elif is_doc_file(name) and len(docs) < MAX_DOC_FILES:
                    docs.append(os.path.abspath(os.path.join(dirpath, name)))
            if len(files) > MAX_PROJECT_FILES:
                break
        return cls(os.path.abspath(root), files, index, docs)

    def contains(self, path: str) -> bool:
        return os.path.abspath(path) in self._file_set

    def raw(self, path: str) -> Optional[bytes]:
        if path not in self._raw:
            self._raw[path] = None
            if os.path.isfile(path):  # a regular file: a named pipe would block
                try:
                    with open(path, "rb") as fh:
                        self._raw[path] = fh.read()
                except OSError:
                    pass
        return self._raw[path]

    def files_mentioning(self, word: str) -> List[str]:
        """Project files whose text contains ``word`` as a whole word."""
        if word not in self._mentions:
            needle = re.compile(rb"(?<![\w])" + re.escape(word.encode()) + rb"(?![\w])")
            self._mentions[word] = [p for p in self.files if (self.raw(p) or b"").find(word.encode()) >= 0
                                    and needle.search(self.raw(p) or b"")]
        return list(self._mentions[word])

    def _known_facts(self, path: str) -> Tuple[Optional[os.stat_result], Optional[ModuleFacts]]:
        """(the file's stat signature when there is a file index, its facts if this run or
        the index already has them)."""
        if path in self._facts:
            return None, self._facts[path]
        if self.index is None:
            return None, None
        try:
            st: Optional[os.stat_result] = os.stat(path)
        except OSError:
            st = None
        cached = self.index.lookup(path, st, FACTS_KEY)
        if isinstance(cached, ModuleFacts):
            self._facts[path] = cached
            return st, cached
        return st, None

    def facts(self, path: str) -> ModuleFacts:
        known = self._facts.get(path)  # the planner asks millions of times, by absolute path
        if known is not None:
            return known
        path = os.path.abspath(path)
        st, known = self._known_facts(path)
        if known is not None:
            return known
        raw = self.raw(path)
        facts = module_facts(path, raw or b"", lambda module, level: self.resolve_module(path, module, level)) \
            if raw is not None else ModuleFacts(path=path, syntax_error=True)
        self._facts[path] = facts
        if self.index is not None and st is not None:
            self.index.store(path, st, facts, FACTS_KEY)
        return facts

    # -- modules

    def _roots_for(self, path: str) -> List[str]:
        out = []
        for r in (os.path.dirname(os.path.abspath(path)), package_root(path), self.root):
            if r not in out:
                out.append(r)
        return out

    def resolve_module(self, from_path: str, module: str, level: int) -> Optional[str]:
        """The project file ``import module`` (``level`` dots) names from ``from_path``:
        ``pkg/mod.py`` or ``pkg/__init__.py``; None when it is not in the project."""
        key = (from_path, module, level)
        if key in self._modules:
            return self._modules[key]
        found = None
        rel = module.replace(".", os.sep) if module else ""
        if level > 0:
            base = os.path.dirname(os.path.abspath(from_path))
            for _ in range(level - 1):
                base = os.path.dirname(base)
            starts = [base]
        else:
            starts = self._roots_for(from_path)
        for start in starts:
            for candidate in ((os.path.join(start, rel + ".py"), os.path.join(start, rel, "__init__.py"))
                              if rel else (os.path.join(start, "__init__.py"),)):
                candidate = os.path.abspath(candidate)
                if candidate in self._file_set:
                    found = candidate
                    break
            if found:
                break
        self._modules[key] = found
        return found

    def submodule(self, package_file: str, name: str) -> Optional[str]:
        """``pkg/__init__.py`` + ``mod`` -> ``pkg/mod.py`` (or ``pkg/mod/__init__.py``)."""
        if os.path.basename(package_file) != "__init__.py":
            return None
        folder = os.path.dirname(package_file)
        for candidate in (os.path.join(folder, name + ".py"), os.path.join(folder, name, "__init__.py")):
            if candidate in self._file_set:
                return candidate
        return None

    def lookup(self, path: str, name: str, _depth: int = 0) -> Optional[Binding]:
        """What top-level ``name`` means in project module ``path``, following imports,
        re-exports and star imports to the defining file."""
        if _depth > 12:
            return None
        if _depth == 0:
            key = (path, name)
            if key not in self._lookups:
                self._lookups[key] = self.lookup(path, name, 1)
            return self._lookups[key]
        facts = self.facts(path)
        if name in facts.definitions:
            return Binding("def", path, name)
        if name in facts.imports:
            kind, target = facts.imports[name]
            if kind == "module":
                return Binding("module", target) if self.contains(str(target)) else Binding("external", name=str(target))
            base, attr = target  # type: ignore[misc]
            if self.contains(str(base)):
                inner = self.lookup(str(base), attr, _depth + 1)
                if inner is not None:
                    return inner
                sub = self.submodule(str(base), attr)
                return Binding("module", sub) if sub else None
            return Binding("external", name=f"{str(base).lstrip('.')}.{attr}")
        if name in facts.constants:
            return Binding("constant", path, name)
        for star in facts.star_imports:
            if name.startswith("_"):
                break
            inner = self.lookup(star, name, _depth + 1)
            if inner is not None and inner.kind != "module":
                return inner
        if os.path.basename(path) == "__init__.py":
            sub = self.submodule(path, name)
            if sub:
                return Binding("module", sub)
        return None

    def lookup_dotted(self, path: str, dotted: str) -> Optional[Binding]:
        """``models.resnet.ResNet`` as read in ``path``."""
        parts = dotted.split(".")
        binding = self.lookup(path, parts[0])
        for part in parts[1:]:
            if binding is None:
                return None
            if binding.kind == "external":
                binding = Binding("external", name=f"{binding.name}.{part}")
            elif binding.kind == "module":
                binding = self.lookup(str(binding.path), part)
            else:
                return None
        return binding

    def definition(self, binding: Optional[Binding]) -> Optional[Definition]:
        if binding is None or binding.kind != "def":
            return None
        return self.facts(str(binding.path)).definitions.get(str(binding.name))

    def option_files(self) -> List[str]:
        """Project files that declare command-line options (argparse)."""
        if not hasattr(self, "_option_files"):
            self._option_files = [p for p in self.files if b"add_argument" in (self.raw(p) or b"")
                                  and self.facts(p).options]
        return self._option_files

    def command_lines(self) -> List[CommandLine]:
        """The command lines the project's text files document for its scripts, in file
        then line order (read on first use)."""
        if not hasattr(self, "_command_lines"):
            self._command_lines = find_command_lines(self.root, self.docs, self.files, self.raw)
        return list(self._command_lines)

    def config_files(self) -> List[str]:
        """Project files that may write a configuration object at module level
        (``_C.MODEL.DEPTH = 50``; bnlint.model.facts.ConfigTree)."""
        if not hasattr(self, "_config_files"):
            self._config_files = [p for p in self.files if _CONFIG_LINE.search(self.raw(p) or b"")
                                  and self.facts(p).config_trees]
        return self._config_files

    # -- what files imply about inputs

    def size_hint(self, paths: Sequence[str]) -> Optional[int]:
        """The most common input size the given files imply, else the project's."""
        for group in (paths, self.files):
            counts: Counter = Counter()
            for p in group:
                counts.update(self.size_hints_of(p))
            if counts:
                best = max(counts.values())
                return min(size for size, n in counts.items() if n == best)
        return None

    def size_hints_of(self, path: str) -> Tuple[int, ...]:
        """``facts(path).size_hints``, without the rest of the facts when they are not
        known yet: only a file whose text may imply a size is parsed (``may_imply_size``),
        and then only for its hints. The project-wide size, the fallback of every plan,
        would otherwise compute every file's facts (seconds per thousand files)."""
        path = os.path.abspath(path)
        if path in self._hints:
            return self._hints[path]
        st, known = self._known_facts(path)
        if known is not None:
            return known.size_hints
        if self.index is not None:
            hints = self.index.lookup(path, st, "project-size-hints")
            if isinstance(hints, tuple):
                return hints
        raw = self.raw(path)
        hints: Tuple[int, ...] = ()
        if raw is not None and may_imply_size(raw):
            try:
                hints = size_hints(parse_for_facts(raw, path)[0])
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                hints = ()  # as module_facts: a file that does not parse implies nothing
        if self.index is not None and st is not None:
            self.index.store(path, st, hints, "project-size-hints")
        self._hints[path] = hints
        return hints
