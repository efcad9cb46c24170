"""A small progress bar with an ETA on stderr, drawn only when stderr is a terminal."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

__all__ = ["ProgressBar", "format_seconds"]


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes:02d}:{sec:02d}"


class ProgressBar:
    """``bar = ProgressBar(total, "verify"); bar.advance(); ...; bar.close()``.

    Silent (no output at all) when ``enabled`` is false or the stream is not a TTY, so
    logs and captured output stay clean.
    """

    def __init__(self, total: int, label: str, stream: Optional[TextIO] = None, enabled: bool = True, width: int = 28):
        self.total = max(1, int(total))
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(enabled and isatty is not None and isatty())
        self.width = width
        self.done = 0
        self.note = ""
        self._start = time.monotonic()
        self._last_draw = 0.0

    def set_total(self, total: int) -> None:
        self.total = max(self.done, max(1, int(total)))
        self._draw(force=True)

    def advance(self, steps: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + steps)
        if note:
            self.note = note
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1 and self.done < self.total:
            return
        self._last_draw = now
        frac = self.done / self.total
        filled = int(frac * self.width)
        elapsed = now - self._start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"\r{self.label} [{bar}] {self.done}/{self.total} {format_seconds(elapsed)}<{format_seconds(eta)} {self.note}"
        self.stream.write(line[:200].ljust(80))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
