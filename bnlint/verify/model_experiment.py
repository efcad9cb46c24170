"""Model fixes (BNL101/BNL102): train the before and after models side by side.

Per seed: both models start from the before model's initial weights, see the same
data in the same order and draw the same dropout masks where their layers line up.
Measured: Li et al.'s variance shift per BN, the train-mode vs eval-mode loss gap on
the training data, validation loss/accuracy, and the loss curves.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from bnlint.verify.batching import BatchSource, epoch_orders
from bnlint.verify.bnstats import variance_shift
from bnlint.verify.budget import fit_epochs, time_training_step
from bnlint.verify.environment import cpu_threads, default_budget, environment_info, pick_device
from bnlint.verify.options import VerifyError, VerifyOptions
from bnlint.verify.progress import ProgressBar
from bnlint.verify.report import VerifyReport
from bnlint.verify.stats import MetricSpec, compare_metric, verdict_from
from bnlint.verify.tasks import TaskData, load_user_task, output_width, synthetic_task
from bnlint.verify.training import evaluate, make_optimizer, train_model
from bnlint.verify.weights import check_eval_equivalence, copy_initial_weights

__all__ = ["ModelPair", "run_model_experiment", "build_pair", "model_metric_specs"]


@dataclass
class ModelPair:
    """How to build the two versions (called once per seed, after seeding the RNG)."""

    build_before: Callable[[], nn.Module]
    build_after: Callable[[], nn.Module]
    example_inputs: Tuple[torch.Tensor, ...]
    before_label: str = "before"
    after_label: str = "after"
    task_dirs: Tuple[str, ...] = ()


def _materialize(model: nn.Module, example: Sequence[torch.Tensor]) -> None:
    """Run lazy modules once so that their parameters exist before weights are copied."""
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        model.eval()
        with torch.no_grad():
            model(*example)


def build_pair(pair: ModelPair, seed: int, rename) -> Tuple[nn.Module, nn.Module]:
    """Both models, the after one holding the before one's initial weights."""
    torch.manual_seed(seed)
    before = pair.build_before()
    _materialize(before, pair.example_inputs)
    torch.manual_seed(seed)
    after = pair.build_after()
    _materialize(after, pair.example_inputs)
    copy_initial_weights(before, after, rename)
    return before, after


def make_task(pair: ModelPair, options: VerifyOptions, probe: nn.Module) -> Callable[[int], TaskData]:
    """A function seed -> task. The synthetic task is drawn per seed; a user task is fixed."""
    if options.task:
        classes = 0
        try:
            classes = output_width(probe, pair.example_inputs)
        except VerifyError:
            pass
        task = load_user_task(options.task, classes, pair.task_dirs)
        return lambda seed: task
    example = pair.example_inputs
    if len(example) != 1 or not example[0].is_floating_point():
        raise VerifyError("the built-in synthetic task needs one floating-point input tensor; "
                          "pass --task module:function for this model")
    classes = output_width(probe, example)
    shape = tuple(example[0].shape[1:])
    return lambda seed: synthetic_task(shape, classes, options.n_train, options.n_val, seed)


def _train_one(model: nn.Module, task: TaskData, train_src: BatchSource, val_src: BatchSource,
               orders, options: VerifyOptions, seed: int, bar: ProgressBar) -> dict:
    curve: List[dict] = []

    def on_epoch(epoch: int, mean_loss: float) -> None:
        val_loss, val_acc = evaluate(model, val_src, task.loss_fn, task.is_classification)
        curve.append({"epoch": epoch + 1, "train_loss": mean_loss, "val_loss": val_loss, "val_acc": val_acc})
        bar.advance(note=f"seed {seed}")

    opt = make_optimizer(model, options.lr, options.momentum)
    result = train_model(model, train_src, orders, task.loss_fn, options.batch_size, opt, seed, on_epoch)
    bar.advance(len(orders) - len(curve))  # epochs skipped after a divergence
    shifts = variance_shift(model, train_src)
    train_mode_loss, _ = evaluate(model, train_src, task.loss_fn, False, options.batch_size, train_mode=True)
    eval_mode_loss, train_acc = evaluate(model, train_src, task.loss_fn, task.is_classification)
    last = curve[-1] if curve else {"val_loss": math.nan, "val_acc": None}
    return {
        "curve": curve,
        "steps": result.steps,
        "diverged": result.diverged,
        "variance_shift": [s.to_dict() for s in shifts],
        "variance_shift_mean": (sum(s.shift for s in shifts) / len(shifts)) if shifts else None,
        "train_mode_loss": train_mode_loss,
        "eval_mode_loss": eval_mode_loss,
        "train_eval_gap": abs(eval_mode_loss - train_mode_loss),
        "train_acc": train_acc,
        "val_loss": last["val_loss"],
        "val_acc": last["val_acc"],
    }


def run_model_seed(pair: ModelPair, task: TaskData, seed: int, epochs: int, options: VerifyOptions,
                   device: torch.device, bar: ProgressBar) -> dict:
    """One seed: build, share weights, train both, measure. Returns a plain dict."""
    before, after = build_pair(pair, seed, options.rename)
    before.to(device)
    after.to(device)
    train_src, val_src = BatchSource(task.train, device), BatchSource(task.val, device)
    orders = epoch_orders(len(train_src), epochs, seed=seed, mode="rr")
    record = {"seed": seed}
    for label, model in (("before", before), ("after", after)):
        start = time.perf_counter()
        record[label] = _train_one(model, task, train_src, val_src, orders, options, seed, bar)
        record[label]["seconds"] = time.perf_counter() - start
    return record


def model_metric_specs(task: TaskData, has_bn: bool, options: VerifyOptions) -> List[Tuple[str, MetricSpec]]:
    specs = []
    if has_bn:
        specs.append(("variance_shift_mean", MetricSpec("variance_shift", "lower", "mechanistic", tolerance=0.01)))
    # The gap is the primary metric only without BN; with BN it is reported for context
    # (a dropout moved next to the classifier raises the train-mode loss by design).
    specs.append(("train_eval_gap", MetricSpec("train_eval_gap", "lower", "info" if has_bn else "mechanistic",
                                               tolerance=0.005)))
    if task.is_classification:
        specs.append(("val_acc", MetricSpec("val_acc", "higher", "validation", margin=options.acc_margin)))
        specs.append(("val_loss", MetricSpec("val_loss", "lower", "info", tolerance=0.005)))
    else:
        specs.append(("val_loss", MetricSpec("val_loss", "lower", "validation", tolerance=0.005,
                                              margin=options.loss_margin, relative_margin=True)))
    return specs


def run_model_experiment(pair: ModelPair, options: VerifyOptions, seed_runner=None) -> VerifyReport:
    """See :func:`_run_model_experiment`; runs with ``options.cpu_threads`` threads on CPU."""
    with cpu_threads(pick_device(options.device), options.cpu_threads):
        return _run_model_experiment(pair, options, seed_runner)


def _run_model_experiment(pair: ModelPair, options: VerifyOptions, seed_runner=None) -> VerifyReport:
    """Train before/after for ``options.seeds`` seeds and compare them.

    ``seed_runner(seeds, epochs, device) -> list of records`` replaces the in-process
    loop (used to spread seeds over several GPUs).
    """
    start = time.perf_counter()
    device = pick_device(options.device)
    budget = options.budget if options.budget is not None else default_budget(device)
    notes: List[str] = []
    before0, after0 = build_pair(pair, options.first_seed, options.rename)
    equivalence = check_eval_equivalence(before0, after0, pair.example_inputs, seed=options.first_seed)
    if not equivalence.equivalent:
        notes.append("eval-mode outputs differ: the change is not a pure dropout move, so the "
                      "comparison includes a change of the function itself")
    task_for = make_task(pair, options, before0)
    task0 = task_for(options.first_seed)
    steps_per_epoch = max(1, len(task0.train) // options.batch_size)
    wanted = options.epochs or max(1, min(200, math.ceil(options.target_steps / steps_per_epoch)))
    epochs = wanted
    seeds = list(range(options.first_seed, options.first_seed + options.seeds))
    src0 = BatchSource(task0.train, device)
    step_s = time_training_step(before0.to(device), src0, task0.loss_fn, options.batch_size, options.lr, options.momentum)
    runs = 2 * len(seeds)
    epochs, note = fit_epochs(wanted, steps_per_epoch, runs, step_s, budget)
    if note:
        notes.append(note)
    calibrated = time.perf_counter()
    if seed_runner is not None:
        records = seed_runner(seeds, epochs, device)
    else:
        records = []
        bar = ProgressBar(2 * epochs * len(seeds), "bnlint verify", enabled=options.progress)
        try:
            for i, seed in enumerate(seeds):
                records.append(run_model_seed(pair, task_for(seed), seed, epochs, options, device, bar))
                spent = time.perf_counter() - start
                per_seed = (time.perf_counter() - calibrated) / (i + 1)
                if i + 1 < len(seeds) and spent + per_seed > budget * 1.25:
                    notes.append(f"stopped after {i + 1} of {len(seeds)} seeds: the {budget:.0f} s budget ran out")
                    break
        finally:
            bar.close()
    per_seed_seconds = [{"seed": r["seed"], "before": r["before"].pop("seconds"), "after": r["after"].pop("seconds")}
                        for r in records]
    has_bn = all(r[m]["variance_shift_mean"] is not None for r in records for m in ("before", "after"))
    comparisons = []
    for key, spec in model_metric_specs(task0, has_bn, options):
        before_vals = [float(r["before"][key]) for r in records]
        after_vals = [float(r["after"][key]) for r in records]
        comparisons.append(compare_metric(spec, before_vals, after_vals))
    verdict, reason = verdict_from(comparisons)
    if any(r["after"]["diverged"] and not r["before"]["diverged"] for r in records):
        verdict, reason = "regressed", "the after model diverged (non-finite loss) where the before model did not"
    total = time.perf_counter() - start
    return VerifyReport(
        kind="model", verdict=verdict, reason=reason, before=pair.before_label, after=pair.after_label,
        comparisons=comparisons, seeds=records, task=task0.description, environment=environment_info(device),
        options=options.to_dict(), equivalence=equivalence.to_dict(), epochs=epochs, notes=notes,
        timing={"total_seconds": total, "seconds_per_step_estimate": step_s,
                "training_seconds": sum(t["before"] + t["after"] for t in per_seed_seconds),
                "per_seed_seconds": per_seed_seconds},
    )
