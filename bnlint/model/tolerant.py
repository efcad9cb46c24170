"""A parse that leaves out the statements the running Python cannot parse.

Old training scripts often fail ``ast.parse`` over one word: ``target.cuda(async=True)``
(``async`` became a keyword in Python 3.7), ``print "epoch", i``. The planner reads
such a script only for its facts (the calls that build the project's models, argparse
defaults, options set on ``args``, input sizes), and those rarely sit on the lines
that do not parse. :func:`tolerant_parse` replaces each statement that makes
``ast.parse`` fail by ``pass`` at the same indentation (a compound statement's header
``...:`` by ``if True:``, so that its body stays a block), keeping every line number,
and tries again, a bounded number of times.

It is never used for a file's findings nor to import it: the file itself still gets
its ``BNL001`` syntax error, and nothing of it is built.
"""
from __future__ import annotations

import ast
import io
import tokenize
from typing import List, Optional, Tuple

__all__ = ["MAX_LEFT_OUT", "tolerant_parse", "statement_lines"]

MAX_LEFT_OUT = 20  # statements left out at most; a file with more is not read at all

_NOT_CODE = (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)


def statement_lines(text: str, lineno: int) -> Optional[Tuple[int, int, bool]]:
    """(first line, last line, ends with ``:``) of the logical line (the statement, a
    compound statement's header alone) that contains physical line ``lineno``, as the
    tokenizer sees it; None when no statement contains it or the text does not tokenize
    up to there."""
    start: Optional[int] = None
    last_op: Optional[str] = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in _NOT_CODE:
                continue
            if tok.type == tokenize.NEWLINE or tok.type == tokenize.ENDMARKER:
                if start is not None:
                    end = tok.start[0]
                    if start <= lineno <= end:
                        return start, end, last_op == ":"
                    if start > lineno:
                        return None
                start, last_op = None, None
                if tok.type == tokenize.ENDMARKER:
                    return None
                continue
            if start is None:
                start = tok.start[0]
                if start > lineno:
                    return None
            last_op = tok.string if tok.type == tokenize.OP else None
    except (tokenize.TokenError, SyntaxError, ValueError):
        return None
    return None


def tolerant_parse(raw: bytes, filename: str = "<unknown>",
                   limit: int = MAX_LEFT_OUT) -> Optional[Tuple[ast.Module, Tuple[int, ...]]]:
    """(tree, the physical lines left out) of ``raw``, parsed with each statement that
    does not parse replaced as described above; None when it still does not parse after
    ``limit`` statements, or a statement to leave out cannot be found (an unterminated
    string or bracket, a wrong indentation, text that does not decode)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        text = raw.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        return None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: List[str] = text.splitlines(keepends=True)
    left_out: List[int] = []
    for statements in range(limit + 1):
        source = "".join(lines)
        try:
            return ast.parse(source, filename=filename), tuple(sorted(left_out))
        except SyntaxError as exc:
            if isinstance(exc, IndentationError) or not exc.lineno:
                return None
            lineno = exc.lineno
        except (ValueError, RecursionError, MemoryError):
            return None
        if statements == limit:
            return None
        found = statement_lines(source, lineno)
        if found is None:
            return None
        first, last, header = found
        if any(first <= n <= last for n in left_out):
            return None  # already replaced: the error is not in this statement
        head = lines[first - 1]
        indent = head[:len(head) - len(head.lstrip(" \t\f"))]
        ending = "\r\n" if head.endswith("\r\n") else "\n"
        lines[first - 1] = indent + ("if True:" if header else "pass") + ending
        for n in range(first + 1, last + 1):
            lines[n - 1] = ending
        left_out.extend(range(first, last + 1))
    return None
