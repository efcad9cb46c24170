"""Benchmark: the runtime watch of ``bnlint run`` against the same training without it.

1. In process: ``runtime_watch_train.train()`` timed alone and inside a ``Watch``,
   alternated, ``--repeats`` times each; the ratio of the medians is the watch's own
   overhead (the budget is 5% of the script's time).
2. End to end: ``python runtime_watch_train.py`` against ``bnlint run
   runtime_watch_train.py`` as subprocesses, alternated; this adds bnlint's start-up
   (click, the rule registry) and the report.

Run: .venv/bin/python benchmarks/runtime_watch.py [--repeats 7] [--epochs 4]
Exit 1 when the in-process ratio exceeds 1.05.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from bnlint.runtime.watch import Watch  # noqa: E402
from runtime_watch_train import train  # noqa: E402

SCRIPT = os.path.join(HERE, "runtime_watch_train.py")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def in_process(repeats: int, epochs: int, workers: int):
    plain, watched = [], []
    train(1, workers=workers)  # warm-up
    for _ in range(repeats):
        plain.append(timed(lambda: train(epochs, workers=workers)))
        with Watch() as watch:
            watched.append(timed(lambda: train(epochs, workers=workers)))
        assert watch.record().loaders, "the watch saw no loader"
    return statistics.median(plain), statistics.median(watched)


def end_to_end(repeats: int, epochs: int):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    python = [sys.executable, SCRIPT, "--epochs", str(epochs)]
    bnlint = [sys.executable, "-m", "bnlint", "run", SCRIPT, "--epochs", str(epochs)]
    plain, watched = [], []
    for _ in range(repeats):
        plain.append(timed(lambda: subprocess.run(python, env=env, check=True, capture_output=True)))
        watched.append(timed(lambda: subprocess.run(bnlint, env=env, check=True, capture_output=True)))
    return statistics.median(plain), statistics.median(watched)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    worst = 0.0
    for workers in (0, 2):
        plain, watched = in_process(args.repeats, args.epochs, workers)
        ratio = watched / plain
        worst = max(worst, ratio)
        print(f"in process, {workers} workers: plain {plain:.3f} s, watched {watched:.3f} s, ratio {ratio:.3f}")
    if not args.skip_end_to_end:
        plain, watched = end_to_end(args.repeats, args.epochs)
        print(f"end to end: python {plain:.2f} s, bnlint run {watched:.2f} s, ratio {watched / plain:.3f}")
    return 1 if worst > 1.05 else 0


if __name__ == "__main__":
    sys.exit(main())
