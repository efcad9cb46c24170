"""Verify two versions given as files: the entry point for ``bnlint verify`` and for
``bnlint fix --verify`` (``verify_sources``)."""
from __future__ import annotations

import math
import os
import time
from typing import Optional, Sequence

from bnlint.verify.model_experiment import ModelPair, run_model_experiment
from bnlint.verify.modelfile import ModelSource, example_inputs, load_model_source, model_sources_differ
from bnlint.verify.options import VerifyError, VerifyOptions
from bnlint.verify.parallel import gpu_seed_runner
from bnlint.verify.report import VerifyReport
from bnlint.verify.shuffle_experiment import ShuffleSetup, builtin_shuffle_setup, run_shuffle_experiment
from bnlint.verify.tasks import output_width, synthetic_task

__all__ = ["verify_sources", "model_pair_from_files", "choose_kind"]


def _pair(before: ModelSource, after: ModelSource, input_shape) -> ModelPair:
    probe = before.build()
    inputs = example_inputs(before, probe, input_shape)
    return ModelPair(before.build, after.build, inputs, before.label, after.label,
                     task_dirs=(os.path.dirname(os.path.abspath(before.path)),))


def model_pair_from_files(before_path: str, after_path: str, model: Optional[str],
                          input_shape: Optional[Sequence[Sequence[int]]] = None) -> ModelPair:
    before, after = load_model_source(before_path, model), load_model_source(after_path, model)
    for src in (before, after):
        if src.factory is None:
            raise VerifyError(f"{src.path} defines no model that builds without arguments; pass --model NAME")
    return _pair(before, after, input_shape)


def choose_kind(options: VerifyOptions, before: ModelSource, after: ModelSource) -> str:
    """``model`` when the model definitions changed, else ``shuffle`` (a script fix)."""
    if options.kind != "auto":
        return options.kind
    if before.factory is None or after.factory is None:
        return "shuffle"
    return "model" if model_sources_differ(before, after) else "shuffle"


def _script_setup(source: ModelSource, options: VerifyOptions, input_shape) -> ShuffleSetup:
    """The script's own model on a synthetic task shaped like its inputs."""
    probe = source.build()
    inputs = example_inputs(source, probe, input_shape)
    if len(inputs) != 1 or not inputs[0].is_floating_point():
        raise VerifyError(f"{source.label}: the shuffle experiment needs a model with one floating-point input")
    classes = output_width(probe, inputs)
    shape = tuple(inputs[0].shape[1:])
    n_train = options.n_train
    steps_per_epoch = max(1, n_train // options.batch_size)
    return ShuffleSetup(
        build_model=source.build,
        task_for=lambda seed: synthetic_task(shape, classes, n_train, options.n_val, seed),
        batch_size=options.batch_size, lr=options.lr, momentum=options.momentum,
        label=f"model {source.label}, batch {options.batch_size}",
        default_epochs=max(1, math.ceil(10 * options.target_steps / steps_per_epoch)),
    )


def verify_sources(before_path: str, after_path: str, model_name: Optional[str] = None,
                   options: VerifyOptions = VerifyOptions(),
                   input_shape: Optional[Sequence[Sequence[int]]] = None,
                   started: Optional[float] = None) -> VerifyReport:
    """Train and compare two versions of a file; never writes anything.

    A fixer writes a fix only when ``report.confirmed`` (unless forced). Raises
    VerifyError for problems the user must fix. Runs user code: call it in a
    subprocess (``python -m bnlint.verify``) when a crash must not take the caller down.
    ``started`` (``time.monotonic()``) is when the time budget started (default: now).
    """
    started = time.monotonic() if started is None else started
    before = load_model_source(before_path, model_name)
    after = load_model_source(after_path, model_name)
    kind = choose_kind(options, before, after)
    if kind == "model":
        for src in (before, after):
            if src.factory is None:
                raise VerifyError(f"{src.path} defines no model that builds without arguments; pass --model NAME")
        pair = _pair(before, after, input_shape)
        runner = gpu_seed_runner(before_path, after_path, model_name, input_shape, options)
        return run_model_experiment(pair, options, seed_runner=runner, started=started)
    if before.factory is not None:
        setup = _script_setup(before, options, input_shape)
    else:
        setup = builtin_shuffle_setup()
    report = run_shuffle_experiment(setup, options, f"{before.path} (single shuffle)", f"{after.path} (random reshuffle)")
    if options.kind == "auto":
        report.notes.insert(0, "the model definitions are the same in both files, so the change was verified as a "
                               "data-order (single shuffle -> random reshuffle) fix")
    return report
