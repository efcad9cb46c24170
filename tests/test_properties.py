"""Property test (issue #7): random architectures from a grammar of blocks, written as
real model source files; the BNL101/BNL102 findings of bnlint's tracer + graph + rules
equal a brute-force oracle written here, which walks the plain torch.fx graph with its
own idea of which ops keep the dropout's statistics (it calls nothing of bnlint's).

The grammar (shared with tests/test_fix_properties.py): convolutions, BatchNorm,
activations (module and functional), pooling, dropout as a module (``nn.Dropout``,
``nn.Dropout2d``) or a function (``F.dropout``, ``F.dropout2d``,
``nn.functional.dropout``, with ``training=self.training``, a positional
``self.training`` or ``training=False``, which is inactive), p = 0 included, residual
blocks, channel concatenation; nine heads (pooling by ``nn.AdaptiveAvgPool2d(1)`` +
``nn.Flatten()``, ``x.mean((2, 3))``, ``torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)``,
``x.view(x.size(0), -1)``, a classifier ``nn.Sequential``, a Linear-BN1d-ReLU-Dropout-
Linear MLP, dropout before the pooling...). Each architecture is spelled three ways: an
``nn.Sequential`` literal, forward code (``self.x = ...`` / ``x = self.x(x)``, residual
and concat blocks inlined) and an ``nn.ModuleList`` loop.

Every active dropout gets its own rate, so a finding is identified by its model and p
(functional dropouts have no module path, and a fix may move a module in its Sequential).

Profiles: 200 examples by default (the CI profile, about 15 s); ``pytest --slow``
(or BNLINT_PROPERTIES=slow) gives 2000, BNLINT_PROPERTIES=quick 50.
"""
from __future__ import annotations

import importlib.util
import itertools
import operator
import os
import sys
import tempfile
import textwrap

import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")

import torch.fx as fx  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROFILE = os.environ.get("BNLINT_PROPERTIES", "")
EXAMPLES = {"quick": 50, "slow": 2000}.get(PROFILE, 200)
C = 4  # channels everywhere, so any block can follow any other
INPUT_SHAPE = (2, 3, 8, 8)

# ---------------------------------------------------------------- the grammar

P = st.sampled_from([0.0, 0.1, 0.5])  # 0.0: inactive; active rates are renumbered (see unique_rates)
FUNCS = ["F.dropout", "F.dropout2d", "nn.functional.dropout"]
DENSE_DROPS = ["start", "mid", "end", "none"]
TRAINING = ["kw", "pos", "off"]  # training=self.training, self.training, training=False
DROP = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(["Dropout", "Dropout2d"]), P),
    st.tuples(st.just("fdrop"), st.sampled_from(FUNCS), P, st.sampled_from(TRAINING)),
)
LEAF = st.one_of(
    st.just(("conv",)), st.just(("bn",)), st.sampled_from([("relu",), ("frelu",), ("gelu",)]),
    DROP, st.just(("pool",)),
)
BRANCH = st.lists(LEAF, min_size=1, max_size=4)
# A DenseNet layer: BN-ReLU-Conv on everything before it, its output concatenated; the
# dropout at its start, before the conv (the guideline position), at its end (feeding
# every later layer's BN through the concatenation, as in torchvision) or absent; in
# forward code optionally under ``if <rate> > 0:``.
DENSE_LAYER = st.tuples(st.sampled_from(DENSE_DROPS), DROP, st.booleans())
BLOCK = st.one_of(
    LEAF,
    st.tuples(st.just("res"), BRANCH),
    st.tuples(st.just("cat"), BRANCH, BRANCH, st.booleans()),
    st.tuples(st.just("dense"), st.lists(DENSE_LAYER, min_size=1, max_size=3), st.booleans()),
)
HEAD_STYLES = ["gap_drop_fc", "drop_gap_fc", "gap_drop_bn_fc", "gap_drop_fc_bn_fc", "mlp", "mean",
               "fpool", "view", "classifier"]
HEAD = st.tuples(st.sampled_from(HEAD_STYLES), DROP)
# "appends": layers.append(...) statements (dropouts of Dropout2d under ``if p > 0:``)
# wrapped in an nn.Sequential; "append_loop": the same with the blocks appended in a
# loop that builds them twice.
SPELLINGS = ["sequential", "code", "modulelist", "appends", "append_loop"]
ARCH = st.tuples(st.lists(BLOCK, min_size=1, max_size=6), HEAD, st.sampled_from(SPELLINGS))


def unique_rates(arch):
    """The same architecture with each active dropout's p made unique (0.1, 0.12, ...),
    so that findings can be matched by rate; p = 0 stays 0."""
    counter = itertools.count()

    def leaf(spec):
        if spec[0] in ("drop", "fdrop") and spec[2] > 0:
            return (spec[0], spec[1], round(0.1 + 0.02 * next(counter), 2), *spec[3:])
        return spec

    def block(spec):
        if spec[0] == "res":
            return ("res", [leaf(s) for s in spec[1]])
        if spec[0] == "cat":
            return ("cat", [leaf(s) for s in spec[1]], [leaf(s) for s in spec[2]], spec[3])
        if spec[0] == "dense":
            return ("dense", [(pos, leaf(d), guard) for pos, d, guard in spec[1]], spec[2])
        return leaf(spec)

    blocks, (style, drop), spelling = arch
    if style == "classifier" and drop[0] != "drop":  # an nn.Sequential classifier holds modules
        drop = ("drop", "Dropout", drop[2])
    if style != "drop_gap_fc" and drop[1] in ("Dropout2d", "F.dropout2d"):  # pooled features are 2-D
        drop = (drop[0], "Dropout" if drop[0] == "drop" else "F.dropout", *drop[2:])
    return [block(b) for b in blocks], (style, leaf(drop)), spelling


# ---------------------------------------------------------------- source code

PREAMBLE = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F


def example_inputs():
    return (torch.randn{shape},)


class Residual(nn.Module):
    def __init__(self, branch):
        super().__init__()
        self.branch = branch

    def forward(self, x):
        return x + self.branch(x)


class Concat(nn.Module):
    def __init__(self, a, b, norm):
        super().__init__()
        self.a = a
        self.b = b
        self.norm = nn.BatchNorm2d({c2}) if norm else nn.Identity()
        self.merge = nn.Conv2d({c2}, {c}, 1)

    def forward(self, x):
        return self.merge(self.norm(torch.cat([self.a(x), self.b(x)], 1)))


class Dense(nn.Module):
    def __init__(self, layers, trans):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.trans = trans

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return self.trans(x)
'''.format(shape=INPUT_SHAPE, c=C, c2=2 * C)

# Functional dropouts inside an nn.Sequential (or a ModuleList) need a module around them.
_FDROP_CLASS = '''

class {name}(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        return {call}
'''
_TRAINING_ARG = {"kw": ", training=self.training", "pos": ", self.training", "off": ", training=False"}


def _fdrop_class(fn, training):
    return f"FDrop{FUNCS.index(fn)}{training.capitalize()}"


def fdrop_call(fn, p, training, x="x"):
    return f"{fn}({x}, {p}{_TRAINING_ARG[training]})"


def preamble():
    out = [PREAMBLE]
    for fn, training in itertools.product(FUNCS, TRAINING):
        out.append(_FDROP_CLASS.format(name=_fdrop_class(fn, training), call=fdrop_call(fn, "self.p", training)))
    return "".join(out)


def module_expr(spec):
    """The constructor expression of a leaf (functional leaves get their module form)."""
    kind = spec[0]
    if kind == "conv":
        return f"nn.Conv2d({C}, {C}, 3, padding=1)"
    if kind == "bn":
        return f"nn.BatchNorm2d({C})"
    if kind in ("relu", "frelu"):
        return "nn.ReLU()"
    if kind == "gelu":
        return "nn.GELU()"
    if kind == "pool":
        return "nn.MaxPool2d(3, stride=1, padding=1)"
    if kind == "drop":
        return f"nn.{spec[1]}({spec[2]})"
    return f"{_fdrop_class(spec[1], spec[3])}({spec[2]})"


_DENSE_ORDER = {"start": ["drop", "bn", "relu", "conv"], "mid": ["bn", "relu", "drop", "conv"],
                "end": ["bn", "relu", "conv", "drop"], "none": ["bn", "relu", "conv"]}


def dense_layer_steps(pos, i):
    """(step, constructor) of dense layer ``i`` (its input has C * (i + 1) channels)."""
    c_in = C * (i + 1)
    ctor = {"bn": f"nn.BatchNorm2d({c_in})", "relu": "nn.ReLU()", "conv": f"nn.Conv2d({c_in}, {C}, 3, padding=1)"}
    return [(step, ctor.get(step)) for step in _DENSE_ORDER[pos]]


def dense_transition(n_layers, norm):
    c = C * (n_layers + 1)
    return ([f"nn.BatchNorm2d({c})"] if norm else []) + ["nn.ReLU()", f"nn.Conv2d({c}, {C}, 1)"]


def block_expr(spec):
    if spec[0] == "dense":
        layers = []
        for i, (pos, drop, _guard) in enumerate(spec[1]):
            items = [module_expr(drop) if step == "drop" else ctor for step, ctor in dense_layer_steps(pos, i)]
            layers.append(f"nn.Sequential({', '.join(items)})")
        trans = ", ".join(dense_transition(len(spec[1]), spec[2]))
        return f"Dense([{', '.join(layers)}], nn.Sequential({trans}))"
    if spec[0] == "res":
        return f"Residual(nn.Sequential({', '.join(map(module_expr, spec[1]))}))"
    if spec[0] == "cat":
        a = ", ".join(map(module_expr, spec[1]))
        b = ", ".join(map(module_expr, spec[2]))
        return f"Concat(nn.Sequential({a}), nn.Sequential({b}), {spec[3]})"
    return module_expr(spec)


def head_steps(style, drop):
    """The head as steps: ("m", constructor) for a module, ("f", template) for code on
    ``{x}``, ("d", spec) for the head's dropout."""
    gap, flat, fc = ("m", "nn.AdaptiveAvgPool2d(1)"), ("m", "nn.Flatten()"), ("m", f"nn.Linear({C}, 3)")
    d = ("d", drop)
    if style == "gap_drop_fc":
        return [gap, flat, d, fc]
    if style == "drop_gap_fc":
        return [d, gap, flat, fc]
    if style == "gap_drop_bn_fc":
        return [gap, flat, d, ("m", f"nn.BatchNorm1d({C})"), fc]
    if style == "gap_drop_fc_bn_fc":
        return [gap, flat, d, ("m", f"nn.Linear({C}, {C})"), ("m", f"nn.BatchNorm1d({C})"), ("m", "nn.ReLU()"), fc]
    if style == "mlp":
        return [gap, flat, ("m", f"nn.Linear({C}, {C})"), ("m", f"nn.BatchNorm1d({C})"), ("m", "nn.ReLU()"), d, fc]
    if style == "mean":
        return [("f", "{x}.mean((2, 3))"), d, fc]
    if style == "fpool":
        return [("f", "torch.flatten(F.adaptive_avg_pool2d({x}, 1), 1)"), d, fc]
    if style == "view":
        return [gap, ("f", "{x}.view({x}.size(0), -1)"), d, fc]
    assert style == "classifier"
    return [gap, ("f", "torch.flatten({x}, 1)"), ("m", f"nn.Sequential({module_expr(drop)}, nn.Linear({C}, 3))")]


class _Writer:
    """Collects the attributes of ``__init__`` and the lines of ``forward``."""

    def __init__(self):
        self.init, self.forward, self.n = [], [], 0

    def attr(self, expr, hint):
        self.n += 1
        name = f"{hint}{self.n}"
        self.init.append(f"self.{name} = {expr}")
        return f"self.{name}"

    def leaf(self, spec, out, x):
        kind = spec[0]
        if kind == "frelu":
            self.forward.append(f"{out} = F.relu({x})")
        elif kind == "fdrop":
            self.forward.append(f"{out} = {fdrop_call(spec[1], spec[2], spec[3], x)}")
        else:
            name = self.attr(module_expr(spec), {"drop": "drop", "bn": "bn", "conv": "conv"}.get(kind, kind))
            self.forward.append(f"{out} = {name}({x})")

    def guarded_drop(self, spec, out, x):
        """A dropout under ``if <its rate> > 0:`` (the rate as an attribute)."""
        if spec[0] == "fdrop":
            rate = self.attr(repr(spec[2]), "rate")
            self.forward += [f"if {rate} > 0:", f"    {out} = {fdrop_call(spec[1], rate, spec[3], x)}"]
        else:
            name = self.attr(module_expr(spec), "drop")
            self.forward += [f"if {name}.p > 0:", f"    {out} = {name}({x})"]

    def dense(self, spec):
        layers, norm = spec[1], spec[2]
        for i, (pos, drop, guard) in enumerate(layers):
            for k, (step, ctor) in enumerate(dense_layer_steps(pos, i)):
                x = "x" if k == 0 else "y"
                if step == "drop":
                    if guard:
                        if x != "y":
                            self.forward.append(f"y = {x}")
                        self.guarded_drop(drop, "y", "y")
                    else:
                        self.leaf(drop, "y", x)
                elif step == "relu":
                    self.forward.append(f"y = F.relu({x})")
                else:
                    self.forward.append(f"y = {self.attr(ctor, step)}({x})")
            self.forward.append("x = torch.cat([x, y], 1)")
        for ctor in dense_transition(len(layers), norm):
            self.forward.append(f"x = {self.attr(ctor, 'trans')}(x)")

    def branch(self, specs, out, x):
        for i, spec in enumerate(specs):
            self.leaf(spec, out, x if i == 0 else out)

    def block(self, spec):
        if spec[0] == "dense":
            self.dense(spec)
        elif spec[0] == "res":
            self.branch(spec[1], "y", "x")
            self.forward.append("x = x + y")
        elif spec[0] == "cat":
            self.branch(spec[1], "a", "x")
            self.branch(spec[2], "b", "x")
            self.forward.append("x = torch.cat([a, b], 1)")
            if spec[3]:
                self.forward.append(f"x = {self.attr(f'nn.BatchNorm2d({2 * C})', 'norm')}(x)")
            self.forward.append(f"x = {self.attr(f'nn.Conv2d({2 * C}, {C}, 1)', 'merge')}(x)")
        else:
            self.leaf(spec, "x", "x")

    def head(self, steps):
        for kind, what in steps:
            if kind == "m":
                self.forward.append(f"x = {self.attr(what, 'head')}(x)")
            elif kind == "f":
                self.forward.append("x = " + what.format(x="x"))
            else:
                self.leaf(what, "x", "x")

    def source(self, name):
        init = "\n".join("        " + line for line in ["super().__init__()", *self.init])
        fwd = "\n".join("        " + line for line in [*self.forward, "return x"])
        return f"\n\nclass {name}(nn.Module):\n    def __init__(self):\n{init}\n\n    def forward(self, x):\n{fwd}\n"


def model_source(arch, name="Net"):
    """The source of one model class for an architecture (after ``unique_rates``)."""
    blocks, (style, drop), spelling = arch
    stem = f"nn.Conv2d(3, {C}, 3, padding=1)"
    steps = head_steps(style, drop)
    w = _Writer()
    if spelling == "code":
        w.forward.append(f"x = {w.attr(stem, 'stem')}(x)")
        for spec in blocks:
            w.block(spec)
        w.head(steps)
        return w.source(name)
    exprs = [stem, *map(block_expr, blocks)]
    head = []
    # A head of modules only joins the container; code (x.mean, x.view) follows in forward.
    if all(kind != "f" for kind, _ in steps):
        head = [module_expr(what) if kind == "d" else what for kind, what in steps]
        exprs += head
        steps = []
    if spelling in ("appends", "append_loop"):
        w.init += ["layers = []", f"layers.append({stem})"]
        body = []
        for spec, expr in zip(blocks, exprs[1:]):
            if spec[0] == "drop" and spec[1] == "Dropout2d":
                body += [f"if {spec[2]} > 0:", f"    layers.append({expr})"]
            else:
                body.append(f"layers.append({expr})")
        if spelling == "append_loop":
            body = ["for _ in range(2):"] + ["    " + line for line in body]
        w.init += body + [f"layers.append({e})" for e in head] + ["self.net = nn.Sequential(*layers)"]
        w.forward.append("x = self.net(x)")
    elif spelling == "sequential":
        items = "".join(f"\n            {e}," for e in exprs)
        w.init.append(f"self.net = nn.Sequential({items}\n        )")
        w.forward.append("x = self.net(x)")
    else:
        items = "".join(f"\n            {e}," for e in exprs)
        w.init.append(f"self.layers = nn.ModuleList([{items}\n        ])")
        w.forward += ["for layer in self.layers:", "    x = layer(x)"]
    w.head(steps)
    return w.source(name)


def file_source(archs):
    """A model file with one class ``Net{i}`` per architecture."""
    return preamble() + "".join(model_source(a, f"Net{i}") for i, a in enumerate(archs))


_counter = itertools.count()


def import_file(path):
    """Import a generated model file under a fresh module name."""
    name = f"_bnlint_prop_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the oracle

_DROPOUT_FUNCS = {F.dropout, F.dropout2d}


def _dropout_p(gm, node):
    """The rate of an active dropout node (train mode), or None for anything else
    (an inactive dropout included)."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, (nn.Dropout, nn.Dropout2d)) and mod.training and mod.p > 0:
            return mod.p
        return None
    if node.op == "call_function" and node.target in _DROPOUT_FUNCS:
        p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
        training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
        return p if training is True and p > 0 else None
    return None


def _kind(gm, node):
    """What the dropout's statistics do at this node: "dropout" (active), "bn", "gap"
    (global pooling), "reshape", "pass" (elementwise activation, local pooling, concat,
    an inactive dropout) or "other" (weights, adds, sizes, everything else)."""
    if _dropout_p(gm, node) is not None:
        return "dropout"
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return "bn"
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            return "gap" if mod.output_size in (1, (1, 1)) else "pass"
        if isinstance(mod, (nn.Flatten, nn.Identity)):
            return "reshape"
        if isinstance(mod, (nn.ReLU, nn.GELU, nn.MaxPool2d, nn.Dropout, nn.Dropout2d)):
            return "pass"
        return "other"
    if node.op == "call_function":
        if node.target in _DROPOUT_FUNCS or node.target in (F.relu, torch.cat):
            return "pass"
        if node.target is torch.flatten:
            return "reshape"
        if node.target is F.adaptive_avg_pool2d:
            return "gap" if node.args[1] in (1, (1, 1)) else "pass"
        if node.target in (operator.add, torch.add):
            return "other"
        return "other"
    if node.op == "call_method":
        if node.target in ("view", "flatten", "reshape"):
            return "reshape"
        if node.target == "mean":
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            return "gap" if tuple(dims) in ((2, 3), (-2, -1), (-1, -2)) else "other"
        return "other"
    return "other"


def _is_local_pool_or_cat(gm, node):
    return ((node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.MaxPool2d))
            or (node.op == "call_function" and node.target is torch.cat))


def oracle(model, unique=True):
    """(BNL101 rates, BNL102 rates) by brute force over the fx graph (``unique``: each
    active dropout has its own rate; not so when a loop builds a block twice).

    BNL101: an active dropout from which some path of value-preserving nodes (pass,
    reshape, gap, other dropouts) reaches a BatchNorm. BNL102: an active dropout, not
    in BNL101, whose input is a global pooling through a chain of reshapes,
    activations and dropouts (no local pooling, no concat).
    """
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
            if kinds[n] not in ("reshape", "dropout", "pass") or _is_local_pool_or_cat(gm, n):
                return False
            n = n.args[0]
        return False

    drops = [n for n in gm.graph.nodes if kinds[n] == "dropout"]
    bnl101 = {_dropout_p(gm, n) for n in drops if reaches_bn(n)}
    bnl102 = {_dropout_p(gm, n) for n in drops if _dropout_p(gm, n) not in bnl101 and after_gap(n)}
    assert not unique or len(drops) == len({_dropout_p(gm, n) for n in drops}), "dropout rates must be unique"
    return bnl101, bnl102


# ---------------------------------------------------------------- bnlint, in process

def bnlint_findings(model, rules):
    """{code: rates of the flagged dropouts}: tracer, graph builder and rules as the
    worker and the CLI run them (the graph goes through its JSON form)."""
    from bnlint.model.graphbuild import build_graph, graph_to_json, needs_shapes
    from bnlint.model.modelcheck import graph_from_json
    from bnlint.model.trace import trace_model
    from bnlint.model.worker import _run_on_inputs

    tr = trace_model(model)
    if any(r.graph is None for r in tr.walk()) or needs_shapes(tr):  # as the worker decides
        assert _run_on_inputs(model, tr, (torch.randn(*INPUT_SHAPE),)) is None
    graph, _, _ = build_graph(model, tr)
    g = graph_from_json(graph_to_json(graph))
    return {rule.code: {g.nodes[h.node].get("p") for h in rule.check(g)} for rule in rules}


@pytest.fixture(scope="module")
def rules():
    from bnlint.registry import select_rules

    return select_rules(["BNL101", "BNL102"], [], [])


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="bnlint-props-") as tmp:
        yield tmp


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(ARCH)
def test_graph_rules_match_the_oracle(rules, workdir, arch):
    arch = unique_rates(arch)
    source = file_source([arch])
    path = os.path.join(workdir, f"model_{next(_counter)}.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    torch.manual_seed(0)
    model = import_file(path).Net0().train()
    found = bnlint_findings(model, rules)
    want101, want102 = oracle(model, unique=arch[2] != "append_loop")
    assert found["BNL101"] == want101, source
    assert found["BNL102"] == want102, source


# ---------------------------------------------------------------- the grammar itself

def test_every_spelling_builds_and_runs(workdir):
    """Each head, dropout form and spelling gives a model that runs; the oracle sees
    ``training=False`` as inactive and the positional ``self.training`` as active."""
    archs = []
    for i, style in enumerate(HEAD_STYLES):
        for j, spelling in enumerate(SPELLINGS):
            fn, training = FUNCS[(i + j) % 3], TRAINING[(i + 2 * j) % 3]
            blocks = [("conv",), ("fdrop", fn, 0.5, training), ("bn",), ("relu",),
                      ("res", [("conv",), ("drop", "Dropout", 0.5), ("bn",)]),
                      ("cat", [("frelu",)], [("pool",), ("fdrop", fn, 0.5, "kw")], True),
                      ("dense", [("end", ("fdrop", fn, 0.5, "kw"), j % 2 == 0),
                                 ("mid", ("drop", "Dropout2d", 0.5), True),
                                 ("start", ("drop", "Dropout", 0.5), False)], i % 2 == 0),
                      ("drop", "Dropout2d", 0.0), ("bn",)]
            archs.append(unique_rates((blocks, (style, ("drop", "Dropout2d", 0.5)), spelling)))
    path = os.path.join(workdir, "all_spellings.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(file_source(archs))
    module = import_file(path)
    for i, arch in enumerate(archs):
        model = getattr(module, f"Net{i}")().train()
        assert model(torch.randn(*INPUT_SHAPE)).shape == (2, 3)
        bnl101, bnl102 = oracle(model, unique=arch[2] != "append_loop")
        fdrop = arch[0][1]
        assert (fdrop[2] in bnl101) == (fdrop[3] != "off"), (arch, bnl101)
        assert arch[0][4][1][1][2] in bnl101  # the residual branch's dropout feeds its BN
        assert arch[0][5][2][1][2] in bnl101  # through the concat into the norm
        dense = arch[0][6][1]
        assert dense[0][1][2] in bnl101  # a dense layer's output feeds the next layers' BNs
        assert dense[1][1][2] not in bnl101  # before the conv: the guideline position
        assert dense[2][1][2] in bnl101  # feeds its own layer's BN
