"""Analysis processes that import torch once: a fork server per CLI worker thread.

Starting Python and importing torch costs about 2 s (5 s for CUDA builds), far more
than tracing a typical model file. So on Linux each model-checking thread of the CLI
keeps one *server* process (``python -m bnlint.forkserver``) that imports torch and
bnlint's analysis modules once, then forks a fresh child for every file. The child is
as isolated as a newly started worker: its own process (and session, so a timeout
kills everything it started), its own memory limit, its own ``sys.modules``; user code
never runs in the server. A child that crashes, segfaults or is killed for running
past its time takes nothing else down, and its exit status is reported exactly as a
plain worker's would be.

Protocol (one JSON object per line): the server says ``{"ready": true}`` once its
imports are done; for each ``{"module": M, "argv": [...], "log": PATH}`` on its stdin
it forks, the child runs ``M.main(argv)``, and the server answers ``{"pid": N}`` at
once and ``{"exit": CODE}`` (negative: killed by that signal) when the child ends.
EOF on stdin ends the server.

The CLI side (:class:`ServerPool`) keys servers by working directory and environment,
so a server is never reused under different settings, and falls back to one plain
subprocess per file where fork is not available (or ``BNLINT_FORKSERVER=0``).
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["ServerPool", "Server", "ServerError", "available", "POOL"]

# What a server imports before forking: the child then starts with them loaded.
# torch._dynamo (2 s, more with triton) is imported by torch itself the first time a
# model initialises weights on the meta device (nn.init.kaiming_normal_ and friends go
# through torch._refs), i.e. for most real models: once per server, not once per file.
PRELOAD = (
    "torch", "torch.nn", "torch.fx", "torch.fx.passes.shape_prop", "torch.overrides", "torch._dynamo",
    "bnlint.worker", "bnlint.loader", "bnlint.trace", "bnlint.graphbuild", "bnlint.concrete",
    "bnlint.sites", "bnlint.fix.equivalence",
)


class ServerError(Exception):
    """The server itself failed (not the child): the caller falls back to a subprocess."""


def available() -> bool:
    if os.environ.get("BNLINT_FORKSERVER", "").strip() in ("0", "no", "off", "false"):
        return False
    return sys.platform.startswith("linux") and hasattr(os, "fork")


# ---------------------------------------------------------------- server side

def _child(request: Dict) -> None:
    """In the forked child: become an independent worker and run the entry point."""
    code = 70
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.stdin = open(os.devnull, encoding="utf-8")
        import importlib

        module = importlib.import_module(request["module"])
        module.main(list(request["argv"]))  # writes its result, then os._exit(0)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the CLI decides; EOF ends the server
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:
            pass  # the child imports (and reports) what it needs
    out = sys.stdout
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        request = json.loads(line)
        out.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        out.write(json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n")
        out.flush()


# ---------------------------------------------------------------- CLI side

class Server:
    """One server process; used by one thread at a time."""

    def __init__(self, env: Dict[str, str], startup_limit: float):
        self.key = _key(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bnlint.forkserver"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        self._buffer = b""
        self._ready = False
        self.startup_limit = startup_limit

    def _read_line(self, timeout: Optional[float]) -> Optional[Dict]:
        """The next message; None when ``timeout`` passed first. ServerError on EOF."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise ServerError("the analysis server stopped")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            raise ServerError(f"the analysis server said {line[:100]!r}") from None

    def wait_ready(self) -> None:
        if self._ready:
            return
        message = self._read_line(self.startup_limit)
        if not message or not message.get("ready"):
            self.close()
            raise ServerError("the analysis server did not start")
        self._ready = True

    def start_child(self, module: str, argv: Sequence[str], log: str) -> int:
        self.wait_ready()
        try:
            self.proc.stdin.write((json.dumps({"module": module, "argv": list(argv), "log": log}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise ServerError("the analysis server stopped") from None
        message = self._read_line(60.0)
        if not message or "pid" not in message:
            raise ServerError("the analysis server did not start a worker")
        return int(message["pid"])

    def wait_child(self, timeout: float) -> Optional[int]:
        """The child's exit code, or None when ``timeout`` passed first."""
        message = self._read_line(timeout)
        if message is None:
            return None
        if "exit" not in message:
            raise ServerError(f"the analysis server said {message!r}")
        return int(message["exit"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        try:
            self.proc.stdout.close()
        except OSError:
            pass


def _key(env: Dict[str, str]) -> Tuple:
    return (os.getcwd(), sys.executable, tuple(sorted(env.items())))


class ServerPool:
    """Idle servers, reused across files (and across runs in one process, e.g. the
    Python API), only under the same working directory and environment."""

    def __init__(self, keep: int = 4):
        self._idle: List[Server] = []
        self._lock = threading.Lock()
        self.keep = keep
        self.started = 0  # servers started by this pool (for tests and benchmarks)

    def acquire(self, env: Dict[str, str], startup_limit: float) -> Server:
        key = _key(env)
        stale: List[Server] = []
        with self._lock:
            found = None
            for server in list(self._idle):
                if server.key == key and server.alive() and found is None:
                    found = server
                    self._idle.remove(server)
                elif server.key != key or not server.alive():
                    self._idle.remove(server)
                    stale.append(server)
            if found is None:
                self.started += 1
        for server in stale:
            server.close()
        return found if found is not None else Server(env, startup_limit)

    def release(self, server: Server) -> None:
        with self._lock:
            if server.alive() and len(self._idle) < self.keep:
                self._idle.append(server)
                return
        server.close()

    def discard(self, server: Server) -> None:
        try:
            os.killpg(server.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        server.close()

    def close_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for server in idle:
            server.close()


POOL = ServerPool(keep=max(2, os.cpu_count() or 1))
atexit.register(POOL.close_all)


if __name__ == "__main__":
    serve()
