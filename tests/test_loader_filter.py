"""The definitions-only view (bnlint.model.definitions): what a model file's top level
keeps when bnlint imports it. Pure AST work: nothing here is executed."""
from __future__ import annotations

import ast
import textwrap

import pytest

from bnlint.model.definitions import filter_definitions


def _view(src: str, **kwargs):
    result = filter_definitions(ast.parse(textwrap.dedent(src)), **kwargs)
    return result, ast.unparse(result.module)


def _kept_lines(src: str, **kwargs):
    result, _ = _view(src, **kwargs)
    return {first for first, _last, _droppable in result.kept_leaves}


def test_statement_reading_a_dropped_name_is_dropped_too():
    result, code = _view("""
        import numpy as np
        import torch.nn as nn
        X = np.load("train_x.npy")
        Y = np.load("train_y.npy")
        idx = np.random.permutation(len(X))
        X, Y = X[idx], Y[idx]
        N = X.shape[1]

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(N, 2)
    """)
    assert "np.load" not in code and "X[idx]" not in code and "N =" not in code
    assert "class Net" in code  # reads N only when called: the build reports that
    why = {l.line: l.why for l in result.left_out}
    assert why[4] == "it calls load()"
    assert why[7] == "it reads 'X', which was left out"
    assert why[8] == "it reads 'X', which was left out"


def test_assignment_from_a_call_is_kept_when_a_definition_reads_it():
    _, code = _view("""
        import torch.nn as nn
        from collections import namedtuple

        class ConfigNode(dict):
            def __init__(self, **kw):
                super().__init__(**kw)

        def _ntuple(n):
            return lambda x: (x,) * n

        config = ConfigNode(width=8)
        to_2tuple = _ntuple(2)
        unused = ConfigNode(width=16)
        model = nn.Linear(3, 3)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(config["width"], 2)
                self.k = to_2tuple(3)
    """)
    assert "config = ConfigNode(width=8)" in code
    assert "to_2tuple = _ntuple(2)" in code
    assert "unused" not in code and "model = nn.Linear" not in code


@pytest.mark.parametrize("call", [
    "open('log.txt', 'w')",
    "os.makedirs('checkpoints')",
    "torch.save(net.state_dict(), 'net.pt')",
    "datasets.CIFAR10(root='./data', train=True, download=True)",
    "torchvision.datasets.MNIST('./data')",
    "clf.fit(X, y)",
    "trainer.train()",
    "subprocess.check_output(['git', 'rev-parse', 'HEAD'])",
    "shutil.rmtree('runs')",
    "SummaryWriter('runs/exp1')",
    "wandb.init(project='cifar')",
    "dist.init_process_group('nccl')",
    "torch.hub.load('pytorch/vision', 'resnet18')",
    "urllib.request.urlretrieve('https://example.com/w.pt', 'w.pt')",
    "write_header('results.csv')",  # a helper of the same file that writes
])
def test_calls_that_do_io_or_training_never_run(call):
    _, code = _view(f"""
        import os, shutil, subprocess, urllib.request
        import torch
        import torch.distributed as dist
        import torch.nn as nn
        import torchvision
        from torchvision import datasets
        from tensorboardX import SummaryWriter
        import wandb

        def write_header(path):
            with open(path, "w") as fh:
                fh.write("epoch,loss\\n")

        handle = {call}

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.handle = handle
    """)
    assert "\nhandle =" not in code
    assert "class Net" in code


def test_module_level_argparse_is_kept_with_what_reads_it():
    _, code = _view("""
        import argparse
        import os
        import torch.nn as nn

        parser = argparse.ArgumentParser()
        parser.add_argument("--dataroot", required=True)
        parser.add_argument("--ngf", type=int, default=64)
        group = parser.add_argument_group("model")
        group.add_argument("--nz", type=int, default=100)
        opt = parser.parse_args()
        print(opt)
        try:
            os.makedirs(opt.outf)
        except OSError:
            pass
        ngf = int(opt.ngf)
        nz = int(opt.nz)

        class Generator(nn.Module):
            def __init__(self):
                super().__init__()
                self.up = nn.ConvTranspose2d(nz, ngf, 4)
    """)
    for kept in ("parser = argparse.ArgumentParser()", "parser.add_argument('--ngf'", "group.add_argument('--nz'",
                 "opt = parser.parse_args()", "ngf = int(opt.ngf)", "nz = int(opt.nz)"):
        assert kept in code
    assert "print(" not in code and "makedirs" not in code and "try:" not in code


def test_main_block_and_top_level_code_never_run():
    _, code = _view("""
        import torch
        import torch.nn as nn

        class Net(nn.Module):
            pass

        torch.manual_seed(0)
        model = Net()
        for epoch in range(10):
            pass
        with open("log.txt", "w") as fh:
            fh.write("x")
        if __name__ == "__main__":
            import sys
            main()
    """)
    assert code.strip().splitlines()[-2:] == ["class Net(nn.Module):", "    pass"]


def test_training_functions_do_not_keep_the_training_setup():
    # train() reads net, optimizer and the loader: they are not needed to build a model.
    _, code = _view("""
        import torch
        import torch.nn as nn
        from models import ResNet18

        device = torch.device("cpu")
        net = ResNet18().to(device)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        criterion = nn.CrossEntropyLoss()

        def train(epoch):
            net.train()
            for x, y in trainloader:
                optimizer.zero_grad()
                criterion(net(x.to(device)), y).backward()
                optimizer.step()

        class Head(nn.Module):
            def forward(self, x):
                return x.to(device)
    """)
    assert "device = torch.device('cpu')" in code  # Head reads it
    assert "net =" not in code and "optimizer =" not in code and "criterion =" not in code


def test_names_other_modules_import_are_kept():
    src = """
        class CfgNode(dict):
            pass

        cfg = CfgNode()
        cfg.MODEL = CfgNode()
        cfg.MODEL.WIDTH = 8
        other = CfgNode()
        other.X = 1
    """
    _, alone = _view(src)
    assert "cfg" not in alone
    _, imported = _view(src, needed={"cfg"})
    assert "cfg = CfgNode()" in imported and "cfg.MODEL.WIDTH = 8" in imported
    assert "other" not in imported
    _, star = _view(src, needed={"*"})
    assert "cfg.MODEL.WIDTH = 8" in star and "other.X = 1" in star


def test_a_statement_that_raised_is_left_out_with_its_readers():
    src = """
        import os
        import torch.nn as nn
        WORLD_SIZE = int(os.environ["WORLD_SIZE"])
        LR = 0.1 * WORLD_SIZE
        WIDTH = 16

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(WIDTH, int(LR))
    """
    result, code = _view(src)
    assert "WORLD_SIZE = int(os.environ['WORLD_SIZE'])" in code
    assert result.droppable_leaf_at(4) == 4
    assert result.droppable_leaf_at(8) is None  # a class is never left out
    assert result.droppable_leaf_at(2) is None  # nor an import
    _, retried = _view(src, forced_out={4})
    assert "\nWORLD_SIZE =" not in retried and "\nLR =" not in retried and "\nWIDTH = 16" in retried


def test_guards_are_kept_around_kept_statements():
    _, code = _view("""
        import sys
        import torch
        import torch.nn as nn
        sys.path.insert(0, "..")
        try:
            from apex.parallel import SyncBatchNorm as BatchNorm2d
        except ImportError:
            BatchNorm2d = nn.BatchNorm2d
        if torch.__version__ >= "2":
            ACT = nn.GELU
        else:
            ACT = nn.ReLU
        if torch.cuda.is_available():
            torch.backends.cudnn.benchmark = True
            print("cuda")
    """)
    assert "sys.path.insert(0, '..')" in code
    assert "except ImportError:\n    BatchNorm2d = nn.BatchNorm2d" in code
    assert "ACT = nn.GELU" in code and "ACT = nn.ReLU" in code
    assert "print" not in code


def test_class_whose_base_was_left_out_is_left_out():
    result, code = _view("""
        import torch.nn as nn
        Base = make_base(open("arch.json").read())

        class Net(Base):
            pass

        class Other(nn.Module):
            pass
    """)
    assert "class Net" not in code and "class Other" in code
    assert "kept_names" and "Net" in result.left_out_names


def test_function_locals_do_not_keep_globals_of_the_same_name():
    _, code = _view("""
        import torch.nn as nn
        model = nn.Linear(2, 2)

        def build():
            model = nn.Linear(4, 4)
            return model
    """)
    assert "model = nn.Linear(2, 2)" not in code


def test_imports_are_listed_for_the_importers_needs():
    result, _ = _view("""
        from config import cfg, opt
        from . import layers
        from .blocks import *
        import utils.misc as misc
        WIDTH = misc.DEFAULT_WIDTH
    """)
    assert ("config", 0, ("cfg", "opt")) in result.imports
    assert ("", 1, ("layers",)) in result.imports
    assert ("blocks", 1, ("*",)) in result.imports
    assert ("utils.misc", "DEFAULT_WIDTH") in result.module_attribute_reads


def test_only_constants_are_assigned_into_imported_modules():
    _, code = _view("""
        import os
        import sys
        import torch
        from utils import Logger

        sys.stdout = Logger("train.log")
        os.environ["CUDA_VISIBLE_DEVICES"] = "0"
        torch.backends.cudnn.benchmark = True

        def f():
            return sys.argv, os.sep, torch.ones(1)
    """)
    assert "sys.stdout" not in code and "Logger(" not in code
    assert "os.environ['CUDA_VISIBLE_DEVICES'] = '0'" in code
    assert "torch.backends.cudnn.benchmark = True" in code


def test_a_loop_that_only_registers_variants_is_kept():
    """``setattr(<this module>, name, partial(...))`` / ``globals()[name] = ...`` in a
    top-level loop over constants defines the module's factories: kept, with the
    module alias it reads. A loop that does anything else is top-level code."""
    src = textwrap.dedent("""\
        import sys
        from functools import partial

        def _build(depth, num_classes=10):
            return depth, num_classes

        def resnet20(*args, **kwargs): ...

        this = sys.modules[__name__]
        for dataset in ["cifar10", "cifar100"]:
            for depth in (20, 32):
                classes = 10 if dataset == "cifar10" else 100
                setattr(this, f"{dataset}_resnet{depth}", partial(_build, depth, num_classes=classes))
        for depth in (44, 56):
            globals()[f"resnet{depth}"] = partial(_build, depth)
        for depth in (110,):
            print("registering", depth)
            setattr(this, f"resnet{depth}", partial(_build, depth))
        for path in ["a.pt"]:
            state = open(path).read()
        """)
    assert _kept_lines(src) == {1, 2, 4, 7, 9, 10, 14}
    left = {l.line: l.why for l in filter_definitions(ast.parse(src)).left_out}
    assert left == {16: "it is top-level code, not a definition", 19: "it calls open()"}
