"""Benchmark 3: the harness's training time against a plain hand-written loop.

Same model (a small conv net with BN), same synthetic data, same batches, same number
of optimizer steps, same thread count, in the same process; alternated and repeated,
best of N kept for each. The harness's loop (``train_model``) is timed alone and also
with its per-epoch validation callback, as it runs inside ``bnlint verify``.

Run: .venv/bin/python benchmarks/verify_overhead.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from bnlint.verify.batching import BatchSource, batches_of, epoch_orders
from bnlint.verify.tasks import synthetic_task
from bnlint.verify.training import evaluate, make_optimizer, train_model

EPOCHS, BATCH = 4, 32


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.Dropout(0.3), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def plain_loop(x, y, orders) -> float:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    torch.manual_seed(0)
    start = time.perf_counter()
    for order in orders:
        model.train()
        for idx in batches_of(order, BATCH):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def harness_loop(task, orders, with_validation: bool) -> float:
    model = make_model()
    src, val = BatchSource(task.train, torch.device("cpu")), BatchSource(task.val, torch.device("cpu"))
    opt = make_optimizer(model, 0.02, 0.9)
    on_epoch = (lambda e, l: evaluate(model, val, task.loss_fn, True)) if with_validation else None
    start = time.perf_counter()
    train_model(model, src, orders, task.loss_fn, BATCH, opt, 0, on_epoch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = synthetic_task((3, 32, 32), 10, 512, 256, seed=0)
    x, y = task.train.tensors
    orders = epoch_orders(len(x), EPOCHS, seed=0)
    steps = EPOCHS * len(batches_of(orders[0], BATCH))
    plain, harness, harness_val = [], [], []
    harness_loop(task, orders[:1], False)  # warm-up
    for _ in range(args.repeats):
        plain.append(plain_loop(x, y, orders))
        harness.append(harness_loop(task, orders, False))
        harness_val.append(harness_loop(task, orders, True))
    p, h, hv = min(plain), min(harness), min(harness_val)
    print(f"{steps} steps, batch {BATCH}, {args.threads} thread(s), best of {args.repeats}")
    print(f"plain loop               {p:.3f} s")
    print(f"harness train_model      {h:.3f} s   ratio {h / p:.3f}")
    print(f"harness + per-epoch val  {hv:.3f} s   ratio {hv / p:.3f}")


if __name__ == "__main__":
    main()
