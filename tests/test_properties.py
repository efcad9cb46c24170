"""Property test (issue #7): random architectures from a grammar of blocks; the
BNL101/BNL102 findings of bnlint's tracer + graph + rules equal a brute-force oracle
written here, which walks the plain torch.fx graph with its own idea of which ops
keep the dropout's statistics.

Profiles: 200 examples by default (the CI profile, about 10 s), BNLINT_PROPERTIES=slow
gives 2000, =quick 50.
"""
from __future__ import annotations

import operator
import os

import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")

import torch.fx as fx  # noqa: E402
import torch.nn as nn  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bnlint.graphbuild import build_graph, graph_to_json, needs_shapes  # noqa: E402
from bnlint.modelcheck import graph_from_json  # noqa: E402
from bnlint.registry import select_rules  # noqa: E402
from bnlint.trace import trace_model  # noqa: E402
from bnlint.worker import _run_on_inputs  # noqa: E402

EXAMPLES = {"quick": 50, "slow": 2000}.get(os.environ.get("BNLINT_PROPERTIES", ""), 200)
C = 4  # channels everywhere, so any block can follow any other

# ---------------------------------------------------------------- the grammar

P = st.sampled_from([0.0, 0.1, 0.5])
LEAF = st.one_of(
    st.just(("conv",)), st.just(("bn",)), st.sampled_from([("relu",), ("gelu",)]),
    st.tuples(st.just("drop"), st.sampled_from(["Dropout", "Dropout2d"]), P),
    st.just(("pool",)),
)
BRANCH = st.lists(LEAF, min_size=1, max_size=4)
BLOCK = st.one_of(
    LEAF,
    st.tuples(st.just("res"), BRANCH),
    st.tuples(st.just("cat"), BRANCH, BRANCH, st.booleans()),
)
HEAD = st.tuples(st.sampled_from(["gap_drop_fc", "drop_gap_fc", "gap_drop_bn_fc", "gap_fc_bn_fc"]), P)
ARCH = st.tuples(st.lists(BLOCK, min_size=1, max_size=6), HEAD, st.booleans())


def _leaf(spec):
    kind = spec[0]
    if kind == "conv":
        return nn.Conv2d(C, C, 3, padding=1)
    if kind == "bn":
        return nn.BatchNorm2d(C)
    if kind == "relu":
        return nn.ReLU()
    if kind == "gelu":
        return nn.GELU()
    if kind == "pool":
        return nn.MaxPool2d(3, stride=1, padding=1)
    return getattr(nn, spec[1])(spec[2])


class Residual(nn.Module):
    def __init__(self, branch):
        super().__init__()
        self.branch = nn.Sequential(*map(_leaf, branch))

    def forward(self, x):
        return x + self.branch(x)


class Concat(nn.Module):
    def __init__(self, a, b, norm):
        super().__init__()
        self.a = nn.Sequential(*map(_leaf, a))
        self.b = nn.Sequential(*map(_leaf, b))
        self.norm = nn.BatchNorm2d(2 * C) if norm else nn.Identity()
        self.merge = nn.Conv2d(2 * C, C, 1)

    def forward(self, x):
        return self.merge(self.norm(torch.cat([self.a(x), self.b(x)], 1)))


def _block(spec):
    if spec[0] == "res":
        return Residual(spec[1])
    if spec[0] == "cat":
        return Concat(spec[1], spec[2], spec[3])
    return _leaf(spec)


def _head(style, p):
    gap, flat, drop = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(p)
    if style == "gap_drop_fc":
        return [gap, flat, drop, nn.Linear(C, 3)]
    if style == "drop_gap_fc":
        return [nn.Dropout2d(p), gap, flat, nn.Linear(C, 3)]
    if style == "gap_drop_bn_fc":
        return [gap, flat, drop, nn.BatchNorm1d(C), nn.Linear(C, 3)]
    return [gap, flat, drop, nn.Linear(C, C), nn.BatchNorm1d(C), nn.ReLU(), nn.Linear(C, 3)]


class Coded(nn.Module):
    """The forward-code spelling: children called one by one."""

    def __init__(self, layers):
        super().__init__()
        self.stem = layers[0]
        self.body = nn.ModuleList(layers[1:])

    def forward(self, x):
        x = self.stem(x)
        for layer in self.body:
            x = layer(x)
        return x


def build(arch):
    blocks, (style, p), coded = arch
    layers = [nn.Conv2d(3, C, 3, padding=1), *map(_block, blocks), *_head(style, p)]
    return Coded(layers) if coded else nn.Sequential(*layers)


# ---------------------------------------------------------------- the oracle

PASS_MODULES = (nn.ReLU, nn.GELU, nn.MaxPool2d, nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout2d)


def _kind(gm, node):
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, (nn.Dropout, nn.Dropout2d)):
            return "dropout" if mod.p > 0 else "pass"
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            return "bn"
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            return "gap"
        if isinstance(mod, (nn.ReLU, nn.GELU, nn.MaxPool2d, nn.Identity)):
            return "pass"
        if isinstance(mod, nn.Flatten):
            return "reshape"
        return "other"  # weights
    if node.op == "call_function" and node.target is torch.cat:
        return "pass"
    if node.op == "call_function" and node.target in (operator.add, torch.add):
        return "other"
    return "other"


def oracle(model):
    gm = fx.symbolic_trace(model)
    kinds = {n: _kind(gm, n) for n in gm.graph.nodes}
    through = {"pass", "reshape", "dropout", "gap"}

    def reaches_bn(start):
        stack, seen = list(start.users), set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if kinds[n] == "bn":
                return True
            if kinds[n] in through:
                stack.extend(n.users)
        return False

    def after_gap(drop):
        n = drop.args[0]
        while isinstance(n, fx.Node):
            if kinds[n] == "gap":
                return True
            if kinds[n] not in ("reshape", "dropout", "pass") or n.op != "call_module":
                return False
            if isinstance(gm.get_submodule(n.target), nn.MaxPool2d):
                return False
            n = n.args[0]
        return False

    drops = [n for n in gm.graph.nodes if kinds[n] == "dropout"]
    bnl101 = {n.target for n in drops if reaches_bn(n)}
    bnl102 = {n.target for n in drops if n.target not in bnl101 and after_gap(n)}
    return bnl101, bnl102


def bnlint_findings(model, rules):
    tr = trace_model(model)
    if any(r.graph is None for r in tr.walk()) or needs_shapes(tr):  # as the worker decides
        assert _run_on_inputs(model, tr, (torch.randn(2, 3, 8, 8),)) is None
    graph, _, _ = build_graph(model, tr)
    g = graph_from_json(graph_to_json(graph))
    out = {}
    for rule in rules:
        out[rule.code] = {g.nodes[h.node].get("module_path") for h in rule.check(g)}
    return out


RULES = select_rules(["BNL101", "BNL102"], [], [])


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ARCH)
def test_graph_rules_match_the_oracle(arch):
    torch.manual_seed(0)
    model = build(arch).train()
    found = bnlint_findings(model, RULES)
    want101, want102 = oracle(model)
    assert found["BNL101"] == want101, arch
    assert found["BNL102"] == want102, arch
