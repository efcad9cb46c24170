"""Python API: ``bnlint.check_model``, ``bnlint.check_source`` and
``bnlint.testing.assert_no_findings`` on small real models and scripts."""
from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import bnlint
from bnlint.findings import Severity
from bnlint.testing import assert_no_findings
from test_config import CYCLED  # one BNL202 warning, on line 9

HERE = __file__


def _line_of(cls, text: str) -> int:
    lines, start = inspect.getsourcelines(cls)
    return start + next(i for i, l in enumerate(lines) if text in l)


class DropBeforeBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.drop(F.relu(self.conv1(x)))
        x = F.relu(self.bn(x))
        return self.fc(x.mean((2, 3)))


class Guideline(nn.Module):
    """Kim et al.'s placement: BN -> ReLU -> dropout -> last weight layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)  # a BN follows (BNL106)
        self.bn1 = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.3)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = self.conv2(self.drop(F.relu(self.bn1(x))))
        return self.fc(x.mean((2, 3)))


class PooledHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.fc(self.dropout(x))


class Suppressed(DropBeforeBN):
    def forward(self, x):
        x = self.drop(F.relu(self.conv1(x)))  # noqa: BNL101
        return self.fc(F.relu(self.bn(x)).mean((2, 3)))


class BadForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x.view(-1, 5))


def _images():
    return torch.randn(2, 3, 16, 16)


def test_check_model_reports_dropout_before_bn_at_its_call():
    findings = bnlint.check_model(DropBeforeBN(), _images())
    assert [(f.code, f.line) for f in findings] == [("BNL101", _line_of(DropBeforeBN, "x = self.drop("))]
    f = findings[0]
    assert f.path.endswith("test_api.py") and f.severity is Severity.ERROR
    assert "Dropout(p=0.3) 'drop' feeds BatchNorm2d 'bn'" in f.message
    assert dict(f.details)["model"] == "DropBeforeBN"


def test_check_model_clean_and_head_models():
    assert bnlint.check_model(Guideline(), (_images(),)) == []
    findings = bnlint.check_model(PooledHead(), [_images()])
    assert [(f.code, f.line) for f in findings] == [("BNL102", _line_of(PooledHead, "self.fc(self.dropout(x))"))]


def test_check_model_selection_and_noqa():
    assert bnlint.check_model(DropBeforeBN(), _images(), ignore=["BNL101"]) == []
    assert bnlint.check_model(PooledHead(), _images(), select="BNL101") == []
    assert bnlint.check_model(Suppressed(), _images()) == []


def test_check_model_leaves_the_model_and_rng_as_they_were():
    model = DropBeforeBN().eval()
    inputs = _images()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    assert bnlint.check_model(model, inputs)
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is untouched
    assert not model.training and not any(m.training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included


def test_check_model_forward_error_is_an_analysis_finding():
    findings = bnlint.check_model(BadForward(), torch.randn(2, 4))
    assert [f.code for f in findings if f.severity is not Severity.INFO] == ["BNL001"]
    assert "forward raised RuntimeError" in findings[0].message
    with pytest.raises(TypeError, match="torch.nn.Module"):
        bnlint.check_model("not a model", torch.randn(1))


def test_check_source():
    findings = bnlint.check_source(CYCLED, path="train.py")
    assert [(f.code, f.path, f.line, f.column) for f in findings] == [("BNL202", "train.py", 9, 11)]
    assert bnlint.check_source(CYCLED, select=["BNL201"]) == []
    assert bnlint.check_source(CYCLED.replace("cycle(loader)", "cycle(loader)  # noqa: BNL202")) == []
    assert bnlint.check_source("# bnlint: skip-file\n" + CYCLED) == []
    broken = bnlint.check_source("def f(:\n", path="bad.py")
    assert [(f.code, f.line) for f in broken] == [("BNL001", 1)] and "syntax error" in broken[0].message


def test_assert_no_findings_passes_and_fails_readably():
    assert_no_findings(Guideline(), _images())
    assert_no_findings(source="x = 1\n")
    with pytest.raises(AssertionError) as info:
        assert_no_findings(DropBeforeBN(), _images())
    message = str(info.value)
    line = _line_of(DropBeforeBN, "x = self.drop(")
    assert message.startswith("bnlint found 1 problem in model DropBeforeBN:\n")
    assert f"test_api.py:{line}:13: BNL101 [error] Dropout(p=0.3) 'drop' feeds BatchNorm2d 'bn'" in message
    assert "bnlint explain BNL101" in message
    with pytest.raises(AssertionError, match=r"train\.py:9:11: BNL202 \[warning\]"):
        assert_no_findings(source=CYCLED, path="train.py")
    assert_no_findings(source=CYCLED, path="train.py", allow_warnings=True)
    assert_no_findings(DropBeforeBN(), _images(), ignore=["BNL1"])
    with pytest.raises(TypeError):
        assert_no_findings(DropBeforeBN())
    with pytest.raises(TypeError):
        assert_no_findings()


def test_import_bnlint_does_not_import_torch():
    code = "import sys, bnlint; bnlint.check_source; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
