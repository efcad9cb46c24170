"""``bnlint fix --verify``: write a checked fix only when training confirms it.

``bnlint fix`` runs with ``write=False`` (every usual check still runs); then, per file,
the fixed source is put in a temporary sibling file and ``bnlint verify``'s worker
(``python -m bnlint.verify``, a subprocess: user code never runs in the CLI) trains the
original against it. Model fixes (BNL1xx) get the model experiment, once per model the
fixes touched; files with only script fixes (BNL2xx) get the harness's shuffle
experiment, which does not run the script itself (it trains the file's model, or a
built-in model, with a single shuffle vs a fresh shuffle per epoch) and says so. The
file is written when every verdict is ``confirmed``, or with ``--force`` whatever the
verdict; otherwise it stays byte-identical and its fixes count as remaining.
"""
from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bnlint.atomic import create_temp, remove_temp
from bnlint.fix.kinds import is_model_finding
from bnlint.fix.runner import FileOutcome, FixRun

__all__ = ["VerifySettings", "FileVerification", "verify_fix_run", "render_verified_run"]

ERROR = "failed"  # the verdict word when the verification could not run


@dataclass(frozen=True)
class VerifySettings:
    seeds: int = 3
    epochs: Optional[int] = None
    budget: Optional[float] = None
    device: Optional[str] = None
    report: Optional[str] = None
    force: bool = False
    input_shape: Optional[Sequence[Sequence[int]]] = None


@dataclass
class FileVerification:
    path: str
    kind: str  # "model", "shuffle", or "script" (fixes no experiment verifies)
    verdict: str  # confirmed / inconclusive / regressed / failed
    written: bool = False
    text: str = ""  # verdict tables and notes, as printed
    error: Optional[str] = None
    write_error: Optional[str] = None
    reports: List[dict] = field(default_factory=list)

    @property
    def status(self) -> str:
        what = f"verification {self.verdict}" + (f": {self.error}" if self.error else "")
        if self.write_error:
            return f"fix not written: {self.write_error} ({what})"
        if self.written:
            return "fix written" + ("" if self.verdict == "confirmed" else f" (--force; {what})")
        return f"fix not written: {what}"


def check_settings(settings: VerifySettings) -> None:
    """Raise VerifyError for bad options before anything runs (same rules as ``bnlint verify``)."""
    from bnlint.verify.options import VerifyError, VerifyOptions

    VerifyOptions(seeds=settings.seeds, epochs=settings.epochs, budget=settings.budget, device=settings.device)
    if settings.report and not os.path.isdir(os.path.dirname(os.path.abspath(settings.report))):
        raise VerifyError(f"cannot write {settings.report}: its folder does not exist")


def _new_text(outcome: FileOutcome) -> Tuple[Any, str]:
    """The source the fixer checked, rebuilt from the applied fixes (same edits, same pass)."""
    from bnlint.fix.edits import apply_edits
    from bnlint.sources import read_source

    src = read_source(os.path.abspath(outcome.path), outcome.path)
    text = apply_edits(src.text, [e for f in outcome.applied for e in f.fix.edits], src.newline)
    diff = "".join(difflib.unified_diff(
        src.text.replace("\r\n", "\n").splitlines(keepends=True),
        text.replace("\r\n", "\n").splitlines(keepends=True),
        fromfile=f"a/{outcome.path}", tofile=f"b/{outcome.path}"))
    if diff != outcome.diff:
        raise RuntimeError("the file changed while it was being fixed")
    return src, text


def _run_worker(before: str, after: str, model: Optional[str], kind: str, settings: VerifySettings,
                renames: Sequence[Tuple[str, str]]) -> Tuple[Optional[dict], str, Optional[str]]:
    """(JSON report or None, printed table, error) of one ``python -m bnlint.verify`` run."""
    from bnlint.verify.command import build_request

    with tempfile.TemporaryDirectory(prefix="bnlint-fixverify-") as tmp:
        out = os.path.join(tmp, "report.json")
        request = build_request(before, after, model, settings.seeds, settings.epochs, settings.budget,
                                settings.device, None, out, None, kind, [f"{o}={n}" for o, n in renames],
                                settings.input_shape)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run([sys.executable, "-m", "bnlint.verify", json.dumps(request)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
        if proc.returncode in (0, 1) and os.path.exists(out):
            with open(out, encoding="utf-8") as fh:
                return json.load(fh), proc.stdout, None
        errors = [ln[len("bnlint: error: "):] for ln in proc.stderr.splitlines() if ln.startswith("bnlint: error: ")]
        if errors:
            return None, proc.stdout, errors[-1]
        if proc.returncode < 0:
            return None, proc.stdout, f"the verification worker was killed by signal {-proc.returncode}"
        tail = proc.stderr.strip().splitlines()[-1:] or [""]
        return None, proc.stdout, f"the verification worker exited with status {proc.returncode} ({tail[0][:200]})"


def _combined(verdicts: Sequence[str]) -> str:
    for word in (ERROR, "regressed", "inconclusive"):
        if word in verdicts:
            return word
    return "confirmed" if verdicts else ERROR


def _verify_file(outcome: FileOutcome, settings: VerifySettings) -> Tuple[FileVerification, Any, str]:
    model_fixes = [f for f in outcome.applied if is_model_finding(f)]
    kind = "model" if model_fixes else "shuffle"
    result = FileVerification(outcome.path, kind, ERROR)
    if outcome.path.endswith(".ipynb"):
        result.error = "--verify does not handle notebooks; rerun without --verify or with --force"
        return result, None, ""
    src, new_text = _new_text(outcome)
    if not model_fixes and not any(f.code.startswith("BNL2") for f in outcome.applied):
        # BNL105's fix (evaluation mode around a loop) has no training experiment.
        result.kind = "script"
        result.error = ("no experiment verifies " + ", ".join(sorted({f.code for f in outcome.applied}))
                        + " fixes; rerun without --verify, or with --force to write them")
        return result, src, new_text
    from bnlint.fix.runner import _encode

    folder = os.path.dirname(outcome.path)
    fd, tmp = create_temp("_bnlint_verify_", ".py", folder or ".")  # removed on a signal too
    tmp_shown = os.path.join(folder, os.path.basename(tmp)) if folder else os.path.basename(tmp)
    fixed_label = f"{outcome.path} (fixed)"
    texts, verdicts = [], []
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_encode(src, new_text))
        models = sorted({dict(f.details).get("model") for f in model_fixes} - {None}) or [None]
        if kind == "shuffle":
            models = [None]
            texts.append("note: script fixes are verified with the shuffle experiment, which does not run the "
                         "script: it trains the file's model (or a built-in one) on synthetic data with one "
                         "shuffle for all epochs vs a fresh shuffle per epoch; evidence for this kind of "
                         "change, not for these exact edits")
        elif any(not is_model_finding(f) for f in outcome.applied):
            texts.append("note: the script fixes in this file are not verified separately")
        for model in models:
            report, table, error = _run_worker(outcome.path, tmp_shown, model, kind, settings, outcome.renamed)
            table = table.replace(tmp_shown, fixed_label)
            if table.strip():
                texts.append(table.rstrip("\n"))
            if error is not None:
                result.error = error.replace(tmp_shown, fixed_label)
                verdicts.append(ERROR)
                break
            report = json.loads(json.dumps(report).replace(json.dumps(tmp_shown)[1:-1], fixed_label))
            report["model"] = model
            result.reports.append(report)
            verdicts.append(report["verdict"])
    finally:
        remove_temp(tmp)
    result.verdict = _combined(verdicts)
    result.text = "\n".join(texts)
    return result, src, new_text


def _write(outcome: FileOutcome, src, new_text: str) -> Optional[str]:
    from bnlint.atomic import write_bytes_atomic
    from bnlint.fix.runner import _encode

    try:
        with open(os.path.abspath(outcome.path), "rb") as fh:
            if fh.read() != src.raw:  # edited while the verification trained
                return "the file changed during the verification; run bnlint fix --verify again"
        write_bytes_atomic(os.path.abspath(outcome.path), _encode(src, new_text))
    except OSError as exc:
        return f"cannot write the file: {exc.strerror or exc}"
    return None


def verify_fix_run(run: FixRun, settings: VerifySettings) -> Dict[str, FileVerification]:
    """Verify every fix the fixer accepted (it ran with ``write=False``); write the
    confirmed ones (all with ``force``). Unwritten outcomes get ``rejected`` set so that
    their fixes count as remaining."""
    results: Dict[str, FileVerification] = {}
    for outcome in run.files:
        if outcome.rejected is not None or not outcome.applied:
            continue
        try:
            result, src, new_text = _verify_file(outcome, settings)
        except Exception as exc:  # reading or rebuilding the source failed
            result, src = FileVerification(outcome.path, "model", ERROR, error=str(exc)), None
        results[outcome.path] = result
        if src is not None and (result.verdict == "confirmed" or settings.force):
            why = _write(outcome, src, new_text)
            if why is None:
                result.written = True
            else:
                result.write_error = why
        if not result.written:
            outcome.rejected = f"verification {result.verdict}"
    if settings.report:
        from bnlint.atomic import write_text_atomic

        data = {"schema_version": 1, "force": settings.force, "files": [
            {"path": r.path, "kind": r.kind, "verdict": r.verdict, "written": r.written, "error": r.error or r.write_error,
             "reports": r.reports} for r in results.values()]}
        write_text_atomic(settings.report, json.dumps(data, indent=2) + "\n")
    return results


def render_verified_run(run: FixRun, results: Dict[str, FileVerification]) -> str:
    """Per file: the verdict tables, the usual fix lines when written, and the decision."""
    from bnlint.fix.report import render_fix_run

    lines: List[str] = []
    for outcome in run.files:
        res = results.get(outcome.path)
        if res is not None and res.text:
            lines.append(res.text)
        if res is None:
            lines.extend(render_fix_run(FixRun(files=[outcome])).splitlines()[:-1])
            continue
        if res.written:
            lines.extend(render_fix_run(FixRun(files=[replace(outcome, rejected=None)])).splitlines()[:-1])
        lines.append(f"{outcome.path}: {res.status}")
    lines.append(render_fix_run(run).splitlines()[-1])
    return "\n".join(lines) + "\n"
