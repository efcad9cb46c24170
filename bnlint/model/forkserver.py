"""Analysis processes that import torch once: a fork server.

Starting Python and importing torch costs about 2 s (5 s for CUDA builds), far more
than tracing a typical model file. So on Linux the CLI keeps one *server* process
(``python -m bnlint.model.forkserver``) that imports torch and bnlint's analysis modules
once, then forks a fresh child for every file, as many at once as the CLI has worker
threads (``-j``). The child is as isolated as a newly started worker: its own process
(and session, so a timeout kills everything it started), its own memory limit, its
own ``sys.modules``; user code never runs in the server. A child that crashes,
segfaults or is killed for running past its time takes nothing else down, and its
exit status is reported exactly as a plain worker's would be.

Protocol (one JSON object per line): the server says ``{"ready": true}`` once its
imports are done; for each ``{"id": N, "module": M, "argv": [...], "log": PATH}`` on
its stdin it forks, the child runs ``M.main(argv)``, and the server answers
``{"id": N, "pid": P}`` at once and ``{"id": N, "exit": CODE}`` (negative: killed by
that signal) when the child ends. EOF on stdin ends the server once its children have.

The CLI side (:class:`ServerPool`) keys the server by working directory and
environment, so it is never reused under different settings, and falls back to one
plain subprocess per file where fork is not available (or ``BNLINT_FORKSERVER=0``).
"""
from __future__ import annotations

import atexit
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, Optional, Sequence, Tuple

__all__ = ["ServerPool", "Server", "ServerError", "available", "POOL"]

# What a server imports before forking: the child then starts with them loaded.
PRELOAD = (
    "torch", "torch.nn", "torch.fx", "torch.fx.passes.shape_prop", "torch.overrides",
    "bnlint.model.worker", "bnlint.model.loader", "bnlint.model.trace", "bnlint.model.graphbuild", "bnlint.model.concrete",
    "bnlint.model.sites", "bnlint.model.metainit", "bnlint.fix.equivalence",
)

# What a server imports only once a child has needed it. torch._dynamo (2 s, more with
# triton) is imported by torch itself when a meta tensor runs an operation whose meta
# implementation is a Python reference (torch._refs), e.g. BatchNorm's forward when
# shapes are propagated on meta tensors; weight initialisation on the meta device no
# longer needs it (bnlint.model.metainit). Most model files never import it, and a
# check of one such file should not wait for it; a run that meets one imports it in
# that child, and the server imports it before its next fork.
ON_DEMAND = ("torch._dynamo",)


class ServerError(Exception):
    """The server itself failed (not the child): the caller falls back to a subprocess."""


def available() -> bool:
    if os.environ.get("BNLINT_FORKSERVER", "").strip() in ("0", "no", "off", "false"):
        return False
    return sys.platform.startswith("linux") and hasattr(os, "fork")


# ---------------------------------------------------------------- server side

class _NoteImports:
    """A ``sys.meta_path`` entry of a child: it tells the server (one line on ``fd``)
    when the child imports one of ``names``, and finds nothing itself."""

    def __init__(self, fd: int, names: Sequence[str]):
        self.fd = fd
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.names:
            self.names.discard(fullname)
            try:
                os.write(self.fd, (fullname + "\n").encode())
            except OSError:
                pass
        return None


def _child(request: Dict, notes: Optional[int] = None) -> None:
    """In the forked child: become an independent worker and run the entry point;
    ``notes``: where to say which ON_DEMAND modules it imports."""
    code = 70
    try:
        if notes is not None:
            sys.meta_path.insert(0, _NoteImports(notes, [n for n in ON_DEMAND if n not in sys.modules]))
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

    def send(message: Dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    send({"ready": True, "pid": os.getpid()})
    stdin = sys.stdin.fileno()
    notes_in, notes_out = os.pipe()  # children say here which ON_DEMAND modules they imported
    wanted: set = set()
    noted = b""
    children: Dict[int, int] = {}  # pid -> request id
    buffer, eof = b"", False
    while not eof or children:
        if not eof:
            ready, _, _ = select.select([stdin, notes_in], [], [], 0.01)
            if notes_in in ready:
                noted += os.read(notes_in, 4096)
                while b"\n" in noted:
                    name, noted = noted.split(b"\n", 1)
                    if name.decode() in ON_DEMAND:
                        wanted.add(name.decode())
            if stdin in ready:
                chunk = os.read(stdin, 65536)
                eof = not chunk
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    request = json.loads(line)
                    _import_wanted(wanted)
                    pid = os.fork()
                    if pid == 0:
                        os.close(notes_in)
                        _child(request, notes_out)
                    children[pid] = request["id"]
                    send({"id": request["id"], "pid": pid})
        else:
            time.sleep(0.01)
        while children:  # reap every child that has ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            rid = children.pop(pid, None)
            if rid is not None:
                send({"id": rid, "exit": os.waitstatus_to_exitcode(status)})
    # Leave without tearing the interpreter down: with torch loaded that takes a second
    # or more, and the CLI waits for this process before it exits.
    out.flush()
    os._exit(0)


def _import_wanted(wanted: set) -> None:
    """Import the ON_DEMAND modules a child needed, once, before the next fork."""
    import importlib

    while wanted:
        name = wanted.pop()
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:
            pass  # the child imports (and reports) what it needs


# ---------------------------------------------------------------- CLI side

class Server:
    """One server process, shared by every worker thread: each request gets its own
    child, so files are analysed concurrently while torch is imported once."""

    def __init__(self, env: Dict[str, str], startup_limit: float):
        self.key = _key(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bnlint.model.forkserver"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        self.startup_limit = startup_limit
        self._ready = threading.Event()
        self._dead = False
        self._write = threading.Lock()
        self._queues: Dict[int, "queue.Queue"] = {}
        self._next = 0
        self._reader = threading.Thread(target=self._read, name="bnlint-forkserver", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                break
            if message.get("ready"):
                self._ready.set()
                continue
            q = self._queues.get(message.get("id"))
            if q is not None:
                q.put(message)
        self._dead = True
        self._ready.set()
        for q in list(self._queues.values()):
            q.put(None)  # wakes every waiter: the server is gone

    def start_child(self, module: str, argv: Sequence[str], log: str) -> Tuple[int, int]:
        """(request id, pid) of a new child running ``module.main(argv)``."""
        if not self._ready.wait(self.startup_limit) or self._dead:
            raise ServerError("the analysis server did not start")
        with self._write:
            self._next += 1
            rid = self._next
            self._queues[rid] = queue.Queue()
            try:
                self.proc.stdin.write((json.dumps({"id": rid, "module": module, "argv": list(argv),
                                                   "log": log}) + "\n").encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                raise ServerError("the analysis server stopped") from None
        message = self._get(rid, 60.0)
        if not message or "pid" not in message:
            raise ServerError("the analysis server did not start a worker")
        return rid, int(message["pid"])

    def _get(self, rid: int, timeout: float) -> Optional[Dict]:
        try:
            message = self._queues[rid].get(timeout=timeout)
        except queue.Empty:
            return {}
        if message is None:
            raise ServerError("the analysis server stopped")
        return message

    def wait_child(self, rid: int, timeout: float) -> Optional[int]:
        """The child's exit code, or None when ``timeout`` passed first."""
        message = self._get(rid, timeout)
        if not message:
            return None
        if "exit" not in message:
            raise ServerError(f"the analysis server said {message!r}")
        self._queues.pop(rid, None)
        return int(message["exit"])

    def alive(self) -> bool:
        return not self._dead and self.proc.poll() is None

    def close(self) -> None:
        if not self._ready.is_set():  # still importing torch: it has no children, nothing to wait for
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
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


def _key(env: Dict[str, str]) -> Tuple:
    return (os.getcwd(), sys.executable, tuple(sorted(env.items())))


class ServerPool:
    """The server of the current working directory and environment, started on first
    use and kept for the process (e.g. across Python API calls); a server started under
    other settings is never reused."""

    def __init__(self):
        self._server: Optional[Server] = None
        self._lock = threading.Lock()
        self.started = 0  # servers started by this pool (for tests and benchmarks)

    def acquire(self, env: Dict[str, str], startup_limit: float) -> Server:
        key = _key(env)
        stale = None
        with self._lock:
            if self._server is not None and (self._server.key != key or not self._server.alive()):
                stale, self._server = self._server, None
            if self._server is None:
                self._server = Server(env, startup_limit)
                self.started += 1
            server = self._server
        if stale is not None:
            stale.close()
        return server

    def discard(self, server: Server) -> None:
        with self._lock:
            if self._server is server:
                self._server = None
        try:
            os.killpg(server.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        server.close()

    def close_all(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()


POOL = ServerPool()
atexit.register(POOL.close_all)


if __name__ == "__main__":
    serve()
