"""bnlint: a linter and auto-fixer for dropout and shuffling mistakes around BatchNorm.

``bnlint.check_model(model, example_inputs)`` and ``bnlint.check_source(text, path=...)``
are the Python API (``bnlint.api``); they are imported on first use, so ``import
bnlint`` stays light (no torch).
"""
__version__ = "0.1.0"

__all__ = ["__version__", "check_model", "check_source"]


def __getattr__(name):
    if name in ("check_model", "check_source"):
        from bnlint import api

        return getattr(api, name)
    raise AttributeError(f"module 'bnlint' has no attribute {name!r}")
