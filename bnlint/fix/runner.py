"""``bnlint fix``: apply the fixes of a check run, file by file, after checking them.

For each file: the chosen fixes' edits are applied in one pass (a fix whose edits
overlap an earlier fix's is applied in a further round on the written file), the new
source must parse, and the new source is re-checked from a temporary sibling file:
model files go through a worker subprocess that builds both versions and compares
state_dict keys and eval-mode outputs (``bnlint.fix.equivalence``), and the fixed
findings must be gone with no new problem (a fix whose finding is still reported is
dropped and the others are checked again). Only then is the file replaced,
atomically, in its original encoding, BOM and newline style. A failed check leaves
the file byte-identical. SIGTERM, SIGINT and SIGHUP remove the temporary files first
(``cleanup_on_signals``).
"""
from __future__ import annotations

import codecs
import contextlib
import difflib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from bnlint.config import Config
from bnlint.findings import Finding, FixSafety, Severity
from bnlint.fix.edits import OverlapError, apply_edits, overlapping
from bnlint.fix.kinds import is_model_finding, is_script_finding
from bnlint.rule import Rule, RuleKind
from bnlint.sources import SourceError, SourceFile, read_source

__all__ = ["FileOutcome", "FixRun", "fix_paths", "cleanup_on_signals", "ALLOWED_LEFTOVER"]

# Warnings a fix may reveal, never a reason to refuse it: a moved dropout may still reach
# a later BN through a weight layer (issue #4), or leave a layer's bias feeding a BN
# directly (BNL106; with --unsafe-fixes a later round builds that layer with bias=False).
ALLOWED_LEFTOVER = ("BNL103", "BNL106")
_LEFTOVER_NOTES = {
    "BNL103": ("a {code} warning remains: the moved dropout still reaches a later BatchNorm through a weight "
               "layer (no residual add); see 'bnlint explain {code}'"),
    "BNL106": ("a {code} warning appears: with the dropout moved, a layer's bias feeds a BatchNorm directly "
               "and is cancelled by it; 'bnlint fix --unsafe-fixes' builds that layer with bias=False"),
}

# CPython 3.11's ast module keeps one recursion counter per interpreter: two threads
# building ast trees at once (a garbage-collector finalizer can switch threads midway)
# fail with "SystemError: AST constructor recursion depth mismatch". The fix threads
# (one per file, plus each file's script re-check) parse Python only under this lock.
_AST_LOCK = threading.Lock()


@dataclass
class FileOutcome:
    path: str
    applied: List[Finding] = field(default_factory=list)
    skipped: List[Finding] = field(default_factory=list)
    rejected: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    renamed: List[Tuple[str, str]] = field(default_factory=list)  # every model's, for display
    renamed_by_model: Dict[str, List[Tuple[str, str]]] = field(default_factory=dict)
    diff: str = ""
    revealed: bool = False  # the fix revealed findings with fixes of their own (a later round)


@dataclass
class FixRun:
    files: List[FileOutcome] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)
    fatal: bool = False
    unsafe_available: int = 0

    @property
    def fixed(self) -> int:
        return sum(len(f.applied) for f in self.files if f.rejected is None)

    @property
    def remaining(self) -> int:
        return sum(1 for f in self.findings if f.severity is not Severity.INFO) - self.fixed


def _wanted(finding: Finding, unsafe: bool) -> bool:
    fix = finding.fix
    return fix is not None and bool(fix.edits) and (fix.safety is FixSafety.SAFE or unsafe)


def _encode(src: SourceFile, text: str) -> bytes:
    data = text.encode(src.encoding)
    if src.bom and not data.startswith(codecs.BOM_UTF8):
        data = codecs.BOM_UTF8 + data
    return data


def _run_equivalence(request: Dict[str, Any], timeout: float) -> Tuple[Optional[Dict[str, Any]], str]:
    from bnlint.atomic import track_process, track_temp_dir, untrack_process, untrack_temp_dir

    with tempfile.TemporaryDirectory(prefix="bnlint-fix-") as tmp:
        track_temp_dir(tmp)
        try:
            req, res = os.path.join(tmp, "request.json"), os.path.join(tmp, "result.json")
            with open(req, "w", encoding="utf-8") as fh:
                json.dump(request, fh)
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
            env.setdefault("OMP_NUM_THREADS", "1")
            with subprocess.Popen([sys.executable, "-m", "bnlint.fix.equivalence", req, res],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env=env) as proc:
                track_process(proc)
                try:
                    _, stderr = proc.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
                    return None, f"checking the fixed models timed out after {timeout:g} s"
                finally:
                    untrack_process(proc)
            if not os.path.exists(res):
                tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
                return None, f"the model check exited with status {proc.returncode} ({tail[0][:200]})"
            with open(res, encoding="utf-8") as fh:
                return json.load(fh), ""
        finally:
            untrack_temp_dir(tmp)


def _problems(findings: Sequence[Finding]) -> Counter:
    return Counter(f.code for f in findings if f.severity is not Severity.INFO)


def _subject(f: Finding) -> Tuple[str, str]:
    """What a finding is about, in terms that survive moving the code: its rule and the
    dropout as the message names it (``Dropout(p=0.3) 'drop'``)."""
    head = f.message
    for sep in (" feeds ", " is applied to "):
        head = head.split(sep, 1)[0]
    return f.code, head


def _models(f: Finding) -> set:
    details = dict(f.details)
    return set(details.get("models") or [details.get("model")])


def _still_reported(applied: Finding, after: Sequence[Finding]) -> bool:
    """Whether ``applied``'s finding is reported again after its fix, in one of the
    models it was reported on (one line can be reached by several models)."""
    return any(_subject(a) == _subject(applied) and _models(a) & _models(applied) for a in after)


def _verify(src: SourceFile, abs_path: str, new_text: str, applied: List[Finding],
            before: List[Finding], config: Config, rules: Sequence[Rule], outcome: FileOutcome,
            stuck: Optional[List[Finding]] = None) -> Optional[str]:
    """Why the new source must not be written, or None when every check passes.
    ``stuck`` receives the applied findings that are still reported after the fix."""
    import libcst as cst

    try:
        cst.parse_module(new_text)
        compile(new_text, src.path, "exec", dont_inherit=True)
    except (cst.ParserSyntaxError, SyntaxError, ValueError) as exc:
        return f"the fixed source does not parse ({str(exc).splitlines()[0]})"
    from bnlint.atomic import create_temp, remove_temp
    from bnlint.engine import check_paths

    folder = os.path.dirname(abs_path)
    fd, tmp = create_temp("_bnlint_fix_", ".py", folder)
    side = ThreadPoolExecutor(max_workers=1)  # the re-check runs beside the model comparison
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_encode(src, new_text))
        model_fix = any(is_model_finding(f) for f in applied)
        # The script rules re-check the new source here; graph rules run on the graphs the
        # equivalence worker returns for the fixed file (one process per file).
        script_rules = [r for r in rules if r.kind is RuleKind.SCRIPT]
        recheck = side.submit(_parsing_check, check_paths, [tmp], config, script_rules)
        answer = why = None
        if model_fix:
            promised: Dict[str, set] = {}  # per model: the same path may mean another layer elsewhere
            for f in applied:
                pairs = dict(f.fix.data).get("renames", ())
                if pairs:
                    promised.setdefault(str(dict(f.details).get("model")), set()).update(map(tuple, pairs))
            renames = {model: sorted(pairs) for model, pairs in promised.items()}
            folds = sorted({tuple(r) for f in applied for r in dict(f.fix.data).get("bias_folds", ())})
            shape = [list(s) for s in config.input_shape] if config.input_shape else None
            candidates = _candidates(new_text)
            mocks = {"mock_imports": list(config.mock_imports), "no_mock_imports": list(config.no_mock_imports)}
            planned = _plan_of(abs_path, config)
            request = {
                "original": abs_path, "fixed": tmp, "renames": renames, "bias_folds": folds,
                "candidates": _candidates(src.text), "input_shape": shape, **mocks,
                "analyse": {"explicit": [], "candidates": candidates, "input_shape": shape, **mocks},
            }
            if planned is not None:  # the models bnlint check built, with their arguments
                root, plan = planned
                request.update(plan=plan, project_root=root)
                request["analyse"].update(project_root=root)
            answer, why = _run_equivalence(request, config.timeout * 2)
        after = list(recheck.result().findings)
        if answer is not None and answer.get("analysis") is not None:
            after += _graph_findings_of(_recheck_job(tmp, candidates, abs_path, src.path, planned, new_text),
                                        answer["analysis"], rules, config, src, new_text)
        if answer is not None or why:
            if answer is None:
                return why
            if answer.get("error"):
                return answer["error"]
            for model in answer.get("models", []):
                if not model.get("ok"):
                    return model.get("reason", "the fixed model differs")
                pairs = [(old, new) for old, new in model.get("renamed", [])]
                if pairs:
                    outcome.renamed_by_model[str(model.get("name"))] = pairs
                for pair in pairs:
                    if pair not in outcome.renamed:
                        outcome.renamed.append(pair)
    finally:
        side.shutdown(wait=True)
        remove_temp(tmp)
    if not model_fix:  # graph rules were not re-run: compare script findings only
        before = [f for f in before if is_script_finding(f)]
    old, new, fixed = _problems(before), _problems(after), _problems(applied)
    for code, count in sorted(new.items()):
        allowed = old.get(code, 0) - fixed.get(code, 0)
        if count <= allowed:
            continue
        if code in ALLOWED_LEFTOVER:
            outcome.notes.append(_LEFTOVER_NOTES[code].format(code=code))
            outcome.revealed = outcome.revealed or any(f.fix is not None and f.fix.edits for f in after
                                                       if f.code == code)
            continue
        if code == "BNL001":
            msg = next((f.message for f in after if f.code == code), "")
            return f"the fixed file can no longer be analysed: {msg}"
        if code in fixed:
            if stuck is not None:
                stuck.extend(f for f in applied if f.code == code and _still_reported(f, after))
            return f"{code} is still reported after the fix"
        return f"the fix would introduce {code} ({next((f.message for f in after if f.code == code), '')})"
    return None


def _graph_findings_of(recheck, analysis: Dict[str, Any], rules: Sequence[Rule], config: Config,
                       src: SourceFile, new_text: str) -> List[Finding]:
    """Graph-rule findings of the fixed file from the worker's analysis, with the same
    selection and suppressions as ``bnlint check``; ``recheck``: (job, fix sources) of
    ``_recheck_job``."""
    from bnlint.engine import _apply_suppressions
    from bnlint.model.modelcheck import file_failure, _findings_for_job

    job, fix_sources = recheck
    if analysis.get("error"):
        return [file_failure(job, analysis["error"])]
    graph_rules = [r for r in rules if r.kind is RuleKind.GRAPH]
    enabled = {r.code for r in rules} | {"BNL001"}
    found = [f for f in _findings_for_job(job, analysis, graph_rules, fix_sources=fix_sources) if f.code in enabled]
    shown = SourceFile(path=job.path, text=new_text, encoding=src.encoding, bom=src.bom, newline=src.newline, raw=b"")
    return _apply_suppressions(found, {job.path: shown}, config)


def _recheck_job(tmp: str, candidates, abs_path: str, display: str, planned, new_text: str):
    """(job, fix sources) for the fixed file's analysis. Unplanned: the fixed copy
    ``tmp``, read from disk. Planned (the models the check built, with their arguments):
    analysed under the original's name and path, so fixes are planned on the fixed text;
    a finding the fix revealed (a bias now feeding a BN) then says whether a later
    round can fix it."""
    from bnlint.fix.cstindex import SourceIndex
    from bnlint.model.modelcheck import ModelJob

    if planned is None:
        return ModelJob(path=tmp, abs_path=tmp, candidates=list(candidates)), None
    root, plan = planned
    path = os.path.abspath(abs_path)
    return (ModelJob(path=display, abs_path=abs_path, plan=plan, project_root=root),
            {path: SourceIndex(path, new_text)})


def _plan_of(abs_path: str, config: Config):
    """(project root, plan request) the check built this file's models from; None for
    a file with no plan (a notebook)."""
    from bnlint.engine import _Planners
    from bnlint.notebook import is_notebook

    if is_notebook(abs_path):
        return None
    with _AST_LOCK:
        planned = _Planners(config, None).plan(abs_path)
    if planned is None:
        return None
    root, plan = planned
    return root, plan.to_request()


def _parsing_check(check_paths, *args):
    with _AST_LOCK:
        return check_paths(*args)


def _candidates(text: str) -> List[str]:
    import ast

    from bnlint.model.targets import may_define_models

    try:
        with _AST_LOCK:
            tree = ast.parse(text)
    except SyntaxError:
        return []
    return may_define_models(tree)


CHANGED = "the file changed after it was analysed; run bnlint fix again"


def _write_refusal(abs_path: str, analysed: bytes) -> Optional[str]:
    """Why the file must not be replaced now: it changed since it was analysed, or it
    is read-only (a rename would replace it all the same)."""
    try:
        with open(abs_path, "rb") as fh:
            now = fh.read()
        mode = os.stat(abs_path).st_mode
    except OSError as exc:
        return f"cannot read the file again before writing it: {exc.strerror or exc}"
    if now != analysed:
        return CHANGED
    if not mode & 0o222 or not os.access(abs_path, os.W_OK):
        return "the file is read-only; make it writable (chmod u+w) to apply the fix"
    return None


def _fix_file(path: str, findings: List[Finding], all_here: List[Finding], config: Config,
              rules: Sequence[Rule], write: bool, analysed: Optional[bytes] = None) -> FileOutcome:
    outcome = FileOutcome(path=path)
    abs_path = os.path.abspath(path)
    try:
        src = read_source(abs_path, path)
    except SourceError as exc:
        outcome.rejected = str(exc)
        return outcome
    if analysed is not None and src.raw != analysed:  # the findings' positions no longer apply
        outcome.rejected = CHANGED
        return outcome
    findings = sorted(findings, key=Finding.sort_key)
    # Model fixes move code: two of them inserting the same text are two moves.
    refused = set(overlapping(src.text, [f.fix.edits for f in findings],
                              [not is_model_finding(f) for f in findings]))
    chosen = [f for i, f in enumerate(findings) if i not in refused]
    outcome.skipped = [f for i, f in enumerate(findings) if i in refused]
    try:
        new_text = apply_edits(src.text, [e for f in chosen for e in f.fix.edits], src.newline)
    except OverlapError as exc:
        outcome.rejected = str(exc)
        return outcome
    if new_text == src.text:
        return outcome
    notebook = None
    if path.endswith(".ipynb"):  # only the changed cells are rewritten (bnlint.notebook)
        from bnlint.notebook import NotebookError, notebook_with_python

        try:
            notebook = notebook_with_python(src.raw, new_text, path)
        except NotebookError as exc:
            outcome.rejected = str(exc)
            return outcome
    outcome.applied = chosen
    stuck: List[Finding] = []
    why = _verify(src, abs_path, new_text, chosen, all_here, config, rules, outcome, stuck)
    if why is not None and stuck and len(stuck) < len(chosen):
        # One fix that does not remove its finding (the moved dropout still feeds another
        # BatchNorm) must not hold back the others: check the file without it.
        rest = [f for f in chosen if f not in stuck]
        retry = apply_edits(src.text, [e for f in rest for e in f.fix.edits], src.newline)
        if notebook is not None:
            from bnlint.notebook import NotebookError, notebook_with_python

            try:
                notebook = notebook_with_python(src.raw, retry, path)
            except NotebookError as exc:
                outcome.rejected = str(exc)
                return outcome
        outcome.renamed, outcome.renamed_by_model, outcome.notes = [], {}, []
        if _verify(src, abs_path, retry, rest, all_here, config, rules, outcome) is None:
            outcome.applied, new_text, why = rest, retry, None
            outcome.notes.extend(f"{f.code} at line {f.line} not fixed: {f.code} is still reported after its "
                                 f"fix ({f.fix.description})" for f in stuck)
    if why is not None:
        outcome.rejected = why
        return outcome
    outcome.diff = "".join(difflib.unified_diff(
        src.text.replace("\r\n", "\n").splitlines(keepends=True),
        new_text.replace("\r\n", "\n").splitlines(keepends=True),
        fromfile=f"a/{path}", tofile=f"b/{path}",
    ))
    if write:
        from bnlint.atomic import write_bytes_atomic

        refusal = _write_refusal(abs_path, src.raw)
        if refusal is not None:
            outcome.rejected = refusal
            return outcome
        try:
            write_bytes_atomic(abs_path, notebook if notebook is not None else _encode(src, new_text))
        except OSError as exc:
            outcome.rejected = f"cannot write the file: {exc.strerror or exc}"
    return outcome


CLEANUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """While inside: SIGTERM, SIGINT or SIGHUP first removes the temporary files and
    folders of the fix (``_bnlint_fix_*`` next to the checked files, ``.bnlint-*.tmp``
    of a write in progress) and kills the model-check processes, then gets the handler
    that was there before (the default ends the process; Python's SIGINT handler
    raises KeyboardInterrupt). A file being replaced is either old or new: ``os.replace``
    is atomic, and a write whose temporary file was removed fails and keeps the old one.

    Only the main thread can install handlers; elsewhere, and when nested, this does
    nothing. SIGKILL cannot be handled: leftovers of a killed run are ignored by
    ``bnlint check`` (bnlint.engine).
    """
    from bnlint.atomic import remove_all_temporaries, resume

    if threading.current_thread() is not threading.main_thread() or _handling:
        yield
        return
    previous = {}

    def handler(signum, frame):
        remove_all_temporaries()
        before = previous.get(signum)
        if before is None:  # a handler not installed from Python
            before = signal.SIG_DFL
        signal.signal(signum, before)
        if callable(before):
            before(signum, frame)
        elif before == signal.SIG_DFL:
            os.kill(os.getpid(), signum)
            os._exit(128 + signum)  # only if the default action did not end the process

    try:
        for sig in CLEANUP_SIGNALS:
            if signal.getsignal(sig) != signal.SIG_IGN:  # e.g. SIGHUP under nohup stays ignored
                previous[sig] = signal.signal(sig, handler)
        _handling.append(True)
        yield
    finally:
        _handling.clear()
        for sig, before in previous.items():
            signal.signal(sig, before if before is not None else signal.SIG_DFL)
        resume()


_handling: List[bool] = []


def fix_paths(paths: Sequence[str], config: Config, rules: Sequence[Rule], *, unsafe: bool = False,
              write: bool = True) -> FixRun:
    with cleanup_on_signals():
        return _fix_paths(paths, config, rules, unsafe, write)


def _fix_paths(paths: Sequence[str], config: Config, rules: Sequence[Rule], unsafe: bool, write: bool) -> FixRun:
    from bnlint.engine import check_paths

    result = check_paths(paths, config, rules)
    run = FixRun(findings=result.findings, fatal=result.fatal)
    run.unsafe_available = sum(1 for f in result.findings if f.fix is not None and f.fix.edits
                               and f.fix.safety is FixSafety.UNSAFE and not unsafe)
    by_file: Dict[str, List[Finding]] = {}
    here: Dict[str, List[Finding]] = {}
    for f in result.findings:
        here.setdefault(f.path, []).append(f)
        if _wanted(f, unsafe) and all(e.path and os.path.abspath(e.path) == os.path.abspath(f.path)
                                      for e in f.fix.edits):
            by_file.setdefault(f.path, []).append(f)
    workers = max(1, min(len(by_file), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        run.files = list(pool.map(
            lambda path: _fix_file(path, by_file[path], here.get(path, []), config, rules, write,
                                   result.raw.get(path)),
            sorted(by_file)))
        if write:
            _later_rounds(run, pool, config, rules, unsafe)
    return run


MAX_ROUNDS = 8


def _compose(first: List[Tuple[str, str]], then: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """Key renames of two rounds as one map from the original keys (a child moved in
    both rounds: ``body.3.w -> body.2.w`` then ``body.2.w -> body.1.w`` is ``body.3.w ->
    body.1.w``)."""
    out = list(first)
    index = {new: i for i, (_old, new) in enumerate(out)}
    for old, new in then:
        if old in index:
            i = index.pop(old)
            out[i] = (out[i][0], new)
            index[new] = i
        else:
            index[new] = len(out)
            out.append((old, new))
    return [(a, b) for a, b in out if a != b]


def _later_rounds(run: FixRun, pool: ThreadPoolExecutor, config: Config, rules: Sequence[Rule],
                  unsafe: bool) -> None:
    """Fixes left out because their edits overlapped another fix (two dropouts moved to
    the same place), and fixes of findings a fix revealed (a bias now feeding a BN:
    BNL106), are applied in further rounds on the written file, as ruff does, so that
    one ``bnlint fix`` leaves nothing for a second run."""
    from bnlint.engine import check_paths

    for _ in range(MAX_ROUNDS - 1):
        pending = {o.path: o for o in run.files if o.rejected is None and o.applied and (o.skipped or o.revealed)}
        if not pending:
            return
        result = check_paths(sorted(pending), config, rules)
        by_file: Dict[str, List[Finding]] = {}
        for f in result.findings:
            if f.path in pending and _wanted(f, unsafe):
                by_file.setdefault(f.path, []).append(f)
        for outcome in pending.values():
            outcome.skipped, outcome.revealed = [], False
        here = {p: [f for f in result.findings if f.path == p] for p in by_file}
        rounds = list(pool.map(
            lambda path: _fix_file(path, by_file[path], here[path], config, rules, True, result.raw.get(path)),
            sorted(by_file)))
        for new in rounds:
            outcome = pending[new.path]
            if new.rejected is not None:
                outcome.notes.append(f"{len(new.applied)} more fixes not applied: {new.rejected}")
                continue
            outcome.applied += new.applied
            outcome.skipped, outcome.revealed = new.skipped, new.revealed
            for model, pairs in new.renamed_by_model.items():  # per model: paths repeat across models
                outcome.renamed_by_model[model] = _compose(outcome.renamed_by_model.get(model, []), pairs)
            outcome.renamed = list(dict.fromkeys(p for pairs in outcome.renamed_by_model.values() for p in pairs))
            outcome.notes += [n for n in new.notes if n not in outcome.notes]
