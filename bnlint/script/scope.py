"""The script rules for files on disk, analysed with the project they live in.

``check_in_project`` groups the checked files by project root
(``bnlint.script.layout``), analyses each file's *context* (the files importing it,
transitively, and everything those import), and returns the findings in the checked
files only. A file's findings are therefore the same whether it is checked alone, with
its folder, or with unrelated scripts beside it.

With a results cache (``bnlint.cache.ResultCache``), each file's findings are stored
under a key made of its path and the contents of its whole context, and the findings
of the whole set under one more key: an unchanged tree is answered from one entry, and
a pre-commit run on one changed file parses only that file's context. Nothing here
imports libcst until something must be parsed.
"""
from __future__ import annotations

import contextlib
import gc
import os
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set

from bnlint import lifetime
from bnlint.findings import Finding
from bnlint.script.known import SCRIPT_HINT, may_matter
from bnlint.script.layout import Layout, find_project_root

__all__ = ["CheckedFile", "check_in_project", "PER_FILE_LOOKUPS"]

# Above this many checked files, only the key of the whole set is looked up.
PER_FILE_LOOKUPS = 64


@dataclass(frozen=True)
class CheckedFile:
    """A file named for checking: ``path`` as shown, ``read()`` its ``SourceFile``
    (raises ``bnlint.sources.SourceError``), ``notebook`` when it is a notebook's code.

    ``in_memory``: ``read()`` gives text that is not (yet) on disk at ``abs_path``, e.g.
    a fixed version of the file before it is written; it is analysed in place of the
    file, with the file's project around it (nothing is cached for it)."""

    path: str
    abs_path: str
    read: Callable
    notebook: bool = False
    in_memory: bool = False


def check_in_project(files: Sequence[CheckedFile], rules, *, cache=None, index=None,
                     on_error: Optional[Callable[[CheckedFile, Exception], None]] = None,
                     plan_fixes: bool = True, parsed: Optional[Set[str]] = None) -> List[Finding]:
    """``plan_fixes``: fixes get their edits (else only whether a fix exists and what
    it does: ``bnlint.script.analysis.ScriptContext``). ``parsed``: gets the absolute
    paths of the checked files that were parsed here (so they are valid Python)."""
    rules = [r for r in rules if r.check is not None]
    if not rules or not files:
        return []
    groups: Dict[tuple, List[CheckedFile]] = {}
    roots: Dict[str, object] = {}
    for f in files:
        root = find_project_root(f.abs_path, roots)
        key = (root, False) if root is not None else (_package_base(f.abs_path), True)
        groups.setdefault(key, []).append(f)
    out: List[Finding] = []
    for key in sorted(groups):
        out.extend(_check_group(key, groups[key], rules, cache, index, on_error, plan_fixes, parsed))
    return sorted(out, key=Finding.sort_key)


def _package_base(path: str) -> str:
    """The folder above ``path``'s top-level package (its own folder for a script)."""
    folder = os.path.dirname(path)
    while os.path.isfile(os.path.join(folder, "__init__.py")) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def _check_group(key, group, rules, cache, index, on_error, plan_fixes, parsed=None) -> List[Finding]:
    root, shallow = key
    from bnlint.sources import SourceError

    sources: Dict[str, object] = {}
    overrides = {}
    given: List[CheckedFile] = []
    for f in group:
        if f.notebook or f.in_memory:  # its text exists only as read: read it now
            try:
                sources[f.abs_path] = f.read()
            except SourceError as exc:
                if on_error is not None:
                    on_error(f, exc)
                continue
            overrides[f.abs_path] = sources[f.abs_path].text
        given.append(f)
    layout = Layout(root, index=index, hint=may_matter, overrides=overrides, shallow=shallow)
    paths = [f.abs_path for f in given]

    # Findings with planned fixes and findings whose fixes have no edits are kept apart.
    kinds = ("script-file", "script-set") if plan_fixes else ("script-file-unplanned", "script-set-unplanned")

    def file_key(f: CheckedFile) -> str:
        return cache.key(kinds[0], [f.path.encode(), f.abs_path.encode(), layout.context_key(f.abs_path).encode()])

    combined = None
    found: List[Finding] = []
    missed = given
    if any(f.in_memory for f in given):
        cache = None
    if cache is not None:
        parts = [p for f in given for p in (f.path.encode(), f.abs_path.encode())]
        parts += [(layout.rel(p) + "\0" + layout.digest(p)).encode() for p in layout.context(paths)]
        combined = cache.key(kinds[1], parts)
        hit = cache.get(combined)
        if hit is not None:
            return hit
        if len(given) <= PER_FILE_LOOKUPS:
            missed = []
            for f in given:
                cached = cache.get(file_key(f))
                if cached is None:
                    missed.append(f)
                else:
                    found.extend(cached)
    if missed:
        fresh = _analyse(layout, missed, sources, rules, on_error, plan_fixes, parsed)
        found.extend(fresh)
        if cache is not None:
            by_path: Dict[str, List[Finding]] = {f.path: [] for f in missed}
            for finding in fresh:
                by_path.setdefault(finding.path, []).append(finding)
            for f in missed:
                cache.put(file_key(f), by_path[f.path])
    found.sort(key=Finding.sort_key)
    if combined is not None:
        cache.put(combined, found)
    return found


_COLLECTIONS = threading.Lock()
_RARE: List[tuple] = []  # thresholds to restore, one entry per analysis running


@contextlib.contextmanager
def _rare_collections():
    """Parsing allocates millions of objects that all live until the rules have run;
    the cyclic garbage collector would scan them again and again (about 15% of the
    analysis). Meanwhile it runs rarely; the thresholds come back afterwards."""
    with _COLLECTIONS:
        if not _RARE:
            old = gc.get_threshold()
            gc.set_threshold(max(old[0], 100_000), max(old[1], 50), max(old[2], 1000))
            _RARE.append(old)
        else:
            _RARE.append(_RARE[-1])
    try:
        yield
    finally:
        with _COLLECTIONS:
            old = _RARE.pop()
            if not _RARE:
                gc.set_threshold(*old)


def _analyse(layout: Layout, missed: Sequence[CheckedFile], sources: Dict, rules, on_error,
             plan_fixes: bool = True, parsed: Optional[Set[str]] = None) -> List[Finding]:
    with _rare_collections():
        return _analyse_files(layout, missed, sources, rules, on_error, plan_fixes, parsed)


def _analyse_files(layout: Layout, missed: Sequence[CheckedFile], sources: Dict, rules, on_error,
                   plan_fixes: bool, parsed: Optional[Set[str]] = None) -> List[Finding]:
    from bnlint.sources import SourceError, read_source

    by_abs = {f.abs_path: f for f in missed}
    shown: Dict[str, str] = {}  # abs path -> path shown, for the checked files with hints
    for f in missed:
        if f.abs_path not in sources:
            try:
                sources[f.abs_path] = f.read()
            except SourceError as exc:
                if on_error is not None:
                    on_error(f, exc)
                continue
        if SCRIPT_HINT.search(sources[f.abs_path].text):
            shown[f.abs_path] = f.path
    if not shown:
        return []
    from bnlint.script.analysis import analyse, findings_of, parse_file  # libcst: only when needed
    from bnlint.script.project import Project

    def load(abs_path: str, scanned: bool = False):
        src = sources.get(abs_path)
        if src is None:
            try:
                src = read_source(abs_path)
            except SourceError:
                return None
        path = by_abs[abs_path].path if abs_path in by_abs else abs_path
        return parse_file(path, src.text, layout.module_name(abs_path), abs_path, scanned)

    files = []
    for abs_path in layout.context(list(by_abs)):
        if not layout.hinted(abs_path) and abs_path not in shown:
            continue
        info = load(abs_path, True)
        if info is not None:
            files.append(info)
            if parsed is not None and abs_path in by_abs:
                parsed.add(abs_path)
    project = Project(files, layout, load)
    wanted = set(shown.values())
    found = findings_of(analyse(project, plan_fixes), rules, wanted.__contains__)
    lifetime.hold(project)  # the program exits without freeing it
    return found
