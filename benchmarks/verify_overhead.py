"""Benchmark 3: the harness's training speed on a Wide-ResNet-16-4 against a plain
hand-written training loop of the same model, in the same run; and where the time of
a CPU step goes.

Everything is measured in this process, alternated, best of ``--repeats`` rounds of
``--steps`` optimizer steps (batch 32, synthetic 3x32x32 data, SGD momentum 0.9) after
a warm-up step:

- ``plain fp32``: the loop a user writes (``torch.optim.SGD``, fp32, torch's default
  thread count), the baseline;
- the same plain loop with one thread, with channels-last, with bfloat16 autocast +
  channels-last (the settings the harness picks on CPUs with native bfloat16);
- the harness (``bnlint.verify.training.train_model`` with the settings
  ``bnlint.verify.speed.choose_speed`` picks, as ``bnlint verify`` runs it);
- per-step cost of the pieces around a step: building the synthetic task, fetching a
  batch, the first-use cost of ``torch.optim`` (it imports ``torch._dynamo``; the
  harness's optimizer does not), and one validation pass (256 examples);
- batch size: seconds per example at batch 16, 32 and 64.

Run: .venv/bin/python benchmarks/verify_overhead.py [--repeats 2] [--steps 3]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bnlint.verify.batching import BatchSource, batches_of
from bnlint.verify.environment import available_cpus
from bnlint.verify.speed import choose_speed
from bnlint.verify.tasks import synthetic_task
from bnlint.verify.training import evaluate, make_optimizer, train_model

ROOT = Path(__file__).resolve().parent.parent
BATCH = 32


def _wrn():
    spec = importlib.util.spec_from_file_location("wrn", ROOT / "fixtures/verify/wrn16_4_dropout_before_bn2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WideResNet


def plain_loop(build, x, y, steps, threads, channels_last=False, bf16=False, batch=BATCH) -> float:
    """Seconds per step of a hand-written loop (after one warm-up step)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    model.train()
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    idx = [torch.arange(i * batch, (i + 1) * batch) % len(x) for i in range(steps + 1)]
    start = 0.0
    for i, b in enumerate(idx):
        if i == 1:
            start = time.perf_counter()
        with ctx():
            out = model(x[b])
        loss = F.cross_entropy(out.float(), y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def harness_loop(build, task, speed, steps) -> float:
    torch.set_num_threads(speed.threads or 1)
    torch.manual_seed(0)
    model = speed.prepare(build())
    src = speed.source(task.train, torch.device("cpu"))
    opt = make_optimizer(model, 0.02, 0.9, src.amp)
    warm = [torch.arange(BATCH)]
    train_model(model, src, warm, task.loss_fn, BATCH, opt, 0)
    order = [torch.arange(steps * BATCH) % len(src)]
    start = time.perf_counter()
    train_model(model, src, order, task.loss_fn, BATCH, opt, 0)
    return (time.perf_counter() - start) / steps


def _dynamo_import_seconds() -> float:
    code = ("import time, torch; t = time.perf_counter(); "
            "torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    build = lambda: _wrn()(16, 4, 0.3)  # noqa: E731
    default_threads = torch.get_num_threads()
    start = time.perf_counter()
    task = synthetic_task((3, 32, 32), 10, 512, 256, seed=0)
    data_s = time.perf_counter() - start
    x, y = task.train.tensors
    speed = choose_speed(build(), task.train, torch.device("cpu"), BATCH)
    rows = {
        f"plain fp32, {default_threads} threads (torch default)": lambda: plain_loop(build, x, y, args.steps,
                                                                                    default_threads),
        "plain fp32, 1 thread": lambda: plain_loop(build, x, y, args.steps, 1),
        "plain fp32, channels-last, 1 thread": lambda: plain_loop(build, x, y, args.steps, 1, channels_last=True),
        "plain bf16 autocast, channels-last, 1 thread": lambda: plain_loop(build, x, y, args.steps, 1, True, True),
    }
    same_name = f"plain {speed.label} (the harness's settings)"
    rows[same_name] = lambda: plain_loop(build, x, y, args.steps, speed.threads or 1, speed.channels_last,
                                         speed.amp == torch.bfloat16)
    rows[f"harness train_model ({speed.label})"] = lambda: harness_loop(build, task, speed, args.steps)
    best = {k: float("inf") for k in rows}
    for _ in range(args.repeats):
        for name, fn in rows.items():
            best[name] = min(best[name], fn())
    torch.set_num_threads(speed.threads or 1)
    src = speed.source(task.train, torch.device("cpu"))
    idx = batches_of(torch.randperm(len(src)), BATCH)
    t = time.perf_counter()
    for b in idx:
        src.batch(b)
    fetch_s = (time.perf_counter() - t) / len(idx)
    model = speed.prepare(build())
    val = speed.source(task.val, torch.device("cpu"))
    evaluate(model, val, task.loss_fn, True)
    t = time.perf_counter()
    evaluate(model, val, task.loss_fn, True)
    val_s = time.perf_counter() - t
    per_example = {}
    for bs in (16, 32, 64):
        per_example[bs] = plain_loop(build, x, y, max(2, args.steps * 32 // bs), 1, True, True, batch=bs) / bs
    dynamo_s = _dynamo_import_seconds()
    base = best[next(iter(rows))]
    same = best[same_name]
    print(f"WRN-16-4, batch {BATCH}, {args.steps} steps x best of {args.repeats}; {available_cpus()} CPUs; "
          f"harness picked: {speed.label}; torch {torch.__version__}")
    print("| loop | s/step | steps/s | vs plain fp32 default |")
    print("|---|---|---|---|")
    for name in rows:
        print(f"| {name} | {best[name]:.3f} | {1 / best[name]:.2f} | {base / best[name]:.2f}x |")
    harness = best[f"harness train_model ({speed.label})"]
    print(f"harness / plain loop with the same settings: {harness / same:.3f} (time ratio)")
    print(f"synthetic task (768 examples): {data_s * 1000:.1f} ms once; batch fetch: {fetch_s * 1000:.2f} ms/step; "
          f"validation pass (256): {val_s:.2f} s; first torch.optim optimizer (imports torch._dynamo): "
          f"{dynamo_s:.2f} s")
    print("seconds per example (plain bf16 + channels-last, 1 thread): "
          + ", ".join(f"batch {bs}: {s * 1000:.1f} ms" for bs, s in per_example.items()))


if __name__ == "__main__":
    main()
