"""Benchmark 1: Li et al.'s variance shift before and after the guideline fix, with the
harness's verdict, on real fixture models.

Models: Wide-ResNet-16-4 (fixtures/verify/wrn16_4_dropout_before_bn2.py: dropout
between conv1 and bn2 -> wrn16_4_guideline.py: dropout after bn2+ReLU, before conv2)
and DenseNet-BC (fixtures/BNL101/densenet_bc_cifar.py -> fixtures/fixed/BNL101/, what
`bnlint fix` makes of it: the first of the bottleneck's dropouts moves behind
bn2+ReLU; the dropout after conv2, which feeds the next layers' bn1 through the
concatenation, stays), each with dropout p in {0.1, 0.3, 0.5}. Each row is one
harness run as `bnlint verify` would do it (default options: 3 seeds, the default
budget, the device it picks). Reported per p:

- ``first``: running var / eval-mode input var at the first BN the change is judged
  at (WRN: layer1.0.bn2, fed directly by the dropout before the fix; nothing upstream
  is shifted, so theory says >= 1/(1-p) before and 1 after);
- ``judged``: the same ratio over all the judged BNs (geometric mean); deeper BNs also
  inherit the shift of every BN above them, so "after" stays above 1 there;
- the verdict and the wall time of the run.

Run: .venv/bin/python benchmarks/verify_variance_shift.py [--budget 120] [--models wrn,densenet] [--p 0.1,0.3,0.5]
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

from bnlint.verify.model_experiment import ModelPair, run_model_experiment
from bnlint.verify.options import VerifyOptions

ROOT = Path(__file__).resolve().parent.parent


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pairs():
    wrn_b = _module(ROOT / "fixtures/verify/wrn16_4_dropout_before_bn2.py", "wrn_before")
    wrn_a = _module(ROOT / "fixtures/verify/wrn16_4_guideline.py", "wrn_after")
    dn_b = _module(ROOT / "fixtures/BNL101/densenet_bc_cifar.py", "densenet_before")
    dn_a = _module(ROOT / "fixtures/fixed/BNL101/densenet_bc_cifar.py", "densenet_after")
    return {
        "wrn": ("WRN-16-4", lambda p: wrn_b.WideResNet(16, 4, p), lambda p: wrn_a.WideResNet(16, 4, p)),
        "densenet": ("DenseNet-BC-22 (k=6)", lambda p: dn_b.DenseNet3(dropRate=p), lambda p: dn_a.DenseNet3(dropRate=p)),
    }


def _fmt(xs):
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=None, help="seconds per run (default: the harness's)")
    parser.add_argument("--models", default="wrn,densenet")
    parser.add_argument("--p", default="0.1,0.3,0.5")
    args = parser.parse_args()
    pairs = _pairs()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}, budget {args.budget or 'default'}")
    print("model | p | 1/(1-p) | first judged BN before | after | judged BNs before | after | verdict | "
          "epochs | wall s | speed")
    for key in args.models.split(","):
        label, build_before, build_after = pairs[key]
        for p in (float(x) for x in args.p.split(",")):
            start = time.monotonic()
            pair = ModelPair(lambda: build_before(p), lambda: build_after(p), (torch.randn(2, 3, 32, 32),),
                             f"{label} p={p} before", f"{label} p={p} after")
            report = run_model_experiment(pair, VerifyOptions(budget=args.budget, progress=False), started=start)
            wall = time.monotonic() - start
            first = report.judged["names"][0]
            row = {}
            for side in ("before", "after"):
                firsts = [next(s["ratio"] for s in seed[side]["variance_shift"] if s["name"] == first)
                          for seed in report.seeds]
                stage = [seed[side].get("trained") or seed[side]["at_init"] for seed in report.seeds]
                row[side] = (firsts, [st["judged_ratio"] for st in stage])
            print(f"{label} | {p} | {1 / (1 - p):.3f} | {_fmt(row['before'][0])} | {_fmt(row['after'][0])} | "
                  f"{_fmt(row['before'][1])} | {_fmt(row['after'][1])} | {report.verdict} | {report.epochs} | "
                  f"{wall:.0f} | {report.environment['speed']['label']}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
