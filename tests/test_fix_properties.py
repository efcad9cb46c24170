"""Property test for fixes (issues #7, #15): random architectures from the grammar of
tests/test_properties.py, written as a real model file, are fixed by
``bnlint fix --unsafe-fixes`` (the in-process entry point
``bnlint.fix.runner.fix_paths``, which runs the same workers as the CLI). Every
applied fix

(a) keeps the eval-mode outputs: the fixed model, given the original model's
    state_dict (randomised weights and BN statistics), computes the same function;
(b) keeps the state_dict keys identical when it is safe; an unsafe fix (a reordered
    nn.Sequential, however its children are written) renames exactly the keys its
    promised renames say, for that model;
(c) removes its finding;
(d) adds no new finding (a BNL103 warning for a moved dropout is allowed: the fixer
    says so in a note);
(e) is idempotent: a second ``fix`` changes nothing and fixes nothing;
and the fixed model still runs in train mode without a warning.

Architectures come in five spellings: an ``nn.Sequential`` literal, forward code
(``self.x = ...`` / ``x = self.x(x)``), a ModuleList loop, and ``layers.append(...)``
statements (straight-line, or in a loop that builds the blocks twice; dropouts under
``if p > 0:``) gathered in an nn.Sequential. Blocks include DenseNet layers whose
dropout feeds every later layer's BN through the concatenation (moved before the conv). Each ``fix`` run costs
worker processes, so one hypothesis example is a file of 10 to 20 models.
Profiles: 19 files by default (at least 200 architectures, the issue's floor for the
CI profile; 5 files took about 65 s on 2 cores); ``pytest --slow`` (or
BNLINT_PROPERTIES=slow) 60 files, BNLINT_PROPERTIES=quick 2.
"""
from __future__ import annotations

import re
import warnings
from collections import Counter

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from test_properties import (  # noqa: E402
    ARCH, INPUT_SHAPE, PROFILE, file_source, import_file, oracle, unique_rates,
)

FILES = {"quick": 2, "slow": 60}.get(PROFILE, 19)
PER_FILE = (20, 30)  # drawn; the models without a finding but one are left out
_RATE = re.compile(r"\(p=([0-9.]+)\)")


def _key(finding):
    """(code, model, dropout rate): rates are unique within a model (unique_rates)."""
    m = _RATE.search(finding.message)
    return finding.code, dict(finding.details).get("model"), m.group(1) if m else None


def _problems(findings):
    return Counter(_key(f) for f in findings if f.severity.value != "info")


def _randomise(model):
    """Weights and BN statistics far from their initial values, so that BN in eval
    mode is not the identity and a misplaced edit shows in the outputs."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen))


def _has_finding(arch):
    """Whether the oracle of test_properties flags a dropout (built in memory)."""
    namespace = {}
    exec(compile(file_source([arch]), "<arch>", "exec"), namespace)
    bnl101, bnl102 = oracle(namespace["Net0"]().train(), unique=arch[2] != "append_loop")
    return bool(bnl101 or bnl102)


def _check_models(before_path, after_path, count, renames):
    from bnlint.fix.equivalence import rename_key

    before, after = import_file(before_path), import_file(after_path)
    x = torch.randn(*INPUT_SHAPE, generator=torch.Generator().manual_seed(2))
    for i in range(count):
        torch.manual_seed(0)
        old = getattr(before, f"Net{i}")()
        new = getattr(after, f"Net{i}")()
        _randomise(old)
        state = dict(old.state_dict())
        for promised in renames.get(f"Net{i}", ()):  # fix by fix, as the rounds applied them
            state = {rename_key(k, promised): v for k, v in state.items()}
        assert list(new.state_dict()) == list(state), f"Net{i}: state_dict keys changed"  # (b)
        assert len(state) == len(old.state_dict()), f"Net{i}: two keys renamed to one"
        new.load_state_dict(state)
        old.eval()
        new.eval()
        with torch.no_grad():
            want, got = old(x), new(x)
        assert torch.allclose(want, got, rtol=1e-5, atol=1e-6), f"Net{i}: eval outputs changed"  # (a)
        with warnings.catch_warnings():  # and it still trains: e.g. no Dropout2d moved onto pooled features
            warnings.simplefilter("error")
            new.train()(x)


def test_safe_fixes_keep_the_model(tmp_path):
    from bnlint.config import Config
    from bnlint.findings import FixSafety
    from bnlint.fix.runner import fix_paths
    from bnlint.registry import select_rules

    rules = select_rules(None, [], [])
    stats = Counter()

    @settings(max_examples=FILES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(ARCH, min_size=PER_FILE[0], max_size=PER_FILE[1]))
    def fixes_keep_the_model(batch):
        # Models the oracle flags (what a fix can change), and one it does not.
        archs, kept_clean = [], False
        for arch in map(unique_rates, batch):
            if _has_finding(arch):
                archs.append(arch)
            elif not kept_clean:
                archs.append(arch)
                kept_clean = True
        folder = tmp_path / f"file{stats['files']}"
        folder.mkdir()
        stats["files"] += 1
        path = folder / "models.py"
        source = file_source(archs)
        path.write_text(source)
        (folder / "before.txt").write_text(source)
        run = fix_paths([str(path)], Config(), rules, unsafe=True)
        assert not run.fatal, [f.message for f in run.findings if f.code == "BNL001"]
        for outcome in run.files:
            assert outcome.rejected is None, outcome.rejected
            assert not outcome.skipped, "fixes left for a second run"
        applied = [f for o in run.files for f in o.applied]
        renames = {}
        for f in applied:
            promised = dict(f.fix.data).get("renames", ())
            # Only a reorder that renumbers children is unsafe, and it says which keys.
            assert (f.fix.safety is FixSafety.UNSAFE) == bool(promised), f.fix.description
            renames.setdefault(dict(f.details)["model"], []).append(promised)
        fixed = path.read_text()
        assert (fixed != source) == bool(applied)

        again = fix_paths([str(path)], Config(), rules, unsafe=True)  # (e), and the findings after the fix
        assert path.read_text() == fixed, "a second 'bnlint fix' changed the file"
        assert again.fixed == 0 and not again.fatal
        before, after = _problems(run.findings), _problems(again.findings)
        done = Counter(_key(f) for f in applied)
        for key in done:
            assert key not in after, f"{key} is still reported after its fix"  # (c)
        moved = {(model, p) for _code, model, p in done}
        for key, n in after.items():
            if n > before.get(key, 0) - done.get(key, 0):  # (d)
                assert key[0] == "BNL103" and key[1:] in moved, f"the fixes introduced {key}"
                assert any("BNL103 warning remains" in note for o in run.files for note in o.notes)

        before_copy = folder / "before_models.py"
        before_copy.write_text(source)
        _check_models(before_copy, path, len(archs), renames)  # (a), (b)

        stats["architectures"] += len(archs)
        stats["applied"] += len(applied)
        for f in applied:
            stats[f.code] += 1
            spelling = archs[int(dict(f.details)["model"][3:])][2]
            stats[spelling] += 1
            stats[f.fix.safety.value] += 1
            stats["before-weight"] += "the weight layer whose output it dropped" in f.fix.description

    fixes_keep_the_model()
    # The property was not vacuous: fixes of both rules, in both spellings.
    assert stats["architectures"] >= FILES * 5
    if PROFILE not in ("quick",):  # the floor for the CI profile
        assert stats["architectures"] >= 200, stats
    assert stats["BNL101"] and stats["BNL102"], stats
    assert stats["code"] and stats["sequential"], stats
    if PROFILE != "quick":
        assert stats["unsafe"] and stats["before-weight"], stats
        assert stats["appends"] and stats["append_loop"], stats
