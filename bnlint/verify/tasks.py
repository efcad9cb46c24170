"""Training tasks: a built-in synthetic task shaped like the model's inputs, or the
user's own (``--task module:function``).

The synthetic task is learnable by a small network in a few hundred steps:

- images ``(C, H, W)`` and sequences ``(C, L)``: one smooth prototype pattern per class
  plus Gaussian noise;
- vectors ``(F,)``: Gaussian clusters, one per class;
- one output unit: regression on a fixed random projection of the same inputs.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from bnlint.verify.options import VerifyError

__all__ = ["TaskData", "synthetic_task", "gaussian_classes", "load_user_task", "output_width"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TaskData:
    """Train and validation data plus the loss; ``classes`` is 0 for regression."""

    train: Dataset
    val: Dataset
    loss_fn: LossFn
    classes: int
    description: str

    @property
    def is_classification(self) -> bool:
        return self.classes > 1


def output_width(model: torch.nn.Module, example: Sequence[torch.Tensor]) -> int:
    """The model's output width on the example inputs (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(*example)
    finally:
        model.train(was_training)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise VerifyError(
            f"the model's output has shape {shape}; the built-in task needs (batch, classes) "
            "outputs. Pass --task module:function returning (train_dataset, val_dataset, loss)"
        )
    return int(out.shape[1])


def _smooth_patterns(count: int, shape: Tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """``count`` low-frequency patterns of ``shape`` (C, H, W) or (C, L), unit RMS."""
    channels, spatial = shape[0], shape[1:]
    coarse = tuple(max(1, min(4, s)) for s in spatial)
    low = torch.randn((count, channels) + coarse, generator=gen)
    mode = "bilinear" if len(spatial) == 2 else "linear" if len(spatial) == 1 else "trilinear"
    up = F.interpolate(low, size=spatial, mode=mode, align_corners=False)
    # A per-class channel offset makes the class visible after global pooling too.
    offset = torch.randn((count, channels) + (1,) * len(spatial), generator=gen)
    pattern = up + offset
    rms = pattern.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-6)
    return pattern / rms.view((count,) + (1,) * (pattern.dim() - 1))


def synthetic_task(input_shape: Tuple[int, ...], classes: int, n_train: int, n_val: int, seed: int) -> TaskData:
    """A learnable task with inputs of ``input_shape`` (without the batch dimension)."""
    if classes < 1:
        raise VerifyError("the model has no outputs")
    gen = torch.Generator().manual_seed(10_007 * seed + 17)
    n = n_train + n_val
    regression = classes == 1
    centres = max(classes, 2) if not regression else 4
    if len(input_shape) == 1:
        dim = input_shape[0]
        # Mean distance about 3.5 noise units: learnable, but not trivially separable.
        means = torch.randn(centres, dim, generator=gen) * (3.5 / math.sqrt(2.0 * dim))
        kind = "Gaussian clusters"
    elif len(input_shape) in (2, 3, 4):
        # Signal-to-noise chosen so that the class is clear but not trivial per pixel.
        means = _smooth_patterns(centres, input_shape, gen) * 0.8
        kind = "prototype patterns"
    else:
        raise VerifyError(f"cannot build a synthetic task for inputs of shape {input_shape}; pass --task")
    labels = torch.randint(0, centres, (n,), generator=gen)
    x = means[labels] + torch.randn((n,) + tuple(input_shape), generator=gen)
    if regression:
        direction = torch.randn(tuple(input_shape), generator=gen)
        direction = direction / direction.norm()
        y = (x * direction).flatten(1).sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=gen)
        loss_fn: LossFn = F.mse_loss
        description = f"synthetic regression on {kind}, inputs {tuple(input_shape)}"
        classes_out = 0
    else:
        y = labels
        loss_fn = F.cross_entropy
        description = f"synthetic {classes}-class {kind}, inputs {tuple(input_shape)}"
        classes_out = classes
    train = TensorDataset(x[:n_train].contiguous(), y[:n_train].contiguous())
    val = TensorDataset(x[n_train:].contiguous(), y[n_train:].contiguous())
    return TaskData(train, val, loss_fn, classes_out, f"{description}, {n_train} train / {n_val} val")


def _import_task_function(spec: str, search_dirs: Sequence[str]) -> Callable:
    if ":" not in spec:
        raise VerifyError(f"--task {spec!r}: write module:function (e.g. mytasks:cifar_subset)")
    module_name, func_name = spec.rsplit(":", 1)
    added = [d for d in search_dirs if d and d not in sys.path]
    sys.path[:0] = added
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            spec_obj = importlib.util.spec_from_file_location("bnlint_user_task", module_name)
            if spec_obj is None or spec_obj.loader is None:
                raise VerifyError(f"--task: cannot load {module_name}")
            module = importlib.util.module_from_spec(spec_obj)
            spec_obj.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except VerifyError:
        raise
    except Exception as exc:
        raise VerifyError(f"--task {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    finally:
        for d in added:
            if d in sys.path:
                sys.path.remove(d)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise VerifyError(f"--task {spec}: {module_name} has no function {func_name}")
    return func


def load_user_task(spec: str, classes: int, search_dirs: Sequence[str] = ()) -> TaskData:
    """Call the user's task function: ``(train, val)`` or ``(train, val, loss_fn)``."""
    func = _import_task_function(spec, search_dirs)
    try:
        result = func()
    except Exception as exc:
        raise VerifyError(f"--task {spec} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(result, (tuple, list)) or len(result) not in (2, 3):
        raise VerifyError(f"--task {spec} must return (train_dataset, val_dataset) or (train, val, loss_fn)")
    train, val = result[0], result[1]
    for name, ds in (("train", train), ("val", val)):
        if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__") or len(ds) < 2:
            raise VerifyError(f"--task {spec}: the {name} dataset must be a map-style dataset with >= 2 items")
    loss_fn: Optional[LossFn] = result[2] if len(result) == 3 else None
    if loss_fn is None:
        loss_fn = F.cross_entropy if classes > 1 else F.mse_loss
    is_cls = loss_fn is F.cross_entropy or getattr(loss_fn, "__name__", "") == "cross_entropy" or isinstance(
        loss_fn, torch.nn.CrossEntropyLoss
    )
    return TaskData(train, val, loss_fn, classes if is_cls and classes > 1 else 0,
                    f"user task {spec}, {len(train)} train / {len(val)} val")


def gaussian_classes(n_train: int, n_val: int, dim: int, seed: int, classes: int = 2,
                     mean_std: float = 0.5) -> TaskData:
    """Wu et al.'s setting: class means ~ N(0, mean_std^2 I), unit Gaussian noise."""
    gen = torch.Generator().manual_seed(7919 * seed + 3)
    means = torch.randn(classes, dim, generator=gen) * mean_std
    n = n_train + n_val
    labels = torch.arange(n) % classes
    labels = labels[torch.randperm(n, generator=gen)]
    x = means[labels] + torch.randn(n, dim, generator=gen)
    train = TensorDataset(x[:n_train].contiguous(), labels[:n_train].contiguous())
    val = TensorDataset(x[n_train:].contiguous(), labels[n_train:].contiguous())
    return TaskData(train, val, F.cross_entropy, classes,
                    f"{classes} Gaussian classes, d={dim}, {n_train} train / {n_val} val")
