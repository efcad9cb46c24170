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
    "NotebookError", "NotebookPython", "notebook_python", "read_notebook_source", "notebook_source_file",
    "is_notebook", "to_cell_positions", "notebook_lines_for_import", "notebook_with_python",
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
    from bnlint.sources import MAX_SOURCE_BYTES, SourceError

    try:
        with open(abs_path, "rb") as fh:
            raw = fh.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise SourceError(f"could not read {display}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SOURCE_BYTES:
        raise SourceError(f"{display} is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MB; exclude it")
    return notebook_source_file(raw, display)


def notebook_source_file(raw: bytes, display: str):
    """(``SourceFile`` of the notebook bytes ``raw``, its ``NotebookPython``); the
    file's ``text`` is the Python, its ``raw`` the notebook (``bnlint fix`` writes
    notebooks back with ``notebook_with_python``)."""
    from bnlint.sources import SourceError, SourceFile

    try:
        nbpy = notebook_python(raw, display)
    except NotebookError as exc:
        raise SourceError(str(exc)) from None
    return SourceFile(path=display, text=nbpy.text, encoding="utf-8", bom=False, newline="\n", raw=raw), nbpy


def to_cell_positions(findings: List[Finding], notebooks: Dict[str, NotebookPython]) -> List[Finding]:
    """Findings in notebooks, re-placed in their cells (``details["cell"]``, line in the
    cell). Fix edits stay on the joined Python text, which is what ``bnlint fix`` edits
    before writing the changed cells back (``notebook_with_python``)."""
    out = []
    for f in findings:
        nbpy = notebooks.get(f.path)
        if nbpy is None:
            out.append(f)
            continue
        pos = nbpy.position(f.line)
        details = dict(f.details)
        if pos is None:  # e.g. line 1 of a notebook with no code cells
            out.append(replace(f, end_line=None, end_column=None))
            continue
        cell, line = pos
        end = nbpy.position(f.end_line) if f.end_line else None
        details["cell"] = cell
        if "definition_line" in details:
            dpos = nbpy.position(details["definition_line"])
            details["definition_line"] = dpos[1] if dpos else None
            details["definition_cell"] = dpos[0] if dpos else None
        out.append(replace(
            f, line=line,
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



# ---------------------------------------------------------------- writing fixes back

def _json_style(raw: bytes) -> Dict[str, Any]:
    """Indentation and escaping of the original file, so that untouched parts
    (outputs, metadata) are written back as they were (nbformat's own style is
    ``indent=1``, non-ASCII kept)."""
    text = raw.decode("utf-8-sig")
    indent = None
    for line in text.splitlines()[1:3]:
        stripped = line.lstrip(" ")
        if stripped and len(stripped) < len(line):
            indent = len(line) - len(stripped)
            break
    ensure_ascii = "\\u" in text and all(ord(c) < 128 for c in text)
    return {"indent": indent, "ensure_ascii": ensure_ascii}


def _set_source(cell: Dict[str, Any], lines: List[str], ended: bool) -> None:
    text = "\n".join(lines) + ("\n" if ended and lines else "")
    if isinstance(cell.get("source"), list):
        cell["source"] = text.splitlines(True)
    else:
        cell["source"] = text


def notebook_with_python(raw: bytes, new_python: str, path: str = "<notebook>") -> bytes:
    """The notebook ``raw`` with its code cells rewritten so that their Python reads
    ``new_python`` (an edited version of ``notebook_python(raw).text``).

    Only the changed code cells get a new ``source``; outputs, metadata, markdown and
    every other cell stay as they were. A change that spans two cells, or touches a
    line bnlint skipped (a magic or shell line), raises ``NotebookError``: such a fix
    is left for the user.
    """
    import difflib

    old = notebook_python(raw, path)
    nb = json.loads(raw.decode("utf-8-sig"))
    cells = nb.get("cells")
    if cells is None:
        cells = [c for ws in nb.get("worksheets", []) for c in ws.get("cells", [])]
    code_cells = [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    originals = [_cell_source(c).splitlines() for c in code_cells]
    virtual = old.text.splitlines()
    new_lines = new_python.splitlines()
    # (cell index, first local line, end local line, new lines), applied bottom-up.
    changes: List[Tuple[int, int, int, List[str]]] = []
    matcher = difflib.SequenceMatcher(None, virtual, new_lines, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if i1 < i2:
            spanned = {old.lines[i][0] for i in range(i1, i2)}
            if len(spanned) > 1:
                raise NotebookError(f"{path}: a fix spans cells {min(spanned)}-{max(spanned)}; fix it by hand")
            cell = spanned.pop()
            first = old.lines[i1][1] - 1
            for i in range(i1, i2):
                number, local = old.lines[i]
                if originals[number - 1][local - 1] != virtual[i]:
                    raise NotebookError(f"{path}: a fix touches an IPython line in cell {number}; fix it by hand")
            changes.append((cell - 1, first, first + (i2 - i1), new_lines[j1:j2]))
        elif old.lines:
            # Pure insertion: after the line before it (or before the very first line).
            if i1 > 0:
                number, local = old.lines[i1 - 1]
                changes.append((number - 1, local, local, new_lines[j1:j2]))
            else:
                number, local = old.lines[0]
                changes.append((number - 1, local - 1, local - 1, new_lines[j1:j2]))
        else:
            raise NotebookError(f"{path}: the notebook has no code to fix")
    if not changes:
        return raw
    edited: Dict[int, List[str]] = {}
    for cell, start, end, lines in sorted(changes, key=lambda c: (c[0], c[1]), reverse=True):
        current = edited.setdefault(cell, list(originals[cell]))
        current[start:end] = lines
    for cell, lines in edited.items():
        source = _cell_source(code_cells[cell])
        _set_source(code_cells[cell], lines, source.endswith("\n"))
    style = _json_style(raw)
    return (json.dumps(nb, ensure_ascii=style["ensure_ascii"], indent=style["indent"]) + "\n").encode("utf-8")
