"""Jupyter notebooks: the Python of their code cells, and positions back in cells.

A notebook is checked as one Python text: its code cells in order, one after the
other (so script rules follow a loader built in cell 2 into the loop of cell 5, and
models defined in cells are built and traced like those of a ``.py`` file). IPython
syntax is neutralised line by line, keeping line numbers: line magics (``%time``),
shell escapes (``!pip``, ``x = !ls``), help (``obj?``) become ``pass`` at the same
indentation; a cell magic (``%%bash``) blanks its cell, except the ones that run
their body as Python (``%%time``, ``%%timeit``, ``%%capture``, ``%%prun``).

Findings come back as ``nb.ipynb:cell 3:4:1``: code cells are numbered from 1 in
the order they appear (markdown cells do not count), lines from 1 inside the cell.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Tuple

from bnlint.findings import Finding

__all__ = [
    "NotebookError", "NotebookPython", "notebook_python", "read_notebook_source",
    "is_notebook", "to_cell_positions", "notebook_lines_for_import",
]

_PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}
_LINE_MAGIC = re.compile(r"^\s*(%|!)")
_ASSIGNED_MAGIC = re.compile(r"^\s*[\w.,\s\[\]()*]+=\s*(%|!)")
_HELP = re.compile(r"^\s*[\w.]+\s*\?\??\s*$|^\s*\?\??[\w.]+\s*$")


class NotebookError(ValueError):
    """A file that is not a readable notebook; the message says why."""


def is_notebook(path: str) -> bool:
    return path.endswith(".ipynb")


@dataclass(frozen=True)
class NotebookPython:
    """The Python text of a notebook's code cells and where each line came from."""

    text: str
    # For line n of ``text`` (1-based), ``lines[n - 1]`` = (code cell number, line in cell).
    lines: Tuple[Tuple[int, int], ...]
    cells: int

    def position(self, line: int) -> Optional[Tuple[int, int]]:
        if 1 <= line <= len(self.lines):
            return self.lines[line - 1]
        return None


def _cell_source(cell: Dict[str, Any]) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(str(s) for s in source)
    return str(source)


def _neutralise(line: str) -> str:
    """``pass`` (same indentation) for IPython-only syntax, else the line itself."""
    if _LINE_MAGIC.match(line) or _ASSIGNED_MAGIC.match(line) or _HELP.match(line):
        indent = line[: len(line) - len(line.lstrip())]
        return f"{indent}pass  # bnlint: IPython line skipped"
    return line


def _cell_lines(source: str) -> List[str]:
    lines = source.splitlines()
    if not lines:
        return []
    first = lines[0].strip()
    if first.startswith("%%"):
        magic = first[2:].split(None, 1)[0] if first[2:].strip() else ""
        if magic not in _PYTHON_CELL_MAGICS:
            return [""] * len(lines)  # another language (bash, html, writefile, ...)
        return [""] + [_neutralise(l) for l in lines[1:]]
    out = []
    in_magic = False  # a magic continued with a backslash: its next lines are skipped too
    for line in lines:
        if in_magic:
            out.append("")
        else:
            out.append(_neutralise(line))
            in_magic = out[-1] != line
        in_magic = in_magic and line.rstrip().endswith("\\")
    return out


def notebook_python(data: bytes, path: str = "<notebook>") -> NotebookPython:
    """Parse notebook JSON (nbformat 4, or 3's worksheets) into its Python text."""
    try:
        nb = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotebookError(f"{path} is not a valid notebook (JSON): {exc}") from None
    if not isinstance(nb, dict):
        raise NotebookError(f"{path} is not a valid notebook: the top level is not an object")
    cells = nb.get("cells")
    if cells is None and isinstance(nb.get("worksheets"), list):
        cells = [c for ws in nb["worksheets"] if isinstance(ws, dict) for c in ws.get("cells", [])]
    if not isinstance(cells, list):
        raise NotebookError(f"{path} is not a valid notebook: no 'cells' list")
    metadata = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    language = (metadata.get("language_info") or {}).get("name") or (metadata.get("kernelspec") or {}).get("language")
    text_lines: List[str] = []
    positions: List[Tuple[int, int]] = []
    number = 0
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        number += 1
        if language and str(language).lower() != "python":
            continue  # an R or Julia notebook: nothing to check
        for i, line in enumerate(_cell_lines(_cell_source(cell)), 1):
            text_lines.append(line)
            positions.append((number, i))
    text = "".join(l + "\n" for l in text_lines)
    return NotebookPython(text=text, lines=tuple(positions), cells=number)


def read_notebook_source(abs_path: str, display: str):
    """(``bnlint.sources.SourceFile`` whose text is the notebook's Python, its
    ``NotebookPython``)."""
    from bnlint.sources import MAX_SOURCE_BYTES, SourceError, SourceFile

    try:
        with open(abs_path, "rb") as fh:
            raw = fh.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise SourceError(f"could not read {display}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SOURCE_BYTES:
        raise SourceError(f"{display} is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MB; exclude it")
    try:
        nbpy = notebook_python(raw, display)
    except NotebookError as exc:
        raise SourceError(str(exc)) from None
    return SourceFile(path=display, text=nbpy.text, encoding="utf-8", bom=False, newline="\n", raw=raw), nbpy


def to_cell_positions(findings: List[Finding], notebooks: Dict[str, NotebookPython]) -> List[Finding]:
    """Findings in notebooks, re-placed in their cells (``details["cell"]``, line in the
    cell). Their fixes are dropped: edits are on the joined text, not the notebook."""
    out = []
    for f in findings:
        nbpy = notebooks.get(f.path)
        if nbpy is None:
            out.append(f)
            continue
        pos = nbpy.position(f.line)
        details = dict(f.details)
        if pos is None:  # e.g. line 1 of a notebook with no code cells
            out.append(replace(f, fix=None, end_line=None, end_column=None))
            continue
        cell, line = pos
        end = nbpy.position(f.end_line) if f.end_line else None
        details["cell"] = cell
        if "definition_line" in details:
            dpos = nbpy.position(details["definition_line"])
            details["definition_line"] = dpos[1] if dpos else None
            details["definition_cell"] = dpos[0] if dpos else None
        out.append(replace(
            f, line=line, fix=None,
            end_line=end[1] if end and end[0] == cell else None,
            end_column=f.end_column if end and end[0] == cell else None,
            details=tuple(sorted(details.items())),
        ))
    return out


def notebook_lines_for_import(abs_path: str, raw: bytes) -> bytes:
    """The notebook's Python, to import it (the worker's loader calls this). Its lines
    are put in ``linecache`` so that tracebacks, ``inspect`` and fx stack traces read
    the Python, not the JSON."""
    import linecache

    text = notebook_python(raw, abs_path).text
    linecache.cache[abs_path] = (len(text), None, text.splitlines(True), abs_path)
    return text.encode("utf-8")

