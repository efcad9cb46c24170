"""Script fixes (BNL2xx): single shuffle (SS, before) vs random reshuffle (RR, after).

Wu, Yun and Sra (ICML 2023, arXiv 2302.12444): with BN, SS is SGD on one fixed,
batch-distorted copy of the data and can drift to a distorted optimum or diverge,
where RR averages the distortion over partitions. Both orders start from the same
weights; per data seed several permutation seeds are run. Measured per epoch: the
training risk in eval mode (running BN statistics) and with full-batch BN statistics,
the weight norm and the train-mode loss.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

from bnlint.verify.batching import BatchSource, epoch_orders
from bnlint.verify.bnstats import full_batch_bn_risk
from bnlint.verify.budget import fit_epochs, time_training_step
from bnlint.verify.environment import cpu_threads, default_budget, environment_info, pick_device
from bnlint.verify.options import VerifyError, VerifyOptions
from bnlint.verify.progress import ProgressBar
from bnlint.verify.report import VerifyReport
from bnlint.verify.stats import MetricSpec, compare_metric, verdict_from
from bnlint.verify.tasks import TaskData, gaussian_classes
from bnlint.verify.training import evaluate, make_optimizer, train_model

__all__ = ["ShuffleSetup", "linear_bn_model", "builtin_shuffle_setup", "train_order_run", "run_shuffle_experiment",
           "risk_grows"]


class LinearWithInputBN(nn.Module):
    """A linear classifier on batch-normalised inputs (Wu et al.'s model)."""

    def __init__(self, features: int, classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(features, affine=False)
        self.linear = nn.Linear(features, classes)

    def forward(self, x):
        return self.linear(self.bn(x.flatten(1)))


def linear_bn_model(features: int, classes: int) -> nn.Module:
    return LinearWithInputBN(features, classes)


@dataclass
class ShuffleSetup:
    """What to train. ``fixed_orders``: explicit SS permutations, one per permutation
    seed (e.g. the one pairing that makes SS diverge); otherwise random ones."""

    build_model: Callable[[], nn.Module]
    task_for: Callable[[int], TaskData]
    batch_size: int
    lr: float
    momentum: float
    label: str
    default_epochs: int = 2000
    fixed_orders: Optional[Sequence[Sequence[int]]] = None


def builtin_shuffle_setup(n: int = 64, dim: int = 32, batch_size: int = 4, lr: float = 0.5) -> ShuffleSetup:
    """Two Gaussian classes, linear model with BN on its inputs, plain SGD (research.md)."""
    return ShuffleSetup(
        build_model=lambda: linear_bn_model(dim, 2),
        task_for=lambda seed: gaussian_classes(n, 256, dim, seed),
        batch_size=batch_size, lr=lr, momentum=0.0,
        label=f"built-in linear model with input BN (n={n}, d={dim}, batch {batch_size}, lr {lr})",
    )


def _weight_norm(model: nn.Module) -> float:
    return float(torch.sqrt(sum((p.detach().float() ** 2).sum() for p in model.parameters())))


def risk_grows(curve: Sequence[float]) -> bool:
    """Non-finite, or the late risk clearly above the best risk reached earlier."""
    if not curve or not all(math.isfinite(c) for c in curve):
        return True
    if len(curve) < 20:
        return False  # too short to tell growth from noise
    late = _late_mean(curve)
    best = min(curve[max(1, len(curve) // 10) - 1:])
    return late > 1.25 * best and late - best > 0.02


def _late_mean(curve: Sequence[float]) -> float:
    """Mean over the last 10% of epochs (at least one)."""
    k = max(1, len(curve) // 10)
    return sum(curve[-k:]) / k


def train_order_run(setup: ShuffleSetup, task: TaskData, model: nn.Module, mode: str, perm_seed: int,
                    epochs: int, device: torch.device, fixed: Optional[Sequence[int]] = None,
                    on_epoch_done: Optional[Callable[[], None]] = None) -> dict:
    """Train ``model`` with one order policy; per-epoch curves and a summary."""
    train_src, val_src = BatchSource(task.train, device), BatchSource(task.val, device)
    orders = epoch_orders(len(train_src), epochs, seed=perm_seed, mode=mode, fixed=fixed if mode == "ss" else None)
    curves = {"train_loss": [], "eval_risk": [], "full_batch_risk": [], "weight_norm": []}

    def on_epoch(epoch: int, mean_loss: float) -> None:
        curves["train_loss"].append(mean_loss)
        curves["eval_risk"].append(evaluate(model, train_src, task.loss_fn, False, 1024)[0])
        curves["full_batch_risk"].append(full_batch_bn_risk(model, train_src, task.loss_fn))
        curves["weight_norm"].append(_weight_norm(model))
        if on_epoch_done is not None:
            on_epoch_done()

    opt = make_optimizer(model, setup.lr, setup.momentum, train_src.amp)
    result = train_model(model, train_src, orders, task.loss_fn, setup.batch_size, opt, perm_seed, on_epoch)
    val_loss, val_acc = evaluate(model, val_src, task.loss_fn, task.is_classification)
    return {
        "mode": mode, "permutation_seed": perm_seed, "curves": curves, "steps": result.steps,
        "eval_risk": _late_mean(curves["eval_risk"]), "full_batch_risk": _late_mean(curves["full_batch_risk"]),
        "weight_norm": curves["weight_norm"][-1], "diverged": result.diverged or risk_grows(curves["eval_risk"]),
        "val_loss": val_loss, "val_acc": val_acc,
    }


def _summarise(runs: List[dict]) -> dict:
    risks = [r["eval_risk"] for r in runs]
    mean = sum(risks) / len(risks)
    spread = math.sqrt(sum((x - mean) ** 2 for x in risks) / (len(risks) - 1)) if len(risks) > 1 else 0.0
    avg = lambda key: sum(float(r[key]) for r in runs) / len(runs)  # noqa: E731
    out = {"eval_risk": mean, "risk_spread": spread, "full_batch_risk": avg("full_batch_risk"),
           "weight_norm": avg("weight_norm"), "diverged_fraction": avg("diverged"), "val_loss": avg("val_loss")}
    out["val_acc"] = avg("val_acc") if runs[0]["val_acc"] is not None else None
    return out


SHUFFLE_SPECS = [
    ("eval_risk", MetricSpec("eval_risk", "lower", "mechanistic", tolerance=0.005)),
    ("risk_spread", MetricSpec("risk_spread", "lower", "info", tolerance=0.001)),
    ("full_batch_risk", MetricSpec("full_batch_risk", "lower", "info", tolerance=0.005)),
    ("weight_norm", MetricSpec("weight_norm", "lower", "info", tolerance=0.01)),
    ("diverged_fraction", MetricSpec("diverged_fraction", "lower", "info")),
]


def run_shuffle_experiment(setup: ShuffleSetup, options: VerifyOptions, before_label: str = "single shuffle",
                           after_label: str = "random reshuffle") -> VerifyReport:
    """See :func:`_run_shuffle_experiment`; runs with ``options.cpu_threads`` threads on CPU (default one)."""
    with cpu_threads(pick_device(options.device), options.cpu_threads or 1):
        return _run_shuffle_experiment(setup, options, before_label, after_label)


def _run_shuffle_experiment(setup: ShuffleSetup, options: VerifyOptions, before_label: str = "single shuffle",
                           after_label: str = "random reshuffle") -> VerifyReport:
    """SS (before) vs RR (after) for ``options.seeds`` data seeds x permutation seeds."""
    start = time.perf_counter()
    if options.epochs == 0:
        raise VerifyError("--epochs 0 (no training) only applies to model fixes; the shuffle experiment "
                          "compares training runs, give it at least 1 epoch")
    device = pick_device(options.device)
    budget = options.budget if options.budget is not None else default_budget(device)
    notes: List[str] = []
    seeds = list(range(options.first_seed, options.first_seed + options.seeds))
    perm_seeds = options.permutation_seeds if setup.fixed_orders is None else len(setup.fixed_orders)
    task0 = setup.task_for(seeds[0])
    steps_per_epoch = max(1, len(task0.train) // setup.batch_size)
    wanted = options.epochs or setup.default_epochs
    torch.manual_seed(seeds[0])
    probe = setup.build_model().to(device)
    step_s = time_training_step(probe, BatchSource(task0.train, device), task0.loss_fn, setup.batch_size,
                                setup.lr, setup.momentum)
    runs_total = 2 * len(seeds) * perm_seeds
    # Per-epoch risk evaluation is relatively costly for small models: count it as 3 steps.
    epochs, note = fit_epochs(wanted, steps_per_epoch + 3, runs_total, step_s, budget)
    if note:
        notes.append(note)
    bar = ProgressBar(runs_total * epochs, "bnlint verify (shuffle)", enabled=options.progress)
    records, seconds = [], []
    try:
        for seed in seeds:
            task = setup.task_for(seed)
            torch.manual_seed(seed)
            initial = setup.build_model().state_dict()
            record = {"seed": seed, "before": {"runs": []}, "after": {"runs": []}}
            t0 = time.perf_counter()
            for k in range(perm_seeds):
                fixed = setup.fixed_orders[k] if setup.fixed_orders is not None else None
                for label, mode in (("before", "ss"), ("after", "rr")):
                    torch.manual_seed(seed)
                    model = setup.build_model()
                    model.load_state_dict(initial)
                    model.to(device)
                    perm_seed = 1000 * seed + k
                    record[label]["runs"].append(
                        train_order_run(setup, task, model, mode, perm_seed, epochs, device, fixed, bar.advance))
            for label in ("before", "after"):
                record[label].update(_summarise(record[label]["runs"]))
            records.append(record)
            seconds.append(time.perf_counter() - t0)
    finally:
        bar.close()
    comparisons = []
    specs = list(SHUFFLE_SPECS)
    if task0.is_classification:
        specs.append(("val_acc", MetricSpec("val_acc", "higher", "validation", margin=options.acc_margin)))
    else:
        specs.append(("val_loss", MetricSpec("val_loss", "lower", "validation", tolerance=0.005,
                                              margin=options.loss_margin, relative_margin=True)))
    for key, spec in specs:
        comparisons.append(compare_metric(spec, [float(r["before"][key]) for r in records],
                                          [float(r["after"][key]) for r in records]))
    verdict, reason = verdict_from(comparisons)
    divergence = next(c for c in comparisons if c.spec.name == "diverged_fraction")
    if divergence.decision == "worse":
        verdict, reason = "regressed", "random reshuffle diverged more often than single shuffle"
    elif verdict == "inconclusive" and divergence.wins > 0 and divergence.losses == 0:
        notes.append("single shuffle diverged in runs where random reshuffle did not")
    return VerifyReport(
        kind="shuffle", verdict=verdict, reason=reason, before=before_label, after=after_label,
        comparisons=comparisons, seeds=records, task=f"{task0.description}; {setup.label}",
        environment=environment_info(device), options=dict(options.to_dict(), permutation_seeds=perm_seeds),
        equivalence=None, epochs=epochs, notes=notes,
        timing={"total_seconds": time.perf_counter() - start, "seconds_per_step_estimate": step_s,
                "per_seed_seconds": seconds},
    )
