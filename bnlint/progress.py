"""The progress line of ``bnlint check`` on stderr, drawn only on a terminal.

Model files take seconds each (a worker imports, builds and traces them), so when
several are checked a line such as ``bnlint: models 3/12 · models/wrn.py`` is
redrawn in place and erased at the end. Nothing is written when stderr is not a TTY
(logs, pipes, CI) or when there is only one model file.
"""
from __future__ import annotations

import shutil
import sys
import threading
from typing import Optional, TextIO

__all__ = ["ProgressLine"]

MIN_FILES = 2  # fewer model files than this: no progress line


class ProgressLine:
    """Callable handed to ``check_paths(progress=...)``: ``progress(path, total)`` is
    called once per model file analysed, from worker threads."""

    def __init__(self, stream: Optional[TextIO] = None, min_files: int = MIN_FILES):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty is not None and isatty())
        self.min_files = min_files
        self.done = 0
        self._width = 0
        self._lock = threading.Lock()

    def __call__(self, path: str, total: int) -> None:
        with self._lock:
            self.done += 1
            if not self.enabled or total < self.min_files:
                return
            text = f"bnlint: models {self.done}/{total} · {path}"
            text = text[: max(20, shutil.get_terminal_size().columns - 1)]
            pad = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + pad)
            self.stream.flush()
            self._width = len(text)

    def close(self) -> None:
        """Erase the line (before the report is printed)."""
        with self._lock:
            if self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0
