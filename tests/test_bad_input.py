"""Bad input (issue #7): every file bnlint cannot analyse gives one clear line
(BNL001, or a usage error for the command line itself), the documented exit code,
no traceback, and the other files of the run are still analysed.

Cases already covered by test_analysis_failures.py (syntax error, missing package,
constructor/forward raising, timeout, sys.exit, segfault, non-UTF-8, binary, empty
file) are not repeated here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import FIXTURES, ROOT, run_bnlint

BAD = FIXTURES / "bad_input"
SCRIPT = (FIXTURES / "BNL202" / "uda_cycle.py").read_text()


def _check(*args, cwd=None, env=None, timeout=300):
    proc = subprocess.run(
        [sys.executable, "-m", "bnlint", "check", "--format", "json", *map(str, args)],
        cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, **(env or {})),
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _by_name(data):
    out = {}
    for f in data:
        out.setdefault(os.path.basename(f["path"]), []).append(f)
    return out


def _one_error(findings):
    errors = [f for f in findings if f["severity"] == "error"]
    assert len(errors) == 1, errors
    assert errors[0]["code"] == "BNL001"
    assert "\n" not in errors[0]["message"]
    return errors[0]["message"]


@pytest.fixture(scope="module")
def corpus_run():
    """One run over the whole committed corpus plus a healthy file (one worker each,
    in parallel), under a 2 GiB memory limit for the workers."""
    return _check("--timeout", "30", "fixtures/bad_input", env={"BNLINT_MEMORY_LIMIT": "2G"})


def test_corpus_exit_code(corpus_run):
    rc, data, _ = corpus_run
    assert rc == 1  # files that could not be analysed are BNL001 problems (os._exit, import error)
    assert sorted(_by_name(data)) == sorted(p.name for p in BAD.glob("*.py"))


def test_utf8_bom_file_is_analysed_normally(corpus_run):
    # Also the healthy file of the run: the failures beside it do not stop it.
    _, data, _ = corpus_run
    found = _by_name(data)["bom_model.py"]
    assert [(f["code"], f["line"]) for f in found] == [("BNL101", 13)]


def test_module_raising_at_import(corpus_run):
    msg = _one_error(_by_name(corpus_run[1])["raises_at_import.py"])
    assert "raised RuntimeError: set DATA_ROOT" in msg and "exclude" in msg


def test_os_exit_at_import(corpus_run):
    msg = _one_error(_by_name(corpus_run[1])["os_exit_at_import.py"])
    assert "exited with status 3" in msg and "importing" in msg


def test_deep_recursion_in_constructor(corpus_run):
    msg = _one_error(_by_name(corpus_run[1])["deep_recursion.py"])
    assert "Tower" in msg and "RecursionError" in msg


def test_huge_allocation_hits_the_memory_limit(corpus_run):
    msg = _one_error(_by_name(corpus_run[1])["huge_allocation.py"])
    assert "Cache" in msg and "MemoryError" in msg and "BNLINT_MEMORY_LIMIT" in msg


def test_memory_limit_setting():
    from bnlint.model.worker import memory_limit

    env = os.environ.copy()
    try:
        os.environ["BNLINT_MEMORY_LIMIT"] = "1.5G"
        assert memory_limit() == int(1.5 * 2**30)
        os.environ["BNLINT_MEMORY_LIMIT"] = "0"
        assert memory_limit() is None
        del os.environ["BNLINT_MEMORY_LIMIT"]
        assert memory_limit() >= 16 * 2**30
    finally:
        os.environ.clear()
        os.environ.update(env)


def test_five_megabyte_file(tmp_path):
    # An embedded asset, as code generators write them: long string lines.
    chunk = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 28
    lines = ['"""Generated: do not edit."""', "WEIGHTS_B64 = ("]
    lines += [f'    "{chunk}{i:08d}"' for i in range(5400)]
    lines += [")", "", "", "def weights():", "    return WEIGHTS_B64"]
    big = tmp_path / "generated_weights.py"
    big.write_text("\n".join(lines) + "\n")
    assert big.stat().st_size > 5 * 2**20
    (tmp_path / "train.py").write_text(SCRIPT)
    started = time.monotonic()
    rc, data, _ = _check(".", cwd=tmp_path)
    assert time.monotonic() - started < 45
    by = _by_name(data)
    assert "generated_weights.py" not in by  # analysed, nothing to report
    assert {f["code"] for f in by["train.py"]} == {"BNL202"}
    assert rc == 1


def test_symlink_loop_in_a_folder(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "train.py").write_text(SCRIPT)
    os.symlink("..", tmp_path / "pkg" / "up")  # a folder loop
    os.symlink("self.py", tmp_path / "pkg" / "self.py")  # a file that points at itself
    rc, data, _ = _check(".", cwd=tmp_path, timeout=60)
    by = _by_name(data)
    assert "symbolic links" in _one_error(by["self.py"])
    assert {f["code"] for f in by["train.py"]} == {"BNL202"}
    assert rc == 1  # found in a folder: a BNL001 problem, not a usage error
    assert len([f for f in data if f["path"].endswith("train.py")]) == len(by["train.py"])  # no duplicates


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    locked = tmp_path / "locked.py"
    locked.write_text("x = 1\n")
    locked.chmod(0)
    (tmp_path / "train.py").write_text(SCRIPT)
    try:
        rc, data, _ = _check(".", cwd=tmp_path)
    finally:
        locked.chmod(0o644)
    by = _by_name(data)
    assert "permission denied" in _one_error(by["locked.py"])
    assert {f["code"] for f in by["train.py"]} == {"BNL202"}
    assert rc == 1  # found in a folder: a BNL001 problem, not a usage error


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_named_pipe_in_a_folder_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.py")  # opening it would wait for a writer forever
    (tmp_path / "train.py").write_text(SCRIPT)
    rc, data, _ = _check(".", cwd=tmp_path, timeout=60)
    by = _by_name(data)
    assert "not a regular file" in _one_error(by["pipe.py"])
    assert {f["code"] for f in by["train.py"]} == {"BNL202"}
    assert rc == 1  # found in a folder: a BNL001 problem, not a usage error


def test_path_that_does_not_exist(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    proc = run_bnlint("check", "train.py", "no/such/file.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "no/such/file.py" in lines[0] and "no such file" in lines[0]


def test_folder_with_thousands_of_files(tmp_path):
    for i in range(3000):
        folder = tmp_path / f"pkg{i // 300}"
        folder.mkdir(exist_ok=True)
        (folder / f"mod_{i}.py").write_text(f'"""Module {i}."""\nVALUE = {i}\n\n\ndef get():\n    return VALUE\n')
    (tmp_path / "pkg0" / "train.py").write_text(SCRIPT)
    started = time.monotonic()
    rc, data, _ = _check(".", cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert {f["code"] for f in data} == {"BNL202"}
    assert rc == 1
    assert elapsed < 40, f"3000 small files took {elapsed:.1f} s"
