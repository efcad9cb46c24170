"""The wheel ships the rules: ``pip install`` of the built wheel into a fresh virtual
environment gives a working ``bnlint rules`` and ``bnlint explain``."""
from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import ROOT


def test_wheel_installs_and_lists_rules(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheels = list(dist.glob("bnlint-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "bnlint/rules/bnl101_dropout_before_batchnorm.py" in names
    assert "bnlint/model/worker.py" in names and not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["-c", str(ROOT / "constraints.txt"), str(wheels[0])],
                   check=True, capture_output=True, timeout=900)
    bnlint = str(venv / "bin" / "bnlint")
    proc = subprocess.run([bnlint, "rules"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for code in ("BNL001", "BNL101", "BNL102", "BNL103", "BNL201", "BNL202", "BNL203", "BNL204", "BNL205"):
        assert code in proc.stdout
    proc = subprocess.run([bnlint, "explain", "BNL101"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and "Kim" in proc.stdout
    # And it checks a model end to end from the installed copy.
    fixture = ROOT / "fixtures" / "BNL101" / "tabular_mlp_sequential.py"
    proc = subprocess.run([bnlint, "check", str(fixture)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1 and "BNL101" in proc.stdout, proc.stdout + proc.stderr
