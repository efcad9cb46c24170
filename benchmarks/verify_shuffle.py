"""Benchmark 2: single shuffle (SS) vs random reshuffle (RR) with BN, via the harness.

(a) Two Gaussian classes, n = 64, d = 32, batch 4, linear model with BN on its inputs,
    plain SGD lr 0.5, 2000 epochs, 10 data seeds (one permutation each). Risk with
    full-batch BN statistics and in eval mode (running statistics), averaged over the
    last 10% of epochs.
(b) n = 4 points in 1-D, batch 2: the three possible pairings under SS, against RR.

Run: .venv/bin/python benchmarks/verify_shuffle.py [--epochs 2000] [--seeds 10]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import TensorDataset

from bnlint.verify.options import VerifyOptions
from bnlint.verify.shuffle_experiment import (ShuffleSetup, builtin_shuffle_setup, linear_bn_model,
                                              run_shuffle_experiment, train_order_run)
from bnlint.verify.tasks import TaskData


def gaussian_part(epochs: int, seeds: int) -> None:
    opts = VerifyOptions(seeds=seeds, epochs=epochs, permutation_seeds=1, budget=1e9, progress=True)
    start = time.perf_counter()
    report = run_shuffle_experiment(builtin_shuffle_setup(), opts).to_dict()
    print(f"(a) {report['task']}, {epochs} epochs, {seeds} seeds, {time.perf_counter() - start:.0f} s")
    rows = []
    for seed in report["seeds"]:
        ss, rr = seed["before"]["runs"][0], seed["after"]["runs"][0]
        at200 = lambda run: run["curves"]["full_batch_risk"][min(199, epochs - 1)]  # noqa: E731
        rows.append((ss["full_batch_risk"], rr["full_batch_risk"], ss["eval_risk"], rr["eval_risk"],
                     ss["weight_norm"], rr["weight_norm"], ss["full_batch_risk"] > at200(ss),
                     rr["full_batch_risk"] > at200(rr), ss["diverged"], rr["diverged"]))
    med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
    print(f"    full-batch-BN risk, median: SS {med(0):.3f} vs RR {med(1):.3f}; SS worse in "
          f"{sum(r[0] > r[1] for r in rows)}/{len(rows)} seeds")
    print(f"    eval-mode risk (running stats), median: SS {med(2):.3f} vs RR {med(3):.3f}; SS worse in "
          f"{sum(r[2] > r[3] for r in rows)}/{len(rows)} seeds")
    print(f"    weight norm, median: SS {med(4):.1f} vs RR {med(5):.1f}")
    print(f"    risk rising from epoch 200 to the end: SS {sum(r[6] for r in rows)}/{len(rows)}, "
          f"RR {sum(r[7] for r in rows)}/{len(rows)}; flagged diverging: SS {sum(r[8] for r in rows)}, "
          f"RR {sum(r[9] for r in rows)}")
    spread = [m for m in report["metrics"] if m["metric"] == "eval_risk"][0]
    print(f"    harness verdict: {report['verdict']} ({report['reason']}); eval_risk diff {spread['diff_mean']:.3f} "
          f"CI {spread['ci95']}")


def four_points() -> TaskData:
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    y = torch.tensor([0, 1, 0, 1])
    return TaskData(TensorDataset(x, y), TensorDataset(x, y), torch.nn.functional.cross_entropy, 2, "4 points")


def pairing_part(epochs: int) -> None:
    task = four_points()
    setup = ShuffleSetup(lambda: linear_bn_model(1, 2), lambda s: task, 2, 0.5, 0.0, "n=4 toy")
    checkpoints = [e for e in (10, 100, 1000, 10000) if e <= epochs]
    print(f"(b) 1-D, n = 4 (x = 0,1,2,3; labels 0,1,0,1), batch 2, lr 0.5; full-batch-BN risk at epochs {checkpoints}")
    torch.set_num_threads(1)
    for name, order in (("SS {0,1}{2,3}", [0, 1, 2, 3]), ("SS {0,2}{1,3}", [0, 2, 1, 3]),
                        ("SS {0,3}{1,2}", [0, 3, 1, 2]), ("RR", None)):
        torch.manual_seed(0)
        model = setup.build_model()
        mode = "ss" if order else "rr"
        run = train_order_run(setup, task, model, mode, 0, epochs, torch.device("cpu"), order)
        risk = run["curves"]["full_batch_risk"]
        print(f"    {name:14s} " + " -> ".join(f"{risk[e - 1]:.2f}" for e in checkpoints)
              + f"   weight norm {run['weight_norm']:.1f}, diverging: {run['diverged']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--pair-epochs", type=int, default=10000)
    args = parser.parse_args()
    pairing_part(args.pair_epochs)
    gaussian_part(args.epochs, args.seeds)
