"""``bnlint fix``: every fixable bad fixture is fixed to its snapshot in
``fixtures/fixed/<folder>/<name>.py``; the fixed files lint clean (a BNL103 warning may
remain), are eval-equivalent to the originals, and a second run changes nothing;
``--diff`` writes nothing; a rejected fix leaves the file byte-identical.

All fixtures are fixed in one ``bnlint fix`` run over a copy (workers run in
parallel). ``pytest --update-snapshots`` rewrites the snapshots.
"""
from __future__ import annotations

import codecs
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bnlint.findings import Edit
from bnlint.fix.edits import OverlapError, apply_edits, overlapping
from conftest import FIXTURES, ROOT, run_bnlint, run_json

BAD_DIRS = ["BNL101", "BNL102", "BNL201", "BNL202", "BNL203", "BNL204", "BNL205"]
SNAPSHOTS = FIXTURES / "fixed"
CASES = sorted(p for d in BAD_DIRS for p in (FIXTURES / d).glob("*.py"))
FIXED_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):\d+: (?P<code>BNL\d+) fixed: ")
RENAMED = re.compile(r"^\s+renamed state_dict key (\S+) -> (\S+)$")


def _rel(case: Path) -> str:
    return f"{case.parent.name}/{case.name}"


@pytest.fixture(scope="module")
def fixed_tree(tmp_path_factory):
    work = tmp_path_factory.mktemp("fixed")
    for case in CASES:
        (work / case.parent.name).mkdir(exist_ok=True)
        shutil.copy2(case, work / _rel(case))
    proc = run_bnlint("fix", "--unsafe-fixes", ".", cwd=work, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    fixed, renames, current = Counter(), {}, None
    for line in proc.stdout.splitlines():
        m = FIXED_LINE.match(line)
        if m:
            current = m["path"]
            fixed[current] += 1
        r = RENAMED.match(line)
        if r and current:
            renames.setdefault(current, []).append((r[1], r[2]))
    # Re-check only what changed: script rules alone on scripts (no model workers).
    changed = sorted(fixed)
    scripts = [p for p in changed if p.startswith("BNL2")]
    models = [p for p in changed if not p.startswith("BNL2")]
    after = []
    if scripts:
        after += json.loads(run_bnlint("check", "--format", "json", "--select", "BNL2", *scripts,
                                       cwd=work, timeout=600).stdout)
    if models:
        after += json.loads(run_bnlint("check", "--format", "json", *models, cwd=work, timeout=600).stdout)
    return work, proc, fixed, renames, after


def test_fix_run_summary(fixed_tree):
    _work, proc, fixed, _renames, _after = fixed_tree
    assert "fix rejected" not in proc.stdout, proc.stdout
    assert sum(fixed.values()) >= 20, proc.stdout
    assert re.search(r"^Fixed \d+ problems \(\d+ remaining\)", proc.stdout, re.M), proc.stdout
    assert "BNL103 warning remains" in proc.stdout


@pytest.mark.parametrize("case", CASES, ids=_rel)
def test_fixed_file_matches_snapshot(case, fixed_tree, request):
    work, proc, fixed, _renames, _after = fixed_tree
    got = (work / _rel(case)).read_bytes()
    snapshot = SNAPSHOTS / _rel(case)
    if not fixed.get(_rel(case)):
        assert got == case.read_bytes(), f"{_rel(case)} changed without a reported fix"
        assert not snapshot.exists(), f"stale snapshot {snapshot}"
        return
    if request.config.getoption("--update-snapshots"):
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_bytes(got)
    assert snapshot.exists(), f"no snapshot for {_rel(case)}: run pytest --update-snapshots"
    assert got == snapshot.read_bytes(), f"{_rel(case)} differs from {snapshot}"


@pytest.mark.parametrize("case", CASES, ids=_rel)
def test_fixed_file_lints_clean(case, fixed_tree):
    """Only findings without a fix remain (and BNL103 warnings the fix may leave); the
    fixed models still build and run (no BNL001)."""
    _work, _proc, fixed, _renames, after = fixed_tree
    rel = _rel(case)
    if not fixed.get(rel):
        pytest.skip("nothing fixed in this file (it is byte-identical, see the snapshot test)")
    mine = [f for f in after if f["path"] == rel and f["severity"] != "info"]
    assert not [f for f in mine if f["fix"]], f"a second 'bnlint fix' would change {rel}: {mine}"
    expected = Counter(l.split()[0] for l in case.with_suffix(".expected").read_text().splitlines()
                       if l.strip() and not l.startswith("#"))
    left = Counter(f["code"] for f in mine if f["code"] not in ("BNL103", "BNL001"))
    expected.pop("BNL103", None)
    assert sum(left.values()) == sum(expected.values()) - fixed.get(rel, 0), mine
    assert not [f for f in mine if f["code"] == "BNL001"], mine


def test_fixed_models_are_eval_equivalent(fixed_tree):
    """Independently of the fixer's own check: same keys (up to the reported renames),
    same eval outputs with the original weights."""
    work, _proc, fixed, renames, _after = fixed_tree
    pairs = [(str(c), str(work / _rel(c)), renames.get(_rel(c), []))
             for c in CASES if c.parent.name.startswith("BNL1") and fixed.get(_rel(c))]
    assert len(pairs) >= 10
    script = (
        "import json, sys\n"
        "from bnlint.fix.equivalence import compare_files\n"
        "out = []\n"
        "for original, fixed, renames in json.loads(sys.argv[1]):\n"
        "    prefix = [(a.rsplit('.', 1)[0] + '.', b.rsplit('.', 1)[0] + '.') for a, b in renames]\n"
        "    r = compare_files({'original': original, 'fixed': fixed, 'renames': prefix})\n"
        "    out.append([fixed, r])\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(pairs)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for fixed_path, result in json.loads(proc.stdout.strip().splitlines()[-1]):
        assert result["error"] is None, (fixed_path, result)
        assert result["models"], fixed_path
        for model in result["models"]:
            assert model["ok"], (fixed_path, model)


REJECTED_MODEL = '''\
import torch.nn as nn
import torch.nn.functional as F


class DoubleNorm(nn.Module):
    """Monte Carlo dropout (on in eval mode too) in front of a BN: moving it changes the
    model's predictions, so the fix must be rejected."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        x = self.conv(x)
        x = F.dropout(x, 0.2, training=True)
        return self.bn(x)
'''


def test_diff_rejection_and_idempotence(tmp_path):
    rejected = tmp_path / "double_norm.py"
    rejected.write_text(REJECTED_MODEL)
    script = tmp_path / "uda_cycle.py"
    # CRLF, a BOM and an unusual mode must survive the rewrite.
    text = (FIXTURES / "BNL202" / "uda_cycle.py").read_text().replace("\n", "\r\n")
    script.write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
    os.chmod(script, 0o750)
    before = {p.name: p.read_bytes() for p in (rejected, script)}

    diff = run_bnlint("fix", "--diff", ".", cwd=tmp_path)
    assert "Traceback" not in diff.stderr, diff.stderr
    assert diff.returncode == 1, diff.stdout
    assert "+++ b/uda_cycle.py" in diff.stdout and "_reiterate_forever" in diff.stdout
    assert {p.name: p.read_bytes() for p in (rejected, script)} == before
    assert sorted(os.listdir(tmp_path)) == ["double_norm.py", "uda_cycle.py"]

    run = run_bnlint("fix", ".", cwd=tmp_path)
    assert "double_norm.py: fix rejected: model DoubleNorm: eval-mode outputs changed" in run.stdout, run.stdout
    assert rejected.read_bytes() == before["double_norm.py"]
    data = script.read_bytes()
    assert data.startswith(codecs.BOM_UTF8) and data != before["uda_cycle.py"]
    assert data.count(b"\n") == data.count(b"\r\n")
    assert stat.S_IMODE(os.stat(script).st_mode) == 0o750
    assert sorted(os.listdir(tmp_path)) == ["double_norm.py", "uda_cycle.py"]

    again = run_bnlint("fix", ".", cwd=tmp_path)
    assert script.read_bytes() == data
    assert rejected.read_bytes() == before["double_norm.py"]
    assert "uda_cycle.py" not in again.stdout.replace("double_norm.py", "")


def test_check_marks_fixable_findings_with_safety():
    code, findings = None, json.loads(run_bnlint(
        "check", "--format", "json", "fixtures/BNL101/tabular_mlp_sequential.py",
        "fixtures/BNL202/uda_cycle.py").stdout)
    by_code = {(f["code"], f["line"]): f["fix"] for f in findings}
    assert by_code[("BNL101", 12)]["safety"] == "unsafe"
    assert "net.3.* -> net.2.*" in by_code[("BNL101", 12)]["description"]
    assert by_code[("BNL202", 33)]["safety"] == "safe"


# ---------------------------------------------------------------- edits (no workers)

def test_edits_apply_in_one_pass_and_merge_duplicates():
    text = "a = f(x)\nb = 2\n"
    edits = [Edit("p", (1, 4), (1, 4), "g("), Edit("p", (1, 8), (1, 8), ")"),
             Edit("p", (2, 0), (3, 0), ""), Edit("p", (2, 0), (3, 0), "")]
    assert apply_edits(text, edits) == "a = g(f(x))\n"


def test_overlapping_edits_are_refused():
    text = "a = f(x)\n"
    with pytest.raises(OverlapError):
        apply_edits(text, [Edit("p", (1, 0), (1, 5), "z"), Edit("p", (1, 4), (1, 8), "y")])
    with pytest.raises(OverlapError):
        apply_edits(text, [Edit("p", (1, 4), (1, 4), "g("), Edit("p", (1, 4), (1, 4), "h(")])
    groups = [[Edit("p", (1, 0), (1, 5), "z")], [Edit("p", (1, 4), (1, 8), "y")], [Edit("p", (1, 8), (1, 8), "!")]]
    assert overlapping(text, groups) == [1]


def test_newline_style_is_kept():
    text = "a = 1\r\nb = 2\r\n"
    out = apply_edits(text, [Edit("p", (2, 0), (2, 0), "c = 3\n")], newline="\r\n")
    assert out == "a = 1\r\nc = 3\r\nb = 2\r\n"


def test_model_that_is_an_nn_sequential_itself(tmp_path):
    """A factory returning a bare nn.Sequential: the finding points at the element in
    the literal (not at bnlint's or Python's frames), and the unsafe reorder fix works
    with the model itself as the container (keys '2.*' -> '1.*')."""
    src = FIXTURES / "verify" / "seq_dropout_before_bn.py"
    target = tmp_path / "net.py"
    target.write_bytes(src.read_bytes())
    proc = run_bnlint("check", "--no-cache", "--format", "json", "net.py", cwd=tmp_path)
    found = [(f["code"], f["path"], f["line"], f["column"]) for f in json.loads(proc.stdout)]
    assert found == [("BNL101", "net.py", 6, 45)]
    proc = run_bnlint("fix", "--unsafe-fixes", "net.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))" \
        in target.read_text()
    assert "2.weight -> 1.weight" in proc.stdout


def test_identical_moves_are_not_merged():
    """Two fixes inserting the same dropout call at the same place are two dropouts:
    with ``shareable`` False the second waits for the next round (a helper two script
    fixes both add is still shared)."""
    text = "x = a(x)\ny = b(x)\n"
    move = [Edit("p", (2, 0), (2, 0), "x = drop(x)\n")]
    assert overlapping(text, [move, move]) == []
    assert overlapping(text, [move, move], [False, False]) == [1]


def test_append_reorder_shows_every_copys_renames_in_the_diff(tmp_path):
    """An MLP built by ``layers.append`` in a loop: the dry run shows the reordered
    appends and, for each of the three blocks the loop builds, the renamed keys."""
    target = tmp_path / "mlp.py"
    target.write_bytes((FIXTURES / "BNL101" / "mlp_layers_append.py").read_bytes())
    before = target.read_bytes()
    proc = run_bnlint("fix", "--diff", "--unsafe-fixes", "mlp.py", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert "-            layers.append(nn.Dropout(dropout))" in proc.stdout
    assert "+            layers.append(nn.Dropout(dropout))" in proc.stdout
    renamed = dict(RENAMED.match(line).groups() for line in proc.stdout.splitlines() if RENAMED.match(line))
    for old, new in (("2", "1"), ("6", "5"), ("10", "9")):
        assert renamed[f"body.{old}.running_var"] == f"body.{new}.running_var", proc.stdout
    assert "body.2.* -> body.1.*, body.6.* -> body.5.*, body.10.* -> body.9.*" in proc.stdout
    assert target.read_bytes() == before
    safe_only = run_bnlint("fix", "--diff", "mlp.py", cwd=tmp_path)
    assert "1 more fixable with --unsafe-fixes" in safe_only.stdout, safe_only.stdout


BLOCK_USED_TWICE = '''\
import torch.nn as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.drop = nn.Dropout(0.2)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.drop(self.conv(x)))


class TwoBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.first = Block()
        self.second = Block()
        self.norm = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.norm(self.second(self.first(self.stem(x))))
'''


def test_a_block_used_twice_is_fixed_for_both_uses(tmp_path):
    """One edit moves the dropout of every use of a block: behind the block's BN the
    second use would still feed the parent's norm, so the fix takes the place that is
    right for both, before the conv (a BNL103 warning remains)."""
    target = tmp_path / "blocks.py"
    target.write_text(BLOCK_USED_TWICE)
    proc = run_bnlint("fix", "blocks.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "return self.bn(self.conv(self.drop(x)))" in target.read_text()
    assert "before Conv2d 'first.conv'" in proc.stdout and "BNL103 warning remains" in proc.stdout
    code, after = run_json("--no-cache", "blocks.py", cwd=tmp_path)
    assert [f["code"] for f in after] == ["BNL103"], after


def _load(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_fixture_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reseeding_helpers_keep_their_draws_and_stop_resetting_the_order():
    """The BNL204 helper fix (snapshots in fixtures/fixed/BNL204): the helper returns
    exactly what it returned before, and the global generators that order the data
    continue as if it had not run (before the fix they restarted from its seed)."""
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    import random

    before = _load(FIXTURES / "BNL204" / "latent_grid_helper.py")
    after = _load(SNAPSHOTS / "BNL204" / "latent_grid_helper.py")
    results = []
    for module in (before, after):
        torch.manual_seed(5)
        z = module.sample_latents(4)
        results.append((z, torch.rand(3)))
    torch.manual_seed(5)
    untouched = torch.rand(3)
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[1][1], untouched) and not torch.equal(results[0][1], untouched)

    before = _load(FIXTURES / "BNL204" / "numpy_preview_helper.py")
    after = _load(SNAPSHOTS / "BNL204" / "numpy_preview_helper.py")
    results = []
    for module in (before, after):
        np.random.seed(5)
        random.seed(5)
        picks = module.preview_indices(100)
        results.append((list(picks), np.random.permutation(10).tolist(), random.random()))
    np.random.seed(5)
    random.seed(5)
    untouched = (np.random.permutation(10).tolist(), random.random())
    assert results[0][0] == results[1][0]
    assert results[1][1:] == untouched and results[0][1:] != untouched


def test_script_fix_safety_and_the_fixed_notebook_still_trains(fixed_tree):
    """Orders fixed before training are changed only with --unsafe-fixes; the reseeding
    helper fix is safe; the fixed notebook export runs."""
    proc = run_bnlint("check", "--format", "json", "--select", "BNL2",
                      *[f"fixtures/{p}" for p in ("BNL203/notebook_export_perm_once.py", "BNL203/subset_permuted_no_shuffle.py",
                                                  "BNL203/sampler_index_list.py", "BNL203/loader_never_shuffles.py",
                                                  "BNL204/latent_grid_helper.py", "BNL204/numpy_preview_helper.py")])
    safety = {f["path"].split("/", 1)[1]: f["fix"]["safety"] for f in json.loads(proc.stdout)}
    assert safety == {"BNL203/notebook_export_perm_once.py": "unsafe", "BNL203/subset_permuted_no_shuffle.py": "unsafe",
                      "BNL203/sampler_index_list.py": "unsafe", "BNL203/loader_never_shuffles.py": "safe",
                      "BNL204/latent_grid_helper.py": "safe", "BNL204/numpy_preview_helper.py": "safe"}, safety
    work = fixed_tree[0]
    run = subprocess.run([sys.executable, "BNL203/notebook_export_perm_once.py"], cwd=work, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.stdout.splitlines()) == 30
