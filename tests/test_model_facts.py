"""What the project planner reads from a file statically (bnlint.model.facts and
targets): which functions may be model factories, which values the script gives its
parsed options, and which project modules a function imports."""
from __future__ import annotations

import ast
import textwrap

from bnlint.model.facts import module_facts
from bnlint.model.targets import may_define_factories

TRAIN = textwrap.dedent('''
    import argparse

    import torch


    def build(width=2):
        return WideResNet(28, width)


    def main():
        parser = argparse.ArgumentParser()
        parser.add_argument("--drop", type=float, default=0.3)
        args = parser.parse_args()
        if args.drop > 0.5:
            args.num_classes = 100
        else:
            args.num_classes = 10
        args.num_classes = 1000
        args.lr = args.drop * 2

        def create_model(args):
            import nets.wrn as nets
            from nets.heads import Head
            return nets.build_wrn(num_classes=args.num_classes)

        model = create_model(args)
        for epoch in range(10):
            model.train()


    def lazy_head():
        return lambda: torch.nn.Linear(4, 2)
''')


def test_a_function_is_a_factory_by_its_own_returns_only():
    """``main`` returns nothing itself: the ``return`` of the function defined in it is
    not its own, and bnlint must never call a training script's main()."""
    assert may_define_factories(ast.parse(TRAIN)) == ["build"]


def _facts(text):
    project = {"nets.wrn": "/p/nets/wrn.py", "nets.heads": "/p/nets/heads.py"}
    return module_facts("/p/train.py", text.encode(), lambda module, level: project.get(module))


def test_literal_values_set_on_parsed_options_first_in_the_file():
    facts = _facts(TRAIN)
    assert facts.set_options == {"num_classes": ("100", 16)}  # the first, whatever branch; not args.lr
    assert "drop" in facts.options and "num_classes" not in facts.options


def test_no_options_are_read_from_objects_that_are_not_parsed_arguments():
    facts = _facts("class Cfg:\n    pass\n\ncfg = Cfg()\ncfg.num_classes = 10\n")
    assert facts.set_options == {}


def test_project_modules_imported_inside_functions_are_known():
    facts = _facts(TRAIN)
    assert facts.imports["nets"] == ("module", "/p/nets/wrn.py")
    assert facts.imports["Head"] == ("from", ("/p/nets/heads.py", "Head"))
    assert "argparse" in facts.imports and "torch" in facts.imports


def test_dataset_classes_of_domain_libraries_are_not_models():
    from bnlint.model.targets import may_define_models

    source = textwrap.dedent('''
        import torch
        import torchvision
        import torchvision.datasets as tv_data
        from torchvision import datasets, transforms
        from torchvision.datasets import CIFAR10


        class CIFAR10SSL(datasets.CIFAR10):
            pass


        class Labeled(torchvision.datasets.CIFAR10):
            pass


        class Folder(tv_data.ImageFolder):
            pass


        class Plain(CIFAR10):
            pass


        class Derived(CIFAR10SSL):
            pass


        class Crop(transforms.RandomCrop):  # torchvision transforms are nn.Modules
            pass


        class Net(torch.nn.Module):
            pass
    ''')
    assert may_define_models(ast.parse(source)) == ["Crop", "Net"]


def test_layers_of_other_frameworks_are_not_models():
    from bnlint.model.targets import may_define_models

    source = textwrap.dedent('''
        import tensorflow as tf
        import torch.nn as nn
        from tensorflow import keras


        class TFConv(keras.layers.Layer):
            def __init__(self, c1, c2):
                super().__init__()


        class TFBN(tf.keras.layers.Layer):
            pass


        class Conv(nn.Module):
            pass
    ''')
    assert sorted(may_define_models(ast.parse(source))) == ["Conv"]
