"""Models from installed packages are analysed, but findings point at the user's line
that built the model and name the library module.

The library here is a hand-written package in a temporary ``site-packages`` folder
(bnlint treats it as installed code), written the way torchvision and timm write
theirs: dropout as a module in a classifier ``nn.Sequential``, ``F.dropout`` in a
DenseNet layer's forward and in a timm-style ``forward_head``, a forward that fx
cannot trace, a helper function, factories the user calls.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

MODELS = textwrap.dedent("""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    class TinyEfficientNet(nn.Module):
        def __init__(self, num_classes=10, dropout=0.2):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.SiLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.SiLU(),
            )
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(32, num_classes))

        def forward(self, x):
            x = self.avgpool(self.features(x))
            return self.classifier(torch.flatten(x, 1))


    class _DenseLayer(nn.Module):
        def __init__(self, in_channels, growth_rate, drop_rate):
            super().__init__()
            self.norm1 = nn.BatchNorm2d(in_channels)
            self.conv1 = nn.Conv2d(in_channels, growth_rate, 3, padding=1, bias=False)
            self.drop_rate = float(drop_rate)

        def forward(self, x):
            new_features = self.conv1(F.relu(self.norm1(x)))
            if self.drop_rate > 0:
                new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
            return torch.cat([x, new_features], 1)


    class DenseNet(nn.Module):
        def __init__(self, growth_rate=8, num_layers=3, drop_rate=0.0, num_classes=10):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
            layers, channels = [], 16
            for _ in range(num_layers):
                layers.append(_DenseLayer(channels, growth_rate, drop_rate))
                channels += growth_rate
            self.block = nn.Sequential(*layers)
            self.norm = nn.BatchNorm2d(channels)
            self.fc = nn.Linear(channels, num_classes)

        def forward(self, x):
            x = F.relu(self.norm(self.block(self.stem(x))))
            x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
            return self.fc(x)


    class ResNetLike(nn.Module):
        \"\"\"timm style: the head's dropout is a functional call in forward_head.\"\"\"

        def __init__(self, num_classes=10, drop_rate=0.0):
            super().__init__()
            self.drop_rate = drop_rate
            self.conv1 = nn.Conv2d(3, 32, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(32)
            self.fc = nn.Linear(32, num_classes)

        def forward_features(self, x):
            return F.relu(self.bn1(self.conv1(x)))

        def forward_head(self, x):
            x = x.mean((2, 3))
            if self.drop_rate:
                x = F.dropout(x, p=float(self.drop_rate), training=self.training)
            return self.fc(x)

        def forward(self, x):
            return self.forward_head(self.forward_features(x))


    class TinyMNASNet(nn.Module):
        \"\"\"Downsamples 32x: at a 32x32 input its last map is 1x1.\"\"\"

        def __init__(self, num_classes=10, dropout=0.2):
            super().__init__()
            layers, channels = [], 3
            for out in (8, 16, 24, 32, 40):
                layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                channels = out
            self.layers = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(channels, num_classes))

        def forward(self, x):
            x = self.layers(x)
            x = x.mean([2, 3])
            return self.classifier(x)


    class GatedNet(nn.Module):
        \"\"\"A forward with data-dependent control flow: fx cannot trace it.\"\"\"

        def __init__(self, drop_rate=0.3):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(16)
            self.fc = nn.Linear(16, 10)
            self.drop_rate = drop_rate

        def forward(self, x):
            x = F.relu(self.bn(self.conv(x)))
            if x.sum() > 0:
                x = x * 1.0
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
            x = F.dropout(x, self.drop_rate, self.training)
            return self.fc(x)


    def tiny_efficientnet(**kwargs):
        return TinyEfficientNet(**kwargs)


    def densenet(**kwargs):
        return DenseNet(**kwargs)


    def create_model(name, **kwargs):
        return {"resnetlike": ResNetLike, "densenet": DenseNet}[name](**kwargs)


    def mnasnet(**kwargs):
        return TinyMNASNet(**kwargs)


    def gated(**kwargs):
        return GatedNet(**kwargs)
""")

OPS = textwrap.dedent("""
    import torch.nn.functional as F


    def feature_dropout(x, p, training):
        return F.dropout(x, p=p, training=training)
""")

# Line numbers matter: the tests name the lines findings must point at.
USER = """\
import torch.nn as nn
from fakevision.models import create_model, densenet, tiny_efficientnet


def build_model() -> nn.Module:
    model = tiny_efficientnet(num_classes=5)
    return model


def dense_small() -> nn.Module:
    return densenet(drop_rate=0.2)


def dense_large() -> nn.Module:
    return densenet(num_layers=4, drop_rate=0.1)


def resnet_timm_style() -> nn.Module:
    return create_model("resnetlike", drop_rate=0.25)


class WithBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = densenet(drop_rate=0.3)
        self.extra = nn.Linear(10, 2)

    def forward(self, x):
        return self.extra(self.backbone(x))
"""

HELPER = """\
import torch
import torch.nn as nn
from fakevision.ops import feature_dropout


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        x = feature_dropout(x, 0.4, self.training)
        return self.fc(x)
"""

GATED = """\
import torch.nn as nn
from fakevision.models import gated


def build() -> nn.Module:
    return gated(drop_rate=0.3)
"""

SUBCLASS = """\
import torch.nn as nn
from fakevision.models import GatedNet


class MyGated(GatedNet):
    \"\"\"Our own name for the library's model; its forward is the library's.\"\"\"
"""

MNAS = """\
import torch
import torch.nn as nn
from fakevision.models import mnasnet


def build() -> nn.Module:
    return mnasnet()
"""
MNAS_INPUTS = MNAS + """

def example_inputs():
    return (torch.randn(2, 3, 224, 224),)
"""


def _project(tmp_path):
    lib = tmp_path / "venv" / "lib" / "site-packages" / "fakevision"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "models.py").write_text(MODELS)
    (lib / "ops.py").write_text(OPS)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train_models.py").write_text(USER)
    (proj / "helper_head.py").write_text(HELPER)
    (proj / "gated_model.py").write_text(GATED)
    (proj / "subclass_model.py").write_text(SUBCLASS)
    (proj / "mnas_inferred.py").write_text(MNAS)
    (proj / "mnas_given.py").write_text(MNAS_INPUTS)
    return proj, dict(os.environ, PYTHONPATH=str(lib.parent))


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    proj, env = _project(tmp_path_factory.mktemp("libmodels"))
    proc = subprocess.run([sys.executable, "-m", "bnlint", "check", "--no-cache", "--format", "json", "."],
                          cwd=proj, env=env, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    findings = json.loads(proc.stdout)
    return proc, findings, [f for f in findings if f["severity"] != "info"]


def _at(findings, path):
    return sorted((f["code"], f["line"], f["column"], f["details"]["model"]) for f in findings if f["path"] == path)


def test_library_findings_point_at_the_users_construction_line(checked):
    proc, everything, findings = checked
    assert proc.returncode == 1
    assert _at(findings, "train_models.py") == [
        ("BNL101", 11, 12, "dense_small"),        # F.dropout in the library's dense layer
        ("BNL101", 15, 12, "dense_large"),        # the same library line, another model: its own finding
        ("BNL101", 25, 25, "WithBackbone"),       # the backbone's construction, not forward's self.backbone(x)
        ("BNL102", 6, 13, "build_model"),         # nn.Dropout in the library's classifier Sequential
        ("BNL102", 19, 12, "resnet_timm_style"),  # F.dropout in the library's forward_head
    ]
    # The library file itself is never reported, and nothing lands at 1:1.
    assert not any("site-packages" in f["path"] for f in everything)
    assert not any((f["line"], f["column"]) == (1, 1) for f in findings)


def test_library_findings_name_the_library_and_offer_no_fix(checked):
    _, _, findings = checked
    in_lib = [f for f in findings if f["path"] == "train_models.py"]
    for f in in_lib:
        assert "(in fakevision.models, built on this line;" in f["message"], f["message"]
        assert f["details"]["library"] == "fakevision.models"
        assert f["fix"] is None
    small = next(f for f in in_lib if f["details"]["model"] == "dense_small")
    assert small["message"].startswith("F.dropout(p=0.2) feeds BatchNorm2d"), small["message"]
    assert "[applied 3 times]" in small["message"]  # each of its three dense layers
    large = next(f for f in in_lib if f["details"]["model"] == "dense_large")
    assert "[applied 4 times]" in large["message"] and "models" not in large["details"]


def test_library_helper_called_from_user_forward_is_reported_at_the_call(checked):
    _, _, findings = checked
    # fakevision.ops.feature_dropout runs F.dropout, but the user's forward chose to call it.
    assert _at(findings, "helper_head.py") == [("BNL102", 15, 13, "Head")]
    f = next(f for f in findings if f["path"] == "helper_head.py")
    assert f["details"]["library"] == "fakevision.ops"
    assert "(in fakevision.ops, called on this line;" in f["message"], f["message"]


def test_untraceable_library_forward_is_reported_at_the_users_line(checked):
    _, everything, findings = checked
    assert _at(findings, "gated_model.py") == [("BNL102", 6, 12, "build")]
    # It was recorded by running it, which an info note says.
    assert any(f["path"] == "gated_model.py" and f["code"] == "BNL001" and f["severity"] == "info"
               for f in everything)


def test_library_forward_of_a_user_subclass_is_reported_at_the_class(checked):
    # No user line built or called the library code: the model's own definition.
    _, _, findings = checked
    assert _at(findings, "subclass_model.py") == [("BNL102", 5, 1, "MyGated")]
    f = next(f for f in findings if f["path"] == "subclass_model.py")
    assert "(in fakevision.models, which this model uses;" in f["message"], f["message"]


def test_same_findings_with_and_without_example_inputs(checked):
    # At the inferred 32x32 input the library model's last map is 1x1; x.mean([2, 3]) is
    # still its global pooling.
    _, _, findings = checked
    assert _at(findings, "mnas_inferred.py") == _at(findings, "mnas_given.py") == [("BNL102", 7, 12, "build")]
