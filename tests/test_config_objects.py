"""Objects passed whole to a model: a project's configuration object (yacs/EasyDict
style, written attribute by attribute at module level) and the parsed command-line
options (bnlint.model.facts.ConfigTree, bnlint.model.resolve.Built)."""
from __future__ import annotations

import os
import textwrap

from conftest import FIXTURES

from bnlint.model.facts import module_facts
from bnlint.model.plan import Planner
from bnlint.model.project import Project

CONFIG_REPO = FIXTURES / "repos" / "models_config_object"
OPTIONS_REPO = FIXTURES / "repos" / "models_options_namespace"


def _facts(source: str):
    return module_facts("m.py", textwrap.dedent(source).encode(), lambda module, level: None)


def _plan(root, rel):
    return Planner(Project.scan(str(root))).plan(os.path.join(str(root), rel))


def test_a_configuration_object_is_read_with_its_sections_and_aliases():
    facts = _facts('''
        from easydict import EasyDict as edict

        __C = edict()
        cfg = __C
        __C.TRAIN = edict()
        __C.TRAIN.LR = 0.1
        __C.MODEL = edict()
        __C.MODEL.DEPTH = 28
        __C.MODEL.BLOCKS = [2, 2, 2]
        __C.MODEL.HEAD.DROPOUT = 0.5
    ''')
    tree = facts.config_trees["__C"]
    assert facts.config_trees["cfg"] is tree
    assert tree.line == 4
    assert tree.node == {"TRAIN": {"LR": "0.1"},
                         "MODEL": {"DEPTH": "28", "BLOCKS": "[2, 2, 2]", "HEAD": {"DROPOUT": "0.5"}}}


def test_objects_that_are_not_configurations_are_not_read_as_one():
    facts = _facts('''
        import torch.nn as nn

        model = nn.Linear(4, 2)
        model.weight.requires_grad = False

        parser = make_parser()
        parser.prog = 'x'
        parser.epilog = 'y'
        parser = None
    ''')
    # nn.Linear(4, 2) has arguments that are constants but one write only; the parser is
    # bound again afterwards
    assert facts.config_trees == {}


def test_a_parameter_records_the_attributes_its_body_reads():
    facts = _facts('''
        import torch.nn as nn

        class Network(nn.Module):
            def __init__(self, config, scale=1):
                super().__init__()
                model_config = config.model.wrn
                self.fc = nn.Linear(16 * scale, config.dataset.n_classes)
    ''')
    assert dict(facts.definitions["Network"].param_attrs) == {"config": frozenset({"model", "dataset"})}


def test_a_class_built_by_no_call_gets_the_configuration_object_it_reads():
    plan = _plan(CONFIG_REPO, "models/wrn.py")
    (target,) = [t for t in plan.targets if t.name == "Network"]
    assert target.call == "Network(config=<_C of config/defaults.py:3>)"
    assert target.origin.startswith("the project's configuration object (config/defaults.py:3)")
    assert target.assumed  # defaults that do not fit it mean "needs arguments"
    (name, config), = target.kwargs
    assert name == "config"
    values = config["__built__"]["values"]
    assert values["MODEL"]["WRN"] == {"DEPTH": 16, "WIDEN_FACTOR": 4, "DROP_RATE": 0.3}
    assert values["DATASET"]["N_CLASSES"] == 10


def test_a_call_reading_the_configuration_object_resolves_through_it():
    plan = _plan(CONFIG_REPO, "models/densenet.py")
    (target,) = [t for t in plan.targets if t.name == "DenseNet"]
    assert target.call == "DenseNet(depth=40, growth_rate=12, num_classes=10, drop_rate=0.2)"
    assert target.origin == "models/__init__.py:11 (a call made only when name == 'densenet')"


def test_parsed_options_passed_whole_are_their_defaults():
    plan = _plan(OPTIONS_REPO, "models/simple_cnn.py")
    (target,) = [t for t in plan.targets if t.name == "SimpleCNN"]
    assert target.call == "SimpleCNN(opt=<the command-line options' defaults>)"
    (options,) = target.args
    values = options["__built__"]["values"]
    assert values["n_channels"] == 1 and values["width"] == 32 and values["p_drop"] == 0.1
    assert values["data"] is None and values["no_cuda"] is False  # as parse_args([]) gives them


def test_options_passed_to_a_class_that_reads_what_no_option_declares_do_not_resolve(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "nets.py").write_text(textwrap.dedent('''
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self, args):
                super().__init__()
                self.fc = nn.Linear(args.width, args.num_classes)
    '''))
    (tmp_path / "train.py").write_text(textwrap.dedent('''
        import argparse

        from nets import Net

        parser = argparse.ArgumentParser()
        parser.add_argument("--width", default=64, type=int)
        args = parser.parse_args()
        model = Net(args)
    '''))
    plan = _plan(tmp_path, "nets.py")
    assert plan.targets == ()
    assert plan.needs_arguments == (("Net", ("args",)),)


def test_options_returned_by_a_helper_are_their_defaults(tmp_path):
    """``opt = TrainOptions().parse()``: the options object comes from a call bnlint does
    not follow; passed to a parameter read only for attributes, it is the options'
    defaults when every one of those attributes is an option."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "options.py").write_text(textwrap.dedent('''
        import argparse


        class TrainOptions:
            def initialize(self, parser):
                parser.add_argument('--input_nc', type=int, default=3)
                parser.add_argument('--ngf', type=int, default=64)
                parser.add_argument('--no_dropout', action='store_true')
                return parser

            def parse(self):
                return self.initialize(argparse.ArgumentParser()).parse_args()
    '''))
    (tmp_path / "net.py").write_text(textwrap.dedent('''
        import torch.nn as nn


        class Generator(nn.Module):
            def __init__(self, opt):
                super().__init__()
                layers = [nn.Conv2d(opt.input_nc, opt.ngf, 3, padding=1, bias=False)]
                if not opt.no_dropout:
                    layers.append(nn.Dropout(0.5))
                self.model = nn.Sequential(*layers)
    '''))
    (tmp_path / "train.py").write_text(textwrap.dedent('''
        from options import TrainOptions
        from net import Generator

        opt = TrainOptions().parse()
        netG = Generator(opt)
    '''))
    (target,) = _plan(tmp_path, "net.py").targets
    assert target.call == "Generator(opt=<the command-line options' defaults>)"
    assert target.origin == "train.py:6"
    (options,) = target.args
    assert options["__built__"]["values"] == {"input_nc": 3, "ngf": 64, "no_dropout": False}


def test_a_class_with_a_configuration_and_optional_parameters_keeps_their_defaults(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "defaults.py").write_text(textwrap.dedent('''
        from easydict import EasyDict as edict

        cfg = edict()
        cfg.MODEL = edict()
        cfg.MODEL.WIDTH = 32
        cfg.DATA = edict()
        cfg.DATA.CLASSES = 100
    '''))
    (tmp_path / "net.py").write_text(textwrap.dedent('''
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self, cfg, in_channels=3):
                super().__init__()
                self.conv = nn.Conv2d(in_channels, cfg.MODEL.WIDTH, 3)
                self.fc = nn.Linear(cfg.MODEL.WIDTH, cfg.DATA.CLASSES)
    '''))
    (target,) = _plan(tmp_path, "net.py").targets
    assert target.call == "Net(cfg=<cfg of defaults.py:4>)"
    assert dict(target.kwargs)["cfg"]["__built__"]["values"] == {"MODEL": {"WIDTH": 32}, "DATA": {"CLASSES": 100}}
