"""Models from installed packages are analysed, but findings point at the user's line
that built the model and name the library module."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

LIBRARY = textwrap.dedent("""
    import torch
    import torch.nn as nn


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


    def tiny_efficientnet(**kwargs):
        return TinyEfficientNet(**kwargs)
""")

USER = textwrap.dedent("""
    import torch.nn as nn
    from fakevision.models import tiny_efficientnet


    def build_model() -> nn.Module:
        model = tiny_efficientnet(num_classes=5)
        return model


    class WithBackbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = tiny_efficientnet(num_classes=5, dropout=0.0)
            self.extra = nn.Linear(5, 2)

        def forward(self, x):
            return self.extra(self.backbone(x))
""")


def test_library_findings_point_at_the_users_construction_line(tmp_path):
    lib = tmp_path / "venv" / "lib" / "site-packages" / "fakevision"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "models.py").write_text(LIBRARY)
    (tmp_path / "train_models.py").write_text(USER)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "venv" / "lib" / "site-packages"))
    proc = subprocess.run([sys.executable, "-m", "bnlint", "check", "--format", "json", "train_models.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    data = [f for f in json.loads(proc.stdout) if f["severity"] != "info"]
    assert len(data) == 1, data
    f = data[0]
    assert (f["code"], f["path"], f["line"]) == ("BNL102", "train_models.py", 7)
    assert "fakevision.models" in f["message"]
    # The library file itself is never reported.
    assert not any("site-packages" in g["path"] for g in json.loads(proc.stdout))
