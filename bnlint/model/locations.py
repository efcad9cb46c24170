"""Where a finding goes in the user's source: from a graph node's facts (its call in
``forward``, its construction site, the user's line that built a library module) to a
file, line and column. No torch here."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from bnlint.model.sites import library_module_name

if TYPE_CHECKING:
    from bnlint.model.modelcheck import ModelJob

__all__ = ["Location", "locate"]


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
