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
