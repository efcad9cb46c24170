"""Layers are not models (issue #12): a class whose one base is a torch.nn layer class
(directly, or through project classes) and that adds no dropout or normalisation of its
own is analysed inside the models that use it, never as a target of its own, and gets no
"not analysed" note (bnlint.model.targets.layer_classes, bnlint.model.plan.Planner.is_layer)."""
from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import textwrap

from conftest import FIXTURES, ROOT, run_bnlint

from bnlint.model.plan import Planner
from bnlint.model.project import Binding, Project
from bnlint.model.targets import LAYER, LAYER_IF_BASE, layer_classes, may_define_models

REPO = FIXTURES / "repos" / "models_custom_layers"

LAYERS = textwrap.dedent('''
    import math

    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.nn import BatchNorm2d
    from torch.nn.modules.batchnorm import _BatchNorm


    class Conv2dStaticSamePadding(nn.Conv2d):
        def __init__(self, in_channels, out_channels, kernel_size, image_size=None, **kwargs):
            super().__init__(in_channels, out_channels, kernel_size, **kwargs)
            pad = max(kernel_size - 1, 0)
            if pad > 0:
                self.static_padding = nn.ZeroPad2d((pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
            else:
                self.static_padding = Identity()

        def forward(self, x):
            return F.conv2d(self.static_padding(x), self.weight, self.bias, self.stride)


    class PSBatchNorm2d(nn.BatchNorm2d):
        def __init__(self, num_features, alpha=0.1, eps=1e-05, momentum=0.001):
            super().__init__(num_features, eps, momentum)
            self.alpha = alpha

        def forward(self, x):
            return super().forward(x) + self.alpha


    class FrozenStatsBN(BatchNorm2d):
        def forward(self, x):
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False)


    class MyBatchNorm(_BatchNorm):
        pass


    class RoutingFn(torch.nn.Linear):
        pass


    class ScaledPSBatchNorm2d(PSBatchNorm2d):
        def forward(self, x):
            return super().forward(x) * math.sqrt(2.0)


    class Identity(nn.Module):
        def forward(self, x):
            return x
''')

CANDIDATES = textwrap.dedent('''
    import torch.nn as nn
    import torch.nn.functional as F

    from .helpers import make_padding


    class BatchNormDrop(nn.BatchNorm2d):
        def __init__(self, num_features, p=0.2):
            super().__init__(num_features)
            self.drop = nn.Dropout(p)

        def forward(self, x):
            return super().forward(self.drop(x))


    class BatchNormFunctionalDrop(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(F.dropout(x, 0.2, self.training))


    class ConvBN(nn.Conv2d):
        def __init__(self, cin, cout, k):
            super().__init__(cin, cout, k, bias=False)
            self.bn = nn.BatchNorm2d(cout)


    class ConvWithBlock(nn.Conv2d):
        def __init__(self, cin, cout, k):
            super().__init__(cin, cout, k)
            self.post = Block(cout)


    class ConvWithGivenNorm(nn.Conv2d):
        def __init__(self, cin, cout, k, norm_layer):
            super().__init__(cin, cout, k)
            self.norm = norm_layer(cout)


    class ConvWithProjectPadding(nn.Conv2d):
        def __init__(self, cin, cout, k):
            super().__init__(cin, cout, k)
            self.pad = make_padding(k)


    class ConvMixin(nn.Conv2d, Block):
        pass


    class DropBN(ConvBN):
        pass


    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.bn = nn.BatchNorm2d(c)


    class Stem(nn.Sequential):
        pass
''')


def test_subclasses_of_one_torch_layer_that_add_nothing_are_layers():
    tree = ast.parse(LAYERS)
    layers = layer_classes(tree)
    assert layers == {name: LAYER for name in ("Conv2dStaticSamePadding", "PSBatchNorm2d", "FrozenStatsBN",
                                               "MyBatchNorm", "RoutingFn", "ScaledPSBatchNorm2d")}
    assert may_define_models(tree) == ["Identity"]


def test_a_layer_that_adds_dropout_normalisation_or_a_model_stays_a_candidate():
    tree = ast.parse(CANDIDATES)
    assert layer_classes(tree) == {}
    assert may_define_models(tree) == [
        "BatchNormDrop", "BatchNormFunctionalDrop", "ConvBN", "ConvWithBlock", "ConvWithGivenNorm",
        "ConvWithProjectPadding", "ConvMixin", "DropBN", "Block", "Stem",
    ]


def test_a_base_in_another_project_file_is_looked_up(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "__init__.py").write_text("")
    (tmp_path / "nets" / "layers.py").write_text(textwrap.dedent('''
        import torch.nn as nn


        class Conv2dSame(nn.Conv2d):
            pass


        class ConvBN(nn.Conv2d):
            def __init__(self, cin, cout, k):
                super().__init__(cin, cout, k)
                self.bn = nn.BatchNorm2d(cout)
    '''))
    (tmp_path / "nets" / "std.py").write_text(textwrap.dedent('''
        import torch

        from nets.layers import Conv2dSame, ConvBN
        from .layers import Conv2dSame as Same


        class StdConv(Conv2dSame):
            def __init__(self, cin, cout, k, eps=1e-5):
                super().__init__(cin, cout, k)
                self.eps = eps


        class StdConvAgain(StdConv):
            pass


        class RelativeStdConv(Same):
            pass


        class StdConvBN(ConvBN):
            pass
    '''))
    path = str(tmp_path / "nets" / "std.py")
    project = Project.scan(str(tmp_path))
    facts = project.facts(path)
    assert {n: d.layer for n, d in facts.definitions.items()} == {
        "StdConv": LAYER_IF_BASE, "StdConvAgain": LAYER_IF_BASE, "RelativeStdConv": LAYER_IF_BASE,
        "StdConvBN": LAYER_IF_BASE,
    }
    planner = Planner(project)
    assert [n for n in facts.definitions if planner.is_layer(Binding("def", path, n))] == [
        "StdConv", "StdConvAgain", "RelativeStdConv",
    ]
    plan = planner.plan(path)
    assert [name for name, _ in plan.models] == ["StdConvBN"]
    assert [name for name, _ in plan.needs_arguments] == ["StdConvBN"]


def test_the_fixture_repository_notes_no_layer_and_counts_none(tmp_path):
    target = tmp_path / REPO.name
    shutil.copytree(REPO, target)
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    proc = run_bnlint("check", "--no-cache", "--format", "json", ".", cwd=target)
    findings = json.loads(proc.stdout)
    assert [(f["path"], f["code"], f["line"]) for f in findings if f["severity"] != "info"] == [
        ("models/resnet.py", "BNL101", 66)]
    # nothing for the summary line "N models not analysed" (bnlint.report) to count
    assert not [f for f in findings if (f.get("details") or {}).get("not_analysed")], findings

    spec = importlib.util.spec_from_file_location("real_repos", ROOT / "benchmarks" / "real_repos.py")
    real_repos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_repos)
    assert sorted(real_repos.model_classes(target)) == [("models/resnet.py", "BasicBlock"),
                                                        ("models/resnet.py", "ResNet")]
