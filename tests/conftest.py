"""Shared helpers: run the real CLI in a subprocess, as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def run_bnlint(*args, cwd=None, timeout=300):
    """Run ``python -m bnlint ARGS``; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        [sys.executable, "-m", "bnlint", *map(str, args)],
        cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout,
    )


def run_json(*args, cwd=None):
    proc = run_bnlint("check", "--format", "json", *args, cwd=cwd)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture
def bnlint_cli():
    return run_bnlint


def pytest_addoption(parser):
    parser.addoption("--update-snapshots", action="store_true", default=False,
                     help="Rewrite fixtures/fixed/ from the current output of 'bnlint fix'.")
    parser.addoption("--slow", action="store_true", default=False,
                     help="Property tests with the slow profile (many more examples); "
                          "the same as BNLINT_PROPERTIES=slow.")


def pytest_configure(config):
    # The property tests read the profile when they are imported (hypothesis settings).
    if config.getoption("--slow", default=False):
        os.environ["BNLINT_PROPERTIES"] = "slow"
