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
import sys
from typing import Iterable, List, Optional, Sequence

from bnlint import __version__
from bnlint.atomic import write_bytes_atomic
from bnlint.findings import Finding

__all__ = ["ResultCache", "local_imports"]

_FORMAT = b"bnlint-cache-1"


def local_imports(path: str, tree: ast.Module, limit: int = 200) -> List[str]:
    """Local ``.py`` files ``path`` imports (same folder or package), transitively."""
    seen: List[str] = []
    stack = [(os.path.abspath(path), tree)]
    while stack and len(seen) < limit:
        current, module = stack.pop()
        folder = os.path.dirname(current)
        names = []
        for node in ast.walk(module):
            if isinstance(node, ast.Import):
                names += [(a.name, 0) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                names.append((base, node.level))
                names += [(f"{base}.{a.name}" if base else a.name, node.level) for a in node.names]
        for name, level in names:
            start = folder
            for _ in range(max(level - 1, 0)):
                start = os.path.dirname(start)
            rel = name.replace(".", os.sep)
            for candidate in (os.path.join(start, rel + ".py"), os.path.join(start, rel, "__init__.py")):
                candidate = os.path.abspath(candidate)
                if candidate in seen or candidate == os.path.abspath(path) or not os.path.isfile(candidate):
                    continue
                seen.append(candidate)
                try:
                    with open(candidate, "rb") as fh:
                        stack.append((candidate, ast.parse(fh.read())))
                except (OSError, SyntaxError, ValueError):
                    pass
    return sorted(seen)


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
    """Versions of the libraries whose models findings depend on (no import needed)."""
    from importlib import metadata

    out = []
    for dist in ("torch", "torchvision", "timm", "libcst", "networkx"):
        try:
            out.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
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
