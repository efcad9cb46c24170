"""Second builds for blocks a model holds only with other constructor values
(bnlint.model.variants and Planner.variants)."""
from __future__ import annotations

import ast
import os
import textwrap

from conftest import FIXTURES

from bnlint.model.plan import Planner
from bnlint.model.project import Project
from bnlint.model.variants import class_span, guarded_references, hold, selecting_values

REPO = FIXTURES / "repos" / "models_block_variants"

SOURCE = textwrap.dedent('''
    class Net(nn.Module):
        def __init__(self, dataset, depth, bottleneck=False, block_name='BasicBlock', aux=False):
            super().__init__()
            self.dataset = dataset
            if self.dataset.startswith('cifar'):
                if bottleneck == True:
                    block = Bottleneck
                else:
                    block = BasicBlock
            elif dataset == 'imagenet':
                block = {18: BasicBlock, 50: Bottleneck}[depth]
            if block_name.lower() == 'basicblock':
                pass
            elif block_name.lower() == 'preact':
                block = PreActBlock
            self.head = AuxHead() if aux and depth > 50 else None
            self.stem = Stem()
            self.extra = [Extra() for _ in range(depth)] if not aux else []
''')
TREE = ast.parse(SOURCE)
PARAMS = {"dataset", "depth", "bottleneck", "block_name", "aux"}


def _chains(name):
    return [[(ast.unparse(t), o) for t, o in chain] for chain in guarded_references(TREE, "Net", name)]


def test_the_if_tests_each_reference_runs_under():
    # self.dataset stands for the parameter it was set from; the table lookup is left out
    assert _chains("BasicBlock") == [[("dataset.startswith('cifar')", True), ("bottleneck == True", False)]]
    assert _chains("Stem") == [[]]
    assert _chains("AuxHead") == [[("aux and depth > 50", True)]]
    assert _chains("Missing") == []


def test_the_tests_are_solved_for_the_parameters():
    (basic,) = guarded_references(TREE, "Net", "BasicBlock")
    assert selecting_values(basic, PARAMS) == {"dataset": "cifar", "bottleneck": False}
    (preact,) = guarded_references(TREE, "Net", "PreActBlock")
    # the first test only rules 'basicblock' out; the second gives the value
    wanted = selecting_values(preact, PARAMS)
    assert wanted == {"block_name": "preact"}
    assert hold(preact, {"block_name": "preact"}) is True
    assert hold(preact, {"block_name": "BasicBlock"}) is False
    (extra,) = guarded_references(TREE, "Net", "Extra")
    assert selecting_values(extra, PARAMS) == {"aux": False}
    (aux,) = guarded_references(TREE, "Net", "AuxHead")
    assert selecting_values(aux, PARAMS) is None  # depth > 50 is no value to choose
    assert hold(aux, {"aux": True}) is None  # depth unknown: cannot tell


def test_class_span_covers_decorators():
    tree = ast.parse("import x\n\n@register\nclass A:\n    pass\n\n\nclass B:\n    x = 1\n")
    assert class_span(tree, "A") == (3, 5)
    assert class_span(tree, "B") == (8, 9)


def _variants(rel):
    project = Project.scan(str(REPO))
    return {t.name: t for t in Planner(project).plan(os.path.join(str(REPO), rel)).targets if t.variant}


def test_a_flag_that_leaves_a_block_out_gets_a_second_build():
    (variant,) = _variants("models/densenet.py").values()
    assert variant.call == ("DenseNet3(depth=100, num_classes=10, growth_rate=12, bottleneck=False, dropRate=0.0, "
                            "reduction=0.5)")
    assert variant.variant == "bottleneck=False"
    assert variant.builds == ("BasicBlock",)
    assert variant.keep == ((9, 21),)  # only BasicBlock's findings are this build's
    assert variant.foreign and variant.assumed


def test_a_name_compared_in_lower_case_selects_the_other_block():
    (variant,) = _variants("models/resnet.py").values()
    assert variant.call == "ResNet(depth=56, block_name='bottleneck', num_classes=10)"
    assert variant.builds == ("Bottleneck",)


def test_no_second_build_for_what_the_planned_build_holds(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "net.py").write_text(textwrap.dedent('''
        import torch.nn as nn


        class Plain(nn.Module):
            def __init__(self, channels):
                super().__init__()
                self.bn = nn.BatchNorm2d(channels)

            def forward(self, x):
                return self.bn(x)


        class Deep(nn.Module):
            def __init__(self, channels):
                super().__init__()
                self.bn = nn.BatchNorm2d(channels)

            def forward(self, x):
                return self.bn(x)


        class Net(nn.Module):
            def __init__(self, deep=True, wide=False):
                super().__init__()
                self.body = Deep(3) if deep else Plain(3)
                self.extra = Plain(3) if wide else nn.Identity()

            def forward(self, x):
                return self.extra(self.body(x))
    '''))
    project = Project.scan(str(tmp_path))
    targets = Planner(project).plan(str(tmp_path / "net.py")).targets
    # Plain is held with deep=False or wide=True; the one second build is the first
    # that solves; Deep is held as built: none for it
    variants = [t for t in targets if t.variant]
    assert [(t.call, t.builds) for t in variants] == [("Net(deep=False)", ("Plain",))]


def test_a_model_built_inside_a_factory_is_built_again_with_the_factorys_arguments(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "densenet.py").write_text(textwrap.dedent('''
        import torch
        import torch.nn as nn


        class Single(nn.Module):
            def __init__(self, channels, growth):
                super().__init__()
                self.bn = nn.BatchNorm2d(channels)
                self.conv = nn.Conv2d(channels, growth, 3, padding=1, bias=False)

            def forward(self, x):
                return torch.cat([x, self.conv(self.bn(x).relu())], 1)


        class Bottleneck(Single):
            pass


        class DenseNet(nn.Module):
            def __init__(self, depth, num_classes, growth_rate=12, bottleneck=True):
                super().__init__()
                block = Bottleneck if bottleneck else Single
                self.blocks = nn.Sequential(*[block(3 + i * growth_rate, growth_rate) for i in range(depth)])
                self.fc = nn.Linear(3 + depth * growth_rate, num_classes)

            def forward(self, x):
                return self.fc(self.blocks(x).mean((2, 3)))


        def densenet_bc_40():
            return DenseNet(40, 10, growth_rate=12)
    '''))
    targets = Planner(Project.scan(str(tmp_path))).plan(str(tmp_path / "densenet.py")).targets
    (variant,) = [t for t in targets if t.variant]
    assert variant.call == "DenseNet(depth=40, num_classes=10, growth_rate=12, bottleneck=False)"
    assert variant.origin == "densenet.py:32; bottleneck=False set"  # the factory's return line
    assert variant.builds == ("Single",)
