"""BNL106 bias-before-batchnorm: the rule on hand-built fact graphs and on real models,
the fix (``bias=False``) on the fixtures with its snapshots, its unsafety, and an
independent check that the fixed models equal the originals once each removed bias is
folded into its BatchNorm's running mean."""
from __future__ import annotations

import importlib.util
import re
import shutil

import networkx as nx
import pytest

from bnlint.registry import rule_by_code
from conftest import FIXTURES, ROOT, run_bnlint

RULE = rule_by_code("BNL106")
FOLDER = FIXTURES / "BNL106"
SNAPSHOTS = FIXTURES / "fixed" / "BNL106"
FIXED_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):\d+: BNL106 fixed: ")


def graph(*chain, bias=True, **node_facts):
    """A linear graph of ``(name, kind[, target])`` nodes; weights have ``has_bias``."""
    g = nx.DiGraph()
    previous = None
    for item in chain:
        name, kind, *target = item
        facts = {"kind": kind, "op": "call_function" if target else "call_module",
                 "target": target[0] if target else name, "module_path": name,
                 "module_type": f"torch.nn.{name}"}
        if kind == "weight":
            facts["has_bias"] = bias
        facts.update(node_facts.get(name, {}))
        g.add_node(name, **facts)
        if previous is not None:
            g.add_edge(previous, name)
        previous = name
    return g


def flagged(g):
    return [(h.node, h.related) for h in RULE.check(g)]


# ---------------------------------------------------------------- pure rule

def test_bias_straight_into_batchnorm():
    assert flagged(graph(("x", "input"), ("conv", "weight"), ("bn", "batchnorm"), ("relu", "activation"))) == [
        ("conv", ("bn",))]
    assert flagged(graph(("x", "input"), ("conv", "weight"), ("bn", "batchnorm"), bias=False)) == []


@pytest.mark.parametrize("between, kept", [
    (("flat", "reshape", "flatten"), True),
    (("t", "reshape", "transpose"), True),
    (("ident", "reshape"), False),  # a call_module reshape that is not nn.Identity-like (module_type below)
    (("scale", "scale", "mul"), True),
    (("mp", "pool", "max_pool2d"), True),
    (("ap", "pool", "avg_pool2d"), False),  # zero padding may count: not exact
    (("gap", "global-pool", "mean"), True),
    (("pad", "reshape", "pad"), False),
    (("relu", "activation", "relu"), False),
    (("drop", "dropout", "dropout"), False),
    (("cat", "concat", "cat"), False),
    (("sum", "add", "add"), False),
])
def test_only_offset_keeping_ops_in_between(between, kept):
    g = graph(("x", "input"), ("conv", "weight"), between, ("bn", "batchnorm"),
              ident={"module_type": "torch.nn.PixelShuffle"})
    assert bool(flagged(g)) == kept


def test_a_second_user_of_the_output_keeps_the_bias():
    g = graph(("x", "input"), ("conv", "weight"), ("bn", "batchnorm"))
    g.add_node("head", kind="weight", has_bias=True)
    g.add_edge("conv", "head")
    assert flagged(g) == []
    g.remove_node("head")
    g.add_node("size", kind="meta", target="size")
    g.add_edge("conv", "size")  # x.size() reads no values
    assert flagged(g) == [("conv", ("bn",))]


def test_a_shared_layer_keeps_its_bias_when_one_use_needs_it():
    g = graph(("x", "input"), ("conv", "weight"), ("bn", "batchnorm"))
    g.add_node("conv_again", kind="weight", has_bias=True, op="call_module", module_path="conv")
    g.add_node("relu", kind="activation")
    g.add_edge("x", "conv_again")
    g.add_edge("conv_again", "relu")
    assert flagged(g) == []


def test_layer_norm_group_norm_and_installed_code_are_not_flagged():
    assert flagged(graph(("x", "input"), ("fc", "weight"), ("ln", "other"))) == []
    installed = {"conv": {"defn": {"file": "/usr/lib/python3/site-packages/torchvision/models/vgg.py", "line": 9}}}
    assert flagged(graph(("x", "input"), ("conv", "weight"), ("bn", "batchnorm"), **installed)) == []


# ---------------------------------------------------------------- real models, in process

def test_real_models():
    import torch
    import torch.nn as nn

    import bnlint

    class Block(nn.Module):
        def __init__(self, bias, norm):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=bias)
            self.norm = norm

        def forward(self, x):
            return self.norm(self.conv(x))

    x = torch.randn(2, 3, 8, 8)

    def codes(model, *inputs):
        return [f.code for f in bnlint.check_model(model, inputs or (x,)) if f.code == "BNL106"]

    assert codes(Block(True, nn.BatchNorm2d(8))) == ["BNL106"]
    assert codes(Block(False, nn.BatchNorm2d(8))) == []
    assert codes(Block(True, nn.GroupNorm(2, 8))) == []
    assert codes(Block(True, nn.BatchNorm2d(8, track_running_stats=False))) == []
    assert codes(nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU()), torch.randn(3, 4)) == ["BNL106"]
    assert codes(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.BatchNorm1d(6)), torch.randn(3, 4)) == []


# ---------------------------------------------------------------- the fix

@pytest.fixture(scope="module")
def fixed_folder(tmp_path_factory):
    work = tmp_path_factory.mktemp("bnl106") / "BNL106"
    shutil.copytree(FOLDER, work)
    safe = run_bnlint("fix", ".", cwd=work, timeout=600)
    assert "Traceback" not in safe.stderr, safe.stderr
    unchanged = all((work / p.name).read_bytes() == p.read_bytes() for p in FOLDER.glob("*.py"))
    proc = run_bnlint("fix", "--unsafe-fixes", ".", cwd=work, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return work, proc, unchanged


def test_the_fix_is_unsafe_only(fixed_folder):
    _work, _proc, unchanged_by_safe_fix = fixed_folder
    assert unchanged_by_safe_fix


@pytest.mark.parametrize("case", sorted(FOLDER.glob("*.py")), ids=lambda p: p.name)
def test_fixed_file_matches_snapshot(case, fixed_folder, request):
    work, proc, _ = fixed_folder
    got = (work / case.name).read_bytes()
    fixed = [m for m in map(FIXED_LINE.match, proc.stdout.splitlines()) if m and m["path"] == case.name]
    snapshot = SNAPSHOTS / case.name
    if not fixed:
        assert got == case.read_bytes() and not snapshot.exists()
        return
    if request.config.getoption("--update-snapshots"):
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        snapshot.write_bytes(got)
    assert got == snapshot.read_bytes(), f"{case.name} differs from {snapshot}"


def test_fix_report_and_what_stays(fixed_folder):
    work, proc, _ = fixed_folder
    assert "fix rejected" not in proc.stdout, proc.stdout
    assert "Fixed 8 problems (1 remaining)" in proc.stdout, proc.stdout
    assert ("removes state_dict key 'stem.conv.bias' and the same key of the 2 other layer(s) built on this "
            "line") in proc.stdout
    after = run_bnlint("check", "--select", "BNL106", ".", cwd=work)
    assert after.stdout.splitlines()[0].startswith("vgg_make_layers_conditional_bn.py:19:")
    assert "only under a condition (line 21)" in after.stdout and after.stdout.count("BNL106") == 1


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, model, shape", [
    ("cifar_convnet_conv_bias", "CifarNet", (4, 3, 16, 16)),
    ("pointnet_conv1d_transpose", "PointEncoder", (4, 3, 32)),
    ("tabular_mlp_sequential", "TabularNet", (5, 20)),
])
def test_fixed_models_equal_the_originals_with_the_bias_folded(fixed_folder, name, model, shape):
    """Written independently of bnlint.fix.biasfold: for every bias the fixed model no
    longer has, subtract it from the running mean of the BN that directly follows it in
    module order, then compare eval outputs after a few training steps."""
    import torch

    work, _proc, _ = fixed_folder
    torch.manual_seed(0)
    before = getattr(_load(FOLDER / f"{name}.py", f"{name}_before"), model)()
    after = getattr(_load(work / f"{name}.py", f"{name}_after"), model)()
    opt = torch.optim.SGD(before.parameters(), lr=0.1)
    for _ in range(3):  # move the running statistics and biases away from their initial values
        loss = before(torch.randn(*shape)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = before.state_dict()
    removed = sorted(set(state) - set(after.state_dict()))
    assert removed and all(k.endswith(".bias") for k in removed)
    assert set(after.state_dict()) == set(state) - set(removed)
    names = [n for n, _ in before.named_modules()]
    modules = dict(before.named_modules())
    for key in removed:
        owner = key[: -len(".bias")]
        later = names[names.index(owner) + 1:]
        bn = next(n for n in later if isinstance(modules[n], torch.nn.modules.batchnorm._BatchNorm))
        mean = state[f"{bn}.running_mean"]
        state[f"{bn}.running_mean"] = mean - state[key].repeat_interleave(mean.numel() // state[key].numel())
        del state[key]
    after.load_state_dict(state)
    before.eval()
    after.eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        assert torch.allclose(before(x), after(x), atol=1e-5, rtol=1e-5)
        before.train()
        after.train()
        # train mode: equal as they are (batch statistics; float error grows where a batch varies little)
        assert torch.allclose(before(x), after(x), atol=1e-4, rtol=1e-4)


def test_fold_checks_the_promise():
    import torch

    from bnlint.fix.biasfold import fold_biases, removed_biases

    before = ["a.conv.weight", "a.conv.bias", "a.bn.running_mean", "b.conv.bias", "head.bias"]
    removed, why = removed_biases(before, ["a.conv.weight", "a.bn.running_mean", "b.conv.bias", "head.bias"],
                                  [("conv", "bn")])
    assert removed == {"a.conv.bias": ["a.bn.running_mean"]} and why == ""
    _, why = removed_biases(before, ["a.conv.weight", "a.conv.bias", "a.bn.running_mean", "b.conv.bias"],
                            [("conv", "bn")])
    assert "'head.bias', which it did not promise" in why
    state = {"c.bias": torch.tensor([1.0, 2.0]), "bn.running_mean": torch.zeros(4)}
    folded, why = fold_biases(state, {"c.bias": ["bn.running_mean"]})
    assert why == "" and folded["bn.running_mean"].tolist() == [-1.0, -1.0, -2.0, -2.0] and "c.bias" not in folded
    _, why = fold_biases({"c.bias": torch.ones(3), "m": torch.zeros(4)}, {"c.bias": ["m"]})
    assert "cannot fold" in why


def test_a_dropout_fix_that_reveals_a_cancelled_bias(tmp_path):
    """The Wide-ResNet block applies conv1 -> dropout -> bn2 with conv1's bias on: moving
    the dropout (BNL101) leaves the bias feeding bn2 directly. The dropout fix is not
    refused for it; --unsafe-fixes removes the bias in a further round, and a second run
    changes nothing."""
    wrn = (FIXTURES / "BNL101" / "wide_resnet_dropout_before_bn2.py").read_bytes()
    (tmp_path / "safe").mkdir()
    (tmp_path / "safe" / "wrn.py").write_bytes(wrn)
    proc = run_bnlint("fix", "wrn.py", cwd=tmp_path / "safe")
    assert "BNL101 fixed" in proc.stdout and "fix rejected" not in proc.stdout, proc.stdout
    assert "a BNL106 warning appears" in proc.stdout
    text = (tmp_path / "safe" / "wrn.py").read_text()
    assert "self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=True)" in text
    (tmp_path / "unsafe").mkdir()
    (tmp_path / "unsafe" / "wrn.py").write_bytes(wrn)
    proc = run_bnlint("fix", "--unsafe-fixes", "wrn.py", cwd=tmp_path / "unsafe")
    assert "BNL101 fixed" in proc.stdout and "BNL106 fixed" in proc.stdout, proc.stdout
    fixed = (tmp_path / "unsafe" / "wrn.py").read_bytes()
    assert b"self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=False)" in fixed
    again = run_bnlint("fix", "--unsafe-fixes", "wrn.py", cwd=tmp_path / "unsafe")
    assert (tmp_path / "unsafe" / "wrn.py").read_bytes() == fixed and "Fixed 0 problems" in again.stdout, again.stdout
