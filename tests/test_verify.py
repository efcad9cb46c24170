"""Verification harness: the three verdicts on fixture models, evidence rules,
determinism, report schema, plot, CLI errors."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bnlint.verify import VerifyOptions, verify_sources
from bnlint.verify.options import VerifyError

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures" / "verify"
BEFORE = str(FIX / "mlp_dropout_before_bn.py")
AFTER = str(FIX / "mlp_dropout_after_bn.py")
COSMETIC = str(FIX / "mlp_cosmetic_change.py")
WRN_BEFORE = str(FIX / "wrn16_4_dropout_before_bn2.py")
WRN_AFTER = str(FIX / "wrn16_4_guideline.py")
WRN_COSMETIC = str(FIX / "wrn16_4_cosmetic.py")
WRN_SMALL = "WideResNet(depth=10, widen_factor=1)"  # the fixtures' class, small enough for tests
# Measurement only (no training): deterministic and a few seconds on CPU.
AT_INIT = VerifyOptions(seeds=3, epochs=0, progress=False, precision="fp32", cpu_threads=1)
TRAINED = VerifyOptions(seeds=3, epochs=6, progress=False, precision="fp32", cpu_threads=1)


def _without_timing(report: dict) -> dict:
    report = dict(report)
    report.pop("timing")
    report["environment"] = {k: v for k, v in report["environment"].items() if k != "speed"}
    return report


def _metric(report, name):
    return next(c for c in report.comparisons if c.spec.name == name)


@pytest.fixture(scope="module")
def trained_report():
    return verify_sources(BEFORE, AFTER, None, TRAINED)


# --- the three verdicts -------------------------------------------------------------

@pytest.mark.parametrize("before, after, model, verdict", [
    (BEFORE, AFTER, None, "confirmed"),  # dropout moved behind BN + ReLU
    (AFTER, BEFORE, None, "regressed"),  # the same change, reversed
    (BEFORE, COSMETIC, None, "inconclusive"),  # forward rewritten, dropout still feeds the BN
    (WRN_BEFORE, WRN_AFTER, WRN_SMALL, "confirmed"),  # Kim et al.'s guideline position
    (WRN_AFTER, WRN_BEFORE, WRN_SMALL, "regressed"),
    (WRN_BEFORE, WRN_COSMETIC, WRN_SMALL, "inconclusive"),
])
def test_three_verdicts(before, after, model, verdict):
    report = verify_sources(before, after, model, AT_INIT)
    assert report.verdict == verdict, report.render_table()
    assert report.equivalence["equivalent"]
    assert report.epochs == 0 and len(report.seeds) == 3
    shift = _metric(report, "variance_shift")
    if verdict == "inconclusive":
        assert shift.diff_mean == 0 and shift.decision == "no clear difference"
    else:
        assert shift.decision == ("better" if verdict == "confirmed" else "worse")
        margin = math.log(1.02)  # compared as log-ratios: after / before beyond 2%
        assert shift.ci_low is not None and (shift.ci_high < -margin if verdict == "confirmed" else shift.ci_low > margin)
    assert not report.validation["counted"]


@pytest.mark.parametrize("name, model", [
    ("data_dependent_forward.py", "PatchClassifier"),  # Dropout2d -> BN, an untraceable forward
    ("functional_dropout_before_bn.py", "MetaConvNet"),  # F.dropout2d -> F.batch_norm on buffers
    ("functional_dropout_before_bn.py", "SmallConvNet"),
    ("modulelist_conv1d.py", None),
    ("densenet_bc_cifar.py", None),  # only the first bottleneck dropout moves
])
def test_fixture_fixes_are_confirmed(name, model):
    """What `bnlint fix` writes for the BNL101 fixtures (fixtures/fixed/) is confirmed."""
    report = verify_sources(str(ROOT / "fixtures" / "BNL101" / name), str(ROOT / "fixtures" / "fixed" / "BNL101" / name),
                            model, AT_INIT)
    assert report.verdict == "confirmed", report.render_table()
    assert report.judged["names"] and not report.judged["fed_after"] or name == "densenet_bc_cifar.py"


def test_judged_at_the_bns_the_finding_names():
    report = verify_sources(WRN_BEFORE, WRN_AFTER, WRN_SMALL, AT_INIT)
    assert report.judged["names"] == ["layer1.0.bn2", "layer2.0.bn2", "layer3.0.bn2"]
    assert set(report.judged["fed_before"]) == set(report.judged["names"])
    assert report.judged["fed_after"] == []
    other = _metric(report, "variance_shift_other_max")
    assert other.spec.role == "info"  # reported apart, never decides


def test_variance_shift_matches_the_prediction_at_initialisation():
    """research.md: at a BN a dropout of rate p feeds directly, running / eval variance
    >= 1/(1-p); about 1 once the dropout sits behind the BN and its ReLU."""
    report = verify_sources(WRN_BEFORE, WRN_AFTER, WRN_SMALL, AT_INIT)
    for seed in report.seeds:
        before = {s["name"]: s for s in seed["before"]["at_init"]["variance_shift"]}
        after = {s["name"]: s for s in seed["after"]["at_init"]["variance_shift"]}
        # The first block's bn2: fed directly by Dropout(0.3) before, by nothing after.
        assert before["layer1.0.bn2"]["ratio"] >= 1 / (1 - 0.3)
        assert after["layer1.0.bn2"]["ratio"] == pytest.approx(1.0, abs=0.05)
        # The first BN sees no dropout in either version.
        assert before["layer1.0.bn1"]["ratio"] == pytest.approx(1.0, abs=0.05)


def test_one_seed_never_gives_a_verdict():
    for before, after in ((BEFORE, AFTER), (AFTER, BEFORE)):
        report = verify_sources(before, after, None, AT_INIT.with_changes(seeds=1))
        shift = _metric(report, "variance_shift")
        assert abs(shift.diff_mean) > 0.5  # a huge difference ...
        assert report.verdict == "inconclusive"  # ... but one seed is no evidence
        assert "1 paired seed: a verdict needs at least 3" in report.reason


def test_trained_run_counts_validation_when_training_moved_it(trained_report):
    report = trained_report
    assert report.verdict == "confirmed", report.render_table()
    assert report.epochs == 6
    assert report.validation["counted"], report.validation
    shift = _metric(report, "variance_shift")
    # Li et al.: p = 0.5 feeding BN directly -> running var at least twice the eval var.
    assert shift.before_mean > 1.9 and shift.after_mean < 1.1
    assert _metric(report, "val_acc").spec.role == "validation"
    assert _metric(report, "variance_shift_trained").spec.role == "info"
    for seed in report.seeds:
        assert seed["before"]["variance_shift"] == seed["before"]["at_init"]["variance_shift"]
        assert seed["before"]["at_init"]["variance_shift"][0]["ratio"] >= 0.95 * 2.0  # 1/(1-p), sampling noise
        assert seed["before"]["trained"]["variance_shift"][0]["ratio"] >= 0.95 * 2.0
        assert len(seed["before"]["curve"]) == 6


def test_same_seed_gives_identical_reports(trained_report):
    again = verify_sources(BEFORE, AFTER, None, TRAINED)
    assert _without_timing(again.to_dict()) == _without_timing(trained_report.to_dict())


def test_other_seeds_change_the_numbers(trained_report):
    other = verify_sources(BEFORE, AFTER, None, TRAINED.with_changes(first_seed=10))
    assert other.seeds[0]["before"]["curve"] != trained_report.seeds[0]["before"]["curve"]


def test_json_report_schema(trained_report):
    data = json.loads(trained_report.to_json())
    assert {"schema_version", "kind", "verdict", "reason", "before", "after", "task", "epochs", "equivalence",
            "judged_batchnorms", "validation", "metrics", "seeds", "notes", "environment", "options",
            "timing"} <= set(data)
    assert {"device", "device_name", "torch_version", "speed"} <= set(data["environment"])
    assert data["environment"]["torch_version"] == torch.__version__
    assert {"counted", "reason"} == set(data["validation"])
    metric = data["metrics"][0]
    assert {"metric", "before", "after", "diff_mean", "ci95", "sign_test_p", "decision"} <= set(metric)
    assert len(metric["before"]) == 3
    seed = data["seeds"][0]
    for side in ("before", "after"):
        assert {"at_init", "trained", "curve", "variance_shift", "val_loss", "val_acc", "initial_val_loss",
                "steps", "diverged"} <= set(seed[side])
        assert {"variance_shift", "judged", "other_max"} <= set(seed[side]["at_init"])
        assert {"name", "ratio", "shift", "li_shift", "channels", "values"} == set(seed[side]["variance_shift"][0])
        assert {"epoch", "train_loss", "val_loss", "val_acc"} == set(seed[side]["curve"][0])
    assert {"plan", "total_seconds", "budget_seconds", "per_seed_seconds"} <= set(data["timing"])


def test_unsafe_fix_needs_and_accepts_a_rename_map():
    before, after = str(FIX / "seq_dropout_before_bn.py"), str(FIX / "seq_dropout_after_bn.py")
    with pytest.raises(VerifyError, match="--rename"):
        verify_sources(before, after, None, AT_INIT.with_changes(seeds=1))
    report = verify_sources(before, after, None, AT_INIT.with_changes(rename=(("2.", "1."),)))
    assert report.equivalence["equivalent"]
    assert report.judged["names"] == ["2"]  # the after model's BN '1', in the before model's names
    assert report.verdict == "confirmed", report.render_table()


def test_small_budget_shortens_training_with_a_note():
    report = verify_sources(BEFORE, AFTER, None, VerifyOptions(seeds=3, epochs=500, budget=3.0, progress=False))
    assert report.epochs < 500
    assert any("budget" in n for n in report.notes), report.notes


def test_seeds_that_do_not_fit_the_budget_make_the_verdict_inconclusive():
    report = verify_sources(WRN_BEFORE, WRN_AFTER, WRN_SMALL,
                            AT_INIT.with_changes(seeds=3, budget=0.001))
    assert len(report.seeds) < 3
    assert report.verdict == "inconclusive"
    assert any(f"{len(report.seeds)} of 3 seeds ran in the 0 s budget" in n for n in report.notes), report.notes


def test_several_models_need_model_option(tmp_path):
    src = tmp_path / "two.py"
    src.write_text("from torch import nn\nclass A(nn.Linear):\n    def __init__(self):\n        super().__init__(4, 2)\n"
                   "class B(nn.Linear):\n    def __init__(self):\n        super().__init__(4, 2)\n")
    with pytest.raises(VerifyError, match="--model"):
        verify_sources(str(src), str(src), None, AT_INIT)


# --- plot -------------------------------------------------------------------------

def test_plot_without_matplotlib_says_how_to_install(monkeypatch, trained_report, tmp_path):
    from bnlint.verify.plot import PlotUnavailable, write_plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    with pytest.raises(PlotUnavailable, match=r"pip install 'bnlint\[plot\]'"):
        write_plot(trained_report.to_dict(), str(tmp_path / "p.png"))
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("trained", [True, False])
def test_plot_is_written_when_matplotlib_is_present(trained_report, tmp_path, trained):
    pytest.importorskip("matplotlib")
    from bnlint.verify.plot import write_plot

    report = trained_report if trained else verify_sources(BEFORE, AFTER, None, AT_INIT)
    out = tmp_path / "p.png"
    write_plot(report.to_dict(), str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- CLI ---------------------------------------------------------------------------

def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "bnlint", "verify", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_confirmed_exit_0_with_table_and_report(tmp_path):
    out = tmp_path / "r.json"
    proc = _cli(BEFORE, AFTER, "--epochs", 3, "--report", out)
    assert proc.returncode == 0, proc.stderr
    assert "variance_shift" in proc.stdout and "verdict: confirmed" in proc.stdout
    assert json.loads(out.read_text())["verdict"] == "confirmed"


def test_cli_regressed_and_inconclusive_exit_1():
    proc = _cli(AFTER, BEFORE, "--epochs", 0)
    assert proc.returncode == 1, proc.stderr
    assert "verdict: regressed" in proc.stdout
    proc = _cli(BEFORE, COSMETIC, "--epochs", 0)
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
        assert proc.returncode == 1, proc.stderr  # one seed: inconclusive
        assert out.exists()


@pytest.mark.parametrize("args, message", [
    (["missing.py", AFTER], "missing.py: no such file"),
    ([BEFORE, AFTER, "--seeds", "0"], "--seeds must be at least 1"),
    ([BEFORE, AFTER, "--epochs", "-1"], "--epochs must be 0"),
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
    assert "bnlint: error:" in proc.stderr and message in proc.stderr, proc.stderr


def test_user_task(tmp_path):
    (tmp_path / "mytask.py").write_text(
        "import torch\nfrom torch.utils.data import TensorDataset\n"
        "def make():\n    g = torch.Generator().manual_seed(0)\n    x = torch.randn(96, 32, generator=g)\n"
        "    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()\n"
        "    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])\n")
    report = verify_sources(BEFORE, AFTER, None, TRAINED.with_changes(seeds=1, epochs=2,
                                                                       task=f"{tmp_path}/mytask.py:make"))
    assert report.task.startswith("user task")
    assert len(report.seeds[0]["before"]["curve"]) == 2


@pytest.mark.skipif(os.environ.get("BNLINT_PROPERTIES") != "slow", reason="slow: run with pytest --slow")
@pytest.mark.parametrize("before, after, verdict", [
    (WRN_BEFORE, WRN_AFTER, "confirmed"), (WRN_AFTER, WRN_BEFORE, "regressed"),
    (WRN_BEFORE, WRN_COSMETIC, "inconclusive")])
def test_wrn16_4_default_budget(before, after, verdict):
    """The acceptance bar: WRN-16-4, p = 0.3, `bnlint verify` with no option (120 s on CPU)."""
    proc = _cli(before, after)
    assert f"verdict: {verdict}" in proc.stdout, proc.stdout + proc.stderr
