"""Fixture repositories (fixtures/repos/<name>/): small research-style projects checked
as a user meets them, with no configuration.

Each folder is copied to a temporary directory and made a git checkout (real
repositories are, and that makes the folder its own project root). Then:

- ``bnlint check .`` must report exactly the folder's ``expected.txt`` (errors and
  warnings; info notes are not listed);
- ``bnlint check <file>`` for every file alone (what pre-commit does) must report, for
  that file, exactly what the whole-folder check reported for it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES, run_bnlint

REPOS = sorted(p for p in (FIXTURES / "repos").iterdir() if p.is_dir()) if (FIXTURES / "repos").is_dir() else []


def read_expected(folder: Path):
    lines = []
    for raw in (folder / "expected.txt").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            path, code, lineno = line.split()
            lines.append((path, code, int(lineno)))
    return sorted(lines)


def checked(cwd: Path, *paths: str):
    proc = run_bnlint("check", "--no-cache", "--format", "json", *paths, cwd=cwd)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), (proc.returncode, proc.stdout, proc.stderr)
    findings = json.loads(proc.stdout)
    counted = sorted((f["path"], f["code"], f["line"]) for f in findings if f["severity"] != "info")
    assert proc.returncode == (1 if counted else 0), (proc.returncode, counted)
    return counted, findings


@pytest.fixture(params=REPOS, ids=[p.name for p in REPOS])
def repo(request, tmp_path):
    target = tmp_path / request.param.name
    shutil.copytree(request.param, target)
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    return request.param, target


def test_repository_findings(repo):
    source, target = repo
    whole, findings = checked(target, ".")
    assert whole == read_expected(source), json.dumps(findings, indent=1)


def test_each_file_alone_as_in_the_whole_check(repo):
    source, target = repo
    whole, _ = checked(target, ".")
    for path in sorted(target.rglob("*.py")):
        rel = path.relative_to(target).as_posix()
        alone, _ = checked(target, rel)
        assert alone == [f for f in whole if f[0] == rel], rel
