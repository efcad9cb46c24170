"""What the runtime watch observed, as plain frozen values, and the pure questions
asked of them.

The watch (``bnlint.runtime.watch``, torch) fills these in while a training script
runs; the BNL206 rule (``rules/bnl206_order_repeated_at_runtime.py``) reads them.
Nothing here imports torch: orders are tuples of plain hashable items (sample
indices, or per-sample fingerprints for an IterableDataset), never the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Hashable, Iterator, List, Optional, Sequence, Tuple

__all__ = [
    "LoaderFacts", "PassOrder", "LoaderObservation", "RuntimeRecord", "Repeat",
    "ORDERED_SAMPLERS", "SHUFFLING_SAMPLERS", "order_may_vary", "log10_chance_equal",
    "repeated_passes", "is_sequential", "describe_loader", "iter_repeats",
]

# torch's own samplers, by class name.
ORDERED_SAMPLERS = frozenset({"SequentialSampler"})
SHUFFLING_SAMPLERS = frozenset({"RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler"})
_TORCH_BATCH_SAMPLERS = frozenset({"BatchSampler"})

# Two passes count as "the same order" only when two independent shuffles would agree
# on the compared prefix with a chance below this (1 in a million): a 4-sample dataset
# shuffled twice repeats its order one time in 24, which is no evidence of anything.
MAX_CHANCE_LOG10 = -6.0


@dataclass(frozen=True)
class LoaderFacts:
    """How a DataLoader was built, read from the live object (plain values only).

    ``path``/``line``/``column``: the user's line that constructed it (1-based line
    and column). ``sampler``/``batch_sampler``: class names; ``*_own``: the class is
    defined outside torch (the user's or a library's own sampler). ``shuffle``: the
    sampler's ``shuffle`` attribute when it has one (DistributedSampler).
    ``iterable``: an IterableDataset, whose order the dataset decides; then
    ``dataset_may_shuffle`` says whether it looks able to reorder (a ``set_epoch``
    method, a shuffle flag, a seed or a random generator among its attributes).
    """

    path: str
    line: int
    column: int = 1
    sampler: str = ""
    sampler_own: bool = False
    batch_sampler: Optional[str] = None
    batch_sampler_own: bool = False
    shuffle: Optional[bool] = None
    generator: bool = False
    iterable: bool = False
    dataset_may_shuffle: bool = False
    dataset: str = ""
    dataset_len: Optional[int] = None
    workers: int = 0


@dataclass(frozen=True)
class PassOrder:
    """One pass over a loader: the first items it drew, in order.

    ``loader``: which loader object (1, 2, ... in construction order at that site);
    ``number``: the pass's number at that site; ``training``: a backward pass or an
    optimizer step ran between two batches of this pass; ``truncated``: the pass drew
    more items than were kept.
    """

    loader: int
    number: int
    order: Tuple[Hashable, ...]
    training: bool = False
    truncated: bool = False


@dataclass(frozen=True)
class LoaderObservation:
    """The passes over every loader built at one site over one kind of dataset."""

    facts: LoaderFacts
    passes: Tuple[PassOrder, ...]


@dataclass(frozen=True)
class RuntimeRecord:
    """Everything one ``bnlint run`` observed: the loaders, and whether a BatchNorm
    ran in training mode (then a repeated order is an error, else a warning)."""

    loaders: Tuple[LoaderObservation, ...]
    batchnorm_trained: bool = False
    steps: int = 0


@dataclass(frozen=True)
class Repeat:
    """Training passes whose orders matched an earlier training pass's."""

    first: PassOrder
    repeats: Tuple[PassOrder, ...]
    compared: int  # items compared (the shortest pass's kept prefix)
    chance_log10: float  # log10 of the chance that independent shuffles agree this much


def is_sequential(order: Sequence[Hashable]) -> bool:
    """Consecutive increasing integers (0, 1, 2, ... or any run ``k, k+1, ...``):
    what a deliberately ordered sampler draws.

    >>> is_sequential((3, 4, 5)), is_sequential((0, 2, 1))
    (True, False)
    """
    if not order or not all(isinstance(i, int) for i in order):
        return False
    start = order[0]
    return all(i == start + k for k, i in enumerate(order))


def order_may_vary(facts: LoaderFacts, passes: Sequence[PassOrder] = ()) -> bool:
    """Whether this loader's order is meant to change between passes: a shuffling
    sampler, a DistributedSampler with ``shuffle=True``, a sampler or batch sampler of
    the user's own (unless it drew consecutive indices: a sequential sampler written by
    hand), or an IterableDataset that looks able to reorder itself. A loader with
    ``shuffle=False`` (SequentialSampler) is deliberately ordered and never counts.

    >>> order_may_vary(LoaderFacts("t.py", 1, sampler="RandomSampler"))
    True
    >>> order_may_vary(LoaderFacts("t.py", 1, sampler="SequentialSampler", batch_sampler="BatchSampler"))
    False
    """
    if facts.iterable:
        return facts.dataset_may_shuffle
    if facts.shuffle is not None:
        return bool(facts.shuffle)
    if facts.sampler in SHUFFLING_SAMPLERS and not facts.sampler_own:
        return True
    own = (facts.sampler_own and facts.sampler not in ORDERED_SAMPLERS) or (
        facts.batch_sampler is not None and facts.batch_sampler_own
        and facts.batch_sampler not in _TORCH_BATCH_SAMPLERS)
    if own:
        return not any(is_sequential(p.order) for p in passes if p.order)
    return False


def log10_chance_equal(compared: int, population: int, with_replacement: bool) -> float:
    """log10 of the chance that two independent uniform draws agree on their first
    ``compared`` items: permutations of ``population`` items (falling factorial), or
    draws with replacement (``population ** compared``).

    >>> round(log10_chance_equal(2, 4, False), 3)  # 1 / (4 * 3)
    -1.079
    """
    if compared <= 0 or population <= 1:
        return 0.0
    if with_replacement:
        return -compared * math.log10(population)
    k = min(compared, population)
    return -(math.lgamma(population + 1) - math.lgamma(population - k + 1)) / math.log(10)


def _population(passes: Sequence[PassOrder]) -> Tuple[int, bool]:
    """(how many distinct items the passes drew, whether draws repeat within a pass).

    The distinct items seen are a lower bound on what a shuffle draws from (a
    DistributedSampler's rank sees its share of a permutation of the whole dataset, a
    truncated pass part of it), which keeps the chance computed from it an upper bound.
    """
    distinct: set = set()
    replacement = False
    for p in passes:
        items = set(p.order)
        if len(items) < len(p.order):
            replacement = True
        distinct |= items
    return len(distinct), replacement


def repeated_passes(observation: LoaderObservation) -> Optional[Repeat]:
    """The training passes whose kept order equals an earlier training pass's, when
    independent shuffles would agree that much with a chance below one in a million
    (all repeats together). Linear in the kept items: passes are bucketed by their
    first items before being compared.
    """
    training = [p for p in observation.passes if p.training and p.order]
    if len(training) < 2:
        return None
    population, replacement = _population(training)
    head = min(64, min(len(p.order) for p in training))
    buckets: Dict[Tuple[Hashable, ...], List[PassOrder]] = {}
    for p in training:
        buckets.setdefault(p.order[:head], []).append(p)
    best: Optional[Repeat] = None
    for group in buckets.values():
        if len(group) < 2:
            continue
        first = group[0]
        same = []
        compared = len(first.order)
        for p in group[1:]:
            k = min(len(first.order), len(p.order))
            if first.order[:k] == p.order[:k]:
                same.append(p)
                compared = min(compared, k)
        if not same:
            continue
        chance = len(same) * log10_chance_equal(compared, population, replacement)
        if chance > MAX_CHANCE_LOG10:
            continue
        found = Repeat(first, tuple(same), compared, chance)
        if best is None or len(found.repeats) > len(best.repeats):
            best = found
    return best


def describe_loader(facts: LoaderFacts) -> str:
    """``DataLoader(RandomSampler, generator)`` and the like, for messages."""
    if facts.iterable:
        return f"DataLoader over {facts.dataset or 'an IterableDataset'} (IterableDataset)"
    parts = [facts.batch_sampler] if facts.batch_sampler and facts.batch_sampler not in _TORCH_BATCH_SAMPLERS else []
    parts.append(facts.sampler + ("(shuffle=True)" if facts.shuffle else ""))
    if facts.generator:
        parts.append("generator")
    return f"DataLoader({', '.join(p for p in parts if p)})"


def iter_repeats(observations: Sequence[LoaderObservation]) -> Iterator[Tuple[LoaderObservation, Repeat]]:
    """Every observed loader whose order could vary and whose training order repeated."""
    for obs in observations:
        if not order_may_vary(obs.facts, obs.passes):
            continue
        found = repeated_passes(obs)
        if found is not None:
            yield obs, found
