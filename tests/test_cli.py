"""The command line as a user meets it: output format, JSON, exit codes, selection,
usage errors without tracebacks."""
from __future__ import annotations

import json
import textwrap

from conftest import FIXTURES, ROOT, run_bnlint, run_json

WRN = "fixtures/BNL101/wide_resnet_dropout_before_bn2.py"
CLEAN = "fixtures/models_clean/wide_resnet_guideline.py"


def test_text_output_line_format_and_summary():
    proc = run_bnlint("check", WRN)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"{WRN}:31:")
    code_and_message = lines[0].split(": ", 1)[1]
    assert code_and_message.startswith("BNL101 Dropout(p=0.3)")
    assert "BatchNorm2d" in code_and_message and "move the dropout" in code_and_message
    assert lines[0].endswith(" [*]")  # a checked fix exists
    assert lines[-1] == "Found 1 problem (1 fixable with 'bnlint fix')."
    assert proc.stderr == ""


def test_json_output_fields_and_relative_paths():
    rc, data = run_json(WRN)
    assert rc == 1
    assert len(data) == 1
    f = data[0]
    for key in ("code", "name", "severity", "path", "line", "column", "message", "fix"):
        assert key in f
    assert f["code"] == "BNL101" and f["name"] == "dropout-before-batchnorm"
    assert f["severity"] == "error" and f["path"] == WRN and f["line"] == 31
    assert f["details"]["model"]


def test_clean_file_exits_zero():
    proc = run_bnlint("check", CLEAN)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "All checks passed!"


def test_select_and_ignore_with_prefixes():
    files = ["fixtures/BNL102/googlenet_head.py", "fixtures/BNL103/vgg_cifar_dropout.py"]
    rc, data = run_json(*files)
    assert {f["code"] for f in data} == {"BNL102", "BNL103", "BNL106"}
    rc, data = run_json("--select", "BNL102", *files)
    assert {f["code"] for f in data} == {"BNL102"}
    rc, data = run_json("--ignore", "BNL10", *files)
    assert data == [] and rc == 0
    rc, data = run_json("--select", "BNL1", "--ignore", "BNL103,BNL106", *files)
    assert {f["code"] for f in data} == {"BNL102"}


def test_warnings_count_but_info_notes_do_not(tmp_path):
    rc, data = run_json("fixtures/BNL101/data_dependent_forward.py")
    severities = {f["severity"] for f in data}
    assert "info" in severities  # the fallback tracer says what it did
    rc, data = run_json("--ignore", "BNL101", "fixtures/BNL101/data_dependent_forward.py")
    assert rc == 0 and all(f["severity"] == "info" for f in data)
    proc = run_bnlint("check", "--ignore", "BNL101", "fixtures/BNL101/data_dependent_forward.py")
    assert "BNL001" not in proc.stdout  # info notes only with --verbose
    proc = run_bnlint("check", "-v", "--ignore", "BNL101", "fixtures/BNL101/data_dependent_forward.py")
    assert "BNL001" in proc.stdout and "analysed by running it" in proc.stdout


def test_usage_errors_exit_2_without_traceback():
    for args in (["check", "no/such/file.py"], ["check", "--select", "XYZ9", WRN],
                 ["check", f"{WRN}::Nope(("], ["explain", "BNL999"], ["check", "--timeout", "-3", WRN]):
        proc = run_bnlint(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout
        assert proc.stderr.startswith("bnlint: error:") or "Error" in proc.stderr, proc.stderr


def test_rules_and_explain():
    proc = run_bnlint("rules")
    assert proc.returncode == 0
    for code in ("BNL001", "BNL101", "BNL102", "BNL103", "BNL201", "BNL205"):
        assert code in proc.stdout
    proc = run_bnlint("explain", "BNL102")
    assert proc.returncode == 0
    assert "## Why is this bad?" in proc.stdout and "Kim" in proc.stdout
    proc = run_bnlint("explain", "dropout-before-batchnorm")
    assert proc.returncode == 0 and "BNL101" in proc.stdout


def test_folder_default_and_explicit_target_with_arguments(tmp_path):
    (tmp_path / "net.py").write_text(textwrap.dedent("""
        import torch.nn as nn


        class Head(nn.Module):
            def __init__(self, width, p=0.5):
                super().__init__()
                self.fc1 = nn.Linear(width, width)
                self.drop = nn.Dropout(p)
                self.bn = nn.BatchNorm1d(width)

            def forward(self, x):
                return self.bn(self.drop(self.fc1(x)))
    """))
    (tmp_path / "notes.py").write_text("print('not a model')\n")
    # Needs arguments: nothing is built by default (an info note says how).
    proc = run_bnlint("check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_bnlint("check", "net.py::Head(width=8)", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.startswith("net.py:13:")
    proc = run_bnlint("check", "net.py::Head(width=8, p=0.0)", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout


def test_config_models_and_input_shape(tmp_path):
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""
        [tool.bnlint]
        models = ["pkg/net.py::Tower(depth=2)"]
        input-shape = [2, 4, 16, 16]
    """))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "net.py").write_text(textwrap.dedent("""
        import torch.nn as nn


        class Tower(nn.Module):
            def __init__(self, depth):
                super().__init__()
                layers = []
                for _ in range(depth):
                    layers += [nn.Conv2d(4, 4, 3, padding=1), nn.Dropout2d(0.1), nn.BatchNorm2d(4), nn.ReLU()]
                self.body = nn.Sequential(*layers)

            def forward(self, x):
                return self.body(x)
    """))
    rc, data = run_json("pkg", cwd=tmp_path)
    assert rc == 1
    assert [(f["code"], f["line"]) for f in data] == [("BNL101", 10)]
    assert "applied 2 times" in data[0]["message"]


def test_bad_config_is_a_usage_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.bnlint]\nselct = ['BNL1']\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    proc = run_bnlint("check", "a.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "selct" in proc.stderr and "Traceback" not in proc.stderr


def test_output_file(tmp_path):
    out = tmp_path / "report.json"
    proc = run_bnlint("check", "--format", "json", "--output-file", out, WRN)
    assert proc.returncode == 1 and proc.stdout == ""
    assert json.loads(out.read_text())[0]["code"] == "BNL101"


def test_plain_python_files_never_import_torch(tmp_path):
    (tmp_path / "utils.py").write_text("import os\n\n\ndef walk(root):\n    return list(os.walk(root))\n")
    (tmp_path / "cfg.py").write_text("from dataclasses import dataclass\n\n\n@dataclass\nclass Cfg:\n    lr: float = 0.1\n")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bnlint", "check", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "bnlint.model.worker" not in imported
