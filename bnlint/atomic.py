"""Atomic file writes: a temporary file in the same folder, fsync, then rename; and a
registry of the temporary files, folders and child processes a run has made, so that
a signal handler (``bnlint.fix.runner.cleanup_on_signals``) can remove them before the
process dies.

The registry's lock makes "create and register" and "stop creating, remove all" atomic
with respect to each other: once ``remove_all_temporaries`` has run, no thread can
create a new temporary file (``create_temp`` raises ``InterruptedError``). The rename
that replaces a file is not delayed or interrupted: a file is either old or new.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
from typing import Any, Set, Tuple

__all__ = ["write_bytes_atomic", "write_text_atomic", "create_temp", "remove_temp", "track_temp_dir",
           "untrack_temp_dir", "track_process", "untrack_process", "remove_all_temporaries", "resume"]

_LOCK = threading.RLock()  # re-entrant: the signal handler runs in the main thread
_FILES: Set[str] = set()
_DIRS: Set[str] = set()
_PROCS: Set[Any] = set()
_STOPPED = False


def _check_running() -> None:
    if _STOPPED:
        raise InterruptedError("bnlint is stopping (signal received)")


def create_temp(prefix: str, suffix: str, folder: str) -> Tuple[int, str]:
    """``tempfile.mkstemp`` in ``folder``, registered for removal on a signal."""
    with _LOCK:
        _check_running()
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        _FILES.add(path)
    return fd, path


def remove_temp(path: str) -> None:
    """Unlink a file made by ``create_temp`` (gone already is fine)."""
    with _LOCK:
        _FILES.discard(path)
        try:
            os.unlink(path)
        except OSError:
            pass


def track_temp_dir(path: str) -> None:
    with _LOCK:
        _check_running()
        _DIRS.add(path)


def untrack_temp_dir(path: str) -> None:
    with _LOCK:
        _DIRS.discard(path)


def track_process(proc: Any) -> None:
    """A ``subprocess.Popen`` to kill when bnlint is stopped by a signal."""
    with _LOCK:
        _PROCS.add(proc)
        if _STOPPED:
            proc.kill()


def untrack_process(proc: Any) -> None:
    with _LOCK:
        _PROCS.discard(proc)


def remove_all_temporaries() -> None:
    """Stop: kill tracked child processes, remove every registered temporary file and
    folder, and refuse new ones until ``resume``."""
    global _STOPPED
    with _LOCK:
        _STOPPED = True
        for proc in list(_PROCS):
            try:
                proc.kill()
            except OSError:
                pass
        for path in list(_FILES):
            remove_temp(path)
        for path in list(_DIRS):
            shutil.rmtree(path, ignore_errors=True)
        _DIRS.clear()


def resume() -> None:
    """Allow temporary files again (after a handled signal, for in-process callers)."""
    global _STOPPED
    with _LOCK:
        _STOPPED = False


def write_bytes_atomic(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    fd, tmp = create_temp(".bnlint-", ".tmp", folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        # A signal handler may have removed tmp by now: then the rename fails and the
        # file keeps its old bytes.
        os.replace(tmp, path)
    except BaseException:
        remove_temp(tmp)
        raise
    with _LOCK:
        _FILES.discard(tmp)


def write_text_atomic(path: str, text: str, encoding: str = "utf-8") -> None:
    write_bytes_atomic(path, text.encode(encoding))
