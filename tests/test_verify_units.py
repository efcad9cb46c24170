"""Unit tests of the harness pieces: statistics, variance shift, shuffling, budget."""
from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from bnlint.verify.batching import BatchSource, batches_of, epoch_orders
from bnlint.verify.bnstats import variance_shift
from bnlint.verify.budget import fit_epochs
from bnlint.verify.options import VerifyOptions
from bnlint.verify.progress import ProgressBar
from bnlint.verify.shuffle_experiment import (ShuffleSetup, builtin_shuffle_setup, linear_bn_model,
                                              run_shuffle_experiment, train_order_run)
from bnlint.verify.stats import MetricSpec, compare_metric, sign_test_p, t_quantile_975, verdict_from
from bnlint.verify.tasks import TaskData
from torch.utils.data import TensorDataset

MECH = MetricSpec("variance_shift", "lower", "mechanistic", tolerance=0.01)
ACC = MetricSpec("val_acc", "higher", "validation", margin=0.02)


def test_t_quantiles_and_sign_test():
    assert t_quantile_975(2) == pytest.approx(4.303)
    assert t_quantile_975(1000) == pytest.approx(1.962, abs=1e-3)
    assert sign_test_p(3, 0) == pytest.approx(0.25)
    assert sign_test_p(10, 0) == pytest.approx(2 / 1024)
    assert sign_test_p(0, 0) == 1.0


def test_verdict_rules():
    improved = compare_metric(MECH, [2.0, 2.1, 1.9], [1.0, 1.02, 0.99])
    same_acc = compare_metric(ACC, [0.90, 0.91, 0.92], [0.90, 0.905, 0.92])
    assert improved.decision == "better"
    assert verdict_from([improved, same_acc])[0] == "confirmed"
    # Validation clearly worse beyond the margin: regressed even though BN improved.
    worse_acc = compare_metric(ACC, [0.90, 0.91, 0.92], [0.80, 0.82, 0.81])
    assert worse_acc.beyond_margin_worse
    assert verdict_from([improved, worse_acc])[0] == "regressed"
    # Mechanistic metric worse in every seed: regressed.
    assert verdict_from([compare_metric(MECH, [1.0, 1.0, 1.0], [2.0, 2.1, 1.9]), same_acc])[0] == "regressed"
    # Mixed signs: inconclusive.
    mixed = compare_metric(MECH, [2.0, 1.0, 2.0], [1.0, 2.0, 1.5])
    assert verdict_from([mixed, same_acc])[0] == "inconclusive"
    # One seed much worse among five: the t-interval decides.
    five = compare_metric(MECH, [2.0] * 5, [1.0, 1.1, 0.9, 1.0, 3.5])
    assert five.decision == "no clear difference"


def test_few_seeds_need_every_seed_to_agree():
    two = compare_metric(MECH, [2.0, 2.0], [1.0, 1.995])
    assert two.wins == 1 and two.ties == 1
    assert two.decision == "no clear difference"


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_variance_shift_of_dropout_feeding_bn(p):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(p), nn.BatchNorm1d(64, momentum=None))
    data = torch.randn(4096, 64) + 3.0
    model.train()
    with torch.no_grad():
        for chunk in data.split(256):
            model(chunk)
    src = BatchSource(TensorDataset(data, torch.zeros(len(data))), torch.device("cpu"))
    (shift,) = variance_shift(model, src)
    # Li et al.'s toy model: running var includes the dropout noise on the mean too.
    expected = 1.0 / (1.0 + 9.0 * p / (1 - p) + p / (1 - p))  # eval var / train var with mean 3
    assert shift.ratio == pytest.approx(expected, rel=0.05)
    assert shift.shift == pytest.approx(1 / shift.ratio, rel=0.02)


def test_orders_single_shuffle_repeats_random_reshuffle_does_not():
    ss = epoch_orders(16, 3, seed=1, mode="ss")
    rr = epoch_orders(16, 3, seed=1, mode="rr")
    assert all(torch.equal(o, ss[0]) for o in ss)
    assert not torch.equal(rr[0], rr[1])
    assert epoch_orders(16, 2, seed=1, mode="rr")[1].tolist() == rr[1].tolist()
    assert [len(b) for b in batches_of(torch.arange(9), 4)] == [4, 4]  # a batch of one is dropped


def _four_points() -> TaskData:
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    y = torch.tensor([0, 1, 0, 1])
    return TaskData(TensorDataset(x, y), TensorDataset(x, y), torch.nn.functional.cross_entropy, 2, "4 points")


def test_single_shuffle_pairing_that_diverges():
    """n = 4, batch 2: pairing {0,1},{2,3} makes every pair separable after BN, so SS's
    weights grow and the full-batch risk climbs; RR stays put (Wu et al. 2023)."""
    setup = ShuffleSetup(lambda: linear_bn_model(1, 2), lambda seed: _four_points(), 2, 0.5, 0.0, "toy",
                         fixed_orders=[[0, 1, 2, 3]])
    task = _four_points()
    torch.manual_seed(0)
    initial = setup.build_model().state_dict()
    runs = {}
    for mode in ("ss", "rr"):
        model = setup.build_model()
        model.load_state_dict(initial)
        runs[mode] = train_order_run(setup, task, model, mode, 0, 300, torch.device("cpu"), [0, 1, 2, 3])
    ss, rr = runs["ss"]["curves"], runs["rr"]["curves"]
    assert ss["full_batch_risk"][-1] > ss["full_batch_risk"][30] + 0.1
    assert ss["weight_norm"][-1] > 2 * rr["weight_norm"][-1]
    assert runs["ss"]["diverged"] and not runs["rr"]["diverged"]


def test_shuffle_experiment_report_is_deterministic():
    opts = VerifyOptions(seeds=2, epochs=30, permutation_seeds=2, progress=False)
    a = run_shuffle_experiment(builtin_shuffle_setup(), opts).to_dict()
    b = run_shuffle_experiment(builtin_shuffle_setup(), opts).to_dict()
    a.pop("timing"), b.pop("timing")
    assert a == b
    assert a["kind"] == "shuffle" and len(a["seeds"][0]["before"]["runs"]) == 2
    run = a["seeds"][0]["before"]["runs"][0]
    assert set(run["curves"]) == {"train_loss", "eval_risk", "full_batch_risk", "weight_norm"}
    assert len(run["curves"]["eval_risk"]) == 30
    names = [m["metric"] for m in a["metrics"]]
    assert names[:5] == ["eval_risk", "risk_spread", "full_batch_risk", "weight_norm", "diverged_fraction"]


def test_fit_epochs():
    assert fit_epochs(10, 16, 6, 0.001, 120.0) == (10, None)
    epochs, note = fit_epochs(1000, 16, 6, 0.01, 10.0)
    assert 1 <= epochs < 1000 and "budget" in note


def test_progress_bar_silent_without_a_tty():
    stream = io.StringIO()
    bar = ProgressBar(10, "x", stream=stream)
    for _ in range(10):
        bar.advance()
    bar.close()
    assert stream.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    bar = ProgressBar(4, "verify", stream=tty)
    bar.advance(4)
    bar.close()
    assert "verify [" in tty.getvalue() and "4/4" in tty.getvalue()
