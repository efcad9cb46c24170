"""Which classes are models: a class whose file cannot tell (its base comes from another
module) is not one when the project shows that none of its bases is an nn.Module
(bnlint.model.plan.Planner.is_model_class)."""
from __future__ import annotations

import os
import textwrap

from bnlint.model.plan import Planner
from bnlint.model.project import Project


def test_subclasses_of_project_classes_that_are_not_modules_are_not_models(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "base.py").write_text(textwrap.dedent('''
        import torch.nn as nn
        from torch.utils.data import Dataset


        class ModelBase():
            def __init__(self, opt):
                self.opt = opt


        class LoadImages(Dataset):
            def __init__(self, path):
                self.path = path


        class Block(nn.Module):
            def __init__(self, width):
                super().__init__()
                self.conv = nn.Conv2d(width, width, 3, padding=1)
    '''))
    (tmp_path / "models.py").write_text(textwrap.dedent('''
        import torch.nn as nn

        from base import Block, LoadImages, ModelBase


        class ModelPlain(ModelBase):
            def __init__(self, opt):
                super().__init__(opt)


        class LoadImagesAndMasks(LoadImages):
            def __init__(self, path, masks):
                super().__init__(path)


        class WideBlock(Block):
            pass


        class Hybrid(ModelBase, nn.Module):
            def __init__(self):
                nn.Module.__init__(self)
    '''))
    plan = Planner(Project.scan(str(tmp_path))).plan(os.path.join(str(tmp_path), "models.py"))
    assert [name for name, _ in plan.models] == ["WideBlock", "Hybrid"]
    assert plan.needs_arguments == (("WideBlock", ("width",)),)


def test_fx_tracers_interpreters_and_timm_schedulers_are_not_models_but_graph_modules_are(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "passes.py").write_text(textwrap.dedent('''
        import torch
        import torch.fx
        from torch.fx import GraphModule, Interpreter, Tracer
        from timm.scheduler.scheduler import Scheduler


        class LeafTracer(Tracer):
            def is_leaf_module(self, m, qualname):
                return isinstance(m, torch.nn.BatchNorm2d) or super().is_leaf_module(m, qualname)


        class ShapeProp(torch.fx.Interpreter):
            def run_node(self, n):
                return super().run_node(n)


        class Traced(GraphModule):
            pass


        class WarmupScheduler(Scheduler):
            def _get_lr(self, t):
                return [0.1 for _ in self.base_values]


        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.bn = torch.nn.BatchNorm2d(3)
    '''))
    plan = Planner(Project.scan(str(tmp_path))).plan(os.path.join(str(tmp_path), "passes.py"))
    assert [name for name, _ in plan.models] == ["Traced", "Net"]
