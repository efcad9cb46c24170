"""Where things are in the user's source: module construction sites and stack frames.

Runs in the worker. While models are built, every ``nn.Module`` records the line that
constructed it (the element's line inside an ``nn.Sequential(...)`` literal, the
``self.drop = nn.Dropout(p)`` line in ``__init__``, the call in a loop that builds a
block). Files inside torch are skipped; files inside other installed packages are
"library" files, and for those the innermost user frame is kept as well.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import os
import re
import sys
import sysconfig
import weakref
from typing import Dict, Iterator, List, Optional, Tuple

__all__ = ["Site", "is_torch_file", "is_library_file", "library_module_name",
           "recording_construction_sites", "construction_site", "frames_from_stack_trace",
           "call_sites", "forward_is_installed",
           "site_dict"]

Site = Tuple[str, int, int, int, int]  # file, line, col (0-based), end_line, end_col

_TORCH_DIR: Optional[str] = None
_LIB_DIRS: Optional[List[str]] = None


def _torch_dir() -> str:
    global _TORCH_DIR
    if _TORCH_DIR is None:
        import torch

        _TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
    return _TORCH_DIR


def _lib_dirs() -> List[str]:
    global _LIB_DIRS
    if _LIB_DIRS is None:
        paths = sysconfig.get_paths()
        dirs = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
        _LIB_DIRS = sorted(os.path.abspath(d) + os.sep for d in dirs if d)
    return _LIB_DIRS


_BNLINT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # the bnlint package


@functools.lru_cache(maxsize=4096)
def is_torch_file(filename: str) -> bool:
    """Frames to skip when looking for the user's line: torch's and bnlint's own."""
    full = os.path.abspath(filename)
    return full.startswith(_torch_dir()) or full.startswith(_BNLINT_DIR)


@functools.lru_cache(maxsize=4096)
def is_library_file(filename: str) -> bool:
    """Installed code (site-packages, the standard library) or generated code."""
    if not filename or filename.startswith("<"):
        return True
    full = os.path.abspath(filename)
    if "site-packages" in full or "dist-packages" in full:
        return True
    return any(full.startswith(d) for d in _lib_dirs())


def library_module_name(filename: str) -> str:
    """``.../site-packages/torchvision/models/resnet.py`` -> ``torchvision.models.resnet``."""
    full = os.path.abspath(filename)
    for marker in ("site-packages" + os.sep, "dist-packages" + os.sep):
        if marker in full:
            rel = full.split(marker, 1)[1]
            return os.path.splitext(rel)[0].replace(os.sep, ".").removesuffix(".__init__")
    return os.path.splitext(os.path.basename(full))[0]


def _frame_site(frame) -> Site:
    code = frame.f_code
    line = frame.f_lineno
    col, end_line, end_col = 0, line, 0
    if hasattr(code, "co_positions"):
        try:
            pos = next(itertools.islice(code.co_positions(), frame.f_lasti // 2, None))
            if pos[0] is not None:
                line, end_line = pos[0], pos[1] or pos[0]
                col, end_col = pos[2] or 0, pos[3] or 0
        except (StopIteration, ValueError):
            pass
    return (os.path.abspath(code.co_filename), line, col, end_line, end_col)


# module id -> (site, user_site)
_SITES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def construction_site(module) -> Tuple[Optional[Site], Optional[Site]]:
    """(innermost non-torch site, innermost user site) where ``module`` was constructed."""
    return _SITES.get(module, (None, None))


def _record(module) -> None:
    frame = sys._getframe(2)
    site = user = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if is_torch_file(filename):
            frame = frame.f_back
            continue
        # Skip the __init__ (and super().__init__ chain) of the module being built.
        if frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is module:
            frame = frame.f_back
            continue
        if site is None:
            site = _frame_site(frame)
        if not is_library_file(filename):
            user = _frame_site(frame)
            break
        frame = frame.f_back
    _SITES[module] = (site, user)


@contextlib.contextmanager
def recording_construction_sites() -> Iterator[None]:
    """Patch ``nn.Module.__init__`` so each new module remembers where it was built."""
    import torch.nn as nn

    original = nn.Module.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self not in _SITES:
            _record(self)

    nn.Module.__init__ = __init__
    try:
        yield
    finally:
        nn.Module.__init__ = original


def forward_is_installed(module) -> bool:
    """Whether ``module``'s forward is installed code (a library, torch) rather than
    the user's: calls it makes are the library's business, and the user's handle on
    them is the line that built the module."""
    forward = getattr(type(module), "forward", None)
    forward = inspect.unwrap(forward) if forward is not None else None
    code = getattr(forward, "__code__", None)
    if code is None:
        return True
    return is_torch_file(code.co_filename) or is_library_file(code.co_filename)


def call_sites(skip: int = 1) -> Tuple[Optional[Dict[str, int]], Optional[Dict[str, int]]]:
    """(innermost non-torch frame, innermost user frame) of the caller's stack, as
    site dicts with ``col`` 0. Cheap: stops as soon as both are found."""
    frame = sys._getframe(skip + 1)
    call = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if not is_torch_file(filename):
            if call is None:
                call = {"file": os.path.abspath(filename), "line": frame.f_lineno, "col": 0}
                if not is_library_file(filename):
                    return call, dict(call)
            elif not is_library_file(filename):
                # The user's call into a library helper: its exact span (the helper's
                # name is unknown to the graph, so the column cannot be found later).
                return call, site_dict(_frame_site(frame))
        frame = frame.f_back
    return call, None


_FRAME_RE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


def frames_from_stack_trace(stack_trace: Optional[str]) -> List[Tuple[str, int, str]]:
    """fx's recorded stack trace -> [(file, line, function)], outermost first."""
    if not stack_trace:
        return []
    return [(m.group("file"), int(m.group("line")), m.group("func")) for m in _FRAME_RE.finditer(stack_trace)]


def site_dict(site: Optional[Site]) -> Optional[Dict[str, int]]:
    if site is None:
        return None
    file, line, col, end_line, end_col = site
    return {"file": file, "line": line, "col": col, "end_line": end_line, "end_col": end_col}
