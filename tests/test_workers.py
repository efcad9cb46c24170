"""Worker processes (issue #8): a fork server per worker thread imports torch once and
forks an isolated child per file; ``-j``; the stat-keyed file index of the cache; and
imports the way Python and pytest resolve them (packages first, the project root)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import run_bnlint

from bnlint.model import forkserver
from bnlint.config import Config
from bnlint.engine import check_paths
from bnlint.registry import select_rules

NET = textwrap.dedent("""
    import os

    import torch.nn as nn


    class {name}(nn.Module):
        def __init__(self):
            super().__init__()
            with open(os.path.join(os.path.dirname(__file__), "PIDS.log"), "a") as fh:
                fh.write(f"{{os.getpid()}} {{os.getppid()}}\\n")
            self.fc = nn.Linear(8, 8)
            self.drop = nn.Dropout(0.2)
            self.bn = nn.BatchNorm1d(8)

        def forward(self, x):
            return self.bn(self.drop(self.fc(x)))
""")

needs_fork = pytest.mark.skipif(not forkserver.available(), reason="the fork server needs Linux")


def _codes(result):
    return sorted((f.code, os.path.basename(f.path), f.line) for f in result.findings if f.severity.value != "info")


@needs_fork
def test_one_server_imports_torch_and_each_file_gets_its_own_child(tmp_path):
    for i in range(3):
        (tmp_path / f"net{i}.py").write_text(NET.format(name=f"Net{i}"))
    forkserver.POOL.close_all()
    started = forkserver.POOL.started
    result = check_paths([str(tmp_path)], Config(timeout=60.0), select_rules(["BNL1"]), jobs=1)
    assert _codes(result) == [("BNL101", f"net{i}.py", 17) for i in range(3)]
    assert forkserver.POOL.started - started == 1  # torch imported once for three files
    rows = [line.split() for line in (tmp_path / "PIDS.log").read_text().splitlines()]
    pids, parents = {r[0] for r in rows}, {r[1] for r in rows}
    assert len(pids) == 3 and len(parents) == 1  # three children of one server
    assert os.getpid() not in {int(p) for p in pids}  # user code never ran in this process


@needs_fork
def test_what_one_file_does_to_torch_does_not_reach_the_next(tmp_path):
    # A class body runs when its file is imported: this one breaks nn.BatchNorm1d for
    # the rest of its process. The next file, from the same server, must not notice.
    (tmp_path / "a_vandal.py").write_text(textwrap.dedent("""
        import torch.nn as nn


        class Vandal(nn.Module):
            nn.BatchNorm1d = None

            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)

            def forward(self, x):
                return self.fc(x)
    """))
    (tmp_path / "b_net.py").write_text(NET.format(name="Net"))
    result = check_paths([str(tmp_path)], Config(timeout=60.0), select_rules(["BNL1"]), jobs=1)
    assert _codes(result) == [("BNL101", "b_net.py", 17)]


@needs_fork
def test_server_and_spawned_workers_agree_on_failures(tmp_path):
    (tmp_path / "crash.py").write_text(textwrap.dedent("""
        import ctypes
        import torch.nn as nn


        class Crash(nn.Module):
            def __init__(self):
                super().__init__()
                ctypes.string_at(0)

            def forward(self, x):
                return x
    """))
    (tmp_path / "net.py").write_text(NET.format(name="Net"))
    outputs = []
    for mode in ("1", "0"):
        proc = subprocess.run([sys.executable, "-m", "bnlint", "check", "--no-cache", "--format", "json", "."],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, BNLINT_FORKSERVER=mode))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        outputs.append([(f["code"], f["path"], f["message"]) for f in json.loads(proc.stdout)])
    assert outputs[0] == outputs[1]
    assert any("killed by SIGSEGV" in m for _, path, m in outputs[0] if path == "crash.py")
    assert ("BNL101", "net.py") in {(c, p) for c, p, _ in outputs[0]}


def test_jobs_option(tmp_path):
    (tmp_path / "net.py").write_text(NET.format(name="Net"))
    proc = run_bnlint("check", "--no-cache", "-j", "1", ".", cwd=tmp_path)
    assert proc.returncode == 1 and "BNL101" in proc.stdout, proc.stdout + proc.stderr
    proc = run_bnlint("check", "--jobs", "0", ".", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--jobs" in proc.stderr


def test_warm_check_reads_no_file(tmp_path, monkeypatch):
    import bnlint.cache
    import bnlint.engine

    monkeypatch.setattr(bnlint.cache, "RACY_NS", 0)  # the files were just written
    (tmp_path / "net.py").write_text(NET.format(name="Net"))
    (tmp_path / "train.py").write_text(textwrap.dedent("""
        import torch
        from torch.utils.data import DataLoader


        def main(dataset, model, opt):
            perm = torch.randperm(len(dataset))
            for epoch in range(10):
                for i in perm:
                    opt.zero_grad()
                    model(dataset[i]).sum().backward()
                    opt.step()
    """))
    rules = select_rules(None)
    config = Config(timeout=60.0)
    cache = bnlint.cache.ResultCache.for_run(str(tmp_path / ".cache"), repr(config), (r.code for r in rules))
    first = check_paths([str(tmp_path)], config, rules, cache=cache)
    assert {f.code for f in first.findings} == {"BNL101", "BNL203"}

    reads = []
    real = bnlint.engine.read_source
    monkeypatch.setattr(bnlint.engine, "read_source", lambda *a: reads.append(a[1]) or real(*a))
    cache = bnlint.cache.ResultCache.for_run(str(tmp_path / ".cache"), repr(config), (r.code for r in rules))
    second = check_paths([str(tmp_path)], config, rules, cache=cache)
    assert _codes(second) == _codes(first)
    # Only the files that have findings are read (for suppression comments).
    assert sorted(os.path.basename(p) for p in reads) == ["net.py", "train.py"]

    reads.clear()
    (tmp_path / "notes.py").write_text("X = 1\n")  # a new file is read; the others are not
    cache = bnlint.cache.ResultCache.for_run(str(tmp_path / ".cache"), repr(config), (r.code for r in rules))
    third = check_paths([str(tmp_path)], config, rules, cache=cache)
    assert _codes(third) == _codes(first)
    assert "notes.py" in {os.path.basename(p) for p in reads}


def test_module_reexported_by_its_package_imports(tmp_path):
    # pkg/__init__.py imports pkg.net, which imports a sibling: Python imports the
    # package first, and so must bnlint (it used to register the half-run module).
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .net import Net\n")
    (pkg / "blocks.py").write_text("import torch.nn as nn\n\n\ndef head(w):\n    return nn.Sequential(nn.Dropout(0.3), nn.BatchNorm1d(w))\n")
    (pkg / "net.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        from pkg.blocks import head


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.head = head(4)

            def forward(self, x):
                return self.head(self.fc(x))
    """))
    # The finding is blocks.py's: reported when blocks.py is checked (its plan builds
    # Net, which uses head()), whether net.py is checked with it or not.
    rules = select_rules(["BNL0", "BNL1"])
    assert _codes(check_paths([str(pkg / "net.py")], Config(timeout=60.0), rules)) == []
    assert _codes(check_paths([str(pkg / "blocks.py")], Config(timeout=60.0), rules)) == [("BNL101", "blocks.py", 5)]
    assert _codes(check_paths([str(pkg)], Config(timeout=60.0), rules)) == [("BNL101", "blocks.py", 5)]


def test_tests_folder_imports_the_project_by_name(tmp_path):
    # tests/ has no __init__.py; like pytest, bnlint puts the project root (the folder
    # with pyproject.toml) on the path, so `from models import Net` resolves. The
    # finding in models/net.py is reported once, by models/net.py's own analysis.
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("from .net import Net\n")
    (tmp_path / "models" / "net.py").write_text(NET.format(name="Net"))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_net.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        from models import Net


        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = Net()

            def forward(self, x):
                return self.net(x)


        raise SystemExit("top-level code must not run")
    """))
    proc = run_bnlint("check", "--no-cache", "--format", "json", str(tmp_path), cwd=tmp_path.parent)
    assert "Traceback" not in proc.stderr, proc.stderr
    found = [(f["code"], f["path"], f["line"]) for f in json.loads(proc.stdout)]
    assert found == [("BNL101", str(tmp_path / "models" / "net.py"), 17)]
    # Checked alone, each file reports what is located in it: the test file nothing,
    # models/net.py its finding (the same as in the whole check).
    proc = run_bnlint("check", "--no-cache", "--format", "json", "tests", cwd=tmp_path)
    assert [f for f in json.loads(proc.stdout) if f["severity"] != "info"] == []
    proc = run_bnlint("check", "--no-cache", "--format", "json", "models/net.py", cwd=tmp_path)
    found = [(f["code"], f["path"], f["line"]) for f in json.loads(proc.stdout)]
    assert found == [("BNL101", "models/net.py", 17)]


@needs_fork
def test_ctrl_c_stops_the_model_workers_at_once(tmp_path):
    (tmp_path / "hang.py").write_text(textwrap.dedent("""
        import torch.nn as nn


        class Hang(nn.Module):
            def __init__(self):
                super().__init__()
                while True:
                    pass
    """))
    # Ctrl-C as a terminal delivers it: SIGINT at its default disposition in the CLI,
    # even where pytest itself runs with SIGINT ignored (a background job of a script).
    proc = subprocess.Popen([sys.executable, "-m", "bnlint", "check", "--no-cache", "--timeout", "120", "."],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _children_of(proc.pid):
        time.sleep(0.2)
    time.sleep(5)  # the server has imported torch; the model spins in its child
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 20  # not the 120 s timeout
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err


def _children_of(pid):
    """Processes whose parent is ``pid`` (the fork server, once the CLI has started it)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out
