"""Every way analysis can fail becomes one BNL001 line that names the cause, and the
other files are still analysed. User code never runs in the CLI process and top-level
statements never run at all."""
from __future__ import annotations

import json
import os
import textwrap

import pytest

from conftest import FIXTURES, run_bnlint, run_json

GOOD_BAD = "fixtures/BNL101/wide_resnet_dropout_before_bn2.py"


def _by_path(data):
    out = {}
    for f in data:
        out.setdefault(os.path.basename(f["path"]), []).append(f)
    return out


def test_each_failure_names_its_cause_and_others_are_still_analysed():
    rc, data = run_json(
        "--timeout", "20",
        "fixtures/BNL001/syntax_error.py", "fixtures/BNL001/missing_package.py",
        "fixtures/BNL001/constructor_raises.py", "fixtures/BNL001/forward_raises.py", GOOD_BAD,
    )
    assert rc == 1  # files that could not be analysed are BNL001 problems (as in ruff), not exit 2
    by = _by_path(data)
    assert "syntax error" in by["syntax_error.py"][0]["message"]
    # The missing package is replaced by a stand-in; the model that really needs it is named.
    needs = [f for f in by["missing_package.py"] if f["severity"] == "warning"]
    assert len(needs) == 1 and "DropBlockNet needs package 'not_a_real_package_xyz'" in needs[0]["message"]
    ctor = [f for f in by["constructor_raises.py"] if f["severity"] == "error"]
    assert len(ctor) == 1 and "LabelMapHead" in ctor[0]["message"] and "FileNotFoundError" in ctor[0]["message"]
    # A checkpoint that is not there is no reason not to analyse: built without it, said.
    built = [f for f in by["constructor_raises.py"] if f["severity"] == "info"]
    assert len(built) == 1 and "built with pretrained=False" in built[0]["message"], built
    assert dict(built[0]["details"])["model"] == "FineTuneModel"
    fwd = [f for f in by["forward_raises.py"] if f["severity"] == "error"]
    assert len(fwd) == 1 and "forward raised AttributeError" in fwd[0]["message"]
    assert [f["code"] for f in by["wide_resnet_dropout_before_bn2.py"]] == ["BNL101"]


def test_hang_past_timeout(tmp_path):
    rc, data = run_json("--timeout", "3", "fixtures/BNL001/init_hangs.py", GOOD_BAD)
    assert rc == 1
    by = _by_path(data)
    msg = by["init_hangs.py"][0]["message"]
    assert "timed out after 3 s" in msg and "Student" in msg and "--timeout" in msg
    assert [f["code"] for f in by["wide_resnet_dropout_before_bn2.py"]] == ["BNL101"]


def test_top_level_code_never_runs(tmp_path):
    marker = "BNLINT_SHOULD_NOT_EXIST.txt"
    src = (FIXTURES / "BNL001" / "toplevel_side_effect.py").read_text()
    (tmp_path / "script.py").write_text(src)
    rc, data = run_json("script.py", cwd=tmp_path)
    assert not (tmp_path / marker).exists()
    assert [f["code"] for f in data if f["severity"] != "info"] == ["BNL102"]


def test_local_imports_are_definitions_only_too(tmp_path):
    (tmp_path / "helpers.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        open("IMPORTED_HELPER_RAN.txt", "w").write("ran")

        def make_head(width):
            return nn.Sequential(nn.Dropout(0.2), nn.BatchNorm1d(width))
    """))
    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        from helpers import make_head


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 8)
                self.head = make_head(8)

            def forward(self, x):
                return self.head(self.fc(x))
    """))
    rc, data = run_json(".", cwd=tmp_path)
    assert not (tmp_path / "IMPORTED_HELPER_RAN.txt").exists()
    assert [(f["code"], os.path.basename(f["path"]), f["line"]) for f in data if f["severity"] != "info"] == [
        ("BNL101", "helpers.py", 6)]
    # The finding is helpers.py's: make_head(8) is how model.py calls it, so helpers.py
    # checked alone reports it too, and model.py checked alone does not.
    rc, data = run_json("helpers.py", cwd=tmp_path)
    assert [(f["code"], f["path"], f["line"]) for f in data if f["severity"] != "info"] == [("BNL101", "helpers.py", 6)]
    rc, data = run_json("model.py", cwd=tmp_path)
    assert [f for f in data if f["severity"] != "info"] == []
    assert not (tmp_path / "IMPORTED_HELPER_RAN.txt").exists()


def test_sys_exit_and_crash_at_import(tmp_path):
    (tmp_path / "exits.py").write_text(textwrap.dedent("""
        import sys
        import torch.nn as nn


        class Config:
            if sys.version_info < (4, 0):
                sys.exit("this script needs Python 4")


        class A(nn.Module):
            pass
    """))
    (tmp_path / "segv.py").write_text(textwrap.dedent("""
        import ctypes
        import torch.nn as nn


        class Crash(nn.Module):
            def __init__(self):
                super().__init__()
                ctypes.string_at(0)
    """))
    rc, data = run_json("exits.py", "segv.py", cwd=tmp_path)
    by = _by_path(data)
    assert "sys.exit()" in by["exits.py"][0]["message"]
    assert "killed by SIGSEGV" in by["segv.py"][0]["message"]
    assert rc == 1


def test_untraceable_model_is_analysed_by_fallback():
    rc, data = run_json("fixtures/BNL101/data_dependent_forward.py")
    errors = [f for f in data if f["severity"] == "error"]
    notes = [f for f in data if f["severity"] == "info"]
    assert [f["code"] for f in errors] == ["BNL101"]
    assert notes and all(f["code"] == "BNL001" for f in notes)
    assert "PatchClassifier" in notes[0]["message"]
    # Its forward compares a tensor's values: it ran again on real tensors.
    assert "on real tensors" in notes[0]["message"] and notes[0]["details"]["device"] == "cpu"


def test_untraceable_forward_that_needs_only_shapes_runs_on_meta_tensors():
    """A forward fx cannot trace (``x.view(*shape)``) but that reads no tensor values
    is recorded on the meta device (a ViT-L costs no memory there) and still found."""
    rc, data = run_json("fixtures/BNL103/hybrid_vit_bn_head.py")
    assert [(f["code"], f["line"]) for f in data if f["severity"] != "info"] == [("BNL103", 60)]
    # the four blocks that fail alike are said in one note
    (note,) = [f for f in data if "trace symbolically" in f["message"]]
    assert note["message"].startswith("4 submodules of ") and "do not trace symbolically" in note["message"]
    assert "they were analysed by running them on example inputs (on meta tensors" in note["message"]
    assert len(note["details"]["modules"]) == 4 and all(m.startswith("blocks.") for m in note["details"]["modules"])
    assert note["details"]["device"] == "meta"


def test_non_utf8_and_binary_files(tmp_path):
    (tmp_path / "latin.py").write_bytes("# caf\xe9\nx = 1\n".encode("latin-1"))
    (tmp_path / "blob.py").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "empty.py").write_text("")
    rc, data = run_json(".", cwd=tmp_path)
    assert rc == 1
    by = _by_path(data)
    assert "not valid UTF-8" in by["latin.py"][0]["message"]
    assert "binary" in by["blob.py"][0]["message"]
    assert "empty.py" not in by


def test_cuda_only_code_runs_on_the_cpu_when_torch_has_no_cuda():
    """``torch.cuda.FloatTensor(...)`` in a forward and ``.cuda()`` in a factory: with a
    torch that has no CUDA they run on the CPU, the model is checked, and a note says so."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA: the code runs as written")
    rc, data = run_json("fixtures/BNL101/pyramidnet_cuda_padding.py")
    assert [(f["code"], f["line"]) for f in data if f["severity"] != "info"] == [("BNL101", 26)]
    [note] = [f for f in data if "cuda_on_cpu" in f["details"]]
    assert "torch.cuda.FloatTensor" in note["details"]["cuda_on_cpu"] and "ran on the CPU" in note["message"]


def test_moving_to_a_cuda_device_stays_on_the_cpu_when_torch_has_no_cuda(tmp_path):
    """``model.to(torch.device('cuda'))`` in a factory and ``.to('cuda:0', dtype)`` in a
    forward run on the CPU (the forward is checked), and a note says so."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA: the code runs as written")
    (tmp_path / "net.py").write_text(textwrap.dedent('''
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3, bias=False)
                self.drop = nn.Dropout(0.3)
                self.bn = nn.BatchNorm2d(8)

            def forward(self, x):
                x = self.drop(self.conv(x))
                return self.bn(x.to('cuda:0', torch.float32))


        def build_net():
            model = Net()
            model.to(torch.device('cuda'))
            return model
    '''))
    rc, data = run_json("net.py", cwd=tmp_path)
    assert [(f["code"], f["line"]) for f in data if f["severity"] != "info"] == [("BNL101", 14)], data
    moved = {what for f in data for what in f["details"].get("cuda_on_cpu", ())}
    assert "Module.to('cuda')" in moved, data


def test_a_class_whose_builder_needs_a_package_is_counted_under_that_package(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "net.py").write_text(textwrap.dedent('''
        import torch.nn as nn
        from not_a_real_package_xyz.layers import to_2tuple


        class Stem(nn.Module):
            def __init__(self, in_chans, embed_dim):
                super().__init__()
                self.proj = nn.Conv2d(in_chans, embed_dim, 3, padding=1)
                self.norm = nn.BatchNorm2d(embed_dim)

            def forward(self, x):
                return self.norm(self.proj(x))


        class Net(nn.Module):
            def __init__(self, img_size=32, patch=4):
                super().__init__()
                self.grid = img_size // to_2tuple(patch)[0]
                self.stem = Stem(3, 16)
    '''))
    proc = run_bnlint("check", "--no-cache", "net.py", cwd=tmp_path)
    assert proc.stdout.strip().splitlines()[-1] == (
        "2 models not analysed (2 need package 'not_a_real_package_xyz'); -v lists them"), proc.stdout


def test_a_model_that_opens_a_file_beside_its_own_file_is_built_there(tmp_path):
    """``Net(cfg='tiny.json')`` opens its architecture file by a relative path that lies
    beside the model's file, not in the folder bnlint runs in: it is built there."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.json").write_text(json.dumps({"width": 8, "p": 0.2}))
    (tmp_path / "models" / "net.py").write_text(textwrap.dedent('''
        import json

        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self, cfg='tiny.json'):
                super().__init__()
                with open(cfg) as f:
                    spec = json.load(f)
                self.conv = nn.Conv2d(3, spec['width'], 3, bias=False)
                self.drop = nn.Dropout(spec['p'])
                self.bn = nn.BatchNorm2d(spec['width'])

            def forward(self, x):
                return self.bn(self.drop(self.conv(x)))
    '''))
    rc, data = run_json("models/net.py", cwd=tmp_path)
    assert [(f["code"], f["line"]) for f in data if f["severity"] != "info"] == [("BNL101", 17)], data
    assert any("built with" in f["message"] and "as the working directory" in f["message"] for f in data)


def test_a_forward_of_several_inputs_asks_for_example_inputs(tmp_path):
    (tmp_path / "ffd.py").write_text(textwrap.dedent('''
        import torch
        import torch.nn as nn


        class NoiseLevelNet(nn.Module):
            def __init__(self, channels=3, width=16):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(channels + 1, width, 3, padding=1, bias=False),
                                          nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                          nn.Conv2d(width, channels, 3, padding=1))

            def forward(self, x, sigma):
                if sigma.dim() == 1:  # one noise level per image
                    sigma = sigma.view(-1, 1, 1, 1)
                noise_map = sigma.expand(x.size(0), 1, x.size(2), x.size(3))
                return self.body(torch.cat((x, noise_map), 1))
    '''))
    proc = run_bnlint("check", "--no-cache", "ffd.py", cwd=tmp_path)
    assert "its forward takes more than one input ('sigma' besides the first)" in proc.stdout
    assert "define example_inputs()" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "1 model not analysed (1 has no input shape); -v lists them"


def test_timm_helpers_are_provided_and_the_rest_of_timm_is_still_needed(tmp_path):
    """timm not installed: ``to_2tuple`` and ``DropPath`` work (bnlint.model.provided),
    but a model that builds timm's ``Mlp`` still needs the package."""
    import importlib.util

    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed: nothing is provided")
    (tmp_path / "vit.py").write_text(textwrap.dedent('''
        import torch.nn as nn
        from timm.models.layers import DropPath, Mlp, to_2tuple


        class Stem(nn.Module):
            def __init__(self, patch_size=4, dim=32):
                super().__init__()
                self.proj = nn.Conv2d(3, dim, kernel_size=to_2tuple(patch_size), stride=to_2tuple(patch_size))
                self.drop_path = DropPath(0.1)
                self.bn = nn.BatchNorm2d(dim)

            def forward(self, x):
                return self.bn(self.drop_path(self.proj(x)))


        class Head(nn.Module):
            def __init__(self, dim=32, num_classes=10):
                super().__init__()
                self.mlp = Mlp(dim, dim * 4, num_classes)

            def forward(self, x):
                return self.mlp(x.mean((2, 3)))
    '''))
    rc, data = run_json("vit.py", cwd=tmp_path)
    needs = [f for f in data if f["details"].get("not_analysed") == "needs-package"]
    assert [(f["details"]["model"], f["details"]["package"]) for f in needs] == [("Head", "timm")], data
    [note] = [f for f in data if "provided_helpers" in f["details"]]
    assert {"DropPath", "to_2tuple"} <= set(note["details"]["provided_helpers"]["timm"])
    assert not [f for f in data if f["details"].get("model") == "Stem" and f["severity"] != "info"]
