"""Fix robustness (issue #7): killing ``bnlint fix`` never leaves a partial file, a
read-only file gives a clear error, a file that changes while it is being fixed is
not overwritten, and whitespace details survive the rewrite.

CRLF, BOM and file mode are covered by test_fix.py; not repeated here.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from bnlint.config import Config
from bnlint.registry import select_rules
from conftest import FIXTURES, ROOT, run_bnlint

SCRIPT = FIXTURES / "BNL202" / "uda_cycle.py"
COPIES = 3
KILLS = 16


@pytest.fixture(scope="module")
def fixed_bytes(tmp_path_factory):
    """What ``bnlint fix`` writes for the fixture script."""
    folder = tmp_path_factory.mktemp("reference")
    shutil.copy(SCRIPT, folder / "train.py")
    proc = run_bnlint("fix", "train.py", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = (folder / "train.py").read_bytes()
    assert data != SCRIPT.read_bytes()
    return data


def _wait_for_a_write(paths, old, limit):
    """Until one of the files no longer holds ``old`` (a fix was written)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for p in paths:
            try:
                if p.read_bytes() != old:
                    return
            except OSError:  # between unlink and rename on some systems
                pass
        time.sleep(0.001)


def test_killing_fix_never_leaves_a_partial_file(tmp_path, fixed_bytes):
    old = SCRIPT.read_bytes()
    rng = random.Random(7)
    files = [tmp_path / f"train_{i}.py" for i in range(COPIES)]
    cmd = [sys.executable, "-m", "bnlint", "fix", "."]
    for f in files:
        f.write_bytes(old)
    started = time.monotonic()
    subprocess.run(cmd, cwd=tmp_path, capture_output=True, check=False)
    duration = time.monotonic() - started
    assert all(f.read_bytes() == fixed_bytes for f in files)
    outcomes = []
    for attempt in range(KILLS):
        for f in files:
            f.write_bytes(old)
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        if attempt % 2:  # right after the first file is replaced: the others are being written
            _wait_for_a_write(files, old, 3 * duration + 10)
        else:  # anywhere: start-up, analysis, checking the fixes
            time.sleep(rng.uniform(0.2, 1.0) * duration)
        sig = signal.SIGTERM if attempt % 5 == 4 else signal.SIGKILL
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait()
        states = []
        for f in files:
            data = f.read_bytes()
            assert data in (old, fixed_bytes), f"attempt {attempt}: {f.name} is neither version"
            states.append(data == fixed_bytes)
        outcomes.append(sum(states))
    # Kills landed before any write and after some.
    assert min(outcomes) == 0 and max(outcomes) > 0, outcomes
    # Stray temporary files of killed runs are hidden names or sibling checks, never the file.
    for name in os.listdir(tmp_path):
        if not name.startswith("train_"):
            assert name.startswith((".bnlint-", "_bnlint_fix_")), name
    # ... and a later run neither reports nor trips over them.
    proc = run_bnlint("check", ".", cwd=tmp_path)
    assert "_bnlint_fix_" not in proc.stdout + proc.stderr and proc.returncode in (0, 1), proc.stdout


def test_read_only_file_gives_a_clear_error(tmp_path):
    target = tmp_path / "train.py"
    shutil.copy(SCRIPT, target)
    target.chmod(0o444)
    before = target.read_bytes()
    proc = run_bnlint("fix", "train.py", cwd=tmp_path)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "read-only" in proc.stdout + proc.stderr
    assert target.read_bytes() == before
    assert proc.returncode == 1  # the problem is still there
    assert oct(target.stat().st_mode & 0o777) == oct(0o444)


def _fix_in_process(path, monkeypatch, tweak_after_check=None, tweak_during_verify=None):
    import bnlint.engine as engine
    import bnlint.fix.runner as runner

    if tweak_after_check is not None:
        real_check = engine.check_paths

        def check_then_edit(*args, **kwargs):
            out = real_check(*args, **kwargs)
            tweak_after_check()
            return out

        monkeypatch.setattr(engine, "check_paths", check_then_edit)
    if tweak_during_verify is not None:
        real_verify = runner._verify

        def verify_while_editing(*args, **kwargs):
            tweak_during_verify()
            return real_verify(*args, **kwargs)

        monkeypatch.setattr(runner, "_verify", verify_while_editing)
    monkeypatch.chdir(path.parent)
    rules = select_rules(["BNL2"], [], [])
    return runner.fix_paths([path.name], Config(), rules)


def test_file_edited_during_the_fix_is_not_overwritten(tmp_path, monkeypatch):
    target = tmp_path / "train.py"
    shutil.copy(SCRIPT, target)
    edited = SCRIPT.read_bytes() + b"\n# saved by the editor while bnlint was checking\n"
    run = _fix_in_process(target, monkeypatch, tweak_during_verify=lambda: target.write_bytes(edited))
    assert target.read_bytes() == edited
    [outcome] = run.files
    assert outcome.rejected and "changed" in outcome.rejected and run.fixed == 0


def test_file_edited_between_check_and_fix_is_not_overwritten(tmp_path, monkeypatch):
    target = tmp_path / "train.py"
    shutil.copy(SCRIPT, target)
    # The findings' positions refer to the old text: a new first line shifts them all.
    edited = b"# a new first line\n" + SCRIPT.read_bytes()
    run = _fix_in_process(target, monkeypatch, tweak_after_check=lambda: target.write_bytes(edited))
    assert target.read_bytes() == edited
    [outcome] = run.files
    assert outcome.rejected and "changed" in outcome.rejected and run.fixed == 0


def test_tabs_trailing_whitespace_and_encoding_declaration_survive(tmp_path, fixed_bytes):
    text = SCRIPT.read_text()
    lines = text.split("\n")
    # An encoding declaration, a tab-indented helper, trailing spaces on untouched lines.
    header = "# -*- coding: latin-1 -*-\n# d\xe9j\xe0 vu: a latin-1 comment   \n"
    helper = "\n\ndef _helper(x):\n\tif x:\n\t\treturn x   \n\treturn None\t\n"
    body = "\n".join(line + "  " if line.startswith("import ") else line for line in lines)
    source = header + body + helper
    target = tmp_path / "train.py"
    target.write_bytes(source.encode("latin-1"))
    proc = run_bnlint("fix", "train.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = target.read_bytes()
    assert after != source.encode("latin-1")
    decoded = after.decode("latin-1")
    assert decoded.startswith(header)
    assert decoded.endswith(helper)
    for line in body.split("\n"):
        if line.startswith("import ") and "cycle" not in line:
            assert line + "\n" in decoded  # trailing spaces kept
    assert b"\r\n" not in after


SIGNAL_FILES = [FIXTURES / "BNL102" / "googlenet_head.py", FIXTURES / "BNL102" / "resnet_avgpool7.py", SCRIPT]
SIGNALS = 6


def _leftovers(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith(("_bnlint_fix_", ".bnlint-")))


def _signal_when_a_check_file_exists(folder, limit):
    """Until ``bnlint fix`` has written a fixed source to check (``_bnlint_fix_*``)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(n.startswith("_bnlint_fix_") for n in os.listdir(folder)):
            return True
        time.sleep(0.002)
    return False


def _wait_for_any_write(folder, old, limit):
    """Until one of the files no longer holds its old bytes."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for name, data in old.items():
            try:
                if (folder / name).read_bytes() != data:
                    return
            except OSError:
                pass
        time.sleep(0.001)


def test_signals_during_fix_remove_its_temporary_files(tmp_path):
    """SIGTERM (to the process or its group), SIGHUP and SIGINT while ``bnlint fix``
    checks model fixes from ``_bnlint_fix_*`` files and writes: no temporary file is
    left next to the sources, and every file is old or new, byte for byte."""
    old = {p.name: p.read_bytes() for p in SIGNAL_FILES}
    reference = tmp_path / "reference"
    reference.mkdir()
    for name, data in old.items():
        (reference / name).write_bytes(data)
    cmd = [sys.executable, "-m", "bnlint", "fix", "."]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=reference, capture_output=True, text=True, check=False)
    duration = time.monotonic() - started
    assert "Fixed 3 problems (0 remaining)" in proc.stdout, proc.stdout + proc.stderr
    new = {name: (reference / name).read_bytes() for name in old}
    assert all(new[name] != old[name] for name in old)

    work = tmp_path / "work"
    work.mkdir()
    rng = random.Random(11)
    caught_a_check_file = False
    states = []
    for attempt in range(SIGNALS):
        for name, data in old.items():
            (work / name).write_bytes(data)
        proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        sig, group = [(signal.SIGTERM, False), (signal.SIGTERM, True), (signal.SIGHUP, False),
                      (signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGTERM, True)][attempt]
        if attempt % 3 == 0:  # while a fixed model is being checked from its temporary file
            caught_a_check_file |= _signal_when_a_check_file_exists(work, 3 * duration + 10)
        elif attempt % 3 == 1:  # right after the first file is replaced: the others are being written
            _wait_for_any_write(work, old, 3 * duration + 10)
        else:  # anywhere
            time.sleep(rng.uniform(0.3, 0.9) * duration)
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err.decode(), err.decode()
        assert _leftovers(work) == [], f"attempt {attempt} ({sig.name}): {_leftovers(work)}"
        for name in old:
            data = (work / name).read_bytes()
            assert data in (old[name], new[name]), f"attempt {attempt}: {name} is neither version"
        states.append(sum((work / name).read_bytes() == new[name] for name in old))
    assert caught_a_check_file, "no signal landed while a fix was being checked"
    assert min(states) < len(old) and max(states) > 0, states  # signals landed before and after writes


ROUNDS_MODELS = '''\
import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.drop = nn.Dropout(0.2)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        x = self.conv(x)
        x = self.drop(x)
        return self.bn(x)


class BlockThenConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block()
        self.head = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


class BlockThenNorm(BlockThenConv):
    """The same block, then a BN: the fix planned for the first model (the dropout
    behind the block's BN) leaves this model's finding: no fix for it this way."""

    def __init__(self):
        super().__init__()
        self.head = nn.BatchNorm2d(8)


class TwoBranches(nn.Module):
    """Both branch dropouts move to after the BN: the same place, so two rounds."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.drop1 = nn.Dropout(0.1)
        self.drop2 = nn.Dropout(0.3)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        a = self.drop1(self.conv1(x))
        b = self.drop2(self.conv2(x))
        x = torch.cat([a, b], 1)
        return self.bn(x)
'''


def test_one_run_applies_overlapping_fixes_and_checks_every_model_of_a_shared_block(tmp_path):
    """Fixes that overlap are applied in further rounds of the same run, and the fix of
    a block that two models share must clear the finding in both: behind the block's
    BN it would leave BlockThenNorm's finding, so the dropout moves before the conv
    whose output it dropped (Kim et al.) and both models are clean."""
    target = tmp_path / "models.py"
    target.write_text(ROUNDS_MODELS)
    proc = run_bnlint("fix", "models.py", cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout
    assert "fix rejected" not in out and "not fixed in this run" not in out, out
    assert "models.py:14:13: BNL101 fixed: move Dropout(p=0.2) 'block.drop' before Conv2d 'block.conv'" in out, out
    assert "Fixed 3 problems (0 remaining)" in out, out
    text = target.read_text()
    assert "x = self.conv(self.drop(x))" in text, text  # before the conv, not behind the BN
    assert "self.drop1(" in text and "self.drop2(" in text and "a = self.conv1(x)" in text, text
    assert "return self.drop" in text, text  # TwoBranches: both dropouts after its BN
    check = run_bnlint("check", "--no-cache", "--select", "BNL101,BNL102", "models.py", cwd=tmp_path)
    assert check.returncode == 0 and "All checks passed!" in check.stdout, check.stdout
    again = run_bnlint("fix", "models.py", cwd=tmp_path)
    assert target.read_text() == text, again.stdout
    assert sorted(os.listdir(tmp_path)) == ["models.py"]
