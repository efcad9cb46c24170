"""The results cache: a second check of an unchanged folder starts no worker, and any
change to a file, to a local module it imports, or to the config is seen."""
from __future__ import annotations

import json
import os
import textwrap

from conftest import run_bnlint

MODEL = textwrap.dedent("""
    import torch.nn as nn
    from blocks import head


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            with open("BUILDS.log", "a") as fh:  # counts how often the model is built
                fh.write("built\\n")
            self.fc = nn.Linear(8, 8, bias=False)  # feeds BatchNorm (BNL106 otherwise)
            self.head = head(8, {p})

        def forward(self, x):
            return self.head(self.fc(x))
""")
BLOCKS = textwrap.dedent("""
    import torch.nn as nn


    def head(width, p):
        return nn.Sequential(nn.Dropout(p), nn.BatchNorm1d(width))
""")


def builds(tmp_path):
    log = tmp_path / "BUILDS.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def check(tmp_path, *args):
    proc = run_bnlint("check", "--format", "json", *args, ".", cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    return [(f["code"], f["path"], f["line"]) for f in json.loads(proc.stdout) if f["severity"] != "info"]


def test_unchanged_files_are_not_analysed_again(tmp_path):
    (tmp_path / "net.py").write_text(MODEL.format(p=0.2))
    (tmp_path / "blocks.py").write_text(BLOCKS)
    first = check(tmp_path)
    assert first == [("BNL101", "blocks.py", 6)]
    n = builds(tmp_path)
    assert n >= 1
    assert check(tmp_path) == first
    assert builds(tmp_path) == n  # served from .bnlint_cache: no worker ran
    assert (tmp_path / ".bnlint_cache").is_dir()

    # A change in a local module the model file imports is seen.
    (tmp_path / "blocks.py").write_text(BLOCKS.replace("nn.Dropout(p), nn.BatchNorm1d(width)",
                                                       "nn.BatchNorm1d(width), nn.Dropout(p)"))
    assert check(tmp_path) == []
    assert builds(tmp_path) > n
    n = builds(tmp_path)

    # So is a change of the file itself, and of the rule selection.
    (tmp_path / "blocks.py").write_text(BLOCKS)
    (tmp_path / "net.py").write_text(MODEL.format(p=0.3))
    assert check(tmp_path) == first
    n2 = builds(tmp_path)
    assert n2 > n
    assert check(tmp_path, "--ignore", "BNL101") == []
    assert builds(tmp_path) > n2

    # --no-cache analyses again.
    n3 = builds(tmp_path)
    assert check(tmp_path, "--no-cache") == first
    assert builds(tmp_path) > n3


def test_import_failures_are_cached_until_the_dependency_appears(tmp_path, monkeypatch):
    import importlib.util

    import bnlint.engine
    import bnlint.model.modelcheck
    from bnlint.cache import ResultCache
    from bnlint.config import Config
    from bnlint.engine import check_paths
    from bnlint.registry import select_rules

    (tmp_path / "broken.py").write_text("import torch.nn as nn\nimport not_installed_pkg_abc\n\n\nclass A(nn.Module):\n"
                                        "    def __init__(self):\n        super().__init__()\n"
                                        "        self.layer = not_installed_pkg_abc.Layer()\n")
    (tmp_path / "hangs.py").write_text("import torch.nn as nn\n\n\nclass B(nn.Module):\n    def __init__(self):\n"
                                       "        super().__init__()\n        while True:\n            pass\n")
    runs = []
    real = bnlint.model.modelcheck.run_worker
    monkeypatch.setattr(bnlint.model.modelcheck, "run_worker", lambda req, *a: runs.append(req["file"]) or real(req, *a))
    rules = select_rules(None)
    config = Config(timeout=3.0)

    def check():
        runs.clear()
        cache = ResultCache.for_run(str(tmp_path / ".cache"), repr(config), (r.code for r in rules))
        result = check_paths([str(tmp_path)], config, rules, cache=cache)
        assert not result.fatal  # BNL001 problems, not bnlint failures
        messages = sorted(f.message for f in result.findings if f.code == "BNL001" and f.severity.value != "info")
        assert len(messages) == 2 and "timed out" in messages[0] and "not_installed_pkg_abc" in messages[1]
        return sorted(os.path.basename(p) for p in runs)

    assert check() == ["broken.py", "hangs.py"]
    assert check() == ["hangs.py"]  # the import error is the file's own: served from the cache
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "not_installed_pkg_abc" else real_find_spec(name, *a))
    assert check() == ["broken.py", "hangs.py"]  # installed since: analysed again
