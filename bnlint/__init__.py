"""bnlint: a linter and auto-fixer for dropout and shuffling mistakes around BatchNorm."""
__version__ = "0.1.0"
