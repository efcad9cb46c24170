"""``bnlint run`` and BNL206: the fixtures run as a user would run them, the script
behaves as under ``python SCRIPT ARGS``, the report formats and suppressions, the
watch's bookkeeping, the pure order comparison, and ``assert_reshuffles``."""
from __future__ import annotations

import json
import shutil
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bnlint.runtime.orders import (
    LoaderFacts, LoaderObservation, PassOrder, is_sequential, log10_chance_equal, order_may_vary,
    repeated_passes,
)
from conftest import FIXTURES, ROOT, run_bnlint

RUNTIME = FIXTURES / "BNL206"
CASES = sorted(RUNTIME.glob("*.py"))
BAD = "fixtures/BNL206/custom_sampler_constant_seed.py"  # BNL206 on line 43


def _expected(path: Path):
    return sorted(tuple(line.split()) for line in path.with_suffix(".expected").read_text().splitlines()
                  if line.strip() and not line.startswith("#"))


def _run_json(*args, cwd=None, tmp):
    out = Path(tmp) / "report.json"
    proc = run_bnlint("run", "--format", "json", "-o", str(out), *args, cwd=cwd)
    data = json.loads(out.read_text()) if out.exists() else None
    return proc, data


# ---------------------------------------------------------------- fixtures

@pytest.mark.parametrize("script", CASES, ids=lambda p: p.name)
def test_fixture_findings_match_expected(script, tmp_path):
    proc, data = _run_json(str(script.relative_to(ROOT)), tmp=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    expected = _expected(script)
    assert sorted((f["code"], str(f["line"])) for f in data) == expected
    assert proc.returncode == (1 if expected else 0), proc.stderr
    assert "epoch" in proc.stdout  # the script's own output, untouched
    for f in data:
        assert f["path"] == str(script.relative_to(ROOT))  # relative, as given
        assert f["severity"] == "error"  # every fixture trains a BatchNorm model
        assert f["fix"] is None and "Single Shuffle" in f["message"]


def test_every_bad_fixture_names_its_cause(tmp_path):
    hints = {
        "custom_sampler_constant_seed.py": "SeededShuffleSampler.__iter__",
        "distributed_sampler_no_set_epoch.py": "set_epoch(epoch)",
        "loader_rebuilt_seeded_generator.py": "a new loader is built for every pass",
        "iterable_dataset_fixed_seed.py": "ShardStream.__iter__",
        "reseed_in_helper_workers.py": "global random state is reset",
    }
    for name, hint in hints.items():
        _, data = _run_json(f"fixtures/BNL206/{name}", tmp=tmp_path)
        assert len(data) == 1 and hint in data[0]["message"], (name, data)


# ---------------------------------------------------------------- as python would

SCRIPT = '''\
import json, os, sys
import helper_module  # a sibling module: sys.path[0] is the script's folder
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__,
                  "file": __file__, "helper": helper_module.VALUE}))
'''


def test_script_sees_argv_path_and_main(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "train.py").write_text(SCRIPT)
    (folder / "helper_module.py").write_text("VALUE = 42\n")
    proc = run_bnlint("run", "proj/train.py", "--epochs", "3", "-x", "positional", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["argv"] == ["proj/train.py", "--epochs", "3", "-x", "positional"]
    assert seen["path0"] == str(folder.resolve()) and seen["name"] == "__main__"
    assert seen["file"] == str(folder / "train.py") and seen["helper"] == 42
    assert proc.stderr.strip() == "All checks passed!"  # the report goes to stderr


@pytest.mark.parametrize("body, status, says", [
    ("import sys\nsys.exit(3)\n", 3, None),
    ("import sys\nsys.exit('stopping: no data')\n", 1, "stopping: no data"),
    ("def main():\n    raise ValueError('boom')\n\nmain()\n", 1, "ValueError: boom"),
])
def test_exit_status_is_the_scripts(tmp_path, body, status, says):
    (tmp_path / "s.py").write_text(body)
    proc = run_bnlint("run", "s.py", cwd=tmp_path)
    assert proc.returncode == status, proc.stderr
    if says:
        assert says in proc.stderr
    if "raise" in body:  # Python's traceback, from the script's frame on
        assert proc.stderr.startswith("Traceback (most recent call last):")
        assert 's.py", line 4, in <module>' in proc.stderr
        assert "runpy" not in proc.stderr and "bnlint" not in proc.stderr.split("All checks")[0]


def test_failing_script_keeps_its_status_and_still_reports(tmp_path):
    source = (ROOT / BAD).read_text().replace('if __name__ == "__main__":\n    main()',
                                              'if __name__ == "__main__":\n    main()\n    raise SystemExit(4)')
    (tmp_path / "train.py").write_text(source)
    proc = run_bnlint("run", "train.py", cwd=tmp_path)
    assert proc.returncode == 4
    assert "train.py:43:20: BNL206 " in proc.stderr


def test_usage_errors_are_one_line(tmp_path):
    proc = run_bnlint("run", "missing.py", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == "bnlint: error: cannot run missing.py: no such file\n"
    proc = run_bnlint("run", "--select", "BNL999", BAD)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "BNL999" in proc.stderr
    proc = run_bnlint("run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- report

def test_text_report_and_formats(tmp_path):
    proc = run_bnlint("run", BAD)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"{BAD}:43:20: BNL206 training DataLoader(SeededShuffleSampler) drew the same "
                               f"order in passes 1, 2 and 3")
    assert lines[-1] == "Found 1 problem."
    sarif = tmp_path / "r.sarif"
    assert run_bnlint("run", "--format", "sarif", "-o", sarif, BAD).returncode == 1
    result = json.loads(sarif.read_text())["runs"][0]["results"][0]
    assert result["ruleId"] == "BNL206"
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 43
    github = run_bnlint("run", "--format", "github", BAD)
    assert github.stderr.startswith(f"::error file={BAD},line=43,col=20,title=BNL206 (order-repeated-at-runtime)::")
    junit = tmp_path / "r.xml"
    run_bnlint("run", "--format", "junit", "-o", junit, BAD)
    assert ET.parse(junit).getroot().get("failures") == "1"


def test_suppression_selection_and_exit_zero(tmp_path):
    lines = (ROOT / BAD).read_text().splitlines()
    lines[42] += "  # noqa: BNL206"
    (tmp_path / "train.py").write_text("\n".join(lines) + "\n")
    proc = run_bnlint("run", "train.py", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr.strip() == "All checks passed!", proc.stderr
    assert run_bnlint("run", "--ignore", "BNL2", BAD).returncode == 0
    proc = run_bnlint("run", "--exit-zero", BAD)
    assert proc.returncode == 0 and "BNL206" in proc.stderr
    (tmp_path / "pyproject.toml").write_text('[tool.bnlint]\nper-file-ignores = { "trai*.py" = ["BNL206"] }\n')
    shutil.copy(ROOT / BAD, tmp_path / "train.py")
    assert run_bnlint("run", "train.py", cwd=tmp_path).returncode == 0


def test_warning_without_batchnorm_and_options_after_the_script(tmp_path):
    source = (ROOT / BAD).read_text().replace("nn.BatchNorm1d(64)", "nn.LayerNorm(64)")
    (tmp_path / "train.py").write_text(source)
    out = tmp_path / "r.json"
    # --format after the script belongs to the script (argparse rejects it: status 2).
    proc = run_bnlint("run", "train.py", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 2 and "unrecognized arguments: --format json" in proc.stderr
    proc = run_bnlint("run", "--format", "json", "-o", out, "train.py", "--epochs", "2", cwd=tmp_path)
    data = json.loads(out.read_text())
    assert proc.returncode == 1 and [(f["severity"], f["line"]) for f in data] == [("warning", 43)]
    assert "passes 1 and 2" in data[0]["message"]


# ---------------------------------------------------------------- the watch, in process

def test_watch_counts_passes_and_tells_training_by_use():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from bnlint.runtime.watch import Watch

    data = TensorDataset(torch.randn(40, 3), torch.randn(40, 1))
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Watch() as watch:
        train = DataLoader(data, batch_size=8, shuffle=True, num_workers=1, persistent_workers=True)
        named_train_but_eval = DataLoader(data, batch_size=8, shuffle=True)
        for _ in range(3):
            for (x, y), _unused in zip(train, range(100)):
                loss = ((model(x) - y) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                for x, _y in named_train_but_eval:
                    model(x)
    observations = {o.facts.line: o for o in watch.record().loaders}
    assert len(observations) == 2
    first, second = (observations[line] for line in sorted(observations))
    assert [p.number for p in first.passes] == [1, 2, 3]  # one pass per epoch, not per reset
    assert all(p.training and len(p.order) == 40 and sorted(p.order) == list(range(40)) for p in first.passes)
    assert not any(p.training for p in second.passes)
    assert watch.record().steps == 2 * 15  # backward + optimizer step
    assert torch.utils.data.DataLoader.__init__.__module__ == "torch.utils.data.dataloader"  # restored


def test_watch_keeps_only_the_first_indices():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from bnlint.runtime.watch import Watch

    with Watch(limit=50) as watch:
        loader = DataLoader(TensorDataset(torch.zeros(200, 1)), batch_size=16, shuffle=True)
        batches = sum(1 for _ in loader)
    (obs,) = watch.observations()
    assert batches == 13 and len(obs.passes[0].order) == 50 and obs.passes[0].truncated


# ---------------------------------------------------------------- pure comparison

def _obs(orders, sampler="RandomSampler", training=True, **facts):
    return LoaderObservation(LoaderFacts("t.py", 3, sampler=sampler, **facts),
                             tuple(PassOrder(1, i + 1, tuple(o), training) for i, o in enumerate(orders)))


def test_equal_orders_count_only_when_chance_is_negligible():
    assert repeated_passes(_obs([[2, 0, 1], [2, 0, 1]])) is None  # 1 in 6: chance
    many = repeated_passes(_obs([[2, 0, 1, 3]] * 6))  # (1/24)^5 < 1e-6
    assert many is not None and len(many.repeats) == 5 and many.compared == 4
    order = list(range(100))[::-1]
    found = repeated_passes(_obs([order, list(range(100)), order]))
    assert found is not None and (found.first.number, [p.number for p in found.repeats]) == (1, [3])
    assert repeated_passes(_obs([order, order], training=False)) is None  # evaluation passes
    # An early break: the shorter pass is compared on its prefix.
    assert repeated_passes(_obs([order, order[:40]])).compared == 40
    assert round(log10_chance_equal(3, 3, False), 3) == round(-__import__("math").log10(6), 3)
    assert log10_chance_equal(4, 10, True) == -4.0


def test_which_orders_may_vary():
    assert not order_may_vary(LoaderFacts("t.py", 1, sampler="SequentialSampler", batch_sampler="BatchSampler"))
    assert order_may_vary(LoaderFacts("t.py", 1, sampler="DistributedSampler", shuffle=True))
    assert not order_may_vary(LoaderFacts("t.py", 1, sampler="DistributedSampler", shuffle=False))
    own = LoaderFacts("t.py", 1, sampler="SequentialSampler", batch_sampler="BucketSampler", batch_sampler_own=True)
    assert order_may_vary(own, [PassOrder(1, 1, (4, 1, 3))])
    assert not order_may_vary(own, [PassOrder(1, 1, (0, 1, 2, 3))])  # a hand-written sequential sampler
    assert not order_may_vary(LoaderFacts("t.py", 1, iterable=True))
    assert order_may_vary(LoaderFacts("t.py", 1, iterable=True, dataset_may_shuffle=True))
    assert is_sequential((5, 6, 7)) and not is_sequential(("a", "b"))


# ---------------------------------------------------------------- assert_reshuffles

def test_assert_reshuffles_passes_and_fails_with_the_cause():
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from bnlint.testing import assert_reshuffles

    data = TensorDataset(torch.arange(200.0))
    assert_reshuffles(DataLoader(data, batch_size=10, shuffle=True), epochs=3)
    tiny = TensorDataset(torch.arange(3.0))
    for _ in range(20):  # three samples agree by chance one time in six: never flaky
        assert_reshuffles(DataLoader(tiny, batch_size=2, shuffle=True))
    with pytest.raises(AssertionError, match=r"DataLoader\(SequentialSampler\) drew the same order in passes "
                                             r"1 and 2 .*shuffle=False"):
        assert_reshuffles(DataLoader(data, batch_size=10))
    sampler = DistributedSampler(data, num_replicas=2, rank=0)
    with pytest.raises(AssertionError, match=r"set_epoch.*before_epoch=loader\.sampler\.set_epoch"):
        assert_reshuffles(DataLoader(data, batch_size=10, sampler=sampler))
    assert_reshuffles(DataLoader(data, batch_size=10, sampler=sampler), before_epoch=sampler.set_epoch)
    generator = torch.Generator()
    with pytest.raises(AssertionError, match=r"passes 1, 2, .* and \d+ \(first 3 indices identical\).*generator"):
        assert_reshuffles(DataLoader(tiny, batch_size=2, shuffle=True, generator=generator),
                          before_epoch=lambda epoch: generator.manual_seed(0))
    with pytest.raises(ValueError, match="epochs must be an integer >= 2"):
        assert_reshuffles(DataLoader(data), epochs=1)
    with pytest.raises(AssertionError, match="not a torch DataLoader"):
        assert_reshuffles([1, 2, 3])
