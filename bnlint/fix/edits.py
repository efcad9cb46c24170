"""Applying a file's edits: text replacements at (line, column) positions.

Positions follow libcst (1-based lines, 0-based columns, exclusive ends). All edits of
a file are applied in one pass over the source; identical edits are merged (two fixes
may both add the same helper) and overlapping edits are refused, never guessed.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from bnlint.findings import Edit

__all__ = ["OverlapError", "line_offsets", "offset", "apply_edits", "overlapping"]


class OverlapError(ValueError):
    """Two edits touch the same text; the message names both."""


def line_offsets(text: str) -> List[int]:
    """Offset of the start of every line (index 0 is line 1), plus the end of the text."""
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    if starts[-1] != len(text):
        starts.append(len(text))
    return starts


def offset(starts: Sequence[int], pos: Tuple[int, int]) -> int:
    line, col = pos
    if line - 1 >= len(starts):
        return starts[-1]
    return min(starts[line - 1] + col, starts[-1])


def _conflict(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    """Ranges overlap, or two insertions compete for one point (order unknown)."""
    (s1, e1), (s2, e2) = a, b
    if s1 == e1 and s2 == e2:
        return s1 == s2
    if s1 == e1:
        return s2 < s1 < e2
    if s2 == e2:
        return s1 < s2 < e1
    return s1 < e2 and s2 < e1


def overlapping(text: str, groups: Sequence[Sequence[Edit]], shareable: Optional[Sequence[bool]] = None) -> List[int]:
    """Indices of the edit groups (one group = one fix) that conflict with an earlier
    accepted group; a group conflicting with itself is refused too.

    An edit identical to one of an accepted group is shared (two fixes adding the same
    helper) unless ``shareable[index]`` is False: two moved dropouts that would insert
    the same call at the same place must stay two dropouts, so the second one waits for
    the next round."""
    starts = line_offsets(text)
    accepted: Dict[Tuple[int, int, str], None] = {}
    refused: List[int] = []
    for index, group in enumerate(groups):
        mine = []
        ok = True
        share = shareable is None or shareable[index]
        for e in group:
            rng = (offset(starts, e.start), offset(starts, e.end))
            key = (rng[0], rng[1], e.replacement)
            if key in mine or (key in accepted and share):
                continue
            if key in accepted:
                ok = False
                break
            if any(_conflict(rng, (s, t)) for (s, t, _r) in list(accepted) + mine):
                ok = False
                break
            mine.append(key)
        if ok:
            accepted.update((k, None) for k in mine)
        else:
            refused.append(index)
    return refused


def apply_edits(text: str, edits: Iterable[Edit], newline: str = "\n") -> str:
    """The text with every edit applied; raises OverlapError on conflicting edits.

    Replacement text is written with ``\\n`` line ends and converted to the file's
    newline style.
    """
    starts = line_offsets(text)
    spans: Dict[Tuple[int, int, str], Edit] = {}
    for e in edits:
        s, t = offset(starts, e.start), offset(starts, e.end)
        if t < s:
            raise OverlapError(f"edit ends before it starts at line {e.start[0]}")
        spans.setdefault((s, t, e.replacement), e)
    ordered = sorted(spans, key=lambda k: (k[0], k[1]))
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if b[0] > a[1]:
                break
            if _conflict(a[:2], b[:2]):
                raise OverlapError(
                    f"edits at line {spans[a].start[0]} and line {spans[b].start[0]} overlap"
                )
    out: List[str] = []
    cursor = 0
    for s, t, repl in ordered:
        out.append(text[cursor:s])
        body = repl.replace("\r\n", "\n")
        if newline != "\n":
            body = body.replace("\n", newline)
        out.append(body)
        cursor = max(cursor, t)
    out.append(text[cursor:])
    return "".join(out)
