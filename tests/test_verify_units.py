"""Unit tests of the harness pieces: statistics, variance shift, shuffling, budget."""
from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from bnlint.verify.batching import BatchSource, batches_of, epoch_orders
from bnlint.verify.bnstats import reestimated_copy, variance_shift
from bnlint.verify.budget import fit_epochs
from bnlint.verify.options import VerifyOptions
from bnlint.verify.plan import Costs, Sizes, make_plan
from bnlint.verify.progress import ProgressBar
from bnlint.verify.shuffle_experiment import (ShuffleSetup, builtin_shuffle_setup, linear_bn_model,
                                              run_shuffle_experiment, train_order_run)
from bnlint.verify.stats import MetricSpec, compare_metric, has_evidence, sign_test_p, t_quantile_975, verdict_from
from bnlint.verify.training import MomentumSGD
from bnlint.verify.tasks import TaskData
from torch.utils.data import TensorDataset

MECH = MetricSpec("variance_shift", "lower", "mechanistic", tolerance=0.02)
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


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_seeds_are_never_evidence(n):
    """However large and consistent the difference, one or two seeds give no verdict."""
    for before, after in (([3.0] * n, [1.0] * n), ([1.0] * n, [3.0] * n)):
        c = compare_metric(MECH, before, after)
        assert c.decision == "too few seeds"
        verdict, reason = verdict_from([c])
        assert verdict == "inconclusive" and f"{n} paired seed" in reason
    assert not has_evidence([10.0] * n, 0.0)


def test_evidence_needs_the_interval_beyond_the_margin_or_the_sign_test():
    assert has_evidence([0.5, 0.52, 0.49], 0.02)  # t-interval [0.47, 0.54]
    assert not has_evidence([0.5, 0.52, 0.49], 0.6)
    assert not has_evidence([0.01, 0.015, 0.012], 0.02)  # consistent but below the margin
    assert not has_evidence([1.0, 0.1, 0.5], 0.0)  # all positive, but the interval reaches below 0 and 3 seeds: p = 0.25
    wide = [1.0, 0.03, 2.0, 0.04, 3.0, 0.05]  # interval reaches below 0.02, but 6 of 6 above: p = 0.031
    assert has_evidence(wide, 0.02)
    assert not has_evidence(wide[:5], 0.02)  # 5 of 5: p = 0.0625
    assert not has_evidence([0.5, 0.5, float("nan")], 0.0)


def test_ratio_metrics_are_compared_on_the_log_scale():
    """A variance shift of 20, 17 and 120 before and about 1.4 after (a channel dropout
    feeding BN, measured at three seeds): on the raw scale the t-interval spans zero, as
    log-ratios it is clear."""
    before, after = [20.5, 16.6, 120.7], [1.29, 1.36, 1.39]
    raw = compare_metric(MetricSpec("variance_shift", "lower", "mechanistic", tolerance=0.02), before, after)
    assert raw.decision == "no clear difference"
    log = compare_metric(MetricSpec("variance_shift", "lower", "mechanistic", tolerance=math.log(1.02), log=True),
                         before, after)
    assert log.decision == "better"
    assert log.before_mean == pytest.approx((20.5 * 16.6 * 120.7) ** (1 / 3))
    diff, interval = log.factor_text()
    assert diff.startswith("x0.0") and interval.startswith("[x")
    assert log.to_dict()["scale"] == "log"
    same = compare_metric(log.spec, [1.5, 1.6, 1.7], [1.5, 1.6, 1.7])
    assert same.decision == "no clear difference" and same.diff_mean == 0


def test_shift_ties_within_the_margin_are_inconclusive():
    c = compare_metric(MECH, [1.50, 1.52, 1.51], [1.505, 1.515, 1.512])
    assert c.ties == 3 and c.decision == "no clear difference"
    assert verdict_from([c])[0] == "inconclusive"


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_variance_shift_of_dropout_feeding_bn(p):
    """Li et al.'s toy model with a mean: running var / eval var = (s/q - m^2) / (s - m^2)
    with q = 1 - p, second moment s and mean m of the dropout's input (research.md)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(p), nn.BatchNorm1d(64))
    data = torch.randn(4096, 64) + 3.0  # m = 3, s = 10
    src = BatchSource(TensorDataset(data, torch.zeros(len(data))), torch.device("cpu"))
    idx = torch.arange(len(data))
    (shift,) = variance_shift(model, src, idx[:2048], src, idx[2048:], 256, seed=0)
    q = 1 - p
    assert shift.ratio == pytest.approx((10 / q - 9) / (10 - 9), rel=0.05)
    assert shift.ratio >= 1 / q
    assert shift.shift == pytest.approx(shift.ratio)
    assert shift.values == 2048 and shift.channels == 64
    # The model itself is untouched (the statistics are re-estimated on a copy).
    assert torch.equal(model[1].running_var, torch.ones(64)) and model[1].momentum == 0.1


def _conv_net(dropout_first: bool, p: float = 0.3) -> nn.Module:
    """research.md's check: conv -> ReLU -> dropout -> BN (before) or conv -> BN ->
    ReLU -> dropout (after), then conv -> BN, a BN reached through a weight layer."""
    torch.manual_seed(0)
    conv1, bn1, conv2, bn2 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Conv2d(16, 16, 3, padding=1), \
        nn.BatchNorm2d(16)
    if dropout_first:
        return nn.Sequential(conv1, nn.ReLU(), nn.Dropout(p), bn1, conv2, bn2)
    return nn.Sequential(conv1, bn1, nn.ReLU(), nn.Dropout(p), conv2, bn2)


def test_variance_shift_is_valid_at_initialisation_and_survives_weight_layers():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(640, 3, 16, 16, generator=gen)
    src = BatchSource(TensorDataset(x, torch.zeros(len(x))), torch.device("cpu"))
    idx = torch.arange(len(x))
    shifts = {}
    for name, first in (("before", True), ("after", False)):
        model = _conv_net(first)
        shifts[name] = {s.name: s.ratio for s in variance_shift(model, src, idx[:512], src, idx[512:], 64, seed=0)}
    before, after = shifts["before"], shifts["after"]
    assert before["3"] > 1 / 0.7  # fed directly by the dropout (after a ReLU: above 1/(1-p))
    assert after["1"] == pytest.approx(1.0, abs=0.03)  # the same BN once the dropout is behind it
    assert before["5"] > 1.2 and after["5"] > 1.2  # through a conv, the shift stays in both


def test_reestimation_uses_a_cumulative_average_on_a_copy():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.BatchNorm1d(8))
    x = torch.randn(256, 8)
    src = BatchSource(TensorDataset(x, torch.zeros(256)), torch.device("cpu"))
    copy = reestimated_copy(model, src, torch.arange(256), 32, seed=3)
    bn = copy[2]
    assert bn.momentum is None and int(bn.num_batches_tracked) == 8
    assert not copy.training and model[2].num_batches_tracked == 0
    again = reestimated_copy(model, src, torch.arange(256), 32, seed=3)
    assert torch.equal(again[2].running_var, bn.running_var)  # seeded dropout masks


def test_momentum_sgd_matches_torch_sgd_exactly():
    for momentum in (0.9, 0.0):
        torch.manual_seed(0)
        a = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
        b = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
        b.load_state_dict(a.state_dict())
        ours, theirs = MomentumSGD(a.parameters(), 0.1, momentum), torch.optim.SGD(b.parameters(), 0.1, momentum)
        x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
        for model, opt in ((a, ours), (b, theirs)):
            for _ in range(5):
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def _sizes(**kw) -> Sizes:
    base = dict(seeds=3, batch_size=32, n_train=512, n_val=256, positions=64, wanted_epochs=19,
                epochs_requested=False)
    base.update(kw)
    return Sizes(**base)


def test_plan_spends_the_budget_on_seeds_first():
    # A WRN-16-4 on a 2-core CPU: 6 ms per example forward, about 1 s per step.
    costs = Costs(forward_per_sample=0.006, build_pair=0.3)
    plan = make_plan(costs, _sizes(), seconds_left=100)
    assert plan.recal_samples == 64 and plan.measure_samples == 64  # 4096 values / 64 positions
    assert plan.epochs == 0 and not plan.needs_step_time  # training cannot matter: none
    assert "no training" in plan.notes[0] and "raise --budget" in plan.notes[0]
    assert 3 * plan.phase1_seed_seconds < 0.75 * 100
    # A long budget: training may fit, so the step time must be measured first.
    long = make_plan(costs, _sizes(), seconds_left=3000)
    assert long.needs_step_time and long.epochs > 0
    timed = make_plan(Costs(0.006, 0.3, step=1.0), _sizes(), seconds_left=3000)
    assert 3 <= timed.epochs <= 19 and not timed.needs_step_time
    used = 3 * (timed.phase1_seed_seconds + timed.phase2_seed_seconds)
    assert used <= 0.75 * 3000


def test_plan_shrinks_measurements_before_dropping_seeds():
    costs = Costs(forward_per_sample=0.05, build_pair=0.3)  # a slow model: 5 s per 100 examples
    plan = make_plan(costs, _sizes(positions=1), seconds_left=60)
    assert plan.recal_samples < 4096
    assert any("values per BN channel" in n for n in plan.notes)
    assert make_plan(costs, _sizes(positions=1), seconds_left=1e6).recal_samples == 4096


def test_plan_honours_requested_epochs_and_a_slowdown():
    costs = Costs(0.0001, 0.01, step=0.002)
    assert make_plan(costs, _sizes(wanted_epochs=6, epochs_requested=True), 100).epochs == 6
    zero = make_plan(costs, _sizes(wanted_epochs=0, epochs_requested=True), 100)
    assert zero.epochs == 0 and "--epochs 0" in zero.notes[0]
    short = make_plan(costs, _sizes(wanted_epochs=500, epochs_requested=True), 10)
    assert 1 <= short.epochs < 500 and "reduced from 500" in short.notes[0]
    slow = make_plan(costs, _sizes(wanted_epochs=500, epochs_requested=True), 10, slowdown=4.0)
    assert slow.epochs < short.epochs


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


def test_seed_group_worker_matches_the_in_process_seed(tmp_path):
    """The multi-GPU runner's worker (bnlint.verify.parallel), run here on CPU: it
    rebuilds the pair from the files and returns the same plain records."""
    from pathlib import Path

    from bnlint.verify.model_experiment import make_task
    from bnlint.verify.model_seed import SeedWork, measure_seed, train_seed
    from bnlint.verify.parallel import run_seed_group, split_seeds
    from bnlint.verify.sources import model_pair_from_files
    from bnlint.verify.speed import SpeedChoice

    fix = Path(__file__).resolve().parent.parent / "fixtures" / "verify"
    before, after = str(fix / "mlp_dropout_before_bn.py"), str(fix / "mlp_dropout_after_bn.py")
    options = VerifyOptions(progress=False)
    work = SeedWork(64, 64, ("bn",), options, SpeedChoice(1, torch.float32, False, 0.0, 32), "cpu")
    measured = run_seed_group(before, after, None, None, work, "measure", [0, 1], 1, None)
    trained = run_seed_group(before, after, None, None, work, "train", [0], 1, None)
    pair = model_pair_from_files(before, after, None)
    task_for = make_task(pair, options, pair.build_before())
    here = measure_seed(pair, task_for(1), 1, work, True)
    for record in (measured[1], here):
        record.pop("seconds")
    assert measured[1] == here
    assert measured[0]["before"]["at_init"]["judged"] > 1.5  # p = 0.5 feeds the BN
    assert set(trained[0]["before"]) >= {"trained", "curve", "steps", "val_loss"}
    expected = train_seed(pair, task_for(0), 0, work, 1)
    assert trained[0]["after"]["curve"] == expected["after"]["curve"]
    assert split_seeds([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
