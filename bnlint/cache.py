"""Results cache (``.bnlint_cache/``): findings keyed by content, version and config.

A model file's entry is keyed by its bytes, bnlint's version, the effective config,
the enabled rules, the Python and torch-free environment it ran in, and the bytes of
the local modules it imports (followed transitively); the script rules' entry by all
the scripts they saw together (they follow helpers across files). A hit means no
worker starts, so an unchanged repository is checked without importing torch.
Entries are pickles of frozen findings written atomically; anything unreadable is a
miss. Used by ``bnlint check`` only (``--no-cache`` turns it off).
"""
from __future__ import annotations

import ast
import hashlib
import os
import pickle
import stat
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from bnlint import __version__
from bnlint.atomic import write_bytes_atomic
from bnlint.findings import Finding

__all__ = ["ResultCache", "FileIndex", "direct_imports"]

_FORMAT = b"bnlint-cache-1"
RACY_NS = 2_000_000_000


def direct_imports(path: str, tree: ast.Module) -> List[str]:
    """Local ``.py`` files ``path`` imports itself (same folder or package)."""
    here = os.path.abspath(path)
    folder = os.path.dirname(here)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names.append((base, node.level))
            names += [(f"{base}.{a.name}" if base else a.name, node.level) for a in node.names]
    out: List[str] = []
    for name, level in names:
        start = folder
        for _ in range(max(level - 1, 0)):
            start = os.path.dirname(start)
        rel = name.replace(".", os.sep)
        for candidate in (os.path.join(start, rel + ".py"), os.path.join(start, rel, "__init__.py")):
            candidate = os.path.abspath(candidate)
            if candidate != here and candidate not in out and os.path.isfile(candidate):
                out.append(candidate)
    return sorted(out)


def _closure(path: str, direct: Sequence[str], imports_of, limit: int = 200) -> List[str]:
    seen: List[str] = []
    stack = list(direct)
    while stack and len(seen) < limit:
        dep = stack.pop()
        if dep == path or dep in seen:
            continue
        seen.append(dep)
        stack.extend(imports_of(dep))
    return sorted(seen)


def stat_signature(st: os.stat_result) -> Tuple[int, int, int, int]:
    """Changes whenever the file's content may have: any write updates mtime and ctime."""
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class FileIndex:
    """Facts about files (digest, imports, what the check needs) keyed by path and stat
    signature, in one pickle: an unchanged repository is checked without reading or
    parsing its files."""

    def __init__(self, path: str):
        self.path = path
        self.entries: Dict[str, Tuple[Tuple[int, int, int, int], Dict]] = {}
        self.dirty = False
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            if data.startswith(_FORMAT):
                loaded = pickle.loads(data[len(_FORMAT):])
                if isinstance(loaded, dict):
                    self.entries = loaded
        except Exception:  # missing, unreadable or corrupt: start afresh
            self.entries = {}

    def lookup(self, path: str, st: Optional[os.stat_result], field: str = "facts"):
        if st is None:
            return None
        entry = self.entries.get(path)
        if entry is None or entry[0] != stat_signature(st):
            return None
        return entry[1].get(field)

    def store(self, path: str, st: os.stat_result, value, field: str = "facts") -> None:
        # A file written in the last seconds may be written again within the clock's
        # granularity without its signature changing: such a file is not indexed yet.
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS:
            return
        sig = stat_signature(st)
        entry = self.entries.get(path)
        if entry is None or entry[0] != sig:
            entry = (sig, {})
            self.entries[path] = entry
        entry[1][field] = value
        self.dirty = True

    def dependency(self, path: str) -> Tuple[str, List[str]]:
        """(digest, direct local imports) of a module some model file imports."""
        try:
            st = os.stat(path)
        except OSError:
            return "missing", []
        known = self.lookup(path, st, "dep")
        if known is not None:
            return known
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError:
            return "unreadable", []
        try:
            imports = direct_imports(path, ast.parse(raw))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            imports = []
        value = (hashlib.sha256(raw).hexdigest(), imports)
        self.store(path, st, value, "dep")
        return value

    def closure(self, path: str, direct: Sequence[str]) -> List[Tuple[str, str]]:
        """(path, digest) of every local module ``path`` imports, transitively."""
        deps = _closure(os.path.abspath(path), direct, lambda dep: self.dependency(dep)[1])
        return [(dep, self.dependency(dep)[0]) for dep in deps]

    def save(self) -> None:
        if not self.dirty:
            return
        live = {p: e for p, e in self.entries.items() if os.path.exists(p)} if len(self.entries) > 50000 else self.entries
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_bytes_atomic(self.path, _FORMAT + pickle.dumps(live, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            pass
        self.dirty = False


def _own_code_digest() -> str:
    """bnlint's own source (package and rules): an edited checkout never reuses results."""
    import bnlint
    import bnlint.rules

    h = hashlib.sha256()
    for folder in sorted({os.path.dirname(bnlint.__file__), *bnlint.rules.__path__}):
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".py"):
                    try:
                        with open(os.path.join(root, name), "rb") as fh:
                            h.update(name.encode() + fh.read())
                    except OSError:
                        pass
    return h.hexdigest()


def _libraries() -> str:
    """The installed packages, as the modification times of the folders on sys.path:
    installing, upgrading or removing any package (torch, torchvision, timm, a model's
    dependency) changes its folder's entries. Cheap: no metadata is read."""
    out = []
    for entry in sys.path:
        try:
            st = os.stat(entry or ".")
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and ("site-packages" in entry or "dist-packages" in entry):
            out.append(f"{entry}@{st.st_mtime_ns}")
    return ",".join(out)


class ResultCache:
    def __init__(self, folder: str, fingerprint: str):
        self.folder = folder
        self.fingerprint = fingerprint  # version + config + rules

    @classmethod
    def for_run(cls, folder: str, config_repr: str, rule_codes: Iterable[str]) -> "ResultCache":
        env = "|".join([
            __version__, sys.version, sys.executable, config_repr, ",".join(sorted(rule_codes)),
            _own_code_digest(), _libraries(), os.environ.get("PYTHONPATH", ""),
            os.environ.get("BNLINT_MEMORY_LIMIT", ""),
        ])
        return cls(folder, hashlib.sha256(env.encode()).hexdigest())

    def key(self, kind: str, parts: Sequence[bytes]) -> str:
        h = hashlib.sha256(self.fingerprint.encode() + kind.encode())
        for part in parts:
            h.update(hashlib.sha256(part).digest())
        return h.hexdigest()

    def file_index(self) -> FileIndex:
        """The stat-keyed facts of this configuration's files (one per fingerprint)."""
        if getattr(self, "_index", None) is None:
            self._index = FileIndex(os.path.join(self.folder, "files-" + self.fingerprint[:16] + ".pickle"))
        return self._index

    def _path(self, key: str) -> str:
        return os.path.join(self.folder, key[:2], key[2:] + ".pickle")

    def get(self, key: str) -> Optional[List[Finding]]:
        try:
            with open(self._path(key), "rb") as fh:
                data = fh.read()
        except OSError:
            return None
        if not data.startswith(_FORMAT):
            return None
        try:
            value = pickle.loads(data[len(_FORMAT):])
        except Exception:  # a corrupt or foreign entry is a miss
            return None
        return value if isinstance(value, list) and all(isinstance(f, Finding) for f in value) else None

    def put(self, key: str, findings: Sequence[Finding]) -> None:
        path = self._path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not os.path.exists(os.path.join(self.folder, ".gitignore")):
                write_bytes_atomic(os.path.join(self.folder, ".gitignore"), b"*\n")
            write_bytes_atomic(path, _FORMAT + pickle.dumps(list(findings)))
        except OSError:
            pass  # a read-only checkout just runs without a cache
