"""pre-commit: the shipped ``.pre-commit-hooks.yaml`` is a valid manifest, and a real
commit through pre-commit (installed from PyPI with the ``test`` extra) is refused
with bnlint's message while a file has a finding, and accepted once it is fixed.

The hook runs as the ``language: system`` variant documented in docs/index.md, with
the id, files and options taken from the shipped manifest and the entry pointing at
this environment's bnlint (so no hook environment, and no torch, is installed)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml  # a dependency of pre-commit

from test_config import CYCLED, ROOT  # CYCLED: one BNL202 finding, on line 9

MANIFEST = ROOT / ".pre-commit-hooks.yaml"
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _env(tmp_path: Path):
    env = dict(os.environ)
    env.update(
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"), GIT_CONFIG_NOSYSTEM="1",
    )
    return env


def _run(args, cwd, env):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_manifest_is_valid_and_has_both_hooks(tmp_path):
    proc = _run([sys.executable, "-m", "pre_commit", "validate-manifest", str(MANIFEST)], ROOT, _env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hooks = {h["id"]: h for h in yaml.safe_load(MANIFEST.read_text())}
    assert set(hooks) == {"bnlint", "bnlint-fix"}
    assert hooks["bnlint"]["entry"] == "bnlint check" and hooks["bnlint-fix"]["entry"] == "bnlint fix"
    for hook in hooks.values():
        assert hook["types_or"] == ["python", "jupyter"]


def _system_hook_config(hook_id: str) -> str:
    """The documented ``language: system`` variant of a shipped hook."""
    hook = {h["id"]: h for h in yaml.safe_load(MANIFEST.read_text())}[hook_id]
    bnlint = Path(sys.executable).with_name("bnlint")
    command = hook["entry"].split()[1:]
    entry = " ".join([str(bnlint) if bnlint.exists() else f"{sys.executable} -m bnlint", *command])
    local = dict(hook, language="system", entry=entry)
    return yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}, sort_keys=False)


def test_commit_is_refused_with_bnlints_message_then_accepted_when_fixed(tmp_path):
    env = _env(tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    assert _run(["git", "init", "-q"], repo, env).returncode == 0
    (repo / ".pre-commit-config.yaml").write_text(_system_hook_config("bnlint"))
    (repo / "README.md").write_text("hello\n")
    proc = _run([sys.executable, "-m", "pre_commit", "install"], repo, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _run(["git", "add", "."], repo, env)
    proc = _run(["git", "commit", "-q", "-m", "init"], repo, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # no Python file: hook skipped

    (repo / "train.py").write_text(CYCLED)
    _run(["git", "add", "train.py"], repo, env)
    proc = _run(["git", "commit", "-m", "add training script"], repo, env)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "bnlint" in output and "Failed" in output
    assert "train.py:9:11: BNL202 `itertools.cycle` replays the batches" in output
    assert "Found 1 problem" in output
    log = _run(["git", "log", "--oneline"], repo, env).stdout
    assert len(log.splitlines()) == 1  # nothing was committed

    fixed = CYCLED.replace("batches = cycle(loader)", textwrap.dedent("""\
        def forever(loader):
            while True:
                yield from loader


        batches = forever(loader)"""))
    (repo / "train.py").write_text(fixed)
    _run(["git", "add", "train.py"], repo, env)
    proc = _run(["git", "commit", "-m", "add training script"], repo, env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "bnlint" in output and "Passed" in output
    log = _run(["git", "log", "--oneline"], repo, env).stdout
    assert len(log.splitlines()) == 2
