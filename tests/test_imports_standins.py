"""Stand-ins for packages that are not installed (bnlint.model.standins): what they
let model code do, and when they say the package is really needed. The import hooks
are tried in a fresh Python process, as the worker uses them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from bnlint.model.standins import (
    NeedsPackage, StandInModule, check_no_standins, find_standins, is_standin, standin_bases,
)


@pytest.fixture
def apex():
    return StandInModule("apex", "apex")


def test_attributes_calls_decorators_context_managers_and_iteration(apex):
    amp = apex.amp
    assert amp is apex.amp and is_standin(amp)
    assert apex.parallel.SyncBatchNorm is apex.parallel.SyncBatchNorm
    model, optimizer = nn.Linear(2, 2), None
    handle = amp.initialize(model, optimizer, opt_level="O1")
    assert is_standin(handle)
    assert list(handle) == [] and len(handle) == 0 and not handle and handle["x"] is handle

    @apex.jit
    def f(x):
        return x + 1

    @apex.jit(nopython=True)
    def g(x):
        return x * 2

    assert f(1) == 2 and g(2) == 4
    with amp.scale_loss(1.0, optimizer) as scaled:
        assert is_standin(scaled)
    assert not isinstance(model, apex.parallel.SyncBatchNorm)
    assert isinstance(apex.__version__, str)
    with pytest.raises(AttributeError):
        apex.__wrapped__  # noqa: B018  (introspection sees no stand-in for dunders)


def test_a_tensor_reaching_a_stand_in_names_the_package(apex):
    x = torch.randn(2, 3)
    with pytest.raises(NeedsPackage, match="'apex'.*apex.fused_gelu"):
        apex.fused_gelu(x)
    layer = apex.normalization.FusedLayerNorm(3)
    with pytest.raises(NeedsPackage, match="apex.normalization.FusedLayerNorm"):
        layer(x)
    with pytest.raises(NeedsPackage):
        torch.relu(layer)
    with pytest.raises(NeedsPackage):
        nn.Conv2d(apex.config.IN_CHANNELS, 8, 3)  # arithmetic on a stand-in value


def test_subclassing_a_stand_in_gives_an_ordinary_module():
    pl = StandInModule("pytorch_lightning", "pytorch_lightning")

    class LitNet(pl.LightningModule):
        def __init__(self, width=4):
            super().__init__()
            self.save_hyperparameters()
            self.fc = nn.Linear(width, 2)

        def forward(self, x):
            return self.fc(x)

    net = LitNet()
    assert isinstance(net, nn.Module) and net(torch.randn(2, 4)).shape == (2, 2)
    assert bool(net) and [n for n, _ in net.named_parameters()] == ["fc.weight", "fc.bias"]
    check_no_standins(net)  # the model is the user's class: nothing missing
    assert standin_bases(net) == [("test_subclassing_a_stand_in_gives_an_ordinary_module.<locals>.LitNet",
                                   "pytorch_lightning.LightningModule")]
    traced = torch.fx.symbolic_trace(net)
    assert [n.op for n in traced.graph.nodes] == ["placeholder", "call_module", "output"]


def test_a_config_class_derived_from_a_stand_in_is_a_plain_class():
    yacs = StandInModule("yacs", "yacs")

    class ConfigNode(yacs.config.CfgNode):
        def __init__(self, init_dict=None, key_list=None, new_allowed=False):
            super().__init__(init_dict, key_list, new_allowed)

    config = ConfigNode()
    config.train = ConfigNode()  # 'train' is not nn.Module.train here
    config.train.dataloader = ConfigNode()
    config.train.dataloader.num_workers = 2
    assert config.train.dataloader.num_workers == 2
    assert not isinstance(config, nn.Module)
    with pytest.raises(NeedsPackage, match="'yacs'"):
        nn.Linear(config.model.in_features, 4)  # an option nobody set: a stand-in


def test_a_stand_in_used_as_a_module_names_the_package():
    torchvision = StandInModule("torchvision", "torchvision")
    vgg = torchvision.models.vgg19(pretrained=True)
    with pytest.raises(NeedsPackage, match="children\\(\\) was called on torchvision.models.vgg19.features"):
        nn.Sequential(*list(vgg.features.children())[:35])
    with pytest.raises(NeedsPackage, match="parameters"):
        torchvision.models.resnet18().parameters()
    with pytest.raises(NeedsPackage):
        torchvision.models.resnet18().to("cpu")


def test_a_stand_in_inside_the_model_is_found(apex):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.bn = apex.parallel.SyncBatchNorm(8)

    found = find_standins(Net())
    assert found is not None and found[0] == "apex" and "submodule bn" in found[1]
    assert found[2][0] == __file__
    with pytest.raises(NeedsPackage, match="submodule bn is a stand-in for apex.parallel.SyncBatchNorm"):
        check_no_standins(Net())
    with pytest.raises(NeedsPackage, match="the model is a stand-in"):
        check_no_standins(apex.models.resnet50(pretrained=True))
    with pytest.raises(NeedsPackage):
        check_no_standins(nn.Sequential(nn.Linear(2, 2), apex.Rearrange("b c -> c b")))


HOOKS = textwrap.dedent("""
    import json, os, sys
    import importlib.util
    from bnlint.model.standin_imports import StandIns
    root = sys.argv[1]
    sys.path.insert(0, root)
    mock = json.loads(sys.argv[2]); never = json.loads(sys.argv[3])
    standins = StandIns(root, mock, never).install()
    out = {}
    def attempt(name, code):
        path = os.path.join(root, f"attempt_{name}.py")
        with open(path, "w") as fh:
            fh.write(code)
        try:
            exec(compile(code, path, "exec"), {})
            out[name] = "ok"
        except (ImportError, AssertionError) as exc:
            out[name] = type(exc).__name__
    attempt("apex", "from apex.parallel import SyncBatchNorm\\nimport apex.amp")
    attempt("wandb", "import wandb\\nwandb.init(project='x')")
    attempt("yaml", "import yaml\\nassert type(yaml).__name__ != 'StandInModule'")
    attempt("guarded_after_stub", "try:\\n    from apex.parallel import SyncBatchNorm\\nexcept ImportError:\\n    raise ModuleNotFoundError('fallback')")
    attempt("guarded", "try:\\n    import lmdb\\nexcept ImportError:\\n    raise ModuleNotFoundError('fallback')")
    attempt("probe", "import importlib.util\\nassert importlib.util.find_spec('h5py') is None")
    attempt("local", "import helpers")
    attempt("local_from_installed", "import extlib\\nassert type(extlib.helpers).__name__ == 'StandInModule'")
    attempt("torch_sub", "import torch.not_a_module")
    attempt("sub_of_real", "import numpy.not_a_module")
    out["stubbed"] = sorted(standins.stubbed)
    print(json.dumps(out))
""")


def _hooks(tmp_path, mock=(), never=()):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helpers.py").write_text("X = 1\n")  # a local module not on the path
    installed = tmp_path.parent / f"{tmp_path.name}-site"  # an installed package outside the project
    installed.mkdir()
    (installed / "extlib.py").write_text("import helpers\n")  # a package of its own named like a local file
    env = dict(os.environ, PYTHONPATH=str(installed))
    proc = subprocess.run([sys.executable, "-c", HOOKS, str(tmp_path), json.dumps(list(mock)), json.dumps(list(never))],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_only_packages_that_are_genuinely_missing_are_stubbed(tmp_path):
    out = _hooks(tmp_path)
    assert out["apex"] == "ok" and out["wandb"] == "ok" and out["yaml"] == "ok"
    assert out["guarded"] == "ModuleNotFoundError"  # the code's own fallback runs
    assert out["guarded_after_stub"] == "ModuleNotFoundError"  # even once another import stubbed it
    assert out["probe"] == "ok"  # find_spec still says it is missing
    assert out["local"] == "ModuleNotFoundError"  # the project's own module: a real error
    assert out["local_from_installed"] == "ok"  # but an installed package means its own dependency
    assert out["torch_sub"] == "ModuleNotFoundError" and out["sub_of_real"] == "ModuleNotFoundError"
    assert out["stubbed"] == ["apex", "helpers", "wandb"]


def test_mock_imports_and_no_mock_imports(tmp_path):
    (tmp_path / "a").mkdir()
    out = _hooks(tmp_path / "a", mock=["yaml"], never=["wandb"])
    assert out["yaml"] == "AssertionError"  # installed, but replaced as configured
    assert out["wandb"] == "ModuleNotFoundError" and out["apex"] == "ok"
    assert out["stubbed"] == ["apex", "helpers", "yaml"]
    (tmp_path / "b").mkdir()
    off = _hooks(tmp_path / "b", never=["*"])
    assert off["apex"] == "ModuleNotFoundError" and off["wandb"] == "ModuleNotFoundError"
    assert off["stubbed"] == []
