"""Model fixes (BNL1xx): measure and train the before and after models side by side.

1. Build the pair (same initial weights), check that eval-mode outputs agree, find
   the BNs the change is about (``bnlint.verify.judged``) and choose the fastest
   settings (``bnlint.verify.speed``).
2. Plan seeds first (``bnlint.verify.plan``); phase 1 measures every seed's variance
   shift at initialisation, valid at any training length (``bnlint.verify.bnstats``).
3. Phase 2, when the budget lets training matter: train every seed's pair, then
   measure the variance shift again (for information: the two models have become
   different networks) and the validation metrics. A run cut short by the budget does
   not count validation.
4. Paired statistics and the verdict (``bnlint.verify.stats``): the mechanistic metric
   is phase 1's variance shift at the judged BNs (same weights, only the change
   differs); validation metrics count only when training moved them and can then
   veto (``bnlint.verify.model_verdict``).
"""
from __future__ import annotations

import math
import time
from typing import Callable, List, Optional, Tuple

from torch import nn

from bnlint.verify.bnstats import batchnorm_layers, bn_input_positions, functional_batchnorm_buffers
from bnlint.verify.budget import time_one_step
from bnlint.verify.environment import cpu_threads, default_budget, environment_info, pick_device
from bnlint.verify.judged import JudgedBatchNorms, dropout_fed_batchnorms, judged_batchnorms
from bnlint.verify.model_seed import ModelPair, SeedWork, build_pair, measure_seed, renamed_module, train_seed
from bnlint.verify.model_verdict import (divergence, merge_records, shift_comparisons, validation_comparisons,
                                         validation_counts)
from bnlint.verify.options import VerifyError, VerifyOptions
from bnlint.verify.plan import Costs, RunPlan, Sizes, make_plan
from bnlint.verify.progress import ProgressBar
from bnlint.verify.report import VerifyReport
from bnlint.verify.speed import choose_speed
from bnlint.verify.stats import INCONCLUSIVE, verdict_from
from bnlint.verify.tasks import TaskData, load_user_task, output_width, synthetic_task
from bnlint.verify.weights import check_eval_equivalence

__all__ = ["ModelPair", "run_model_experiment", "build_pair", "make_task"]


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


def run_model_experiment(pair: ModelPair, options: VerifyOptions, seed_runner=None,
                         started: Optional[float] = None) -> VerifyReport:
    """Measure and train before/after for ``options.seeds`` seeds and compare them.

    ``started`` (``time.monotonic()``) is when the budget started counting (default:
    now). ``seed_runner(phase, seeds, work, epochs, deadline)`` replaces the in-process
    loop (used to spread seeds over several GPUs).
    """
    return _Experiment(pair, options, seed_runner, started).run()


class _Experiment:
    def __init__(self, pair: ModelPair, options: VerifyOptions, seed_runner, started: Optional[float]):
        self.pair = pair
        self.options = options
        self.seed_runner = seed_runner
        self.start = time.monotonic() if started is None else started
        self.device = pick_device(options.device)
        self.budget = options.budget if options.budget is not None else default_budget(self.device)
        self.deadline = self.start + self.budget
        self.notes: List[str] = []
        self.timing: dict = {}
        self._time_step: Callable[[], float] = lambda: math.nan  # set by _plan: times one step now

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self) -> VerifyReport:
        options, pair = self.options, self.pair
        t0 = time.perf_counter()
        before0, after0 = build_pair(pair, options.first_seed, options.rename)
        build_seconds = time.perf_counter() - t0
        equivalence = check_eval_equivalence(before0, after0, pair.example_inputs, seed=options.first_seed)
        if not equivalence.equivalent:
            self.notes.append("eval-mode outputs differ: the change is not a pure dropout move, so the "
                              "comparison includes a change of the function itself")
        task_for = make_task(pair, options, before0)
        task0 = task_for(options.first_seed)
        judged = self._judged(before0, after0)
        speed = choose_speed(before0, task0.train, self.device, options.batch_size, options.precision,
                             options.channels_last, options.cpu_threads if self.device.type == "cpu" else None)
        with cpu_threads(self.device, speed.threads):
            return self._run_with(before0, task_for, task0, judged, speed, equivalence, build_seconds)

    def _judged(self, before: nn.Module, after: nn.Module) -> JudgedBatchNorms:
        rename = self.options.rename
        fed_before = dropout_fed_batchnorms(before)
        fed_after = dropout_fed_batchnorms(after)
        if fed_after is not None and rename:
            fed_after = frozenset(renamed_module(n, rename, inverse=True) for n in fed_after)
        return judged_batchnorms(fed_before, fed_after, [n for n, _ in batchnorm_layers(before)],
                                 sorted(functional_batchnorm_buffers(before).values()))

    def _plan(self, before0: nn.Module, task0: TaskData, judged: JudgedBatchNorms, speed,
              build_seconds: float) -> Tuple[RunPlan, Costs, Sizes]:
        options = self.options
        src = speed.source(task0.train, self.device)
        probe = speed.prepare(before0.to(self.device))
        positions = bn_input_positions(probe, src, judged.names or None)
        steps_per_epoch = max(1, len(task0.train) // options.batch_size)
        wanted = options.epochs if options.epochs is not None else max(
            1, min(200, math.ceil(options.target_steps / steps_per_epoch)))
        sizes = Sizes(len(options_seeds(options)), options.batch_size, len(task0.train), len(task0.val), positions,
                      wanted, options.epochs is not None)
        costs = Costs(speed.forward_seconds / max(1, min(options.batch_size, len(task0.train))), build_seconds)
        plan = make_plan(costs, sizes, self.left())
        self._time_step = lambda: time_one_step(probe, src, task0.loss_fn, options.batch_size, options.lr,
                                                options.momentum)
        if plan.needs_step_time:
            costs = Costs(costs.forward_per_sample, costs.build_pair, self._time_step())
            plan = make_plan(costs, sizes, self.left())
        return plan, costs, sizes

    def _run_with(self, before0, task_for, task0: TaskData, judged: JudgedBatchNorms, speed, equivalence,
                  build_seconds: float) -> VerifyReport:
        options = self.options
        plan, costs, sizes = self._plan(before0, task0, judged, speed, build_seconds)
        seeds = options_seeds(options)
        work = SeedWork(plan.recal_samples, plan.measure_samples, judged.names, options, speed, str(self.device))
        self.timing["setup_seconds"] = time.monotonic() - self.start
        bar = ProgressBar(len(seeds) * (1 + 2 * plan.epochs), "bnlint verify", enabled=options.progress)
        try:
            phase1 = self._phase1(seeds, task_for, work, plan, bar)
            trained, epochs = self._phase2(phase1, task_for, work, plan, costs, sizes, bar)
        finally:
            bar.close()
        self.notes.extend(plan.notes)
        return self._report(phase1, trained, epochs, task0, judged, speed, equivalence, plan)

    # -- phases ------------------------------------------------------------------

    def _phase1(self, seeds: List[int], task_for, work: SeedWork, plan: RunPlan, bar: ProgressBar) -> List[dict]:
        records: List[dict] = []
        started = time.monotonic()
        if self.seed_runner is not None:
            records = self.seed_runner("measure", seeds, work, plan.epochs, self.deadline)
            bar.advance(len(seeds))
        else:
            for seed in seeds:
                done = len(records)
                per_seed = (time.monotonic() - started) / done if done else plan.phase1_seed_seconds
                if records and per_seed > self.left():
                    break
                records.append(measure_seed(self.pair, task_for(seed), seed, work, plan.epochs > 0))
                bar.advance(note=f"seed {seed} measured")
        self.timing["phase1_seconds"] = time.monotonic() - started
        if len(records) < len(seeds):
            self.notes.insert(0, f"{len(records)} of {len(seeds)} seeds ran in the {self.budget:.0f} s budget; "
                                 "raise --budget")
        return records

    def _phase2(self, phase1: List[dict], task_for, work: SeedWork, plan: RunPlan, costs: Costs, sizes: Sizes,
                bar: ProgressBar) -> Tuple[Optional[List[dict]], int]:
        if plan.epochs == 0 or len(phase1) < len(options_seeds(self.options)):
            return None, 0
        # Plan the training again from what phase 1 took and a step timed now: the
        # machine may be busier (or quieter) than when the plan was made.
        step_now = self._time_step()
        load = step_now / costs.step if costs.step else 1.0
        now = Costs(costs.forward_per_sample * load, costs.build_pair, step_now)
        replan = make_plan(now, Sizes(len(phase1), sizes.batch_size, sizes.n_train, sizes.n_val, sizes.positions,
                                      plan.epochs, sizes.epochs_requested), self.left(), phase1_done=True,
                           samples=(plan.recal_samples, plan.measure_samples),
                           seed_seconds=self.timing["phase1_seconds"] / len(phase1))
        epochs = replan.epochs
        self.timing["step_seconds"] = {"planned": costs.step, "before_training": step_now}
        if epochs < plan.epochs:
            self.notes.append(f"training {'shortened from' if epochs else 'dropped: planned'} {plan.epochs} "
                              f"epochs{f' to {epochs}' if epochs else ''}: a step now takes {step_now * 1000:.0f} ms "
                              f"(planned with {costs.step * 1000:.0f} ms) and measuring took "
                              f"{self.timing['phase1_seconds'] / len(phase1):.1f} s per seed (a busy machine?)")
            bar.set_total(len(phase1) * (1 + 2 * epochs))
        if epochs == 0:
            return None, 0
        seeds = [r["seed"] for r in phase1]
        started = time.monotonic()
        if self.seed_runner is not None:
            records = self.seed_runner("train", seeds, work, epochs, self.deadline)
        else:
            records = []
            for seed in seeds:
                done = len(records)
                per_seed = (time.monotonic() - started) / done if done else replan.phase2_seed_seconds
                if per_seed > self.left():
                    records.append(None)
                    break
                records.append(train_seed(self.pair, task_for(seed), seed, work, epochs, self.deadline,
                                          on_epoch=bar.advance))
        self.timing["phase2_seconds"] = time.monotonic() - started
        if len(records) < len(seeds) or any(r is None for r in records):
            finished = sum(r is not None for r in records)
            self.notes.append(f"training was cut short by the budget ({finished} of {len(seeds)} seeds trained): the "
                              "verdict uses the variance shift measured at initialisation and validation metrics "
                              "are not counted; raise --budget")
            return None, epochs
        return records, epochs

    # -- report ------------------------------------------------------------------

    def _report(self, phase1: List[dict], trained: Optional[List[dict]], epochs: int, task0: TaskData,
                judged: JudgedBatchNorms, speed, equivalence, plan: RunPlan) -> VerifyReport:
        seeds = merge_records(phase1, trained)
        comparisons = shift_comparisons(seeds, bool(trained))
        if seeds and not comparisons:
            self.notes.append("the models have no BatchNorm layer that tracks running statistics: there is no "
                              "variance shift to measure")
        counted, why = validation_counts(seeds, trained, epochs, self.options.epochs == 0)
        if trained:
            comparisons += validation_comparisons(seeds, task0.is_classification, counted, self.options)
        self.notes.append(f"validation metrics {'count' if counted else 'do not count'}: {why}")
        if any(c.spec.name == "variance_shift_other_max" for c in comparisons):
            self.notes.append("variance_shift_other_max is the most shifted BN outside the judged ones, for "
                              "information: a BN reached from a dropout through weight layers keeps part of the "
                              "shift wherever the dropout sits (BNL103)")
        if seeds:
            self.notes.append(f"variance shift judged at {judged.how}; measured at initialisation (step 0"
                              f"{', and after training: variance_shift_trained' if trained else ''}) on "
                              f"{plan.recal_samples} re-estimation and {plan.measure_samples} measurement examples")
        verdict, reason = verdict_from(comparisons) if seeds else (INCONCLUSIVE, "no seed ran in the budget")
        if trained:
            diverged, note = divergence(seeds)
            if diverged is not None:
                verdict, reason = diverged
            if note:
                self.notes.append(note)
        environment = environment_info(self.device)
        environment.update(cpu_threads=speed.threads or environment["cpu_threads"],
                           mixed_precision=speed.to_dict()["mixed_precision"], speed=speed.to_dict())
        self.timing.update(total_seconds=time.monotonic() - self.start, budget_seconds=self.budget,
                           plan=plan.to_dict(), per_seed_seconds=[
                               {"seed": s["seed"], "phase1": s.pop("phase1_seconds"),
                                "phase2": s.pop("phase2_seconds", None)} for s in seeds])
        return VerifyReport(
            kind="model", verdict=verdict, reason=reason, before=self.pair.before_label, after=self.pair.after_label,
            comparisons=comparisons, seeds=seeds, task=task0.description, environment=environment,
            options=self.options.to_dict(), equivalence=equivalence.to_dict(), epochs=epochs if trained else 0,
            notes=self.notes, timing=self.timing, judged=judged.to_dict(),
            validation={"counted": counted, "reason": why},
        )


def options_seeds(options: VerifyOptions) -> List[int]:
    return list(range(options.first_seed, options.first_seed + options.seeds))
