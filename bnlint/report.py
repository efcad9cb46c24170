"""Rendering findings: text (``path:line:col: CODE message [*]``), JSON, SARIF 2.1.0
(``bnlint.sarif``), GitHub Actions workflow commands and JUnit XML."""
from __future__ import annotations

import json
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from xml.etree import ElementTree as ET

from bnlint.findings import Finding, Severity

__all__ = [
    "FORMATS", "render", "render_text", "render_json", "render_github", "render_junit",
    "summary_line", "not_analysed_line", "counted", "location",
]

FORMATS = ("text", "json", "sarif", "github", "junit")


def counted(findings: Sequence[Finding]) -> List[Finding]:
    """Findings that count as problems (info notes never do)."""
    return [f for f in findings if f.severity is not Severity.INFO]


def summary_line(findings: Sequence[Finding]) -> str:
    problems = counted(findings)
    if not problems:
        return "All checks passed!"
    fixable = sum(1 for f in problems if f.fixable)
    noun = "problem" if len(problems) == 1 else "problems"
    line = f"Found {len(problems)} {noun}"
    if fixable:
        line += f" ({fixable} fixable with 'bnlint fix')"
    return line + "."


_REASONS = {
    "needs-arguments": ("needs arguments", "need arguments"),
    "not-built": ("is built by no analysed model", "are built by no analysed model"),
    "needs-package": ("needs package {package}", "need package {package}"),
    "needs-download": ("needs a download", "need downloads"),
    "import-failed": ("failed to import", "failed to import"),
    "build-failed": ("failed to build", "failed to build"),
    "forward-failed": ("failed in forward", "failed in forward"),
    "no-input-shape": ("has no input shape", "have no input shape"),
    "timeout": ("timed out", "timed out"),
    "crashed": ("crashed the analysis", "crashed the analysis"),
}


def not_analysed_line(findings: Sequence[Finding]) -> Optional[str]:
    """``3 models not analysed (2 need arguments, 1 needs package 'lmdb'); -v lists them``:
    one line for every model bnlint could not analyse, by reason."""
    seen: Dict[Tuple[str, str], Tuple[str, str]] = {}
    for f in findings:
        details = dict(f.details)
        reason = details.get("not_analysed")
        if not reason:
            continue
        names = [details["model"]] if details.get("model") else list(details.get("models") or []) or [f.path]
        package = details.get("package") or details.get("missing_module") or ""
        for name in names:
            seen.setdefault((f.path, str(name)), (str(reason), str(package)))
    if not seen:
        return None
    counts: Dict[Tuple[str, str], int] = {}
    for reason, package in seen.values():
        counts[(reason, package if reason == "needs-package" else "")] = counts.get(
            (reason, package if reason == "needs-package" else ""), 0) + 1
    parts = []
    for (reason, package), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        one, many = _REASONS.get(reason, (reason, reason))
        parts.append(f"{n} " + (one if n == 1 else many).format(package=repr(package)))
    total = len(seen)
    return f"{total} model{'s' if total != 1 else ''} not analysed ({', '.join(parts)}); -v lists them"


def location(f: Finding) -> str:
    """``path:line:col``; notebook findings read ``nb.ipynb:cell 3:4:1`` (line in the cell)."""
    cell = dict(f.details).get("cell")
    path = f"{f.path}:cell {cell}" if cell is not None else f.path
    return f"{path}:{f.line}:{f.column}"


def _visible(findings: Sequence[Finding], verbose: bool) -> List[Finding]:
    return [f for f in findings if verbose or f.severity is not Severity.INFO]


def render_text(findings: Sequence[Finding], verbose: bool = False) -> str:
    lines = []
    for f in _visible(findings, verbose):
        mark = " [*]" if f.fixable else ""
        lines.append(f"{location(f)}: {f.code} {f.message}{mark}")
    lines.append(summary_line(findings))
    extra = not_analysed_line(findings)
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps([f.to_dict() for f in findings], indent=2) + "\n"


# ---------------------------------------------------------------- GitHub Actions

_GITHUB_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(findings: Sequence[Finding], verbose: bool = False) -> str:
    """One workflow command per finding:
    ``::error file=PATH,line=L,col=C,title=CODE::message``. Notebook findings carry
    their cell in the title (GitHub cannot place a line inside a cell)."""
    lines = []
    for f in _visible(findings, verbose):
        cell = dict(f.details).get("cell")
        title = f"{f.code} ({f.name})" if cell is None else f"{f.code} ({f.name}) in cell {cell}"
        props = [f"file={_escape_property(f.path)}", f"line={f.line}", f"col={f.column}"]
        if f.end_line and cell is None:
            props.append(f"endLine={f.end_line}")
            if f.end_column:
                props.append(f"endColumn={f.end_column}")
        props.append(f"title={_escape_property(title)}")
        message = f.message + (" [*]" if f.fixable else "")
        lines.append(f"::{_GITHUB_LEVELS[f.severity]} {','.join(props)}::{_escape_data(message)}")
    return "".join(line + "\n" for line in lines)


# ---------------------------------------------------------------- JUnit XML

def render_junit(findings: Sequence[Finding], verbose: bool = False, files_checked: int = 0) -> str:
    """JUnit XML: one test suite per file with problems, one failing test case per
    finding (``CODE at line:col``). A clean run is one passing test case."""
    shown = _visible(findings, verbose)
    root = ET.Element("testsuites", name="bnlint", tests=str(max(1, len(shown))),
                      failures=str(len(counted(shown))))
    by_path: Dict[str, List[Finding]] = {}
    for f in shown:
        by_path.setdefault(f.path, []).append(f)
    for path, items in by_path.items():
        suite = ET.SubElement(root, "testsuite", name=path, tests=str(len(items)),
                              failures=str(len(counted(items))), errors="0", skipped="0")
        for f in items:
            case = ET.SubElement(suite, "testcase", classname=path,
                                 name=f"{f.code} at {location(f).split(':', 1)[1]}",
                                 file=f.path, line=str(f.line))
            text = f"{location(f)}: {f.code} {f.message}" + (" [*]" if f.fixable else "")
            if f.severity is Severity.INFO:
                ET.SubElement(case, "system-out").text = text
            else:
                failure = ET.SubElement(case, "failure", type=f.code, message=f.message)
                failure.text = text
    if not by_path:
        suite = ET.SubElement(root, "testsuite", name="bnlint", tests="1", failures="0", errors="0", skipped="0")
        ET.SubElement(suite, "testcase", classname="bnlint", name=f"no problems in {files_checked} file(s)")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render(output_format: str, findings: Sequence[Finding], *, verbose: bool = False,
           files_checked: int = 0) -> str:
    """The report for ``output_format`` (one of ``FORMATS``)."""
    if output_format == "sarif":
        from bnlint.sarif import render_sarif

        return render_sarif(findings)
    renderers: Dict[str, Callable[[], str]] = {
        "text": lambda: render_text(findings, verbose),
        "json": lambda: render_json(findings),
        "github": lambda: render_github(findings, verbose),
        "junit": lambda: render_junit(findings, verbose, files_checked),
    }
    return renderers[output_format]()
