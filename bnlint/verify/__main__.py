"""Subprocess entry of ``bnlint verify``: ``python -m bnlint.verify REQUEST_JSON``.

User code runs here, not in the CLI process. Prints the table on stdout and errors as
``bnlint: error: ...`` on stderr. Exit codes: 0 confirmed, 1 inconclusive or
regressed, 2 usage error or a model/task that could not be run.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Sequence

STARTED = time.monotonic()  # the time budget counts from here (before torch is imported)

EXIT_CONFIRMED, EXIT_NOT_CONFIRMED, EXIT_ERROR = 0, 1, 2


def _error(message: str) -> int:
    print(f"bnlint: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _where(exc: BaseException, paths: Sequence[str]) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if any(f.filename.endswith(p) for p in paths)]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def run(request: dict) -> int:
    from bnlint.atomic import write_text_atomic
    from bnlint.verify.options import VerifyError, VerifyOptions
    from bnlint.verify.plot import require_matplotlib, write_plot
    from bnlint.verify.sources import verify_sources

    paths = [request["before"], request["after"]]
    try:
        options = VerifyOptions(**request.get("options", {}))
        if request.get("plot"):
            require_matplotlib()  # fail before training, not after
        report = verify_sources(request["before"], request["after"], request.get("model"), options,
                                request.get("input_shape"), started=STARTED)
    except VerifyError as exc:
        return _error(str(exc))
    except Exception as exc:  # user code failing while training or measuring
        return _error(f"verification failed{_where(exc, [p.split('/')[-1] for p in paths])}: "
                      f"{type(exc).__name__}: {exc}")
    sys.stdout.write(report.render_table())
    sys.stdout.flush()
    data = report.to_dict()
    if request.get("report"):
        try:
            write_text_atomic(request["report"], json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            return _error(f"cannot write {request['report']}: {exc.strerror or exc}")
    if request.get("plot"):
        try:
            write_plot(data, request["plot"])
        except OSError as exc:
            return _error(f"cannot write {request['plot']}: {exc.strerror or exc}")
    return EXIT_CONFIRMED if report.confirmed else EXIT_NOT_CONFIRMED


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        return _error("usage: python -m bnlint.verify REQUEST_JSON")
    try:
        request = json.loads(argv[0])
    except ValueError:
        return _error("the verification request is not valid JSON")
    try:
        return run(request)
    except KeyboardInterrupt:
        print("bnlint: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
