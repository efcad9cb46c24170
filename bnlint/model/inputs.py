"""Example inputs for a model that names none: shapes inferred from its first layer.

Runs in the worker. A model file may define ``example_inputs()``; the config may set
``input-shape``; otherwise the first weight layer decides the kind of input
(``Conv2d(C, ...)`` -> ``(2, C, H, W)``, ``Conv1d`` -> ``(2, C, L)``, ``Linear(F, ...)`` ->
``(2, F)``, ``Embedding`` -> token ids) and the size comes from a ladder of common
sizes, starting with the one the project's scripts imply (MNIST 28, CIFAR 32,
ImageNet 224): the first size the forward accepts wins. Sizes are tried on the meta
device first, where a failed forward costs next to nothing.
"""
from __future__ import annotations

from typing import Any, Iterator, List, Optional, Sequence, Tuple

__all__ = ["NoInputShape", "first_layer", "input_ladder", "SPATIAL_LADDER"]

SPATIAL_LADDER = (32, 28, 64, 96, 128, 224, 299)
LENGTH_LADDER = (64, 128, 256, 1024, 16000)
VOLUME_LADDER = ((16, 32, 32), (16, 112, 112), (8, 64, 64))
BATCH = 2  # batch 1 fails in train mode on BN after pooling


class NoInputShape(LookupError):
    """No first layer tells what the model takes."""


def first_layer(model, gm=None):
    """The first weight layer the forward applies (from the traced graph when there is
    one), else the first one registered."""
    import torch.nn as nn

    kinds = (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding, nn.EmbeddingBag, nn.Bilinear)
    if gm is not None:
        for node in gm.graph.nodes:
            if node.op == "call_module":
                try:
                    sub = gm.get_submodule(node.target)
                except AttributeError:
                    continue
                if isinstance(sub, kinds):
                    return sub
    for sub in model.modules():
        if isinstance(sub, kinds):
            return sub
    return None


def input_ladder(first, device: str, hint: Optional[int] = None) -> Iterator[Tuple[Any, ...]]:
    """Candidate example inputs for a model whose first layer is ``first``, the most
    likely first: the size the project implies, then 32, 28, 64, ... (2-d), the
    usual lengths (1-d) and volumes (3-d). Raises NoInputShape without a first layer."""
    import torch
    import torch.nn as nn

    if isinstance(first, (nn.Embedding, nn.EmbeddingBag)):
        yield (torch.randint(0, first.num_embeddings, (BATCH, 16), device=device),)
        return
    if isinstance(first, nn.Linear):
        yield (torch.randn(BATCH, first.in_features, device=device),)
        return
    if isinstance(first, nn.Bilinear):
        yield (torch.randn(BATCH, first.in1_features, device=device), torch.randn(BATCH, first.in2_features, device=device))
        return
    if isinstance(first, nn.modules.conv._ConvNd):
        channels = first.in_channels
        dims = len(first.kernel_size)
        if dims == 2:
            sizes: List[Sequence[int]] = [(s, s) for s in _ordered(SPATIAL_LADDER, hint)]
        elif dims == 1:
            sizes = [(s,) for s in LENGTH_LADDER]
        else:
            sizes = [tuple(v) for v in VOLUME_LADDER]
        for size in sizes:
            yield (torch.randn(BATCH, channels, *size, device=device),)
        return
    raise NoInputShape(
        "cannot infer the input shape: define a module-level example_inputs() returning a tuple "
        "of tensors, or set input-shape in [tool.bnlint] (or --input-shape)"
    )


def _ordered(ladder: Sequence[int], hint: Optional[int]) -> List[int]:
    out = [hint] if hint else []
    return out + [s for s in ladder if s not in out]


def describe_shapes(inputs: Sequence[Any]) -> str:
    import torch

    return ", ".join(str(tuple(t.shape)) for t in inputs if isinstance(t, torch.Tensor))
