"""Every model fixture's findings equal its ``.expected`` file (``CODE LINE`` lines).

All fixture files are checked in one run (workers in parallel), then compared file by
file.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bnlint.config import Config
from bnlint.engine import check_paths
from bnlint.registry import select_rules
from conftest import FIXTURES, ROOT

MODEL_DIRS = ["BNL001", "BNL101", "BNL102", "BNL103", "BNL104", "models_clean"]
CASES = sorted(
    p for d in MODEL_DIRS for p in (FIXTURES / d).glob("*.py") if p.with_suffix(".expected").exists()
)


@pytest.fixture(scope="module")
def results():
    rel = [str(p.relative_to(ROOT)) for p in CASES]
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        result = check_paths(rel, Config(timeout=20.0), select_rules(["BNL0", "BNL1"]))
    finally:
        os.chdir(cwd)
    by_file = {}
    for f in result.findings:
        by_file.setdefault(f.path, []).append(f)
    return by_file


def _expected(path: Path):
    lines = [l.split() for l in path.with_suffix(".expected").read_text().splitlines() if l.strip() and not l.startswith("#")]
    return sorted((code, int(line)) for code, line in lines)


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_findings_match_expected(case, results):
    rel = str(case.relative_to(ROOT))
    got = sorted((f.code, f.line) for f in results.get(rel, []) if f.severity.value != "info")
    assert got == _expected(case), "\n".join(f"{f.code} {f.line} {f.message}" for f in results.get(rel, []))


def test_there_are_bad_and_clean_fixtures():
    assert len([c for c in CASES if c.parent.name == "models_clean"]) >= 5
    assert len([c for c in CASES if c.parent.name.startswith("BNL1")]) >= 10
