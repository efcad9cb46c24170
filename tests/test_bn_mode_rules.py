"""BNL105 (eval-in-train-mode) and BNL107 (batchnorm-batch-of-one): what counts as an
evaluation pass and as the model's mode, what the source says about a model's
BatchNorm and a dataset's length, and BNL105's fix run through the CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from bnlint.findings import Severity
from bnlint.registry import rule_by_code
from bnlint.script import run_script_rules
from bnlint.sources import SourceFile

from conftest import FIXTURES, run_bnlint

RULES = [rule_by_code("BNL105"), rule_by_code("BNL107")]

HEADER = """\
import contextlib
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.bn = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x):
        return self.fc2(F.relu(self.bn(self.fc1(x))))


def data(n=256):
    return TensorDataset(torch.randn(n, 8), torch.randint(0, 2, (n,)))


def fit(model, loader, opt):
    model.train()
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
"""


def _run(body: str, path: str = "train.py", header: str = HEADER):
    text = header + "\n\n" + textwrap.dedent(body)
    src = SourceFile(path=path, text=text, encoding="utf-8", bom=False, newline="\n", raw=text.encode())
    return text, run_script_rules([src], RULES)


def _found(body: str, **kw):
    text, findings = _run(body, **kw)
    lines = text.splitlines()
    return [(f.code, lines[f.line - 1].strip()) for f in findings]


MAIN = """\
def main():
    model = {model}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_loader = DataLoader(data(), batch_size=32, shuffle=True)
    val_loader = DataLoader(data(64), batch_size=64)
    for epoch in range(3):
        fit(model, train_loader, opt)
{evaluation}
"""


def _main(evaluation: str, model: str = "Net()", extra: str = "") -> str:
    return extra + "\n\n" + MAIN.format(model=model, evaluation=textwrap.indent(textwrap.dedent(evaluation), " " * 8))


# -- BNL105: what counts as an evaluation pass ---------------------------------------------
@pytest.mark.parametrize("evaluation", [
    # gradients off in the loop, around it, or by a caller's decorator
    "with torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n",
    "for x, y in val_loader:\n    with torch.inference_mode():\n        model(x)\n",
    "score(model, val_loader)\n",
])
def test_passes_without_gradients_are_evaluations(evaluation):
    extra = "@torch.no_grad()\ndef score(net, loader):\n    for x, _ in loader:\n        net(x)\n"
    assert [c for c, _ in _found(_main(evaluation, extra=extra))] == ["BNL105"]


def test_a_function_named_like_an_evaluation_is_one_even_with_gradients_on():
    extra = "def validate(net, loader):\n    for x, _ in loader:\n        net(x)\n"
    assert [c for c, _ in _found(_main("validate(model, val_loader)\n", extra=extra))] == ["BNL105"]
    extra = "def collect(net, loader):\n    for x, _ in loader:\n        net(x)\n"
    # With gradients on, a pass over another loader of a model trained elsewhere in the
    # script is an evaluation too (the training loop is visible here).
    assert [c for c, _ in _found(_main("collect(model, val_loader)\n", extra=extra))] == ["BNL105"]
    # ...but not when nothing in the analysis trains that model.
    body = extra + "\n\ndef main():\n    model = Net()\n    collect(model, DataLoader(data(), batch_size=8))\n"
    assert _found(body) == []


def test_pytest_functions_are_not_named_evaluations():
    body = ("def test_forward_runs():\n    model = Net()\n    for x, _ in DataLoader(data(), batch_size=8):\n"
            "        model(x)\n")
    assert _found(body, path="tests/test_model.py") == []
    assert [c for c, _ in _found(body, path="evaluation.py")] == ["BNL105"]


# -- BNL105: the model's mode on the path --------------------------------------------------
@pytest.mark.parametrize("evaluation, flagged", [
    ("model.eval()\nwith torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n", False),
    ("model.train(False)\nwith torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n", False),
    ("model.train(mode=False)\nwith torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n", False),
    # an explicit train() just before the pass, with no training since: on purpose
    ("model.train()\nwith torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n", False),
    # a mode bnlint cannot read, or an eval() on something it cannot see: maybe evaluation
    ("model.train(args_train)\nwith torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n", False),
    ("for m in model.modules():\n    m.eval()\nwith torch.no_grad():\n    for x, y in val_loader:\n"
     "        model(x)\n", False),
    # eval() on one path only: some path evaluates correctly, say nothing
    ("if epoch > 1:\n    model.eval()\nwith torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n", False),
    # eval() after the pass does not help it
    ("with torch.no_grad():\n    for x, y in val_loader:\n        model(x)\nmodel.eval()\n", True),
    # a mode saved and restored around another pass is the mode before it
    ("was = model.training\nmodel.eval()\nmodel.train(was)\nwith torch.no_grad():\n    for x, y in val_loader:\n"
     "        model(x)\n", True),
])
def test_the_mode_in_effect_decides(evaluation, flagged):
    extra = "args_train = False\n"
    got = [c for c, _ in _found(_main(evaluation, extra=extra))]
    assert got == (["BNL105"] if flagged else [])


def test_eval_in_a_helper_a_context_manager_or_a_freeze_method_is_seen():
    helper = "def set_eval(net):\n    net.eval()\n"
    body = _main("set_eval(model)\nwith torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n", extra=helper)
    assert _found(body) == []
    manager = ("@contextlib.contextmanager\ndef evaluating(net):\n    was = net.training\n    net.eval()\n"
               "    yield\n    net.train(was)\n")
    inside = "with evaluating(model), torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n"
    assert _found(_main(inside, extra=manager)) == []
    # After the block the context manager has restored training mode.
    after = inside + "with torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n"
    assert [c for c, _ in _found(_main(after, extra=manager))] == ["BNL105"]
    freezer = HEADER.replace("    def forward(self, x):", "    def freeze_bn(self):\n        for m in self.modules():\n"
                             "            m.eval()\n\n    def forward(self, x):")
    body = _main("model.freeze_bn()\nwith torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n")
    assert _found(body, header=freezer) == []


def test_a_model_without_running_statistics_is_never_reported():
    evaluation = "with torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n"
    assert [c for c, _ in _found(_main(evaluation))] == ["BNL105"]
    for header in (
        HEADER.replace("nn.BatchNorm1d(32)", "nn.LayerNorm(32)"),
        HEADER.replace("nn.BatchNorm1d(32)", "nn.BatchNorm1d(32, track_running_stats=False)"),
        HEADER.replace("    def forward(self, x):", "    def train(self, mode=True):\n        super().train(mode)\n"
                       "        self.bn.eval()\n        return self\n\n    def forward(self, x):"),
    ):
        assert _found(_main(evaluation), header=header) == [], header
    # isinstance tests name BatchNorm without building one.
    init = HEADER.replace("nn.BatchNorm1d(32)", "nn.GroupNorm(4, 32)").replace(
        "    def forward(self, x):", "    def init(self):\n        for m in self.modules():\n"
        "            if isinstance(m, (nn.BatchNorm1d, nn.GroupNorm)):\n                nn.init.ones_(m.weight)\n\n"
        "    def forward(self, x):")
    assert _found(_main(evaluation), header=init) == []


def test_models_chosen_by_name_and_library_models():
    extra = ("class Plain(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
             "        self.fc = nn.Linear(8, 2)\n\n    def forward(self, x):\n        return self.fc(x)\n\n\n"
             "def build(name):\n    if name == 'bn':\n        return Net()\n    return Plain()\n")
    evaluation = "with torch.no_grad():\n    for x, y in val_loader:\n        model(x)\n"
    assert [c for c, _ in _found(_main(evaluation, model="build(arch)", extra=extra + "\narch = 'bn'\n"))] == ["BNL105"]
    header = HEADER + "import torchvision\nfrom torchvision.ops import FrozenBatchNorm2d\n"
    assert [c for c, _ in _found(_main(evaluation, model="torchvision.models.resnet18()"), header=header)] == ["BNL105"]
    frozen = _main(evaluation, model="torchvision.models.resnet18(norm_layer=FrozenBatchNorm2d)")
    assert _found(frozen, header=header) == []


def test_one_finding_per_loop_naming_every_model():
    body = """\
    def main():
        student, teacher = Net(), Net()
        opt = torch.optim.SGD(student.parameters(), lr=0.1)
        val_loader = DataLoader(data(64), batch_size=64)
        fit(student, DataLoader(data(), batch_size=32, shuffle=True), opt)
        with torch.no_grad():
            for x, y in val_loader:
                print(student(x).argmax(1).eq(teacher(x).argmax(1)).float().mean())
    """
    text, findings = _run(body)
    assert len(findings) == 1 and findings[0].severity is Severity.ERROR
    assert "`student`, `teacher`" in findings[0].message
    assert "student.eval() and teacher.eval()" in findings[0].fix.description


def test_recalibration_passes_are_left_alone():
    extra = ("def update_bn(loader, net):\n    for x, _ in loader:\n        net(x)\n\n\n"
             "def refresh(loader, net):\n    for m in net.modules():\n        m.reset_running_stats()\n"
             "    with torch.no_grad():\n        for x, _ in loader:\n            net(x)\n")
    assert _found(_main("update_bn(train_loader, model)\nrefresh(val_loader, model)\n", extra=extra)) == []


# -- BNL105's fix ----------------------------------------------------------------------------
SNAPSHOTS = FIXTURES / "fixed" / "BNL105"
BAD = sorted(p for p in (FIXTURES / "BNL105").rglob("*.py") if p.with_suffix(".expected").read_text().strip())


@pytest.fixture(scope="module")
def fixed_copy(tmp_path_factory):
    work = tmp_path_factory.mktemp("bnl105") / "BNL105"
    shutil.copytree(FIXTURES / "BNL105", work)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    safe = run_bnlint("fix", "--select", "BNL105", ".", cwd=work)
    unsafe = run_bnlint("fix", "--unsafe-fixes", "--select", "BNL105", ".", cwd=work)
    again = run_bnlint("fix", "--unsafe-fixes", "--select", "BNL105", "--diff", ".", cwd=work)
    check = run_bnlint("check", "--no-cache", "--select", "BNL105,BNL107", "--format", "json", ".", cwd=work)
    return work, safe, unsafe, again, check


def test_the_fix_is_unsafe_and_applied_only_when_asked(fixed_copy):
    _work, safe, unsafe, _again, _check = fixed_copy
    assert safe.returncode == 1 and "Fixed 0 problems" in safe.stdout, safe.stdout + safe.stderr
    assert "--unsafe-fixes" in safe.stdout + safe.stderr
    assert "fix rejected" not in unsafe.stdout and "Traceback" not in unsafe.stderr, unsafe.stdout + unsafe.stderr
    assert f"Fixed {len(BAD)} problems (0 remaining)" in unsafe.stdout, unsafe.stdout


@pytest.mark.parametrize("case", BAD, ids=lambda p: str(p.relative_to(FIXTURES / "BNL105")))
def test_fixed_file_matches_snapshot(case, fixed_copy):
    work = fixed_copy[0]
    rel = case.relative_to(FIXTURES / "BNL105")
    assert (work / rel).read_text() == (SNAPSHOTS / rel).read_text()
    compile((work / rel).read_text(), str(rel), "exec")


def test_fixed_files_lint_clean_and_a_second_fix_changes_nothing(fixed_copy):
    _work, _safe, _unsafe, again, check = fixed_copy
    assert json.loads(check.stdout) == [] and check.returncode == 0, check.stdout
    assert again.returncode == 0 and again.stdout.strip() == "Would fix 0 problems (0 remaining).", again.stdout


def test_no_fix_when_the_model_is_called_in_a_helper_or_the_loop_returns():
    body = _main("with torch.no_grad():\n    for x, y in val_loader:\n        predict(model, x)\n",
                 extra="def predict(net, x):\n    return net(x)\n")
    _, findings = _run(body)
    assert [f.code for f in findings] == ["BNL105"] and findings[0].fix is None
    body = ("def first_hit(model, loader):\n    with torch.no_grad():\n        for x, y in loader:\n"
            "            if model(x).argmax(1).eq(y).any():\n                return x\n\n\n"
            + _main("first_hit(model, val_loader)\n"))
    _, findings = _run(body)
    assert [f.code for f in findings] == ["BNL105"] and findings[0].fix is None


# -- BNL107 -----------------------------------------------------------------------------------
TRAIN = """\
def main():
    model = {model}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = {loader}
    for epoch in range(3):
        fit(model, loader, opt)
"""


def _train(loader: str, model: str = "Net()", extra: str = ""):
    return _found(extra + "\n\n" + TRAIN.format(model=model, loader=loader))


@pytest.mark.parametrize("loader, expected", [
    ("DataLoader(data(), batch_size=1, shuffle=True)", Severity.ERROR),
    ("DataLoader(data(), shuffle=True)", Severity.ERROR),  # DataLoader's default batch size
    ("DataLoader(data(), 1, True)", Severity.ERROR),
    ("DataLoader(TensorDataset(torch.randn(1025, 8), torch.zeros(1025)), batch_size=32, shuffle=True)", Severity.ERROR),
    ("DataLoader(TensorDataset(torch.randn(N, 8)), batch_size=BS, shuffle=True)", Severity.ERROR),
    ("DataLoader(random_split(data(), [513, 100])[0], batch_size=64)", Severity.ERROR),  # 513 = 8 x 64 + 1
    ("DataLoader(TensorDataset(torch.randn(1025, 8)), batch_size=32, shuffle=True, drop_last=True)", None),
    ("DataLoader(TensorDataset(torch.randn(1024, 8)), batch_size=32, shuffle=True)", None),
    ("DataLoader(TensorDataset(torch.randn(1025, 8)), batch_size=32, sampler=RandomSampler(range(1025)))", None),
    ("DataLoader(data(), batch_size=1 if debug else 32)", None),  # not one on every path
    ("DataLoader(data(), batch_size=args_bs)", None),
    ("DataLoader(data(), **loader_kwargs)", None),
    ("DataLoader(data(), batch_size=None)", None),
])
def test_batches_of_one(loader, expected):
    extra = ("from torch.utils.data import RandomSampler, random_split\nN = 1025\nBS = 32\ndebug = False\n"
             "args_bs = int('1')\nloader_kwargs = dict(eval('{}'))\n")
    text, findings = _run(extra + "\n\n" + TRAIN.format(model="Net()", loader=loader))
    assert [f.severity for f in findings if f.code == "BNL107"] == ([expected] if expected else []), findings


def test_lengths_from_random_split_and_torchvision():
    extra = "from torch.utils.data import random_split\nimport torchvision\n"
    body = extra + "\n\n" + TRAIN.format(model="Net()", loader="DataLoader(part, batch_size=64, shuffle=True)").replace(
        "    loader =", "    part, rest = random_split(data(), [9025, 1000])\n    loader =")
    assert [c for c, _ in _found(body)] == ["BNL107"]
    usps = "DataLoader(torchvision.datasets.USPS('data', train=True), batch_size=10, shuffle=True)"
    assert [c for c, _ in _train(usps, extra=extra)] == ["BNL107"]  # 7291 = 729 x 10 + 1
    assert _train(usps.replace("train=True", "train=False"), extra=extra) == []  # 2007 % 10 == 7


def test_what_the_model_contains_decides():
    one = "DataLoader(data(), batch_size=1, shuffle=True)"
    last = "DataLoader(TensorDataset(torch.randn(1025, 8), torch.zeros(1025)), batch_size=32, shuffle=True)"
    conv = ("class SeqNet(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.conv = nn.Conv1d(8, 16, 3)\n        self.bn = nn.BatchNorm1d(16)\n\n"
            "    def forward(self, x):\n        return self.bn(self.conv(x)).mean()\n")
    # BatchNorm1d after Conv1d sees sequences: a batch of one does not raise (a warning
    # with batch_size=1, nothing for a last batch of one).
    _, findings = _run(conv + "\n\n" + TRAIN.format(model="SeqNet()", loader=one))
    assert [(f.code, f.severity) for f in findings] == [("BNL107", Severity.WARNING)]
    assert _train(last, model="SeqNet()", extra=conv) == []
    assert _train(one, model="nn.Sequential(nn.Linear(8, 2), nn.LayerNorm(2))") == []
    assert _train(one, model="nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4, track_running_stats=False))")
    # A model trained with its BatchNorms in evaluation mode does not normalise with the batch.
    frozen = "def fit_frozen(model, loader, opt):\n    model.eval()\n    for x, y in loader:\n" \
             "        opt.zero_grad()\n        F.cross_entropy(model(x), y).backward()\n        opt.step()\n"
    body = frozen + "\n\n" + TRAIN.format(model="Net()", loader=one).replace("fit(model", "fit_frozen(model")
    assert _found(body) == []
    # Evaluation loaders of one sample are fine.
    body = "def main():\n    model = Net()\n    model.eval()\n    for x, y in DataLoader(data(), batch_size=1):\n" \
           "        model(x)\n"
    assert _found(body) == []
