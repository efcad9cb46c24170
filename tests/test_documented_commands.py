"""Command lines a project documents for its scripts (bnlint.model.commands): read from
shell scripts and READMEs, parsed against the script's argparse options, and used by
the planner when the defaults build no model (issue #12, item 2: values that appear in
the project)."""
from __future__ import annotations

import os
import textwrap

from conftest import FIXTURES

from bnlint.model.commands import UNKNOWN, find_command_lines, parse_options
from bnlint.model.plan import Planner
from bnlint.model.project import Project

REPO = FIXTURES / "repos" / "models_documented_commands"


def _commands(tmp_path, docs, scripts=("train.py",)):
    for rel in scripts:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("import argparse\n")
    for rel, text in docs.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    root = str(tmp_path)
    return find_command_lines(root, sorted(os.path.join(root, d) for d in docs),
                              [os.path.join(root, s) for s in scripts],
                              lambda p: open(p, "rb").read())


def test_shell_and_markdown_invocations_are_found_with_their_arguments(tmp_path):
    found = _commands(tmp_path, {
        "README.md": """
            Train:

            ```
            $ python train.py --depth 28 --widen-factor 10
            ```
            or `python3 -u train.py --depth 40` for the deeper one.
        """,
        "scripts/run.sh": """
            #!/bin/bash
            CUDA_VISIBLE_DEVICES=0,1 python -m torch.distributed.launch --nproc_per_node=2 \\
                ../train.py --depth 16 \\
                --lr 0.05 > log.txt 2>&1   # the small one
            torchrun --nproc_per_node 8 src/tools/train_net.py --cfg a.yaml && echo done
            python -m src.tools.train_net --cfg b.yaml
            python setup.py install
            python other.py --depth 10
        """,
    }, scripts=("train.py", "src/tools/train_net.py", "setup.py"))
    seen = [(os.path.relpath(c.doc, tmp_path), c.line, os.path.relpath(c.script, tmp_path), c.argv) for c in found]
    assert seen == [
        ("README.md", 5, "train.py", ("--depth", "28", "--widen-factor", "10")),
        ("README.md", 7, "train.py", ("--depth", "40")),
        ("scripts/run.sh", 3, "train.py", ("--depth", "16", "--lr", "0.05")),
        ("scripts/run.sh", 6, "src/tools/train_net.py", ("--cfg", "a.yaml")),
        ("scripts/run.sh", 7, "src/tools/train_net.py", ("--cfg", "b.yaml")),
        ("scripts/run.sh", 8, "setup.py", ("install",)),
    ]


FLAGS = {
    "-a": ("arch", "1"), "--arch": ("arch", "1"), "--depth": ("depth", "1"),
    "--widen-factor": ("widen_factor", "1"), "--schedule": ("schedule", "+"),
    "--nesterov": ("nesterov", "0"), "--no-aug": ("augment", "0"), "--drop": ("drop", "1"),
    "--pretrained": ("pretrained", "1"),
}
OPTIONS = {
    "arch": ("'resnet20'", None, None), "depth": ("29", "int", None), "widen_factor": ("4", "int", None),
    "schedule": ("[150, 225]", "int", None), "nesterov": (None, None, "store_true"),
    "augment": (None, None, "store_false"), "drop": ("0", "float", None), "pretrained": ("False", "str2bool", None),
}


def test_options_are_read_as_argparse_would():
    argv = ["-a", "wrn", "--depth=28", "--widen", "10", "--schedule", "60", "120", "160", "--nesterov",
            "--no-aug", "--drop", "0.3", "/data/cifar"]
    assert parse_options(argv, FLAGS, OPTIONS) == {
        "arch": "wrn", "depth": 28, "widen_factor": 10, "schedule": [60, 120, 160], "nesterov": True,
        "augment": False, "drop": 0.3,
    }


def test_a_flag_the_script_does_not_declare_makes_the_command_line_out_of_date():
    assert parse_options(["--depth", "28", "--width", "4"], FLAGS, OPTIONS) is None
    assert parse_options(["--depth"], FLAGS, OPTIONS) is None  # a value is missing


def test_values_the_shell_or_the_script_computes_are_unknown():
    values = parse_options(["--depth", "$DEPTH", "--drop", "<rate>", "--pretrained", "true"], FLAGS, OPTIONS)
    assert values == {"depth": UNKNOWN, "drop": UNKNOWN, "pretrained": UNKNOWN}
    assert parse_options(["--depth", "twenty"], FLAGS, OPTIONS) == {"depth": UNKNOWN}


def _plan(rel):
    project = Project.scan(str(REPO))
    return Planner(project).plan(os.path.join(str(REPO), rel))


def test_defaults_that_fail_fall_back_to_a_documented_command_line():
    (target,) = [t for t in _plan("models/wrn.py").targets if t.name == "WideResNet"]
    # train.py's defaults run the WRN call (--model wrn) with --depth 26 ...
    assert target.call == "WideResNet(depth=26, widen_factor=10, dropout_rate=0.0, num_classes=10)"
    assert target.origin == "models/__init__.py:9"
    # ... and the first documented command line that resolves is its fallback: not
    # old_baseline.sh (--width is no flag of train.py), not sweep_depth.sh (--depth $DEPTH)
    fallback = target.fallback
    assert fallback.call == "WideResNet(depth=28, widen_factor=10, dropout_rate=0.3, num_classes=10)"
    assert fallback.origin.startswith("models/__init__.py:9 as run by the command line at scripts/train_wrn.sh:3 "
                                      "(`python train.py --model wrn --depth 28 --widen-factor 10 --dropout 0.3")
    assert fallback.fallback is None
    # a build that fails with a document's values means "needs arguments"
    assert not target.assumed and fallback.assumed


def test_a_call_only_a_documented_command_line_runs_is_used_as_run():
    (target,) = [t for t in _plan("models/resnet.py").targets if t.name == "ResNet"]
    assert target.call == "ResNet(depth=56, num_classes=10)"
    assert target.origin == ("models/__init__.py:7 as run by the command line at README.md:6 "
                             "(`python train.py --model resnet --depth 56 --dataset cifar10`)")
    assert "only when" not in target.origin  # --model resnet holds there: no if-test is assumed


def test_a_registry_key_a_command_line_names_selects_its_member(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("from .preresnet import *\n")
    (tmp_path / "models" / "preresnet.py").write_text(textwrap.dedent('''
        import torch.nn as nn

        __all__ = ['preresnet']


        class PreResNet(nn.Module):
            def __init__(self, depth, num_classes=10):
                super().__init__()
                assert (depth - 2) % 9 == 0
                self.bn = nn.BatchNorm2d(3)
                self.fc = nn.Linear(3, num_classes)

            def forward(self, x):
                return self.fc(self.bn(x).mean((2, 3)))


        def preresnet(**kwargs):
            return PreResNet(**kwargs)
    '''))
    (tmp_path / "cifar.py").write_text(textwrap.dedent('''
        import argparse

        import models

        parser = argparse.ArgumentParser()
        parser.add_argument('--arch', '-a', default='resnet20')
        parser.add_argument('--depth', type=int, default=29)
        args = parser.parse_args()

        if args.arch.endswith('resnet'):
            model = models.__dict__[args.arch](num_classes=10, depth=args.depth)
        else:
            model = models.__dict__[args.arch](num_classes=10)
    '''))
    (tmp_path / "TRAINING.md").write_text("```\npython cifar.py -a preresnet --depth 110\n```\n")
    project = Project.scan(str(tmp_path))
    plan = Planner(project).plan(str(tmp_path / "models" / "preresnet.py"))
    calls = {t.name: t for t in plan.targets}
    # cifar.py never writes 'preresnet': the command line that runs it with -a preresnet
    # makes its registry call one of preresnet's, with the key as given (not assumed)
    target = calls["preresnet"]
    assert target.call == "preresnet(depth=110, num_classes=10)"
    assert target.origin == "cifar.py:12 as run by the command line at TRAINING.md:2 (`python cifar.py -a preresnet --depth 110`)"


def test_an_installed_registry_filled_with_the_projects_models_is_searched(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("from .resnext import *\n")
    (tmp_path / "models" / "resnext.py").write_text(textwrap.dedent('''
        import torch.nn as nn

        __all__ = ['resnext50']


        class ResNeXt(nn.Module):
            def __init__(self, baseWidth, cardinality, num_classes=1000):
                super().__init__()
                self.conv = nn.Conv2d(3, baseWidth * cardinality, 3, bias=False)
                self.bn = nn.BatchNorm2d(baseWidth * cardinality)
                self.fc = nn.Linear(baseWidth * cardinality, num_classes)

            def forward(self, x):
                return self.fc(self.bn(self.conv(x)).mean((2, 3)))


        def resnext50(baseWidth, cardinality):
            return ResNeXt(baseWidth, cardinality)
    '''))
    (tmp_path / "imagenet.py").write_text(textwrap.dedent('''
        import argparse

        import torchvision.models as models
        import models as customized_models

        for name in customized_models.__dict__:
            if name.islower() and not name.startswith("__") and callable(customized_models.__dict__[name]):
                models.__dict__[name] = customized_models.__dict__[name]

        parser = argparse.ArgumentParser()
        parser.add_argument('--arch', '-a', default='resnet18')
        parser.add_argument('--base-width', type=int, default=4)
        parser.add_argument('--cardinality', type=int, default=32)
        args = parser.parse_args()

        if args.arch.startswith('resnext'):
            model = models.__dict__[args.arch](baseWidth=args.base_width, cardinality=args.cardinality)
        else:
            model = models.__dict__[args.arch]()
    '''))
    (tmp_path / "README.md").write_text("    python imagenet.py -a resnext50 --cardinality 32\n")
    project = Project.scan(str(tmp_path))
    assert project.facts(str(tmp_path / "imagenet.py")).registry_merges == (("models", "customized_models"),)
    (target,) = Planner(project).plan(str(tmp_path / "models" / "resnext.py")).targets
    assert target.call == "resnext50(baseWidth=4, cardinality=32)"
    assert target.origin.startswith("imagenet.py:18 as run by the command line at README.md:1")


def test_the_forms_of_filling_a_namespace(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "reg.py").write_text(textwrap.dedent('''
        import torchvision.models as tvm
        import timm
        import nets
        import extra

        tvm.__dict__.update(nets.__dict__)
        for name in extra.__all__:
            setattr(timm, name, getattr(extra, name))
        table = {}
        table[0] = nets.__dict__['a']  # not a module's namespace
    '''))
    facts = Project.scan(str(tmp_path)).facts(str(tmp_path / "reg.py"))
    assert facts.registry_merges == (("tvm", "nets"), ("timm", "extra"))
