"""Verification harness: train the before and after versions of a fix and compare.

``verify_sources(before_path, after_path, model_name, options)`` is the entry point for
``bnlint verify`` and ``bnlint fix --verify``; ``run_model_experiment`` and
``run_shuffle_experiment`` work on already-built model factories.
"""
from bnlint.verify.options import VerifyError, VerifyOptions
from bnlint.verify.report import VerifyReport
from bnlint.verify.stats import CONFIRMED, INCONCLUSIVE, REGRESSED

__all__ = [
    "VerifyError", "VerifyOptions", "VerifyReport", "CONFIRMED", "INCONCLUSIVE", "REGRESSED",
    "verify_sources", "run_model_experiment", "run_shuffle_experiment", "ModelPair",
]


def __getattr__(name):
    # Lazy: importing the package must not import torch (the CLI imports it cheaply).
    if name == "verify_sources":
        from bnlint.verify.sources import verify_sources
        return verify_sources
    if name in ("run_model_experiment", "ModelPair"):
        from bnlint.verify import model_experiment
        return getattr(model_experiment, name)
    if name == "run_shuffle_experiment":
        from bnlint.verify.shuffle_experiment import run_shuffle_experiment
        return run_shuffle_experiment
    raise AttributeError(name)
