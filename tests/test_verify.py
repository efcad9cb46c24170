"""Verification harness: verdicts, determinism, report schema, plot, CLI errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bnlint.verify import VerifyOptions, verify_sources
from bnlint.verify.options import VerifyError

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures" / "verify"
BEFORE = str(FIX / "mlp_dropout_before_bn.py")
AFTER = str(FIX / "mlp_dropout_after_bn.py")
COSMETIC = str(FIX / "mlp_cosmetic_change.py")
FAST = VerifyOptions(seeds=3, epochs=6, progress=False)


def _without_timing(report: dict) -> dict:
    report = dict(report)
    report.pop("timing")
    return report


@pytest.fixture(scope="module")
def confirmed_report():
    return verify_sources(BEFORE, AFTER, None, FAST)


def test_moving_dropout_behind_bn_is_confirmed(confirmed_report):
    report = confirmed_report
    assert report.kind == "model"
    assert report.equivalence["equivalent"]
    assert report.verdict == "confirmed", report.render_table()
    shift = next(c for c in report.comparisons if c.spec.name == "variance_shift")
    # Li et al.: p = 0.5 feeding BN directly -> running var about twice the eval var.
    assert 1.7 < shift.before_mean < 2.4
    assert shift.after_mean < 1.1
    for seed in report.seeds:
        assert seed["before"]["variance_shift"][0]["ratio"] == pytest.approx(0.5, abs=0.08)
        assert len(seed["before"]["curve"]) == 6


def test_change_that_does_nothing_is_inconclusive():
    report = verify_sources(BEFORE, COSMETIC, None, FAST)
    assert report.verdict == "inconclusive"
    assert all(c.diff_mean == 0 for c in report.comparisons)


def test_same_seed_gives_identical_reports(confirmed_report):
    again = verify_sources(BEFORE, AFTER, None, FAST)
    assert _without_timing(again.to_dict()) == _without_timing(confirmed_report.to_dict())


def test_other_seeds_change_the_numbers(confirmed_report):
    other = verify_sources(BEFORE, AFTER, None, FAST.with_changes(first_seed=10))
    assert other.seeds[0]["before"]["curve"] != confirmed_report.seeds[0]["before"]["curve"]


def test_json_report_schema(confirmed_report):
    data = json.loads(confirmed_report.to_json())
    assert {"schema_version", "kind", "verdict", "reason", "before", "after", "task", "epochs", "equivalence",
            "metrics", "seeds", "notes", "environment", "options", "timing"} <= set(data)
    assert {"device", "device_name", "torch_version"} <= set(data["environment"])
    assert data["environment"]["torch_version"] == torch.__version__
    metric = data["metrics"][0]
    assert {"metric", "before", "after", "diff_mean", "ci95", "sign_test_p", "decision"} <= set(metric)
    assert len(metric["before"]) == 3
    seed = data["seeds"][0]
    for side in ("before", "after"):
        assert {"curve", "variance_shift", "variance_shift_mean", "train_mode_loss", "eval_mode_loss",
                "train_eval_gap", "val_loss", "val_acc"} <= set(seed[side])
        assert {"epoch", "train_loss", "val_loss", "val_acc"} == set(seed[side]["curve"][0])


def test_unsafe_fix_needs_and_accepts_a_rename_map():
    before, after = str(FIX / "seq_dropout_before_bn.py"), str(FIX / "seq_dropout_after_bn.py")
    with pytest.raises(VerifyError, match="--rename"):
        verify_sources(before, after, None, FAST.with_changes(seeds=1, epochs=1))
    report = verify_sources(before, after, None, FAST.with_changes(rename=(("2.", "1."),)))
    assert report.equivalence["equivalent"]
    assert report.verdict == "confirmed", report.render_table()


def test_budget_reduces_epochs_with_a_note():
    report = verify_sources(BEFORE, AFTER, None, VerifyOptions(seeds=2, epochs=500, budget=1.0, progress=False))
    assert report.epochs < 500
    assert any("budget" in n for n in report.notes)


def test_several_models_need_model_option(tmp_path):
    src = tmp_path / "two.py"
    src.write_text("from torch import nn\nclass A(nn.Linear):\n    def __init__(self):\n        super().__init__(4, 2)\n"
                   "class B(nn.Linear):\n    def __init__(self):\n        super().__init__(4, 2)\n")
    with pytest.raises(VerifyError, match="--model"):
        verify_sources(str(src), str(src), None, FAST)


# --- plot -------------------------------------------------------------------------

def test_plot_without_matplotlib_says_how_to_install(monkeypatch, confirmed_report, tmp_path):
    from bnlint.verify.plot import PlotUnavailable, write_plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    with pytest.raises(PlotUnavailable, match=r"pip install 'bnlint\[plot\]'"):
        write_plot(confirmed_report.to_dict(), str(tmp_path / "p.png"))
    assert not (tmp_path / "p.png").exists()


def test_plot_is_written_when_matplotlib_is_present(confirmed_report, tmp_path):
    pytest.importorskip("matplotlib")
    from bnlint.verify.plot import write_plot

    out = tmp_path / "p.png"
    write_plot(confirmed_report.to_dict(), str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- CLI ---------------------------------------------------------------------------

def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "bnlint", "verify", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_confirmed_exit_0_with_table_and_report(tmp_path):
    out = tmp_path / "r.json"
    proc = _cli(BEFORE, AFTER, "--seeds", 2, "--epochs", 4, "--report", out)
    assert proc.returncode == 0, proc.stderr
    assert "variance_shift" in proc.stdout and "verdict: confirmed" in proc.stdout
    assert json.loads(out.read_text())["verdict"] == "confirmed"


def test_cli_inconclusive_exit_1():
    proc = _cli(BEFORE, COSMETIC, "--seeds", 2, "--epochs", 2)
    assert proc.returncode == 1, proc.stderr
    assert "verdict: inconclusive" in proc.stdout


def test_cli_plot_option(tmp_path):
    out = tmp_path / "p.png"
    proc = _cli(BEFORE, AFTER, "--seeds", 1, "--epochs", 1, "--plot", out)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert proc.returncode == 2
        assert "bnlint: error: --plot needs matplotlib" in proc.stderr
        assert "Traceback" not in proc.stderr and not out.exists()
    else:
        assert proc.returncode in (0, 1), proc.stderr
        assert out.exists()


@pytest.mark.parametrize("args, message", [
    (["missing.py", AFTER], "missing.py: no such file"),
    ([BEFORE, AFTER, "--seeds", "0"], "--seeds must be at least 1"),
    ([BEFORE, AFTER, "--device", "tpu"], "is not a device name"),
    ([BEFORE, AFTER, "--device", "meta"], "only cpu and cuda are supported"),
    ([BEFORE, AFTER, "--model", "Nope"], "defines no class or function 'Nope'"),
    ([BEFORE, AFTER, "--task", "no_such_module_xyz:make"], "importing no_such_module_xyz failed"),
    ([str(FIX / "crashing_forward.py"), str(FIX / "crashing_forward.py"), "--kind", "model", "--epochs", "1"],
     "this model only accepts small batches"),
])
def test_cli_errors_are_one_line_exit_2(args, message):
    proc = _cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert f"bnlint: error:" in proc.stderr and message in proc.stderr, proc.stderr


def test_user_task(tmp_path):
    (tmp_path / "mytask.py").write_text(
        "import torch\nfrom torch.utils.data import TensorDataset\n"
        "def make():\n    g = torch.Generator().manual_seed(0)\n    x = torch.randn(96, 32, generator=g)\n"
        "    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()\n"
        "    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])\n")
    report = verify_sources(BEFORE, AFTER, None, FAST.with_changes(seeds=1, epochs=2, task=f"{tmp_path}/mytask.py:make"))
    assert report.task.startswith("user task")
    assert len(report.seeds[0]["before"]["curve"]) == 2
