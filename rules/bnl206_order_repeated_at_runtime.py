"""## What it does
Reported by `bnlint run train.py ARGS`, which runs the training script under a watch:
every `DataLoader` records the sample indices its sampler or batch sampler draws in
each pass (the first 4,096; never the data), and a pass during which a backward pass
or an optimizer step ran is a training pass. The rule flags a training loader whose
order in a later pass equals an earlier pass's, at the line that built the loader.

Only loaders whose order is meant to vary count: a shuffling sampler
(`shuffle=True`, `RandomSampler`, `SubsetRandomSampler`, `WeightedRandomSampler`), a
`DistributedSampler(shuffle=True)`, a sampler or batch sampler of your own (unless it
draws consecutive indices), or an `IterableDataset` with a `set_epoch` method, a
shuffle flag, a seed or a random generator (compared by a few numbers of each
sample). `shuffle=False` loaders (evaluation, sequential BPTT) and loaders that only
ever run without a training step are never reported. Equal orders count only when two
independent shuffles would agree that much with a chance below one in a million.

## Why is this bad?
A loader that draws the same permutation every epoch is Single Shuffle (SS), not
Random Reshuffle (RR): the partition into batches never changes, so BatchNorm
normalises every example with the same batch's statistics each epoch. Wu, Yun & Sra
(2023, sections 3-4) show that with BatchNorm, SS converges to a distorted optimum in
regression and can diverge in classification where RR does not. The causes are often
invisible to a static check: a custom sampler seeding its generator with a constant,
`set_epoch` never reaching a `DistributedSampler`, a seed reset inside a helper.

## Known problems
Only what runs is seen: a script that trains in `mp.spawn`ed processes records
nothing in the parent (run one process under `bnlint run`), and a script that ends
with `os._exit` skips the report. An `IterableDataset` with random augmentations
looks reshuffled even when its order repeats. Suppress a deliberate fixed order with
`# noqa: BNL206` on the loader's line.

## Example
```python
class SeededSampler(Sampler):
    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)  # the same seed every pass
        return iter(torch.randperm(len(self.data), generator=g).tolist())

loader = DataLoader(train_set, batch_size=32, sampler=SeededSampler(train_set, seed=0))
for epoch in range(epochs):
    for x, y in loader:
        ...
```

## Use instead
```python
class SeededSampler(Sampler):
    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)  # a new order every epoch
        return iter(torch.randperm(len(self.data), generator=g).tolist())

for epoch in range(epochs):
    loader.sampler.set_epoch(epoch)
    ...
```
For a `DistributedSampler`, call `sampler.set_epoch(epoch)` before every epoch; seed a
loader's `generator` once, before training, not before each pass.

## Fix safety
No automatic fix: the cause is in code that runs, not in the loader's line.

## References
- Wu, Yun & Sra, "On the Training Instability of Shuffling SGD with Batch
  Normalization", ICML 2023, arXiv 2302.12444, section 2 (SS vs RR) and sections 3-4.
- PyTorch documentation, `torch.utils.data.distributed.DistributedSampler` ("calling
  the `set_epoch()` method at the beginning of each epoch ... is necessary to make
  shuffling work properly across multiple epochs").
"""
from __future__ import annotations

from typing import Iterator

from bnlint.findings import Severity, SourceSpan
from bnlint.rule import Hit, Rule, RuleKind
from bnlint.runtime.orders import (
    SHUFFLING_SAMPLERS, LoaderFacts, Repeat, RuntimeRecord, describe_loader, iter_repeats,
)


def reshuffle_hint(facts: LoaderFacts, rebuilt: bool) -> str:
    """What most likely makes this loader repeat its order, and what to do."""
    if facts.iterable:
        return (f"{facts.dataset}.__iter__ yields the same samples in the same order every pass: "
                f"reshuffle per pass, e.g. seed it with seed + epoch through a set_epoch(epoch) "
                f"called every epoch")
    if facts.shuffle is not None and not facts.sampler_own:  # DistributedSampler
        return (f"{facts.sampler} orders each pass by seed + epoch: call "
                f"`sampler.set_epoch(epoch)` at the start of every epoch")
    if facts.sampler in SHUFFLING_SAMPLERS and not facts.sampler_own:
        if rebuilt and facts.generator:
            return ("a new loader is built for every pass with a generator seeded the same way: "
                    "seed the generator once before training, or with seed + epoch")
        if facts.generator:
            return ("its generator is re-seeded with the same seed before every pass: seed it "
                    "once, before training")
        return ("the global random state is reset to the same seed before every pass "
                "(torch.manual_seed inside the epoch loop, or in a helper it calls): seed once, "
                "before training")
    own = facts.batch_sampler if facts.batch_sampler_own else facts.sampler
    return (f"{own}.__iter__ yields the same order every pass (a generator seeded with a "
            f"constant?): draw from a generator seeded once, or seed with seed + epoch "
            f"(a set_epoch(epoch) method called every epoch)")


def _message(facts: LoaderFacts, found: Repeat) -> str:
    numbers = [found.first.number] + [p.number for p in found.repeats]
    if len(numbers) == 2:
        passes = f"passes {numbers[0]} and {numbers[1]}"
    else:
        passes = f"passes {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"
    what = "samples" if facts.iterable else "indices"
    rebuilt = len({found.first.loader, *(p.loader for p in found.repeats)}) > 1
    built = " (a new loader each pass)" if rebuilt else ""
    return (f"training {describe_loader(facts)}{built} drew the same order in {passes} (first "
            f"{found.compared} {what} identical): every epoch sees the same batches (Single "
            f"Shuffle), which BatchNorm turns into a distorted optimum; {reshuffle_hint(facts, rebuilt)}")


def find_order_repeated_at_runtime(record: RuntimeRecord) -> Iterator[Hit]:
    severity = Severity.ERROR if record.batchnorm_trained else Severity.WARNING
    for observation, found in iter_repeats(record.loaders):
        facts = observation.facts
        yield Hit(
            message=_message(facts, found),
            span=SourceSpan(facts.path, facts.line, facts.column),
            severity=severity,
            data=(
                ("passes", [found.first.number] + [p.number for p in found.repeats]),
                ("compared", found.compared),
                ("sampler", facts.batch_sampler if facts.batch_sampler_own else facts.sampler),
                ("dataset", facts.dataset),
            ),
        )


RULE = Rule(
    code="BNL206",
    name="order-repeated-at-runtime",
    summary="A training loader drew the same sample order in two passes while the script ran",
    kind=RuleKind.RUNTIME,
    severity=Severity.ERROR,
    doc=__doc__,
    fixable=False,
    check=find_order_repeated_at_runtime,
)
