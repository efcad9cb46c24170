"""A file's script findings never depend on what else is checked (issue #10).

For every script fixture (``fixtures/BNL2*``, ``fixtures/BNL105``, ``fixtures/BNL107``,
``fixtures/scripts_clean``) and every script fixture repository
(``fixtures/repos/scripts_*``), the findings in the file are
the same when it is checked (a) alone, (b) with its folder, (c) with the whole fixtures
tree, and (d) copied beside decoy scripts that define ``main``, ``train``, ``evaluate``
and the fixtures' helper names and call them differently (and have findings of their
own, which must not leak). They also equal the fixture's expected findings.

The checks run the engine (``bnlint.engine.check_paths``, the code under ``bnlint check``)
in this process, without the results cache, with the script rules only; a CLI run of
the fixtures tree confirms the engine's answer.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bnlint.config import Config
from bnlint.engine import check_paths
from bnlint.registry import all_rules
from bnlint.rule import RuleKind

from conftest import run_bnlint

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SCRIPT_RULES = [r for r in all_rules() if r.kind is RuleKind.SCRIPT]

# Script rules' folders (fixtures/BNL206 holds what `bnlint run` reports: tests/test_runtime.py).
SINGLE_FOLDERS = [FIXTURES / r.code for r in SCRIPT_RULES] + [FIXTURES / "scripts_clean"]
REPOS = sorted((FIXTURES / "repos").glob("scripts_*"))

DECOY_TRAIN = '''\
"""Decoy: the fixtures' function names, defined again and called in other ways."""
import itertools

import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def evaluate(model, loader, *args):
    for x, y in loader:
        model(x)


def train(rank, loader, model, optimizer, epochs=3):
    for epoch in range(epochs):
        torch.manual_seed(0)
        for x, y in itertools.cycle(loader):
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()


def train_one_epoch(*args, **kwargs):
    return None


def build_loaders(args):
    return None, None, None


def make_loader(dataset, train, **overrides):
    return DataLoader(dataset, batch_size=1)


def seed_everything(seed):
    return seed


def reseed(seed=0):
    return seed


def main_worker(gpu, ngpus_per_node, args):
    train(gpu, None, None, None)


def main():
    ds = TensorDataset(torch.randn(8, 2))
    loader = DataLoader(ds, sampler=DistributedSampler(ds))
    mp.spawn(train, args=(loader, None, None))
    evaluate(None, loader)
    main_worker(0, 1, None)


if __name__ == "__main__":
    main()
'''

DECOY_MAIN = '''\
"""Decoy: methods with the fixtures' names, and a main that calls them."""
import torch
from torch.utils.data import DataLoader, TensorDataset


class Runner:
    def __init__(self, model):
        self.model = model
        self.loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)

    def train(self, epochs=1):
        for epoch in range(epochs):
            for (x,) in self.loader:
                self.model(x).sum().backward()

    def evaluate(self):
        self.model.eval()

    def fit(self, epochs):
        self.train(epochs)

    def train_epoch(self, epoch):
        torch.manual_seed(1)

    def main(self):
        self.fit(2)


def main():
    runner = Runner(torch.nn.Linear(2, 1))
    runner.main()
    runner.model.train()
    runner.evaluate()


main()
'''


def _files():
    for folder in SINGLE_FOLDERS:
        for path in sorted(folder.rglob("*.py")):
            yield path
    for repo in REPOS:
        for path in sorted(repo.rglob("*.py")):
            yield path


def _key(path: Path) -> str:
    return str(path.relative_to(FIXTURES))


def _check(paths, cwd=None):
    """Script findings per absolute path: (relative-free) tuples that must match."""
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = check_paths([str(p) for p in paths], Config(), SCRIPT_RULES)
    finally:
        os.chdir(old)
    out = {}
    for f in result.findings:
        full = os.path.normpath(os.path.join(cwd or old, f.path))
        out.setdefault(full, []).append((f.code, f.line, f.column, f.severity.value, f.message))
    return {k: sorted(v) for k, v in out.items()}


def _expected(path: Path):
    """(code, line) pairs from the fixture's .expected file or its repository's expected.txt."""
    repo = next((r for r in REPOS if r in path.parents), None)
    if repo is None:
        text = path.with_suffix(".expected").read_text()
        return sorted((c, int(n)) for c, n in (line.split() for line in text.splitlines()
                                                if line.strip() and not line.startswith("#")))
    rel = path.relative_to(repo).as_posix()
    out = []
    for line in (repo / "expected.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            p, code, n = line.split()
            if p == rel:
                out.append((code, int(n)))
    return sorted(out)


@pytest.fixture(scope="module")
def whole_tree():
    return _check([FIXTURES])


@pytest.fixture(scope="module")
def folders():
    cache = {}

    def get(folder: Path):
        if folder not in cache:
            cache[folder] = _check([folder])
        return cache[folder]
    return get


@pytest.mark.parametrize("path", list(_files()), ids=_key)
def test_findings_do_not_depend_on_what_else_is_checked(path, whole_tree, folders, tmp_path):
    alone = _check([path]).get(str(path), [])
    assert sorted((c, n) for c, n, *_ in alone) == _expected(path), alone
    # (b) its folder, and for a repository's file also the repository's root
    assert folders(path.parent).get(str(path), []) == alone
    repo = next((r for r in REPOS if r in path.parents), None)
    if repo is not None:
        assert folders(repo).get(str(path), []) == alone
    # (c) the whole fixtures tree
    assert whole_tree.get(str(path), []) == alone
    # (d) beside decoys, in a project of its own
    top = repo if repo is not None else path.parent
    copy = tmp_path / top.name
    if repo is not None:
        shutil.copytree(repo, copy)
    elif top not in SINGLE_FOLDERS:  # a fixture folder checked together (engine.py + main.py)
        shutil.copytree(top, copy)
    else:
        copy.mkdir()
        shutil.copy(path, copy / path.name)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    beside = copy / path.relative_to(top)
    (beside.parent / "decoy_train.py").write_text(DECOY_TRAIN)
    (beside.parent / "decoy_main.py").write_text(DECOY_MAIN)
    assert _check([beside]).get(str(beside), []) == alone
    decoyed = _check([beside.parent])
    assert decoyed.get(str(beside), []) == alone
    # The decoys have findings of their own (the comparison above is not vacuous).
    assert decoyed.get(str(beside.parent / "decoy_train.py"))


def test_the_cli_agrees_on_the_fixtures_tree(whole_tree):
    codes = ",".join(r.code for r in SCRIPT_RULES)
    proc = run_bnlint("check", "--no-cache", "--select", codes, "--format", "json", "fixtures")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr  # fixtures with findings (and a BNL001)
    got = {}
    for f in json.loads(proc.stdout):
        got.setdefault(str(ROOT / f["path"]), []).append(
            (f["code"], f["line"], f["column"], f["severity"], f["message"]))
    assert {k: sorted(v) for k, v in got.items()} == whole_tree
