"""Data order and batches: the same order for the before and after models.

``random_reshuffle`` draws a fresh permutation every epoch (RR); ``single_shuffle``
draws one and reuses it (SS, Wu et al. 2023). Both are reproducible from a seed.
"""
from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset, TensorDataset
from torch.utils.data._utils.collate import default_collate

from bnlint.verify.environment import amp_dtype, autocast_for

__all__ = ["BatchSource", "epoch_orders", "batches_of"]

Batch = Tuple[Tuple[torch.Tensor, ...], torch.Tensor]


def epoch_orders(n: int, epochs: int, seed: int, mode: str = "rr", fixed: Optional[Sequence[int]] = None) -> List[torch.Tensor]:
    """One index order per epoch. ``mode``: ``rr`` (reshuffle), ``ss`` (single shuffle)."""
    if fixed is not None:
        order = torch.as_tensor(list(fixed), dtype=torch.long)
        if sorted(order.tolist()) != list(range(n)):
            raise ValueError(f"a fixed order must be a permutation of range({n})")
        return [order] * epochs
    gen = torch.Generator().manual_seed(seed)
    if mode == "ss":
        order = torch.randperm(n, generator=gen)
        return [order] * epochs
    if mode == "rr":
        return [torch.randperm(n, generator=gen) for _ in range(epochs)]
    raise ValueError(f"unknown order mode {mode!r}")


def batches_of(order: torch.Tensor, batch_size: int) -> List[torch.Tensor]:
    """Split an order into batches; a last batch of one example is dropped (BN needs 2)."""
    chunks = list(torch.split(order, batch_size))
    if chunks and len(chunks[-1]) < 2:
        chunks.pop()
    return chunks


class BatchSource:
    """Fetch batches of a dataset on a device. Tensor datasets are moved once.

    ``amp`` is the autocast dtype the models run under with this data (``None``: the
    device's default, :func:`bnlint.verify.environment.amp_dtype`; ``torch.float32``:
    none); ``channels_last`` stores 4-D float inputs channels-last (faster convolutions
    on CPU and on tensor cores).
    """

    def __init__(self, dataset: Dataset, device: torch.device, amp: Optional[torch.dtype] = None,
                 channels_last: bool = False):
        self.dataset = dataset
        self.device = device
        self.amp = amp_dtype(device) if amp is None else amp
        self.channels_last = channels_last
        self._tensors: Optional[Tuple[torch.Tensor, ...]] = None
        if isinstance(dataset, TensorDataset):
            self._tensors = tuple(t.to(device) for t in dataset.tensors)

    def _placed(self, t):
        if not isinstance(t, torch.Tensor):
            return t
        t = t.to(self.device)
        if self.channels_last and t.dim() == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def autocast(self):
        """The autocast context the models run in on this data."""
        return autocast_for(self.device, self.amp)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def batch(self, indices: torch.Tensor) -> Batch:
        if self._tensors is not None:
            idx = indices.to(self.device)
            parts = [self._placed(t.index_select(0, idx)) for t in self._tensors]
        else:
            items = default_collate([self.dataset[int(i)] for i in indices])
            if not isinstance(items, (list, tuple)) or len(items) < 2:
                raise TypeError("dataset items must be (input, ..., target) tuples")
            parts = [self._placed(p) for p in items]
        return tuple(parts[:-1]), parts[-1]

    def batches(self, indices: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        """The examples ``indices`` in batches of ``batch_size`` (a last batch of one is dropped)."""
        for idx in batches_of(indices, batch_size):
            yield self.batch(idx)

    def all_batches(self, batch_size: int) -> Iterator[Batch]:
        """Every example once, in order (for evaluation)."""
        for idx in torch.split(torch.arange(len(self)), batch_size):
            yield self.batch(idx)
