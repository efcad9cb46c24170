"""Worker processes for model files: a child of the fork server, else ``python -m``.

``run_worker`` writes the request, starts ``module.main([REQUEST, RESULT])`` in a
child of the shared fork server (torch already imported) or, where fork is not
available, in a fresh interpreter, waits with the file's timeout (counted from when
the worker starts importing the user's file, not from torch's import), kills the
child's whole process group when it runs past it, and says why a worker gave no
answer (timed out, killed by a signal, exited with a status). torch is never
imported here.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Sequence, Tuple

from bnlint import atomic
from bnlint.model import forkserver

__all__ = ["run_worker", "start_workers_early", "USER_CODE_STEP", "STARTUP_LIMIT"]


def _worker_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def start_workers_early() -> None:
    """Start the fork server now, so that its import of torch (seconds) runs while the
    caller still reads, parses and checks files; the first model file then finds it
    ready, or nearly. Nothing happens where there is no fork server."""
    if forkserver.available():
        try:
            forkserver.POOL.acquire(_worker_env(), STARTUP_LIMIT)
        except OSError:
            pass  # the first worker falls back to a process of its own


def run_worker(request: Dict[str, Any], timeout: float, module: str = "bnlint.model.worker") -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """Run ``module.main([REQUEST, RESULT])`` in a worker process (a child of a fork
    server, else ``python -m module``); returns (result, None) or (None, why it failed)."""
    with tempfile.TemporaryDirectory(prefix="bnlint-") as tmp:
        atomic.track_temp_dir(tmp)  # removed by bnlint fix's signal handler too
        try:
            return _run_in(tmp, request, timeout, module)
        finally:
            atomic.untrack_temp_dir(tmp)


def _run_in(tmp: str, request: Dict[str, Any], timeout: float, module: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``run_worker`` in the temporary folder ``tmp``."""
    req_path = os.path.join(tmp, "request.json")
    res_path = os.path.join(tmp, "result.json")
    progress = os.path.join(tmp, "progress.txt")
    log_path = os.path.join(tmp, "log.txt")
    with open(req_path, "w", encoding="utf-8") as fh:
        json.dump(dict(request, progress=progress), fh)
    env = _worker_env()
    code: Any = _FALLBACK
    if forkserver.available():
        code = _run_forked(env, module, [req_path, res_path], log_path, progress, timeout)
    if code is _FALLBACK:
        code = _run_spawned(env, module, [req_path, res_path], log_path, progress, timeout)
    if code is _TIMED_OUT:
        step = _last_step(progress)
        return None, f"timed out after {timeout:g} s while {step}; raise --timeout or [tool.bnlint] timeout, or exclude the file"
    if os.path.exists(res_path):
        try:
            with open(res_path, encoding="utf-8") as fh:
                return json.load(fh), None
        except ValueError:
            pass
    step = _last_step(progress)
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = f"the analysis process was killed by {name} while {step}"
        if name == "SIGKILL":
            why += " (out of memory?)"
    else:
        why = f"the analysis process exited with status {code} while {step}"
        tail = _log_tail(log_path)
        if tail:
            why += f" ({tail})"
    return None, why


_FALLBACK, _TIMED_OUT = object(), object()


def _run_spawned(env, module: str, argv: Sequence[str], log_path: str, progress: str, timeout: float):
    """A fresh ``python -m module``: its exit code, or _TIMED_OUT (killed)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            start_new_session=True,
        )
        atomic.track_process(proc)

        def poll(delay: float) -> Optional[int]:
            try:
                return proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                return None

        try:
            if _wait(poll, progress, timeout) is None:
                _kill_group(proc.pid)
                proc.wait()
                return _TIMED_OUT
        finally:
            atomic.untrack_process(proc)
    return proc.returncode


class _ForkedChild:
    """A fork server's child, as bnlint.atomic's registry kills processes."""

    def __init__(self, pid: int):
        self.pid = pid

    def kill(self) -> None:
        _kill_group(self.pid)


def _run_forked(env, module: str, argv: Sequence[str], log_path: str, progress: str, timeout: float):
    """A child of the fork server (torch already imported): its exit code, _TIMED_OUT,
    or _FALLBACK when the server itself failed."""
    server = forkserver.POOL.acquire(env, STARTUP_LIMIT)
    try:
        rid, pid = server.start_child(module, argv, log_path)
        child = _ForkedChild(pid)
        atomic.track_process(child)
        try:
            code = _wait(lambda delay: server.wait_child(rid, delay), progress, timeout)
            if code is None:
                child.kill()
                server.wait_child(rid, 60.0)
                code = _TIMED_OUT
        finally:
            atomic.untrack_process(child)
    except forkserver.ServerError:
        forkserver.POOL.discard(server)
        return _FALLBACK
    return code


# The worker imports torch before any user code; that start-up is not the user's
# time, so the timeout starts once the worker says it is importing the user's file.
USER_CODE_STEP = "importing the file's definitions"
STARTUP_LIMIT = 300.0


def _wait(poll, progress: str, timeout: float) -> Optional[int]:
    """Wait for a worker: ``poll(delay)`` returns its exit code or None while it runs.
    None when it ran past its time."""
    started = time.monotonic()
    user_started: Optional[float] = None
    delay = 0.01
    while True:
        code = poll(delay)
        if code is not None:
            return code
        delay = min(delay * 2, 0.25)
        now = time.monotonic()
        if user_started is None:
            if USER_CODE_STEP in _last_steps(progress):
                user_started = now
            elif now - started > max(STARTUP_LIMIT, timeout):
                return None
        elif now - user_started > timeout:
            return None


def _last_steps(progress: str) -> str:
    try:
        with open(progress, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_step(progress: str) -> str:
    try:
        with open(progress, encoding="utf-8") as fh:
            lines = [l.strip() for l in fh if l.strip()]
        return lines[-1] if lines else "starting"
    except OSError:
        return "starting"


def _log_tail(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read()[-2000:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [l.strip() for l in data.splitlines() if l.strip()]
    return lines[-1][:200] if lines else ""
