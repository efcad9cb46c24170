"""Run a training script in this process as ``python SCRIPT ARGS`` would.

Same ``sys.argv`` (the script as given, then its arguments), ``sys.path[0]`` (the
script's folder, symlinks resolved), ``__name__ == "__main__"`` and an absolute
``__file__``; its stdout and stderr are left alone. The exit status is the one Python
would give: 0, the ``sys.exit`` code, 1 after an uncaught exception (its traceback
printed as Python prints it, without bnlint's and runpy's frames) and 130 after
Ctrl-C.
"""
from __future__ import annotations

import os
import runpy
import sys
import traceback
from typing import Optional, Sequence

__all__ = ["ScriptError", "check_runnable", "run_script"]

_OWN_FILES = (os.path.abspath(__file__), os.path.abspath(runpy.__file__))


class ScriptError(Exception):
    """The script cannot be started (a usage error, exit code 2)."""


def check_runnable(script: str) -> str:
    """The absolute path to run, or ScriptError saying why it cannot be run."""
    path = os.path.abspath(script)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "__main__.py")):
            raise ScriptError(f"cannot run {script}: a folder needs a __main__.py")
        return path
    if not os.path.exists(path):
        raise ScriptError(f"cannot run {script}: no such file")
    if not os.access(path, os.R_OK):
        raise ScriptError(f"cannot run {script}: permission denied")
    return path


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)  # sys.exit("message"): Python prints it and exits 1
    return 1


def _print_traceback(exc: BaseException) -> None:
    """As Python prints an uncaught exception, starting at the script's own frame."""
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) in _OWN_FILES:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _run_file(path: str) -> None:
    """Execute ``path`` as the ``__main__`` module (``__file__`` absolute, as Python
    3.9+ sets it for a script named on the command line; ``sys.argv[0]`` untouched)."""
    import builtins
    import io
    import types
    from importlib.machinery import SourceFileLoader

    with io.open_code(path) as fh:
        source = fh.read()
    code = compile(source, path, "exec", dont_inherit=True)
    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=path, __cached__=None, __package__=None, __spec__=None,
                           __loader__=SourceFileLoader("__main__", path), __builtins__=builtins)
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        exec(code, module.__dict__)
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def run_script(script: str, args: Sequence[str]) -> int:
    """Run ``script`` with ``args``; returns its exit status. ``sys.argv``,
    ``sys.path[0]`` and ``sys.modules['__main__']`` are restored afterwards."""
    path = check_runnable(script)
    saved_argv, saved_path0 = sys.argv, (sys.path[0] if sys.path else None)
    sys.argv = [script, *args]
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.realpath(path))
    if sys.path:
        sys.path[0] = folder
    else:
        sys.path.insert(0, folder)
    status: Optional[int] = None
    try:
        if os.path.isdir(path):
            runpy.run_path(script, run_name="__main__")  # a folder's __main__.py, as python runs it
        else:
            _run_file(path)
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc)
    except KeyboardInterrupt as exc:
        _print_traceback(exc)
        status = 130
    except BaseException as exc:  # the script's own failure: Python prints it and exits 1
        _print_traceback(exc)
        status = 1
    finally:
        sys.argv = saved_argv
        if saved_path0 is not None and sys.path and sys.path[0] == folder:
            sys.path[0] = saved_path0
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
    return status
