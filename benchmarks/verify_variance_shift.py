"""Benchmark 1: variance shift of dropout(p) -> BN, before and after the fix.

Model: Linear(32, 128) -> Dropout(p) -> BatchNorm1d -> ReLU -> Linear(128, 4) (before)
vs Linear -> BatchNorm1d -> ReLU -> Dropout(p) -> Linear (after), trained by the
harness on its synthetic 4-class task, 3 seeds. Reported for the BN: running_var /
eval-time input variance (Li et al.'s ratio, expected about 1/(1-p) before and 1 after)
and the harness verdict.

Run: .venv/bin/python benchmarks/verify_variance_shift.py
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from bnlint.verify.model_experiment import ModelPair, run_model_experiment
from bnlint.verify.options import VerifyOptions


class Net(nn.Module):
    def __init__(self, p: float, fixed: bool):
        super().__init__()
        self.fixed = fixed
        self.fc1, self.drop, self.bn, self.fc2 = nn.Linear(32, 128), nn.Dropout(p), nn.BatchNorm1d(128), nn.Linear(128, 4)

    def forward(self, x):
        if self.fixed:
            return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))
        return self.fc2(torch.relu(self.bn(self.drop(self.fc1(x)))))


def main() -> None:
    print("p    expected 1/(1-p)  before: running/eval var  after: running/eval var  verdict       val_acc before/after  seconds")
    for p in (0.1, 0.3, 0.5):
        start = time.perf_counter()
        pair = ModelPair(lambda: Net(p, False), lambda: Net(p, True), (torch.randn(4, 32),))
        report = run_model_experiment(pair, VerifyOptions(seeds=3, budget=1e9, progress=False))
        inv = {side: [1.0 / s[side]["variance_shift"][0]["ratio"] for s in report.seeds] for side in ("before", "after")}
        acc = next(c for c in report.comparisons if c.spec.name == "val_acc")

        def fmt(xs):
            return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"

        print(f"{p:<4} {1 / (1 - p):<17.3f} {fmt(inv['before']):<25} {fmt(inv['after']):<24} {report.verdict:<13} "
              f"{acc.before_mean:.3f} / {acc.after_mean:.3f}         {time.perf_counter() - start:.1f}")


if __name__ == "__main__":
    main()
