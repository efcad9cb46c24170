"""Benchmark: the runtime watch of ``bnlint run`` against the same training without it.

1. In process: ``runtime_watch_train.train()`` timed alone and inside a ``Watch``,
   alternated, ``--repeats`` times each (CPU time of this process without loader
   workers, wall time with two workers); the ratio of the best times is the watch's
   own overhead (the budget is 5% of the script's time); the ratio of the medians is
   printed too (it moves with other jobs on the machine).
2. End to end: ``python runtime_watch_train.py`` against ``bnlint run
   runtime_watch_train.py`` as subprocesses, alternated; this adds bnlint's start-up
   (click, the rule registry) and the report.

3. Per call: what the watch adds per batch and per backward pass, on the cheapest
   loader and backward there are (CPU time, best of ``--repeats``), and that cost
   times this script's batches and steps as a share of its CPU time. On a shared
   machine the whole-run ratios above move by +-10% from run to run; this bound does
   not.

Run: .venv/bin/python benchmarks/runtime_watch.py [--repeats 11] [--epochs 4]
Exit 1 when the per-call bound exceeds 5% of the script's time.
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


def timed(fn, clock=time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def in_process(repeats: int, epochs: int, workers: int, clock):
    plain, watched = [], []
    train(1, workers=workers)  # warm-up
    with Watch():
        train(1, workers=workers)  # the watch's first use imports what it needs
    for _ in range(repeats):
        plain.append(timed(lambda: train(epochs, workers=workers), clock))
        with Watch() as watch:
            watched.append(timed(lambda: train(epochs, workers=workers), clock))
        assert watch.record().loaders, "the watch saw no loader"
    return plain, watched


class _Cheap(torch.utils.data.Dataset):
    def __len__(self):
        return 4096

    def __getitem__(self, i):
        return i


def per_call_costs(repeats: int):
    """The watch's cost per batch and per backward pass, in microseconds, measured on
    the cheapest loader (int samples, no collation) and the cheapest backward (a
    one-element tensor): what the watch adds, apart from anything a script does."""
    from torch.utils.data import DataLoader

    loader = DataLoader(_Cheap(), batch_size=4, collate_fn=list, shuffle=True)
    x = torch.ones(1, requires_grad=True)

    def batches():
        for _ in range(5):
            for _batch in loader:
                pass

    def backwards():
        for _ in range(5000):
            (x * 2).sum().backward()

    out = []
    for fn, count in ((batches, 5 * len(loader)), (backwards, 5000)):
        plain, watched = [], []
        for _ in range(repeats):
            plain.append(timed(fn, time.process_time))
            with Watch():
                watched.append(timed(fn, time.process_time))
        out.append((min(watched) - min(plain)) / count * 1e6)
    return out


def end_to_end(repeats: int, epochs: int):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    python = [sys.executable, SCRIPT, "--epochs", str(epochs)]
    bnlint = [sys.executable, "-m", "bnlint", "run", SCRIPT, "--epochs", str(epochs)]
    plain, watched = [], []
    for _ in range(repeats):
        plain.append(timed(lambda: subprocess.run(python, env=env, check=True, capture_output=True)))
        watched.append(timed(lambda: subprocess.run(bnlint, env=env, check=True, capture_output=True)))
    return plain, watched


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    # CPU time of this process where all the work is here (it ignores other jobs' load);
    # wall time with worker processes (their CPU time is not this process's).
    for workers, clock, unit in ((0, time.process_time, "CPU"), (2, time.perf_counter, "wall")):
        plain, watched = in_process(args.repeats, args.epochs, workers, clock)
        ratio = min(watched) / min(plain)
        print(f"in process, {workers} workers ({unit} time): plain best {min(plain):.3f} s (median {statistics.median(plain):.3f}), "
              f"watched best {min(watched):.3f} s (median {statistics.median(watched):.3f}); ratio of best "
              f"{ratio:.3f}, of medians {statistics.median(watched) / statistics.median(plain):.3f}")
    per_batch, per_backward = per_call_costs(args.repeats)
    steps = args.epochs * (4096 // 32) + args.epochs * 2  # training batches + validation batches
    plain_cpu = min(in_process(3, args.epochs, 0, time.process_time)[0])
    bound = (per_batch * steps + per_backward * args.epochs * (4096 // 32)) / 1e6 / plain_cpu
    print(f"per call: {per_batch:.1f} us per batch, {per_backward:.1f} us per backward pass; for this script "
          f"({steps} batches, {plain_cpu:.3f} s CPU): {100 * bound:.2f}% of its time")
    if not args.skip_end_to_end:
        plain, watched = end_to_end(args.repeats, args.epochs)
        print(f"end to end: python best {min(plain):.2f} s, bnlint run best {min(watched):.2f} s, ratio of best "
              f"{min(watched) / min(plain):.3f}, of medians {statistics.median(watched) / statistics.median(plain):.3f}")
    return 1 if bound > 0.05 else 0


if __name__ == "__main__":
    sys.exit(main())
