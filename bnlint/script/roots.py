"""Where the script walk starts: entry points, and which functions need a walk of their
own because not every use of them is a call the walk follows.

A function or method of the scanned files is walked *with context* wherever the walk
resolves a call to it (``bnlint.script.resolve``): its parameters hold the caller's
values and its loops sit inside the caller's loops. It is also walked as a *root*
(parameters unknown, no enclosing loops) unless every use of it is such a call:

- it is decorated (``@click.command()``, ``@app.command()``, ``@hydra.main(...)``,
  ``@ray.remote``: a framework calls it), except by decorators that only wrap it
  (``torch.no_grad()``, ``functools.wraps``, ``staticmethod``, ...);
- its name is used as a value: ``mp.spawn(train, ...)``, ``Process(target=train)``,
  ``executor.submit(train, cfg)``, ``fire.Fire(main)``, ``callbacks=[on_epoch]``,
  a dict of commands;
- one of its calls was not followed (too deep, recursive, on a receiver the walk
  cannot see), or nothing calls it at all (Lightning hooks, ``__main__``-less
  library entry points).

Uses are looked up by *resolved name*: a ``train`` defined in another script, or a
``model.train()`` call, is not a use of ``train.py``'s ``train`` unless it resolves to it.
Only files that import a function's module (or the module itself) can name it, so the
decision depends on the project, never on which files were given to ``bnlint check``.
Methods are looked up on receivers the walk cannot always see, so any ``.name`` in the
files around the class counts as a use.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Set, Tuple

import libcst as cst

from bnlint.script.names import dotted, last_part
from bnlint.script.project import ClassInfo, FileInfo, iter_nodes

__all__ = ["Candidate", "candidates", "is_entry_decorated", "Uses", "TRANSPARENT_DECORATORS"]

# Decorators that return a function calling the original with the same arguments.
TRANSPARENT_DECORATORS = {
    "no_grad", "inference_mode", "enable_grad", "autocast", "wraps", "lru_cache", "cache",
    "staticmethod", "classmethod", "abstractmethod", "override", "record_function",
    "contextmanager", "compile", "jit", "script", "ignore", "unused", "timeit", "profile",
    "master_only", "rank_zero_only", "main_process_only", "on_main_process",
}


class Candidate:
    """A function or method that may need a root walk."""

    __slots__ = ("file", "cls", "fn", "name", "order")

    def __init__(self, file: FileInfo, cls: Optional[ClassInfo], fn: cst.FunctionDef, order: int):
        self.file = file
        self.cls = cls
        self.fn = fn
        self.name = fn.name.value
        self.order = order


def candidates(files: List[FileInfo]) -> List[Candidate]:
    """Module-level functions and methods (but ``__init__``) of the scanned files, in a
    fixed order: by file path, then by place in the file."""
    out: List[Candidate] = []
    for f in sorted(files, key=lambda f: f.abs_path):
        n = 0
        for fn in f.functions.values():
            out.append(Candidate(f, None, fn, n))
            n += 1
        for cls in f.classes.values():
            for name, fn in cls.methods.items():
                if name != "__init__":
                    out.append(Candidate(f, cls, fn, n))
                n += 1
    return out


def is_entry_decorated(fn: cst.FunctionDef) -> bool:
    """Decorated by something that may call it on its own (a CLI, a launcher)."""
    for dec in fn.decorators:
        expr = dec.decorator.func if isinstance(dec.decorator, cst.Call) else dec.decorator
        name = last_part(dotted(expr))
        if name not in TRANSPARENT_DECORATORS and name != "property" and not name.endswith("setter"):
            return True
    return False


class Uses:
    """Every ``Name`` and ``Attribute`` in the scanned files, by identifier: where each
    function or method name occurs, and whether that occurrence is a call's callee."""

    def __init__(self, files: List[FileInfo]) -> None:
        self.by_name: Dict[str, List[Tuple[FileInfo, cst.CSTNode, bool]]] = {}
        wanted: Set[str] = set()
        for f in files:
            wanted.update(f.functions)
            for cls in f.classes.values():
                wanted.update(cls.methods)
        wanted.discard("__init__")
        for f in files:
            self._index(f, wanted)

    def _index(self, file: FileInfo, wanted: Set[str]) -> None:
        skip: Set[int] = set()
        callee: Set[int] = set()
        by_name = self.by_name
        for node in iter_nodes(file.module):
            t = type(node)
            if t is cst.Name:
                if id(node) in skip or node.value not in wanted:
                    continue
                by_name.setdefault(node.value, []).append((file, node, id(node) in callee))
            elif t is cst.Attribute:
                skip.add(id(node.attr))
                if node.attr.value in wanted:
                    by_name.setdefault(node.attr.value, []).append((file, node, id(node) in callee))
            elif t is cst.Call:
                callee.add(id(node.func))
            elif t is cst.FunctionDef or t is cst.ClassDef:
                skip.add(id(node.name))
            elif t is cst.Param:
                skip.add(id(node.name))
            elif t is cst.Arg:
                if node.keyword is not None:
                    skip.add(id(node.keyword))
            elif t is cst.ImportAlias or t is cst.ImportFrom or t is cst.Import:
                skip.update(id(n) for n in iter_nodes(node) if type(n) is cst.Name)

    def of(self, name: str) -> List[Tuple[FileInfo, cst.CSTNode, bool]]:
        return self.by_name.get(name, [])


def uses_of(cand: Candidate, uses: Uses, resolver, around: Set[str]) -> Iterator[Tuple[cst.CSTNode, bool]]:
    """``(node, is_callee)`` for each occurrence that may name ``cand``, in the files whose
    absolute paths are in ``around`` (the files that can name it)."""
    for file, node, is_callee in uses.of(cand.name):
        if file.abs_path not in around:
            continue
        if cand.cls is None:
            if isinstance(node, cst.Attribute) and dotted(node) is None:
                continue  # obj().name: a module-level function is not reached like this
            sym = resolver.resolve(file, node)
            if sym is None or sym.node is not cand.fn:
                continue
        elif isinstance(node, cst.Name):
            continue  # a bare name is not a method
        else:
            sym = resolver.resolve(file, node) if dotted(node) else None
            if sym is not None and sym.node is not cand.fn:
                continue  # resolves to something else (another class's method, a function)
        yield node, is_callee
