"""The runtime watch: record the sample order of every DataLoader pass, and which
passes trained a model.

While a ``Watch`` is entered:

* ``DataLoader.__init__`` notes the user's line that built each loader (the first
  frame outside torch, bnlint, installed packages and the loader's own subclass
  ``__init__``);
* every pass (a new loader iterator, or a persistent-workers iterator reset) wraps
  the iterator's index stream: the first ``limit`` sample indices the sampler /
  batch sampler yields are kept (never the data). With worker processes the indices
  are still drawn in this process, before they are sent to the workers. For an
  IterableDataset there are no indices: a few numbers of each of the first samples'
  tensors are kept instead, a fingerprint of the order;
* ``torch.autograd.backward`` / ``torch.autograd.grad`` and a global optimizer step
  hook count training steps; a pass during which a step ran between two of its
  batches is a training pass. That is how training loaders are told from
  evaluation ones: by use, not by name;
* ``F.batch_norm`` notes whether a BatchNorm ran in training mode (BN layers call
  it), which makes a repeated order an error rather than a warning.

Leaving the watch restores everything it patched. ``observations()`` returns plain
frozen values (``bnlint.runtime.orders``) for the BNL206 rule.
"""
from __future__ import annotations

import functools
import itertools
import operator
import os
import sys
import weakref
from collections import OrderedDict
from typing import Any, Dict, Hashable, List, Optional, Tuple

from bnlint.runtime.orders import LoaderFacts, LoaderObservation, PassOrder, RuntimeRecord

__all__ = ["Watch", "DEFAULT_LIMIT"]

DEFAULT_LIMIT = 4096  # sample indices kept per pass
_FINGERPRINT_VALUES = 2  # numbers kept per sample of an IterableDataset
_DATASET_RNG_NAMES = ("seed", "rng", "generator", "random")


class _Pass:
    """A pass being recorded (mutable while the script runs)."""

    __slots__ = ("group", "loader", "number", "order", "limit", "training", "truncated", "steps_seen",
                 "fingerprint")

    def __init__(self, group: "_Group", loader: int, number: int, limit: int, fingerprint: bool):
        self.group = group
        self.loader = loader
        self.number = number
        self.order: List[Hashable] = []
        self.limit = limit
        self.training = False
        self.truncated = False
        self.steps_seen: Optional[int] = None
        self.fingerprint = fingerprint

    def frozen(self) -> PassOrder:
        return PassOrder(self.loader, self.number, tuple(self.order), self.training, self.truncated)


class _Group:
    """Every pass over loaders built at one site over one kind of dataset."""

    __slots__ = ("facts", "passes", "loaders")

    def __init__(self, facts: LoaderFacts):
        self.facts = facts
        self.passes: List[_Pass] = []
        self.loaders = 0


def _item(value: Any) -> Hashable:
    """A sample index as a plain hashable value."""
    try:
        return operator.index(value)
    except TypeError:
        pass
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        value = tolist()
        return tuple(value) if isinstance(value, list) else value
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)[:200]


def _first_tensor(batch: Any, depth: int = 0):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch
    if depth > 3:
        return None
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for part in batch[:4]:
            found = _first_tensor(part, depth + 1)
            if found is not None:
                return found
    return None


def _fingerprints(batch: Any, room: int) -> List[Hashable]:
    """A few numbers of each sample of a batch (at most ``room`` samples)."""
    t = _first_tensor(batch)
    if t is None:
        return [repr(batch)[:64]] if room > 0 else []
    t = t.detach()
    if t.dim() == 0:
        return [t.item()]
    rows = t[:room].reshape(min(room, t.shape[0]), -1)[:, :_FINGERPRINT_VALUES]
    return [tuple(r) for r in rows.cpu().tolist()]


class Watch:
    """Context manager: record DataLoader orders and training steps in this process.

    >>> with Watch() as watch:  # doctest: +SKIP
    ...     train()
    >>> watch.observations()  # doctest: +SKIP
    """

    def __init__(self, limit: int = DEFAULT_LIMIT, user_site=None):
        self.limit = limit
        self.steps = 0
        self.batchnorm_trained = False
        self._groups: "OrderedDict[Tuple[Any, ...], _Group]" = OrderedDict()
        self._loaders: "weakref.WeakKeyDictionary[Any, Tuple[Tuple[str, int, int], int]]" = weakref.WeakKeyDictionary()
        self._site_counts: Dict[Tuple[str, int, int], int] = {}
        self._restore: List[Tuple[Any, str, Any]] = []
        self._handles: List[Any] = []
        self._user_site = user_site or _user_site

    # ------------------------------------------------------------------ patches
    def __enter__(self) -> "Watch":
        import torch
        import torch.utils.data.dataloader as dl
        from torch.optim.optimizer import register_optimizer_step_post_hook

        watch = self
        loader_init = dl.DataLoader.__init__
        iter_init = dl._BaseDataLoaderIter.__init__
        iter_reset = dl._BaseDataLoaderIter._reset
        iter_next = dl._BaseDataLoaderIter.__next__
        backward = torch.autograd.backward
        batch_norm = torch.nn.functional.batch_norm
        grad = torch.autograd.grad

        @functools.wraps(loader_init)
        def init(self, *args, **kwargs):
            loader_init(self, *args, **kwargs)
            if self not in watch._loaders:
                site = watch._user_site(self)
                count = watch._site_counts.get(site, 0) + 1
                watch._site_counts[site] = count
                watch._loaders[self] = (site, count)

        @functools.wraps(iter_init)
        def new_iterator(self, loader, *args, **kwargs):
            iter_init(self, loader, *args, **kwargs)
            watch._start_pass(self, loader)

        @functools.wraps(iter_reset)
        def reset(self, loader=None, *args, **kwargs):
            iter_reset(self, loader, *args, **kwargs)
            if loader is not None:
                watch._start_pass(self, loader)

        @functools.wraps(iter_next)
        def next_batch(self):
            record = self.__dict__.get("_bnlint_pass")
            if record is None:
                return iter_next(self)
            if not record.training:
                if record.steps_seen is not None and record.steps_seen != watch.steps:
                    record.training = True
                record.steps_seen = watch.steps
            data = iter_next(self)
            if record.fingerprint and len(record.order) < record.limit:
                record.order.extend(_fingerprints(data, record.limit - len(record.order)))
            return data

        @functools.wraps(backward)
        def counted_backward(*args, **kwargs):
            watch.steps += 1
            return backward(*args, **kwargs)

        @functools.wraps(grad)
        def counted_grad(*args, **kwargs):
            watch.steps += 1
            return grad(*args, **kwargs)

        def step_hook(optimizer, args, kwargs):
            watch.steps += 1

        @functools.wraps(batch_norm)
        def watched_batch_norm(*args, **kwargs):
            if not watch.batchnorm_trained:
                training = kwargs.get("training", args[5] if len(args) > 5 else False)
                watch.batchnorm_trained = bool(training)
            return batch_norm(*args, **kwargs)

        self._patch(dl.DataLoader, "__init__", init)
        self._patch(dl._BaseDataLoaderIter, "__init__", new_iterator)
        self._patch(dl._BaseDataLoaderIter, "_reset", reset)
        self._patch(dl._BaseDataLoaderIter, "__next__", next_batch)
        self._patch(torch.autograd, "backward", counted_backward)
        self._patch(torch.autograd, "grad", counted_grad)
        self._patch(torch.nn.functional, "batch_norm", watched_batch_norm)
        self._handles.append(register_optimizer_step_post_hook(step_hook))
        return self

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        self._restore.append((owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)))
        setattr(owner, name, value)

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for owner, name, value in reversed(self._restore):
            setattr(owner, name, value)
        self._restore.clear()

    # ------------------------------------------------------------------ passes
    def _start_pass(self, iterator: Any, loader: Any) -> None:
        previous = iterator.__dict__.get("_bnlint_pass")
        if previous is not None and not previous.order and previous.steps_seen is None:
            # The multi-worker iterator's constructor starts the same pass twice.
            group = previous.group
            if group.passes and group.passes[-1] is previous:
                group.passes.pop()
        known = self._loaders.get(loader)
        if known is None:  # built before the watch started
            site = self._user_site(loader)
            count = self._site_counts.get(site, 0) + 1
            self._site_counts[site] = count
            known = self._loaders[loader] = (site, count)
        site, number = known
        facts = _loader_facts(loader, site)
        key = (site, facts.dataset, facts.iterable, facts.sampler, facts.batch_sampler)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(facts)
        record = _Pass(group, number, len(group.passes) + 1, self.limit, facts.iterable)
        group.passes.append(record)
        iterator.__dict__["_bnlint_pass"] = record
        if not facts.iterable:
            iterator._sampler_iter = _recording(iterator._sampler_iter, record)

    def observations(self) -> List[LoaderObservation]:
        """Every loader site with at least one pass, in the order first seen."""
        return [LoaderObservation(g.facts, tuple(p.frozen() for p in g.passes))
                for g in self._groups.values() if g.passes]

    def record(self) -> RuntimeRecord:
        return RuntimeRecord(tuple(self.observations()), self.batchnorm_trained, self.steps)


def _recording(source, record: _Pass):
    """The index stream, unchanged, keeping its first ``record.limit`` indices."""
    order, limit = record.order, record.limit
    for item in source:
        if type(item) is list and (not item or type(item[0]) is int):
            order.extend(item)  # BatchSampler's list of ints: kept as it is (C speed)
        elif isinstance(item, (list, tuple)):
            order.extend(_item(i) for i in item)
        elif type(item) is int:
            order.append(item)
        else:
            order.append(_item(item))
        if len(order) >= limit:
            if len(order) > limit:
                del order[limit:]
            record.truncated = True
            yield item
            yield from source
            return
        yield item


# ---------------------------------------------------------------------- facts

def _user_site(loader: Any) -> Tuple[str, int, int]:
    """(file, line, column) of the user's code that built ``loader``: the first frame
    outside torch and bnlint, installed packages and the loader's own ``__init__``
    methods (a DataLoader subclass); the first non-torch frame when all are installed."""
    from bnlint.model.sites import is_library_file, is_torch_file

    frame = sys._getframe(1)
    fallback = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if not is_torch_file(filename) and not filename.startswith("<frozen"):
            own_init = frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is loader
            if not own_init:
                if fallback is None:
                    fallback = frame
                if not is_library_file(filename):
                    return _frame_site(frame)
        frame = frame.f_back
    if fallback is not None:
        return _frame_site(fallback)
    return ("<unknown>", 1, 1)


def _frame_site(frame) -> Tuple[str, int, int]:
    """(file, line, 1-based column) of the call a frame is making: the start of the
    call expression (a ``DataLoader(`` spread over several lines starts on its first)."""
    line, column = frame.f_lineno, 1
    try:
        positions = next(itertools.islice(frame.f_code.co_positions(), frame.f_lasti // 2, None))
        if positions[0] is not None:
            line = positions[0]
            column = (positions[2] or 0) + 1
    except (AttributeError, StopIteration, ValueError):  # Python < 3.11: no positions
        pass
    filename = frame.f_code.co_filename
    return (filename if filename.startswith("<") else os.path.abspath(filename), line, column)


def _own_class(obj: Any) -> bool:
    module = type(obj).__module__ or ""
    return not (module == "torch" or module.startswith("torch."))


def _dataset_may_shuffle(dataset: Any) -> bool:
    """An IterableDataset that looks able to reorder itself between passes."""
    if callable(getattr(dataset, "set_epoch", None)):
        return True
    try:
        attrs = vars(dataset)
    except TypeError:
        return False
    for name, value in attrs.items():
        lowered = name.lower()
        if "shuffl" in lowered:
            if value:
                return True
        elif any(word in lowered for word in _DATASET_RNG_NAMES) and value is not None and value is not False:
            return True
        if type(value).__name__ in ("Random", "Generator", "RandomState"):
            return True
    return False


def _loader_facts(loader: Any, site: Tuple[str, int, int]) -> LoaderFacts:
    from torch.utils.data import IterableDataset

    dataset = loader.dataset
    iterable = isinstance(dataset, IterableDataset)
    sampler = loader.sampler
    batch_sampler = loader.batch_sampler
    inner = getattr(batch_sampler, "sampler", None) if batch_sampler is not None else None
    if batch_sampler is not None and inner is not None and inner is not sampler and _own_class(batch_sampler):
        sampler = inner  # a custom batch sampler around its own sampler
    shuffle = getattr(sampler, "shuffle", None)
    try:
        length: Optional[int] = None if iterable else len(dataset)
    except TypeError:
        length = None
    return LoaderFacts(
        path=site[0], line=site[1], column=site[2],
        sampler=type(sampler).__name__,
        sampler_own=_own_class(sampler),
        batch_sampler=type(batch_sampler).__name__ if batch_sampler is not None else None,
        batch_sampler_own=batch_sampler is not None and _own_class(batch_sampler),
        shuffle=shuffle if isinstance(shuffle, bool) else None,
        generator=loader.generator is not None or getattr(sampler, "generator", None) is not None,
        iterable=iterable,
        dataset_may_shuffle=iterable and _dataset_may_shuffle(dataset),
        dataset=type(dataset).__name__,
        dataset_len=length,
        workers=int(loader.num_workers or 0),
    )
