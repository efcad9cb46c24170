"""bnlint's model analysis (trace + shapes + fact graph + graph rules) against plain
``torch.fx.symbolic_trace`` of the same model, measured in the same run.

    python benchmarks/trace_speed.py            # generated ResNets + fixture models
    python benchmarks/trace_speed.py --quick    # fewer repeats

Prints a Markdown table (paste into benchmarks/README.md). Models are built on the
meta device, as the worker does.
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import statistics
import sys
import time

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bnlint.model.graphbuild import build_graph, graph_to_json, needs_shapes  # noqa: E402
from bnlint.model.modelcheck import graph_from_json  # noqa: E402
from bnlint.registry import select_rules  # noqa: E402
from bnlint.model.sites import recording_construction_sites  # noqa: E402
from bnlint.model.trace import trace_model  # noqa: E402
from bnlint.model.worker import _run_on_inputs  # noqa: E402


class Block(nn.Module):
    def __init__(self, width, p=0.1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(p)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(self.drop(F.relu(self.bn2(out))))
        return x + out


class DeepResNet(nn.Module):
    def __init__(self, blocks, width=16):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.Sequential(*[Block(width) for _ in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(x, 1))


def bnlint_analysis(model, inputs, rules):
    tr = trace_model(model)
    if any(r.graph is None for r in tr.walk()) or needs_shapes(tr):  # as the worker decides
        _run_on_inputs(model, tr, inputs)
    graph, _, _ = build_graph(model, tr)
    g = graph_from_json(graph_to_json(graph))  # the worker -> CLI hand-over
    return sum(len(list(rule.check(g))) for rule in rules), g.number_of_nodes()


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def measure(name, factory, inputs, rules, repeats):
    with recording_construction_sites(), torch.device("meta"):
        model = factory()
    model.train()
    meta_inputs = tuple(t.to("meta") for t in inputs)
    fx_best, _ = best_of(lambda: fx.symbolic_trace(model), repeats)
    bn_best, _ = best_of(lambda: bnlint_analysis(model, meta_inputs, rules), repeats)
    findings, nodes = bnlint_analysis(model, meta_inputs, rules)
    return name, nodes, fx_best, bn_best, findings


def fixture_models():
    from bnlint.model.loader import find_auto_targets, load_definitions
    from bnlint.model.targets import may_define_models
    import ast

    for path in sorted(glob.glob(os.path.join(ROOT, "fixtures", "BNL10*", "*.py")) +
                       glob.glob(os.path.join(ROOT, "fixtures", "models_clean", "*.py"))):
        src = open(path).read()
        module = load_definitions(path)
        for name, (kind, obj, required) in find_auto_targets(module, may_define_models(ast.parse(src))).items():
            if required:
                continue
            provider = getattr(module, "example_inputs", None)
            yield f"{os.path.basename(path)}::{name}", obj, provider


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 3 if args.quick else 5
    rules = [r for r in select_rules(["BNL1"])]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}")
    print()
    print("| model | graph nodes | fx.symbolic_trace (ms) | bnlint trace+shapes+graph+rules (ms) | ratio | ms per block |")
    print("|---|---|---|---|---|---|")
    for blocks in (50, 100, 200, 400):
        name, nodes, fx_t, bn_t, _ = measure(f"residual net, {blocks} blocks", lambda b=blocks: DeepResNet(b),
                                             (torch.randn(2, 3, 8, 8),), rules, repeats)
        print(f"| {name} | {nodes} | {fx_t*1e3:.1f} | {bn_t*1e3:.1f} | {bn_t/fx_t:.2f}x | {bn_t*1e3/blocks:.2f} |")
    ratios = []
    for name, factory, provider in fixture_models():
        try:
            inputs = tuple(provider()) if provider else None
            if inputs is None:
                first = next(m for m in factory().modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)))
                inputs = ((torch.randn(2, first.in_channels, *((64,) if isinstance(first, nn.Conv1d) else (32, 32))),)
                          if not isinstance(first, nn.Linear) else (torch.randn(2, first.in_features),))
            row = measure(name, factory, inputs, rules, repeats)
        except Exception as exc:  # a fixture that fx cannot trace symbolically
            print(f"| {name} | - | fx fails: {type(exc).__name__} | - | - | - |")
            continue
        ratios.append(row[3] / row[2])
        print(f"| {row[0]} | {row[1]} | {row[2]*1e3:.1f} | {row[3]*1e3:.1f} | {row[3]/row[2]:.2f}x | |")
    if ratios:
        print(f"\nfixture models: median ratio {statistics.median(ratios):.2f}x, max {max(ratios):.2f}x")


if __name__ == "__main__":
    main()
