"""``# noqa`` / ``# noqa: BNL101`` / ``# bnlint: ignore[BNL101]`` / ``# bnlint: skip-file``."""
from __future__ import annotations

import io
import re
import tokenize
from typing import Dict, FrozenSet, Optional

__all__ = ["Suppressions", "parse_suppressions"]

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)
_IGNORE = re.compile(r"#\s*bnlint:\s*ignore(?:\[(?P<codes>[^\]]*)\])?", re.IGNORECASE)
_SKIP_FILE = re.compile(r"#\s*bnlint:\s*skip-file\b", re.IGNORECASE)

ALL = frozenset({"*"})


class Suppressions:
    """Per-line suppressed codes of one file. ``*`` means every code."""

    def __init__(self, by_line: Dict[int, FrozenSet[str]], skip_file: bool):
        self.by_line = by_line
        self.skip_file = skip_file

    def suppresses(self, line: Optional[int], code: str) -> bool:
        if self.skip_file:
            return True
        if line is None:
            return False
        codes = self.by_line.get(line)
        if not codes:
            return False
        return "*" in codes or any(code.startswith(c) for c in codes)


def _codes(text: Optional[str]) -> FrozenSet[str]:
    if not text or not text.strip():
        return ALL
    return frozenset(c.upper() for c in re.split(r"[\s,]+", text.strip()) if c)


def parse_suppressions(text: str) -> Suppressions:
    by_line: Dict[int, FrozenSet[str]] = {}
    skip = False
    lowered = text.lower()
    if "noqa" not in lowered and "bnlint" not in lowered:
        return Suppressions(by_line, skip)  # nothing to find: skip tokenizing
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        tokens = []
        # Fall back to a line scan: good enough for files that do not tokenize.
        for lineno, line in enumerate(text.splitlines(), 1):
            if "#" in line:
                tokens.append(tokenize.TokenInfo(tokenize.COMMENT, line[line.index("#"):], (lineno, 0), (lineno, 0), line))
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        comment = tok.string
        line = tok.start[0]
        if _SKIP_FILE.search(comment):
            skip = True
        codes: FrozenSet[str] = frozenset()
        m = _NOQA.search(comment)
        if m:
            codes |= _codes(m.group("codes"))
        m = _IGNORE.search(comment)
        if m:
            codes |= _codes(m.group("codes"))
        if codes:
            by_line[line] = by_line.get(line, frozenset()) | codes
    return Suppressions(by_line, skip)
