"""Research repositories whose model files import packages that are not installed,
run code at their top level, or download weights (fixtures/repos/imports_*), checked
as a user would: nothing is written or downloaded, what was stubbed or left out is
said in info notes, and what could not be analysed carries its reason. (The findings
themselves are compared with each folder's expected.txt by tests/test_repos.py.)"""
from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

from conftest import FIXTURES, run_json

REPOS = FIXTURES / "repos"


def _files(root):
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
            if ".git" not in d.split(os.sep)}


def _check(tmp_path, name, *args):
    dst = tmp_path / name
    shutil.copytree(REPOS / name, dst)
    subprocess.run(["git", "init", "-q", "."], cwd=dst, check=True)
    before = _files(dst)
    rc, data = run_json("--no-cache", *args, ".", cwd=dst)
    assert _files(dst) == before, "the check wrote files"
    for f in data:
        f["path"] = os.path.normpath(f["path"])
    return rc, data


def _counted(data):
    return sorted((f["path"], f["code"], f["line"]) for f in data if f["severity"] != "info")


def _expected(name):
    lines = (REPOS / name / "expected.txt").read_text().splitlines()
    return sorted((p, c, int(n)) for p, c, n in (l.split() for l in lines if l.strip() and not l.startswith("#")))


def test_missing_optional_packages_are_stubbed_and_named(tmp_path):
    rc, data = _check(tmp_path, "imports_optional_deps")
    assert _counted(data) == _expected("imports_optional_deps")
    [needs] = [f for f in data if f["details"].get("not_analysed") == "needs-package"]
    assert needs["severity"] == "warning" and needs["details"]["package"] == "apex"
    assert needs["details"]["model"] == "VGG11Sync"
    assert "apex.parallel.SyncBatchNorm" in needs["message"] and "install it" in needs["message"]
    notes = {f["path"]: f for f in data if f["severity"] == "info" and "stubbed" in f["details"]}
    heads = notes[os.path.join("models", "heads.py")]
    assert {"pytorch_lightning", "tensorboardX"} <= set(heads["details"]["stubbed"])
    assert heads["line"] == 5  # its first import of a missing package
    assert "lmdb" not in str(notes)  # lmdb_dataset.py defines no model: never imported
    [lit] = [f for f in data if "derives from a stand-in" in f["message"]]
    assert lit["line"] == 19 and "pytorch_lightning.LightningModule" in lit["message"]
    # A module torch removed is no stand-in: it has its former contents (expected.txt's
    # BNL101 in shake_pyramid.py needs them), and a note says so at the import.
    [former] = [f for f in data if f["details"].get("provided")]
    assert former["path"] == os.path.join("models", "shake_pyramid.py") and former["line"] == 10
    assert former["details"]["provided"] == ["torch._six"] and "removed in torch 2.0" in former["message"]


def test_top_level_code_never_runs_and_argparse_gives_defaults(tmp_path):
    rc, data = _check(tmp_path, "imports_toplevel_argparse")
    assert _counted(data) == _expected("imports_toplevel_argparse")
    [left_out] = [f for f in data if "left out of the import" in f["message"]]
    assert left_out["path"] == "dcgan.py" and left_out["line"] == 55 and "KeyError: 'WORLD_SIZE'" in left_out["message"]
    dropout = [f for f in data if f["code"] == "BNL101"]
    assert "p=0.25" in dropout[0]["message"]  # opt.dropD's default reached the model


def test_no_download_and_pretrained_switched_off(tmp_path):
    rc, data = _check(tmp_path, "imports_pretrained_download")
    assert _counted(data) == _expected("imports_pretrained_download")
    downloads = {f["details"]["model"]: f for f in data if f["details"].get("not_analysed") == "needs-download"}
    assert sorted(downloads) == ["SegNetFinetune", "dino_vits16"]
    assert all(f["severity"] == "warning" for f in downloads.values())
    assert "download.example.org" in downloads["SegNetFinetune"]["message"]
    switched = [f["message"] for f in data if f["severity"] == "info" and f["message"].startswith("built with")]
    assert any("pretrained=False" in m for m in switched) and any("weights=None" in m for m in switched)


MODEL = textwrap.dedent("""
    import torch.nn as nn
    import wandb
    import yaml


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.drop = nn.Dropout(0.5)
            self.bn = nn.BatchNorm1d(8)

        def forward(self, x):
            return self.bn(self.drop(self.fc(x)))
""")


def _project(tmp_path, table: str, model: str = MODEL):
    (tmp_path / "pyproject.toml").write_text(f"[tool.bnlint]\n{table}\n")
    (tmp_path / "net.py").write_text(model)


def test_no_mock_imports_turns_stand_ins_off(tmp_path):
    _project(tmp_path, 'no-mock-imports = ["*"]')
    rc, data = run_json("--no-cache", "net.py", cwd=tmp_path)
    [failure] = [f for f in data if f["severity"] != "info"]
    assert failure["code"] == "BNL001" and failure["severity"] == "error"
    assert "no module named 'wandb'" in failure["message"]
    assert failure["details"]["not_analysed"] == "import-failed" and failure["details"]["models"] == ["Net"]


def test_mock_imports_replaces_an_installed_package(tmp_path):
    model = MODEL.replace("nn.Linear(8, 8)", "nn.Linear(yaml.WIDTH, 8)")
    _project(tmp_path, 'mock-imports = ["yaml"]', model)
    rc, data = run_json("--no-cache", "net.py", cwd=tmp_path)
    [needs] = [f for f in data if f["severity"] != "info"]
    assert needs["details"]["not_analysed"] == "needs-package" and needs["details"]["package"] == "yaml"
    assert "missing_module" not in needs["details"]  # installed: replaced only as configured
    (tmp_path / "net.py").write_text(MODEL)
    rc, data = run_json("--no-cache", "net.py", cwd=tmp_path)
    assert [f["code"] for f in data if f["severity"] != "info"] == ["BNL101"]


def test_a_missing_local_module_is_a_real_error(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "layers.py").write_text("import torch.nn as nn\nAct = nn.ReLU\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        from layers import Act   # works only when a script puts lib/ on sys.path


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.act = Act()

            def forward(self, x):
                return self.act(self.fc(x))
    """))
    rc, data = run_json("--no-cache", "models/net.py", cwd=tmp_path)
    [failure] = data
    assert failure["severity"] == "error" and "no module named 'layers'" in failure["message"]
    assert failure["details"]["missing_module"] == "layers"


def test_mock_import_keys_are_validated(tmp_path):
    from conftest import run_bnlint

    (tmp_path / "net.py").write_text("x = 1\n")
    for table, message in [
        ('mock-imports = ["apex.amp"]', "mock-imports in pyproject.toml: 'apex.amp' is not a top-level package name"),
        ('no-mock-imports = "torch"', "no-mock-imports in pyproject.toml: torch is never replaced by a stand-in"),
        ('mock-imports = ["wandb"]\nno-mock-imports = ["wandb"]', "'wandb' is in both mock-imports and no-mock-imports"),
        ('mock-import = ["wandb"]', "did you mean 'mock-imports'?"),
    ]:
        (tmp_path / "pyproject.toml").write_text(f"[tool.bnlint]\n{table}\n")
        proc = run_bnlint("check", "net.py", cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
