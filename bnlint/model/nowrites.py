"""While a model file's definitions are imported, the project's top-level code cannot
write files: the backstop behind the definitions filter's deny list (a helper from
another module that opens a log file, ``logger = get_logger("train.log")``).

Runs inside the worker subprocess only. ``open`` in a writing mode, ``os.open`` with
write flags, and the ``os`` / ``shutil`` calls that create, remove or move files raise
``WriteBlocked`` when the innermost module-level frame on the stack belongs to one of
the project's files being imported; installed packages importing themselves (a cache
folder at import) are left alone. The statement that wrote is then left out of the
import like any statement that raises (bnlint.model.loader).
"""
from __future__ import annotations

import builtins
import contextlib
import io
import os
import shutil
import sys
from typing import Callable, Iterator, List, Tuple

__all__ = ["WriteBlocked", "no_top_level_writes"]


class WriteBlocked(PermissionError):
    """bnlint refused a file write from a model file's top-level code."""

    def __init__(self, what: str):
        super().__init__(f"bnlint blocks file writes while importing definitions: {what}")
        self.what = what


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_OS_CALLS = ("makedirs", "mkdir", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace",
             "symlink", "link", "truncate", "chmod")
_SHUTIL_CALLS = ("rmtree", "copy", "copy2", "copyfile", "copytree", "move", "make_archive")


def _in_project_top_level(is_project_file: Callable[[str], bool]) -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            return is_project_file(os.path.abspath(frame.f_code.co_filename))
        frame = frame.f_back
    return False


@contextlib.contextmanager
def no_top_level_writes(is_project_file: Callable[[str], bool]) -> Iterator[None]:
    """Block writes from the top-level code of files for which ``is_project_file``."""
    saved: List[Tuple[object, str, object]] = []

    def patch(owner, name, make):
        original = getattr(owner, name)
        saved.append((owner, name, original))
        setattr(owner, name, make(original))

    def guarded_open(original):
        def open(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+") and _in_project_top_level(is_project_file):
                raise WriteBlocked(f"open({file!r}, {mode!r})")
            return original(file, mode, *args, **kwargs)
        return open

    def guarded_os_open(original):
        def os_open(path, flags, *args, **kwargs):
            if flags & _WRITE_FLAGS and _in_project_top_level(is_project_file):
                raise WriteBlocked(f"os.open({path!r})")
            return original(path, flags, *args, **kwargs)
        return os_open

    def guarded_call(label):
        def make(original):
            def call(*args, **kwargs):
                if _in_project_top_level(is_project_file):
                    shown = repr(args[0]) if args else ""
                    raise WriteBlocked(f"{label}({shown})")
                return original(*args, **kwargs)
            return call
        return make

    try:
        patch(builtins, "open", guarded_open)
        patch(io, "open", guarded_open)
        patch(os, "open", guarded_os_open)
        for name in _OS_CALLS:
            if hasattr(os, name):
                patch(os, name, guarded_call(f"os.{name}"))
        for name in _SHUTIL_CALLS:
            patch(shutil, name, guarded_call(f"shutil.{name}"))
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)
