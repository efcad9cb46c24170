"""``bnlint fix --verify``: a fix is written only when training confirms it; ``--force``
writes whatever the verdict (and says it); an unconfirmed file stays byte-identical.

Two fixtures, both copies of fixtures/verify/mlp_dropout_before_bn.py: ``big.py`` (dropout
p=0.5 right before a BN: confirmed with 3 seeds x 3 epochs) and ``tiny.py`` (p=0.005: the
variance shift the fix removes, about 1.005, is below the metric's margin of 0.02, so
inconclusive).
"""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import FIXTURES, run_bnlint

SOURCE = FIXTURES / "verify" / "mlp_dropout_before_bn.py"
QUICK = ("--seeds", "3", "--epochs", "3", "--device", "cpu")


def _copies(folder, names):
    folder.mkdir()
    text = SOURCE.read_text(encoding="utf-8")
    assert "p: float = 0.5" in text
    paths = {}
    for name in names:
        paths[name] = folder / f"{name}.py"
        paths[name].write_text(text if name == "big" else text.replace("p: float = 0.5", "p: float = 0.005"),
                               encoding="utf-8")
    return paths


def test_confirmed_fix_is_written_and_unconfirmed_file_is_untouched(tmp_path):
    files = _copies(tmp_path / "work", ["big", "tiny"])
    before = {name: path.read_bytes() for name, path in files.items()}
    proc = run_bnlint("fix", "--verify", *QUICK, "--report", tmp_path / "report.json", ".",
                      cwd=tmp_path / "work", timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout
    assert "big.py: fix written" in out, out
    assert "verdict: confirmed" in out
    assert "BNL101 fixed: move Dropout" in out
    assert "tiny.py: fix not written: verification inconclusive" in out, out
    assert "verdict: inconclusive" in out
    assert "_bnlint_verify_" not in out  # the temporary file is shown as '<path> (fixed)'
    assert "Fixed 1 problem (1 remaining)." in out
    assert proc.returncode == 1  # a problem remains, as for 'bnlint fix'
    assert files["big"].read_bytes() != before["big"]
    assert "self.drop(torch.relu(self.bn(" in files["big"].read_text(encoding="utf-8")
    assert files["tiny"].read_bytes() == before["tiny"]
    assert not list((tmp_path / "work").glob("_bnlint_*"))
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    by_path = {f["path"]: f for f in report["files"]}
    assert by_path["big.py"]["written"] and by_path["big.py"]["verdict"] == "confirmed"
    assert not by_path["tiny.py"]["written"] and by_path["tiny.py"]["verdict"] == "inconclusive"
    assert by_path["big.py"]["reports"][0]["kind"] == "model"


def test_force_writes_and_says_the_verdict(tmp_path):
    files = _copies(tmp_path / "work", ["tiny"])
    before = files["tiny"].read_bytes()
    proc = run_bnlint("fix", "--verify", "--force", *QUICK, "tiny.py", cwd=tmp_path / "work", timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "tiny.py: fix written (--force; verification inconclusive)" in proc.stdout, proc.stdout
    assert "Fixed 1 problem (0 remaining)." in proc.stdout
    assert proc.returncode == 0
    assert files["tiny"].read_bytes() != before


@pytest.mark.parametrize("args, message", [
    (["--force"], "need --verify"),
    (["--seeds", "2"], "need --verify"),
    (["--verify", "--diff"], "cannot be combined"),
    (["--verify", "--seeds", "0"], "--seeds must be at least 1"),
])
def test_option_errors_are_one_line_exit_2(tmp_path, args, message):
    target = tmp_path / "model.py"
    shutil.copy2(SOURCE, target)
    proc = run_bnlint("fix", *args, str(target), cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert target.read_bytes() == SOURCE.read_bytes()
