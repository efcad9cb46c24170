"""Reading source files exactly as they are (encoding, BOM, newline style)."""
from __future__ import annotations

import codecs
import io
import tokenize
from dataclasses import dataclass
from typing import Optional, Union

__all__ = ["SourceFile", "SourceError", "read_source", "MAX_SOURCE_BYTES"]

MAX_SOURCE_BYTES = 20 * 1024 * 1024


class SourceError(Exception):
    """A file that cannot be read as Python source; the message says why."""


@dataclass(frozen=True)
class SourceFile:
    path: str  # as shown to the user
    text: str
    encoding: str
    bom: bool
    newline: str
    raw: bytes


def _detect_newline(raw: bytes) -> str:
    crlf = raw.count(b"\r\n")
    lf = raw.count(b"\n") - crlf
    return "\r\n" if crlf > lf else "\n"


def read_source(path: str, display: Optional[str] = None) -> SourceFile:
    display = display or path
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SOURCE_BYTES + 1)
    except IsADirectoryError:
        raise SourceError(f"{display} is a directory") from None
    except PermissionError:
        raise SourceError(f"permission denied reading {display}") from None
    except OSError as exc:
        raise SourceError(f"could not read {display}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SOURCE_BYTES:
        raise SourceError(f"{display} is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MB; exclude it")
    if path.endswith(".ipynb"):  # a notebook: the Python of its code cells
        from bnlint.notebook import notebook_source_file

        return notebook_source_file(raw, display)[0]
    if b"\x00" in raw:
        raise SourceError(f"{display} is a binary file, not Python source; exclude it")
    bom = raw.startswith(codecs.BOM_UTF8)
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError as exc:
        if "encoding" in str(exc):
            raise SourceError(
                f"{display} is not valid UTF-8 text and declares no other encoding; save it as "
                "UTF-8 or add an encoding declaration (# -*- coding: latin-1 -*-)"
            ) from None
        raise SourceError(f"{display}: {exc}") from None
    try:
        text = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise SourceError(
            f"{display} is not valid {encoding} text ({exc.reason if hasattr(exc, 'reason') else exc}); "
            "save it as UTF-8 or add an encoding declaration"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return SourceFile(path=display, text=text, encoding=encoding, bom=bom, newline=_detect_newline(raw), raw=raw)
