"""``bnlint fix``: apply the fixes of a check run, file by file, after checking them.

For each file: the chosen fixes' edits are applied in one pass (a fix whose edits
overlap an earlier fix's is left for a later run), the new source must parse, and the
new source is re-checked from a temporary sibling file: model files go through a
worker subprocess that builds both versions and compares state_dict keys and eval-mode
outputs (``bnlint.fix.equivalence``), and the fixed findings must be gone with no new
problem. Only then is the file replaced, atomically, in its original encoding, BOM
and newline style. A failed check leaves the file byte-identical.
"""
from __future__ import annotations

import codecs
import difflib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bnlint.config import Config
from bnlint.findings import Finding, FixSafety, Severity
from bnlint.fix.edits import OverlapError, apply_edits, overlapping
from bnlint.rule import Rule, RuleKind
from bnlint.sources import SourceError, SourceFile, read_source

__all__ = ["FileOutcome", "FixRun", "fix_paths", "ALLOWED_LEFTOVER"]

# A moved dropout may still reach a later BN through a weight layer (issue #4).
ALLOWED_LEFTOVER = ("BNL103",)

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
    renamed: List[Tuple[str, str]] = field(default_factory=list)
    diff: str = ""


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
    with tempfile.TemporaryDirectory(prefix="bnlint-fix-") as tmp:
        req, res = os.path.join(tmp, "request.json"), os.path.join(tmp, "result.json")
        with open(req, "w", encoding="utf-8") as fh:
            json.dump(request, fh)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        env.setdefault("OMP_NUM_THREADS", "1")
        try:
            proc = subprocess.run([sys.executable, "-m", "bnlint.fix.equivalence", req, res],
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return None, f"checking the fixed models timed out after {timeout:g} s"
        if not os.path.exists(res):
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            return None, f"the model check exited with status {proc.returncode} ({tail[0][:200]})"
        with open(res, encoding="utf-8") as fh:
            return json.load(fh), ""


def _problems(findings: Sequence[Finding]) -> Counter:
    return Counter(f.code for f in findings if f.severity is not Severity.INFO)


def _verify(src: SourceFile, abs_path: str, new_text: str, applied: List[Finding],
            before: List[Finding], config: Config, rules: Sequence[Rule], outcome: FileOutcome) -> Optional[str]:
    """Why the new source must not be written, or None when every check passes."""
    import libcst as cst

    try:
        cst.parse_module(new_text)
        compile(new_text, src.path, "exec", dont_inherit=True)
    except (cst.ParserSyntaxError, SyntaxError, ValueError) as exc:
        return f"the fixed source does not parse ({str(exc).splitlines()[0]})"
    from bnlint.engine import check_paths

    folder = os.path.dirname(abs_path)
    fd, tmp = tempfile.mkstemp(prefix="_bnlint_fix_", suffix=".py", dir=folder)
    side = ThreadPoolExecutor(max_workers=1)  # the re-check runs beside the model comparison
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_encode(src, new_text))
        model_fix = any(f.code.startswith("BNL1") for f in applied)
        # The script rules re-check the new source here; graph rules run on the graphs the
        # equivalence worker returns for the fixed file (one process per file).
        script_rules = [r for r in rules if r.kind is RuleKind.SCRIPT]
        recheck = side.submit(_parsing_check, check_paths, [tmp], config, script_rules)
        answer = why = None
        if model_fix:
            renames = sorted({tuple(r) for f in applied for r in dict(f.fix.data).get("renames", ())})
            shape = [list(s) for s in config.input_shape] if config.input_shape else None
            candidates = _candidates(new_text)
            answer, why = _run_equivalence({
                "original": abs_path, "fixed": tmp, "renames": renames,
                "candidates": _candidates(src.text), "input_shape": shape,
                "analyse": {"explicit": [], "candidates": candidates, "input_shape": shape},
            }, config.timeout * 2)
        after = list(recheck.result().findings)
        if answer is not None and answer.get("analysis") is not None:
            after += _graph_findings_of(tmp, candidates, answer["analysis"], rules, config, src, new_text)
        if answer is not None or why:
            if answer is None:
                return why
            if answer.get("error"):
                return answer["error"]
            for model in answer.get("models", []):
                if not model.get("ok"):
                    return model.get("reason", "the fixed model differs")
                for old, new in model.get("renamed", []):
                    if (old, new) not in outcome.renamed:
                        outcome.renamed.append((old, new))
    finally:
        side.shutdown(wait=True)
        try:
            os.unlink(tmp)
        except OSError:
            pass
    if not model_fix:  # graph rules were not re-run: compare script findings only
        before = [f for f in before if f.code.startswith("BNL2")]
    old, new, fixed = _problems(before), _problems(after), _problems(applied)
    for code, count in sorted(new.items()):
        allowed = old.get(code, 0) - fixed.get(code, 0)
        if count <= allowed:
            continue
        if code in ALLOWED_LEFTOVER:
            outcome.notes.append(f"a {code} warning remains: the moved dropout still reaches a later "
                                 f"BatchNorm through a weight layer (no residual add); see 'bnlint explain {code}'")
            continue
        if code == "BNL001":
            msg = next((f.message for f in after if f.code == code), "")
            return f"the fixed file can no longer be analysed: {msg}"
        if code in fixed:
            return f"{code} is still reported after the fix"
        return f"the fix would introduce {code} ({next((f.message for f in after if f.code == code), '')})"
    return None


def _graph_findings_of(tmp: str, candidates, analysis: Dict[str, Any], rules: Sequence[Rule], config: Config,
                       src: SourceFile, new_text: str) -> List[Finding]:
    """Graph-rule findings of the fixed file from the worker's analysis, with the same
    selection and suppressions as ``bnlint check``."""
    from bnlint.engine import _apply_suppressions
    from bnlint.modelcheck import ModelJob, _file_failure, _findings_for_job

    job = ModelJob(path=tmp, abs_path=tmp, candidates=list(candidates))
    if analysis.get("error"):
        return [_file_failure(job, analysis["error"])]
    graph_rules = [r for r in rules if r.kind is RuleKind.GRAPH]
    enabled = {r.code for r in rules} | {"BNL001"}
    found = [f for f in _findings_for_job(job, analysis, graph_rules) if f.code in enabled]
    shown = SourceFile(path=tmp, text=new_text, encoding=src.encoding, bom=src.bom, newline=src.newline, raw=b"")
    return _apply_suppressions(found, {tmp: shown}, config)


def _parsing_check(check_paths, *args):
    with _AST_LOCK:
        return check_paths(*args)


def _candidates(text: str) -> List[str]:
    import ast

    from bnlint.targets import may_define_models

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
    refused = set(overlapping(src.text, [f.fix.edits for f in findings]))
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
    why = _verify(src, abs_path, new_text, chosen, all_here, config, rules, outcome)
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


def fix_paths(paths: Sequence[str], config: Config, rules: Sequence[Rule], *, unsafe: bool = False,
              write: bool = True) -> FixRun:
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
    return run
