"""Objects that may live until the process ends.

Run as the ``bnlint`` program, ``check`` ends with ``os._exit`` once its report is out
(``bnlint.cli._leave``). Freeing a run's parsed trees one by one before that (a few
hundred thousand libcst nodes for a few hundred scripts) is about a tenth of a script
check, for nothing: the program hands them here instead. They are also moved out of the
cyclic collector's sight (``gc.freeze``): its next full collection would otherwise scan
them all once more, another tenth. Called from Python (the API, the tests), nothing is
kept and the trees go as soon as the analysis is done.
"""
from __future__ import annotations

import gc
from typing import Any, List

_kept: List[Any] = []
_keeping = False


def keep_until_exit() -> None:
    """From now on, ``hold`` keeps what it is given (the program's ``main``)."""
    global _keeping
    _keeping = True


def hold(obj: Any) -> None:
    if _keeping:
        _kept.append(obj)
        gc.freeze()
