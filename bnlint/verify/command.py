"""The ``bnlint verify`` command's work in the CLI process: check the options, then
run the verification in a subprocess (``python -m bnlint.verify``) so that user code
crashing, or exhausting memory, cannot take the CLI down with a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional, Sequence, Tuple

from bnlint.verify.options import VerifyError, VerifyOptions

__all__ = ["build_request", "run_verify_subprocess", "parse_rename"]


def parse_rename(values: Sequence[str]) -> Tuple[Tuple[str, str], ...]:
    pairs = []
    for value in values:
        if "=" not in value:
            raise VerifyError(f"--rename {value!r}: write OLD_PREFIX=NEW_PREFIX, e.g. body.3.=body.4.")
        old, new = value.split("=", 1)
        pairs.append((old, new))
    return tuple(pairs)


def build_request(before: str, after: str, model: Optional[str], seeds: int, epochs: Optional[int],
                  budget: Optional[float], device: Optional[str], task: Optional[str], report: Optional[str],
                  plot: Optional[str], kind: str = "auto", rename: Sequence[str] = (),
                  input_shape=None) -> dict:
    """Validate everything that can be checked without running user code."""
    for path in (before, after):
        if not os.path.isfile(path):
            raise VerifyError(f"{path}: no such file")
    options = VerifyOptions(seeds=seeds, epochs=epochs, budget=budget, device=device, task=task, kind=kind,
                            rename=parse_rename(rename))
    for out in (report, plot):
        if out and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
            raise VerifyError(f"cannot write {out}: its folder does not exist")
    if plot and not plot.lower().endswith(".png"):
        raise VerifyError(f"--plot {plot}: the plot is a PNG file (name it *.png)")
    return {"before": before, "after": after, "model": model, "options": options.to_dict(),
            "report": report, "plot": plot, "input_shape": [list(s) for s in input_shape] if input_shape else None}


def run_verify_subprocess(request: dict) -> int:
    """Run the verification worker; its stdout/stderr go straight to ours."""
    options = dict(request["options"])
    options["rename"] = [list(p) for p in options.get("rename", [])]
    request = dict(request, options=options)
    try:
        proc = subprocess.run([sys.executable, "-m", "bnlint.verify", json.dumps(request)])
    except KeyboardInterrupt:
        print("bnlint: interrupted", file=sys.stderr)
        return 130
    if proc.returncode < 0:
        print(f"bnlint: error: the verification worker was killed by signal {-proc.returncode} "
              "(out of memory? try a smaller --budget or --seeds)", file=sys.stderr)
        return 2
    return proc.returncode
