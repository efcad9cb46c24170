"""CLI side of model analysis: run a worker per model file (with a timeout), turn its
answer into fact graphs, run the graph rules and place the findings on source lines.

torch is never imported here; the worker does that.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from bnlint import atomic
from bnlint.model import forkserver
from bnlint.config import Config
from bnlint.findings import Finding, Severity
from bnlint.rule import Hit, Rule
from bnlint.model.sites import library_module_name
from bnlint.model.targets import TargetSpec

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["ModelJob", "ModelCheckResult", "check_model_files", "graph_from_json", "run_worker",
           "start_workers_early"]


@dataclass
class ModelJob:
    path: str  # as shown to the user
    abs_path: str
    explicit: List[TargetSpec] = field(default_factory=list)
    candidates: List[str] = field(default_factory=list)
    # What to build, planned from the project (bnlint.model.plan.FilePlan.to_request()).
    plan: Optional[Dict[str, Any]] = None
    project_root: Optional[str] = None

    def targets_key(self) -> Tuple[Any, ...]:
        """What decides the worker's answer besides the files' bytes (results cache)."""
        return (tuple(self.explicit), json.dumps(self.plan, sort_keys=True) if self.plan else None)

    def other_files(self) -> List[str]:
        """Project files the plan builds from besides this one: foreign targets and the
        classes passed as arguments."""
        out = set()
        for t in (self.plan or {}).get("targets", []):
            out.add(os.path.abspath(t["path"]))
            stack = list(t.get("args", [])) + list((t.get("kwargs") or {}).values())
            while stack:
                v = stack.pop()
                if isinstance(v, dict):
                    if "__ref__" in v:
                        out.add(os.path.abspath(v["__ref__"][0]))
                    else:
                        stack.extend(v.values())
                elif isinstance(v, list):
                    stack.extend(v)
        out.discard(self.abs_path)
        return sorted(out)


@dataclass
class ModelCheckResult:
    findings: List[Finding] = field(default_factory=list)
    fatal: bool = False
    # Findings of each job that was analysed (worker answered, file imported): cacheable.
    by_job: Dict[str, List[Finding]] = field(default_factory=dict)


def _failure(path: str, message: str, line: Optional[int] = None, severity: Severity = Severity.ERROR, **details) -> Finding:
    details = {k: v for k, v in details.items() if v is not None}
    return Finding(code="BNL001", name="analysis-failed", severity=severity, path=path,
                   line=line or 1, column=1, message=message, details=tuple(sorted(details.items())))


# The reason a model was not analysed, by the stage that failed (details ``not_analysed``).
_STAGE_REASONS = {"build": "build-failed", "forward": "forward-failed", "inputs": "no-input-shape",
                  "lookup": "build-failed", "trace": "build-failed", "analyse": "build-failed"}


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


def graph_from_json(data: Dict[str, Any]) -> nx.DiGraph:
    import networkx as nx

    g = nx.DiGraph()
    for node in data.get("nodes", []):
        attrs = dict(node)
        nid = attrs.pop("id")
        g.add_node(nid, **attrs)
    g.add_edges_from((u, v) for u, v in data.get("edges", []))
    return g


# ---------------------------------------------------------------- locations

def _display_path(file: str, job: ModelJob, shown: Optional[Dict[str, str]] = None) -> str:
    """``shown``: display paths of the files being checked, so that a finding one
    file's model places in another checked file is shown under that file's path."""
    full = os.path.abspath(file)
    if full == job.abs_path:
        return job.path
    if shown and full in shown:
        return shown[full]
    rel = os.path.relpath(file)
    return rel if not rel.startswith("..") else file


def _is_library(file: str) -> bool:
    return "site-packages" in file or "dist-packages" in file or file.startswith("<")


_LINE_CACHE: Dict[str, List[str]] = {}


def _line_text(file: str, line: int) -> str:
    if file not in _LINE_CACHE:
        try:
            if file.endswith(".ipynb"):  # a notebook: lines of its code cells' Python
                from bnlint.notebook import notebook_python

                with open(file, "rb") as fh:
                    _LINE_CACHE[file] = notebook_python(fh.read(), file).text.splitlines()
            else:
                with open(file, encoding="utf-8", errors="replace") as fh:
                    _LINE_CACHE[file] = fh.read().splitlines()
        except (OSError, ValueError):
            _LINE_CACHE[file] = []
    lines = _LINE_CACHE[file]
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _call_column(file: str, line: int, facts: Dict[str, Any]) -> int:
    """Column (1-based) of the call on ``line``: ``self.drop(`` or ``F.dropout(``."""
    text = _line_text(file, line)
    if facts.get("op") == "call_module":
        name = str(facts.get("module_path", "")).rsplit(".", 1)[-1]
        m = re.search(r"[\w.]*\b" + re.escape(name) + r"\s*\(", text) if name and not name.isdigit() else None
    else:
        m = re.search(r"[\w.]*\b" + re.escape(str(facts.get("target", ""))) + r"\s*\(", text)
    if m:
        return m.start() + 1
    stripped = len(text) - len(text.lstrip())
    return stripped + 1


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    column: int
    library: Optional[str] = None  # library module the offending code lives in
    definition_line: Optional[int] = None
    library_site: Optional[str] = None  # "file:line" of the offending code inside the library
    library_how: str = "built"  # how the reported line reaches it: "built", "called", "used"


def _user_handle(facts: Dict[str, Any]) -> Tuple[Optional[Dict[str, Any]], str]:
    """The user's line for code that runs inside an installed library, and how that
    line reaches it ("built" or "called"): the line that built the module (for a module
    call, that module; for a function call made by a library's forward, the module whose
    forward made it), else the innermost user frame of the call (a library helper called
    from the user's own forward)."""
    built, called = ("user_defn", "built"), ("user_call", "called")
    if facts.get("op") == "call_module":
        order = (built, called)
    elif facts.get("scope_installed"):
        order = (("scope_user_defn", "built"), called)
    else:
        order = (called, ("scope_user_defn", "built"))
    for key, how in order:
        if facts.get(key):
            return facts[key], how
    return None, "built"


def locate(facts: Dict[str, Any], default: Optional[Dict[str, Any]] = None) -> Optional[Location]:
    """Where a user edits the node: its call in forward, or its definition when an
    ``nn.Sequential`` applies it. Library code points at the user's line that built it
    instead; ``default`` (the model's own definition) when no user line is known."""
    call = facts.get("call")
    defn = facts.get("defn")
    use_defn = facts.get("op") == "call_module" and (facts.get("in_sequential") or not call)
    site = defn if use_defn else call
    if site is None:
        site = defn or call
    if site is None:
        return None
    if _is_library(site["file"]):
        user, how = _user_handle(facts)
        if user is None:
            user, how = default, "used"
        if user is None:
            return None
        return Location(user["file"], user["line"], user.get("col", 0) + 1,
                        library=library_module_name(site["file"]),
                        library_site=f"{site['file']}:{site['line']}", library_how=how)
    if site is defn:
        return Location(site["file"], site["line"], site.get("col", 0) + 1)
    definition_line = defn["line"] if defn and defn["file"] == site["file"] else None
    return Location(site["file"], site["line"], _call_column(site["file"], site["line"], facts),
                    definition_line=definition_line)


def _group_key(loc: Location, code: str) -> Tuple[Any, ...]:
    """Findings with one key are one finding (a block applied N times, or one line
    reached by several models). Library code is told apart by its own line, so two
    library models built on one user line stay two findings."""
    return (loc.file, loc.line, loc.column, code, loc.library_site)


# ---------------------------------------------------------------- results -> findings

def _model_failures(job: ModelJob, model: Dict[str, Any]) -> List[Finding]:
    out = []
    name = model.get("name", "?")
    def_line = model.get("def_line")
    for err in model.get("errors", []):
        dependency = _dependency_failure(job, name, err, def_line)
        if dependency is not None:
            out.append(dependency)
            continue
        stage, msg, line = err.get("stage"), err.get("message", ""), err.get("line") or def_line
        if stage == "build" and err.get("exc_type") == "MemoryError":
            text = (f"cannot build model {name}: constructor raised MemoryError (the analysis runs under a "
                    f"memory limit; raise it with BNLINT_MEMORY_LIMIT=16G, or name smaller arguments with "
                    f"'{job.path}::{name}(arg=value)')")
        elif stage == "build" and err.get("reason") == "needs-arguments":
            text = (f"model {name} was not analysed: built without arguments it raised {msg}; no call in the "
                    f"project passes values bnlint can resolve; name them with '{job.path}::{name}(arg=value)' "
                    f"or in [tool.bnlint] models")
        elif stage == "build":
            text = (f"cannot build model {name}: constructor raised {msg}; fix it, or name working "
                    f"arguments with '{job.path}::{name}(arg=value)'")
        elif stage == "forward":
            tried = err.get("inputs") or ""
            shapes = f" of shape {tried}" if tried.count("(") <= 1 else f" (tried shapes {tried})"
            text = (f"model {name}: its forward raised {msg} on example inputs{shapes}; fix the forward, "
                    f"or define example_inputs() in the file or set input-shape (its other findings may "
                    f"be incomplete)")
        elif stage == "inputs":
            text = f"model {name}: {msg}"
        elif stage == "lookup":
            text = f"model {name}: {msg}"
        else:
            text = f"model {name} could not be analysed: {msg}"
        reason = err.get("reason") or _STAGE_REASONS.get(stage)
        severity = (Severity.INFO if reason == "needs-arguments"
                    else Severity.WARNING if reason in ("needs-package", "needs-download") else Severity.ERROR)
        extra = {"package": err.get("package")}
        out.append(_failure(job.path, text, line, severity=severity, model=name, stage=stage,
                            not_analysed=reason, **extra))
    partial = (
        ("opaque", "could not be traced ({reason}); its submodules were analysed one by one and "
                   "connections between them were not checked"),
        ("concrete", "does not trace symbolically ({reason}); it was analysed by running it on example "
                     "inputs, so only the branches taken for those inputs were checked"),
    )
    for key, what in partial:
        for rec in model.get(key, []):
            module = rec["module"]
            where = f"the forward of {name}" if module == "<root>" else f"submodule {module} of {name}"
            out.append(_failure(job.path, f"{where} " + what.format(reason=rec["reason"]), def_line,
                                severity=Severity.INFO, model=name, module=module))
    for note in model.get("notes", []):
        out.append(_failure(job.path, note, def_line, severity=Severity.INFO, model=name))
    return out


def _model_names(job: ModelJob) -> List[str]:
    if job.plan:
        names = [m[0] for m in job.plan.get("models", [])]
        names += [t["name"] for t in job.plan.get("targets", []) if t.get("kind") == "factory" and not t.get("foreign")]
        return sorted(set(names))
    return list(job.candidates)


def _file_failure(job: ModelJob, err: Dict[str, Any]) -> Finding:
    """The BNL001 for a model file that did not import (the worker's error dict)."""
    msg, line = err.get("message", ""), err.get("line")
    reason = err.get("reason") or ("crashed" if err.get("stage") == "worker" else "import-failed")
    models = list(err.get("models") or _model_names(job))
    details: Dict[str, Any] = {"stage": err.get("stage", "import"), "not_analysed": reason, "models": models}
    what = f" ({', '.join(models)} not analysed)" if models else ""
    severity = Severity.ERROR
    if reason == "needs-package":
        package = err.get("package", "?")
        details["package"] = package
        if not err.get("configured"):
            details["missing_module"] = package  # the cached finding is dropped once it is installed
        text = (f"cannot import {job.path}: it needs package '{package}', which is not installed "
                f"({err.get('what') or msg}); "
                f"install it in the environment bnlint runs in to analyse its models{what}")
        severity = Severity.WARNING
    elif reason == "needs-download":
        text = (f"cannot import {job.path}: importing it needs a download ({err.get('download', msg)}), and "
                f"bnlint never downloads{what}")
        severity = Severity.WARNING
    elif err.get("missing_module"):
        details["missing_module"] = err["missing_module"]
        text = (f"cannot import {job.path}: no module named '{err['missing_module']}'; it is part of the "
                f"project or was excluded from stand-ins (no-mock-imports): make it importable (is a file "
                f"missing, or does a script add a folder to sys.path?), or exclude this file{what}")
    elif err.get("exc_type") == "SystemExit":
        text = (f"importing {job.path} called sys.exit(); bnlint imports model files (definitions only) "
                f"to trace their models: move that call under `if __name__ == \"__main__\":`{what}")
    else:
        text = (f"importing {job.path} raised {msg}; bnlint imports model files (definitions only) to "
                f"trace their models: fix the error or exclude the file{what}")
    return _failure(job.path, text, line, severity=severity, **details)


def _dependency_failure(job: ModelJob, name: str, err: Dict[str, Any], def_line: Optional[int]) -> Optional[Finding]:
    """A model that needs a missing package or a download: a warning, or None for
    other errors."""
    reason = err.get("reason")
    line = err.get("line") or def_line
    if reason == "needs-package":
        package = err.get("package", "?")
        text = (f"model {name} needs package '{package}', which is not installed "
                f"({err.get('what') or err.get('message', '')}); "
                f"install it in the environment bnlint runs in to analyse this model")
        extra = {} if err.get("configured") else {"missing_module": package}  # cache: stale once installed
        return _failure(job.path, text, line, severity=Severity.WARNING, model=name, stage=err.get("stage"),
                        not_analysed=reason, package=package, **extra)
    if reason == "needs-download":
        text = (f"model {name} cannot be built without a download ({err.get('download', '')}), and bnlint "
                f"never downloads; give its factory a pretrained=False / weights=None parameter, or name "
                f"arguments that avoid the download with '{job.path}::{name}(arg=value)'")
        return _failure(job.path, text, line, severity=Severity.WARNING, model=name, stage=err.get("stage"),
                        not_analysed=reason)
    return None


def _note_finding(job: ModelJob, note: Any) -> Finding:
    """An info note of the worker: a string, or a dict with ``message``, ``line`` and
    details."""
    if isinstance(note, str):
        return _failure(job.path, note, None, severity=Severity.INFO)
    details = {k: v for k, v in note.items() if k not in ("message", "line")}
    return _failure(job.path, note.get("message", ""), note.get("line"), severity=Severity.INFO, **details)


def _with_fix(rule: Rule, g: nx.DiGraph, hit: Hit, job: ModelJob, fix_sources: Dict[str, Any]) -> Hit:
    """Attach the planned fix of a graph-rule hit, or say in the message why there is none."""
    if hit.fix is not None or not rule.fixable or hit.node not in g:
        return hit
    from dataclasses import replace

    from bnlint.fix.modelfix import plan_model_fix

    fix, why = plan_model_fix(rule.code, g, hit.node, job.abs_path, fix_sources, hit.related)
    if fix is not None:
        return replace(hit, fix=fix)
    if why:
        return replace(hit, message=f"{hit.message} (no automatic fix: {why})")
    return hit


def _in_library(hit: Hit, loc: Location) -> Hit:
    """A hit inside installed code, reported at the user's line that builds it."""
    from dataclasses import replace

    return replace(hit, fix=None, data=hit.data + (("library", loc.library), ("library_site", loc.library_site)),
                   message=(f"{hit.message} (in {loc.library}, {_HOW[loc.library_how]}; installed code is "
                            f"not fixed automatically)"))


_HOW = {"built": "built on this line", "called": "called on this line", "used": "which this model uses"}


def _graph_findings(job: ModelJob, model: Dict[str, Any], rules: Sequence[Rule],
                    fix_sources: Optional[Dict[str, Any]] = None) -> List[Tuple[Location, Rule, Hit]]:
    g = graph_from_json(model["graph"])
    fix_sources = {} if fix_sources is None else fix_sources
    # The model's own definition: where a finding goes when no better line is known.
    default = {"file": job.abs_path, "line": model.get("def_line") or 1, "col": 0}
    out = []
    for rule in rules:
        try:
            hits = list(rule.check(g))
        except Exception as exc:  # a crashing rule is a diagnostic, never a crashed run
            hits = []
            out.append((Location(job.abs_path, 1, 1), None, Hit(
                message=f"rule {rule.code} crashed on model {model.get('name')}: {type(exc).__name__}: {exc}")))
        for hit in hits:
            loc = locate(g.nodes[hit.node], default) if hit.node in g else None
            if loc is None:
                loc = Location(default["file"], default["line"], 1)
            if loc.library:
                hit = _in_library(hit, loc)
            else:
                hit = _with_fix(rule, g, hit, job, fix_sources)
            out.append((loc, rule, hit))
    return out


def _belongs_elsewhere(file: str, job: ModelJob) -> bool:
    """A planned model's finding located in another file of the project: that file's
    own check reports it (its plan builds the same model), so this one does not."""
    full = os.path.abspath(file)
    if full == job.abs_path or job.plan is None or not job.project_root or _is_library(full):
        return False
    return full.startswith(os.path.abspath(job.project_root) + os.sep)


def _findings_for_job(job: ModelJob, result: Dict[str, Any], rules: Sequence[Rule],
                     shown: Optional[Dict[str, str]] = None) -> List[Finding]:
    findings: List[Finding] = []
    for note in result.get("notes", []):
        findings.append(_note_finding(job, note))
    grouped: Dict[Tuple[Any, ...], List[Tuple[Location, Rule, Hit, str, Dict[str, Any]]]] = {}
    fix_sources: Dict[str, Any] = {}
    latent_rules = [r for r in rules if r.code == LATENT_RULE]
    graph_rules = [r for r in rules if r.code != LATENT_RULE]
    for model in result.get("models", []):
        if model.get("covered_by_parent"):
            continue
        foreign = bool(model.get("foreign"))
        if not foreign:
            findings.extend(_model_failures(job, model))
        if "graph" not in model:
            continue
        how = {k: model[k] for k in ("origin", "call", "input_shape") if model.get(k)}
        graphs = [(model, graph_rules)] + [
            (dict(latent, name=model.get("name")), latent_rules) for latent in model.get("latent", [])]
        for graph_model, graph_rule_set in graphs:
            if not graph_rule_set:
                continue
            for loc, rule, hit in _graph_findings(job, graph_model, graph_rule_set, fix_sources):
                if rule is None:
                    if not foreign:
                        findings.append(_failure(job.path, hit.message))
                    continue
                if (foreign and os.path.abspath(loc.file) != job.abs_path) or _belongs_elsewhere(loc.file, job):
                    continue
                key = _group_key(loc, rule.code)
                grouped.setdefault(key, []).append((loc, rule, hit, model.get("name", "?"), how))
        if how.get("call") and not foreign:
            findings.append(_failure(
                job.path, f"model {model.get('name')} was built as {how['call']}, with the arguments of "
                          f"{how['origin']}", model.get("def_line"), severity=Severity.INFO,
                model=model.get("name"), origin=how["origin"]))
    for items in grouped.values():
        loc, rule, hit, model_name, how = items[0]
        file, line, column = loc.file, loc.line, loc.column
        models = sorted({item[3] for item in items})
        per_model: Dict[str, int] = {}
        for item in items:  # a block used N times in one model; other models repeat it
            per_model[item[3]] = per_model.get(item[3], 0) + 1
        count = max(per_model.values())
        message = hit.message
        if count > 1:
            message += f" [applied {count} times]"
        details = {"model": model_name, "node": hit.node}
        details.update(how)
        if os.path.abspath(file) != job.abs_path:
            details["via"] = job.path  # found through a model of another file
        if len(models) > 1:
            details["models"] = models
        if loc.definition_line:
            details["definition_line"] = loc.definition_line
        details.update(dict(hit.data))
        findings.append(Finding(
            code=rule.code, name=rule.name, severity=hit.severity or rule.severity,
            path=_display_path(file, job, shown), line=line, column=column, message=message,
            fix=hit.fix, details=tuple(sorted(details.items(), key=lambda kv: kv[0])),
        ))
    findings.extend(not_analysed_notes(job, result))
    return findings


def _import_for_findings() -> None:
    try:
        import networkx  # noqa: F401  (graph_from_json, the graph rules)

        import bnlint.fix.modelfix  # noqa: F401  (fix planning: libcst)
    except ImportError:
        pass  # reported where it is used


LATENT_RULE = "BNL104"


def not_analysed_notes(job: ModelJob, result: Optional[Dict[str, Any]]) -> List[Finding]:
    """An info note for every model class of the file that no analysed model built:
    it needs arguments no call site resolves, or nothing that was built contains it.
    (Models whose build failed already have their BNL001.)"""
    plan = job.plan
    if not plan:
        return []
    built, failed = set(), {}
    for m in (result or {}).get("models", []):
        if m.get("foreign"):
            pass
        elif "graph" in m:
            built.add(m.get("name"))
        else:
            errors = m.get("errors") or [{}]
            failed[m.get("name")] = errors[0].get("reason") or _STAGE_REASONS.get(errors[0].get("stage"), "build-failed")
        for file, qualname in m.get("covers", []) if "graph" in m else ():
            if os.path.abspath(file) == job.abs_path:
                built.add(qualname)
    needs = {name: params for name, params in plan.get("needs_arguments", [])}
    expected = {}  # class -> the failed target that should have built it
    for t in plan.get("targets", []):
        if t["name"] in failed or (t.get("foreign") and t["name"] not in built):
            for name in t.get("builds", []):
                expected.setdefault(name, t["name"])
    out = []
    for name, line in plan.get("models", []):
        if name in built or name in failed:
            continue
        if name in expected:
            text = (f"model {name} was not analysed: {expected[name]}, which builds it, could not be "
                    f"analysed")
            reason = failed.get(expected[name], "build-failed")
        elif name in needs:
            params = list(needs[name])
            args = ", ".join(f"{p}=..." for p in params[:3])
            text = (f"model {name} was not analysed: it needs arguments ({', '.join(params)}) and no call in "
                    f"the project passes values bnlint can resolve; name them with "
                    f"'{job.path}::{name}({args})' or in [tool.bnlint] models")
            reason = "needs-arguments"
        else:
            text = (f"model {name} was not analysed: no model built from this project contains it; name it "
                    f"with '{job.path}::{name}(...)' or in [tool.bnlint] models")
            reason = "not-built"
        out.append(_failure(job.path, text, line, severity=Severity.INFO, model=name, not_analysed=reason))
    return out


def check_model_files(jobs: Sequence[ModelJob], config: Config, rules: Sequence[Rule], progress=None,
                      workers: Optional[int] = None, shown: Optional[Dict[str, str]] = None) -> ModelCheckResult:
    """Analyse model files, ``workers`` at a time (default: the number of CPUs).
    ``shown``: display paths of every file being checked, by absolute path."""
    result = ModelCheckResult()

    latent = any(r.code == LATENT_RULE for r in rules)

    def run(job: ModelJob):
        request = {
            "file": job.abs_path,
            "explicit": [t.to_dict() for t in job.explicit],
            "candidates": job.candidates,
            "input_shape": [list(s) for s in config.input_shape] if config.input_shape else None,
            "plan": job.plan if not job.explicit else None,
            "project_root": job.project_root,
            "latent": latent and not job.explicit,
            "mock_imports": list(config.mock_imports),
            "no_mock_imports": list(config.no_mock_imports),
        }
        outcome = job, run_worker(request, config.timeout)
        if progress is not None:  # e.g. bnlint.progress.ProgressLine
            progress(job.path, len(jobs))
        return outcome

    # A plan with nothing to build needs no worker: only its notes.
    idle = [j for j in jobs if j.plan is not None and not j.explicit and not j.plan.get("targets")]
    busy = [j for j in jobs if j not in idle]
    for job in idle:
        notes = not_analysed_notes(job, None)
        result.by_job[job.path] = notes
        result.findings.extend(notes)
    workers = max(1, min(len(busy), workers or os.cpu_count() or 1))
    # What turning answers into findings imports (networkx, libcst for fixes: about a
    # second) is imported while the workers run, not after them.
    imports = threading.Thread(target=_import_for_findings, name="bnlint-imports", daemon=True)
    imports.start()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(run, busy))
    imports.join()
    for job, (answer, why) in outcomes:
        if answer is None:
            reason = "timeout" if why and why.startswith("timed out") else "crashed"
            result.findings.append(_failure(job.path, f"cannot analyse the models of {job.path}: {why}",
                                            stage="worker", not_analysed=reason, models=_model_names(job)))
            continue
        if answer.get("error"):
            failure = _file_failure(job, answer["error"])
            result.findings.append(failure)
            if answer["error"].get("stage") == "worker":
                result.fatal = True  # bnlint's own failure, not the user's code
            if answer["error"].get("stage", "import") == "import":
                # The file's own content decides this one: cacheable (bnlint.cache).
                result.by_job[job.path] = [failure]
            continue
        job_findings = _findings_for_job(job, answer, rules, shown=shown)
        result.by_job[job.path] = job_findings
        result.findings.extend(job_findings)
    return result
