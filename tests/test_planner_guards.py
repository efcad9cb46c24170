"""Call sites the default options do not run (bnlint.model.resolve, assume_guards):
their arguments are used when no call the defaults run resolves, and only when they
read nothing that the call's unmet if-tests read."""
from __future__ import annotations

import os
import textwrap

from conftest import FIXTURES

from bnlint.model.plan import Planner
from bnlint.model.project import Project

REPO = FIXTURES / "repos" / "models_guarded_call"


def _plan(root, rel):
    project = Project.scan(str(root))
    return Planner(project).plan(os.path.join(str(root), rel))


def test_a_call_under_a_test_on_another_option_gives_its_arguments():
    plan = _plan(REPO, "networks/lenet.py")
    (target,) = plan.targets
    assert target.call == "LeNet(num_classes=10)"
    assert target.origin == "main.py:42 (a call made only when args.net_type == 'lenet')"
    assert plan.needs_arguments == ()


def test_a_call_the_defaults_run_is_preferred_and_says_nothing_more():
    (target,) = _plan(REPO, "networks/plainnet.py").targets
    assert target.call == "PlainNet(depth=28, num_classes=10, dropout_rate=0.3)"
    assert target.origin == "main.py:45"


def test_a_call_whose_arguments_read_what_its_test_reads_is_not_used():
    plan = _plan(REPO, "networks/deepnet.py")
    assert plan.targets == ()
    assert plan.needs_arguments == (("DeepNet", ("depth", "num_classes")),)


def test_assignments_under_the_same_test_are_read_as_run(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "nets.py").write_text(textwrap.dedent('''
        import torch.nn as nn


        class Small(nn.Module):
            def __init__(self, width, num_classes):
                super().__init__()
                self.fc = nn.Linear(width, num_classes)
    '''))
    (tmp_path / "train.py").write_text(textwrap.dedent('''
        import argparse

        from nets import Small

        parser = argparse.ArgumentParser()
        parser.add_argument("--model", default="big")
        parser.add_argument("--width", default=64, type=int)
        args = parser.parse_args()

        if args.model == "small":
            width = 8
            net = Small(width, num_classes=10)
        elif args.model == "tiny":
            net = Small(args.width // 8 if args.model == "tiny" else 4, num_classes=10)
    '''))
    (target,) = _plan(tmp_path, "nets.py").targets
    assert target.call == "Small(width=8, num_classes=10)"
    assert target.origin == "train.py:13 (a call made only when args.model == 'small')"


NET = textwrap.dedent('''
    import torch.nn as nn


    class Aux(nn.Module):
        def __init__(self, in_channels, num_classes):
            super().__init__()
            self.fc = nn.Linear(in_channels, num_classes)


    class Net(nn.Module):
        def __init__(self, num_classes=10, aux_logits=False, width=None):
            super().__init__()
            self.fc = nn.Linear(8, num_classes)
            if aux_logits:
                self.aux = Aux(8, num_classes)
            if width:
                self.extra = Aux(width, num_classes)

''')


def test_a_class_built_only_under_a_flag_that_is_off_by_default_is_said_so(tmp_path):
    from bnlint.model.failures import not_analysed_notes
    from bnlint.model.modelcheck import ModelJob

    (tmp_path / ".git").mkdir()
    (tmp_path / "net.py").write_text(NET)
    plan = _plan(tmp_path, "net.py")
    assert plan.conditional == ((
        "Aux", "Net builds it only when aux_logits is true (the default is False)", "Net(aux_logits=True)"),)
    job = ModelJob(path="net.py", abs_path=str(tmp_path / "net.py"), plan=plan.to_request())
    result = {"models": [{"name": "Net", "graph": {}, "covers": [[str(tmp_path / "net.py"), "Net"]]}]}
    (note,) = not_analysed_notes(job, result)
    assert note.message == (
        "model Aux was not analysed: Net builds it only when aux_logits is true (the default is False), and no "
        "model built from this project sets it; name it with 'net.py::Net(aux_logits=True)' or in "
        "[tool.bnlint] models")
    assert dict(note.details)["not_analysed"] == "not-built"


def test_a_class_some_user_builds_unconditionally_is_not_conditional(tmp_path):
    (tmp_path / ".git").mkdir()
    plain = textwrap.dedent('''

        class Plain(nn.Module):
            def __init__(self):
                super().__init__()
                self.aux = Aux(8, 2)
    ''')
    (tmp_path / "net.py").write_text(NET + plain)
    assert _plan(tmp_path, "net.py").conditional == ()
    # an if-test that is no parameter's name claims nothing
    (tmp_path / "net.py").write_text(NET.replace("if aux_logits:", "if not aux_logits:"))
    assert _plan(tmp_path, "net.py").conditional == ()


REGISTRY = FIXTURES / "repos" / "models_registry_branches"


def test_a_registry_call_under_a_test_on_its_key_is_a_call_of_the_member_it_selects():
    plan = _plan(REGISTRY, "models/cifar/resnext.py")
    # resnext(**kwargs) passes everything on: the registry call is its build (a bare
    # build would pass nothing the class needs)
    (target,) = plan.targets
    assert target.name == "resnext" and target.fallback is None
    assert target.call == "resnext(cardinality=8, depth=29, dropRate=0.25, num_classes=10, widen_factor=4)"
    assert target.origin == "cifar.py:45 (a call made only when args.arch == 'resnext')"
    assert target.assumed
    wrn = _plan(REGISTRY, "models/cifar/wrn.py").targets[0]
    assert wrn.origin == "cifar.py:53 (a call made only when args.arch == 'wrn')" and wrn.assumed


def test_a_registry_call_no_test_selects_or_whose_arguments_read_the_key_is_not_used(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "models.py").write_text(textwrap.dedent('''
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self, depth, num_classes):
                super().__init__()
                self.fc = nn.Linear(depth, num_classes)


        class Other(nn.Module):
            def __init__(self, depth, name):
                super().__init__()
                self.fc = nn.Linear(depth, 2)
    '''))
    (tmp_path / "train.py").write_text(textwrap.dedent('''
        import argparse

        import models

        parser = argparse.ArgumentParser()
        parser.add_argument("--arch", default="missing")
        parser.add_argument("--depth", default=8, type=int)
        args = parser.parse_args()

        if args.arch.startswith("Other"):
            model = models.__dict__[args.arch](args.depth, name=args.arch)
        elif args.arch.lower() == "zzz":
            model = models.__dict__[args.arch](args.depth, 10)
        else:
            model = getattr(models, args.arch)(args.depth, 10)
    '''))
    plan = _plan(tmp_path, "models.py")
    # Net: only the else branch, which no test selects; Other: its arguments read the key
    assert plan.targets == ()
    assert dict(plan.needs_arguments) == {"Net": ("depth", "num_classes"), "Other": ("depth", "name")}


def test_string_methods_of_resolved_values_are_evaluated(tmp_path):
    from bnlint.model.resolve import Evaluator

    (tmp_path / "t.py").write_text("NAME = 'ResNeXt29'\n")
    project = Project.scan(str(tmp_path))
    ev = Evaluator(project, str(tmp_path / "t.py"), None)
    assert ev.text("NAME.lower().startswith('resnext')") is True
    assert ev.text("NAME.endswith(('29', '50'))") is True
    assert ev.text("NAME.replace('29', '')") == "ResNeXt"


def test_a_model_that_fails_as_it_is_keeps_its_error_when_the_assumed_call_fails_too(tmp_path):
    import json

    from conftest import run_bnlint

    (tmp_path / ".git").mkdir()
    (tmp_path / "nets.py").write_text(textwrap.dedent('''
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self, width=8, num_classes=10):
                super().__init__()
                if width % 3:
                    raise ValueError("width must be a multiple of 3")
                self.fc = nn.Linear(width, num_classes)


        class Wide(nn.Module):
            def __init__(self, width, num_classes=10):
                super().__init__()
                assert width > 100, "too narrow"
                self.fc = nn.Linear(width, num_classes)
    '''))
    (tmp_path / "train.py").write_text(textwrap.dedent('''
        import argparse

        from nets import Net, Wide

        parser = argparse.ArgumentParser()
        parser.add_argument("--model", default="other")
        args = parser.parse_args()
        if args.model == "net":
            model = Net(width=4)
        elif args.model == "wide":
            model = Wide(16)
    '''))
    proc = run_bnlint("check", "--no-cache", "--format", "json", "nets.py", cwd=tmp_path)
    found = {(f["details"].get("model"), f["severity"], f["details"].get("not_analysed")): f["message"]
             for f in json.loads(proc.stdout) if f["code"] == "BNL001"}
    # Net() itself raises: that error stands, whatever the call the defaults do not run gives
    assert ("Net", "error", "build-failed") in found, found
    assert "width must be a multiple of 3" in found[("Net", "error", "build-failed")]
    # Wide needs arguments, and those of the call under `args.model == 'wide'` do not fit
    assert found[("Wide", "info", "needs-arguments")].startswith(
        "model Wide was not analysed: built as Wide(width=16), with the arguments of train.py:12 "
        "(a call made only when args.model == 'wide'), it raised AssertionError: too narrow"), found


def test_a_parameter_with_a_literal_default_gives_that_default(tmp_path):
    """``def get_model(conf, num_class=10): ... WideResNet(40, 2, num_classes=num_class)``:
    the parameter's default is a value its author wrote; a parameter without one (or
    defaulting to None) stays unknown."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "networks.py").write_text(textwrap.dedent('''
        import torch.nn as nn


        class WideResNet(nn.Module):
            def __init__(self, depth, widen_factor, dropout_rate, num_classes):
                super().__init__()
                self.fc = nn.Linear(depth * widen_factor, num_classes)


        class PyramidNet(nn.Module):
            def __init__(self, depth, alpha, num_classes):
                super().__init__()
                self.fc = nn.Linear(depth + alpha, num_classes)


        def get_model(conf, num_class=10, width=None):
            name = conf["type"]
            if name == "wresnet40_2":
                model = WideResNet(40, 2, dropout_rate=0.0, num_classes=num_class)
            elif name == "pyramid":
                model = PyramidNet(conf["depth"], alpha=width, num_classes=num_class)
            return model
    '''))
    plan = _plan(tmp_path, "networks.py")
    assert [t.call for t in plan.targets] == ["WideResNet(depth=40, widen_factor=2, dropout_rate=0.0, num_classes=10)"]
    assert plan.needs_arguments == (("PyramidNet", ("depth", "alpha", "num_classes")),)
