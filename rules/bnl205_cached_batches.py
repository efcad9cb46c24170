"""## What it does
Finds batches materialised once, outside the epoch loop (`list(loader)`, a
comprehension over a loader, a list filled by one pass with `append`, tensors stacked
from one pass) and then replayed by the training loop every epoch, with or without
shuffling the list of cached batches.

## Why is this bad?
The loader shuffled once, when the batches were drawn; replaying them repeats that
order every epoch (Single Shuffle). Shuffling the list of cached batches changes only
the order of the batches: each batch keeps the same members, so BatchNorm normalises
each example with the same batch statistics every epoch, which is what makes Single
Shuffle converge to a distorted optimum or diverge (Wu, Yun & Sra 2023).

## Example
```python
batches = [(x.to(device), y.to(device)) for x, y in train_loader]
for epoch in range(epochs):
    random.shuffle(batches)
    for x, y in batches:
        ...
```

## Use instead
```python
for epoch in range(epochs):
    for x, y in train_loader:  # shuffle=True: new batches every epoch
        x, y = x.to(device), y.to(device)
        ...
```
To keep data on the device, cache the examples (not the batches) and draw a new
permutation of the examples every epoch.

## Fix safety
No automatic fix; caching is often there for speed, and the right replacement depends
on where the data should live.

## References
- Wu, Yun & Sra, "On the Training Instability of Shuffling SGD with Batch
  Normalization", ICML 2023, arXiv 2302.12444, §2 (Single Shuffle) and §3 (the batch
  partition fixes each example's normalisation).
"""
from bnlint.findings import Severity
from bnlint.rule import Hit, Rule, RuleKind

_REPLAYED = (
    "batches are materialised once, before the epoch loop, and replayed every epoch "
    "(single shuffle); iterate a shuffling DataLoader inside the epoch loop instead"
)
_RESHUFFLED = (
    "batches are materialised once and only their order is shuffled: each batch keeps "
    "the same members every epoch, which for BatchNorm is still single shuffle; iterate "
    "a shuffling DataLoader inside the epoch loop instead"
)


def find_cached_batches(ctx):
    facts = ctx.facts
    for use in facts.train_uses:
        cached = use.value
        if cached.kind != "cached" or not facts.epoch_loops(use, cached):
            continue
        message = _RESHUFFLED if cached.get("reshuffled") else _REPLAYED
        yield Hit(message=message, span=ctx.span(cached.node, cached.file),
                  severity=ctx.severity(use.loops, use.file))
    for index in facts.index_uses:
        cached = index.value
        if cached.kind != "cached" or not index.loops or not index.loops[-1].trains:
            continue
        inner = {id(loop) for loop in cached.loops}
        if any(id(loop) not in inner for loop in index.loops[:-1]):
            reshuffled = cached.get("reshuffled") or index.index_from_perm is not None
            yield Hit(message=_RESHUFFLED if reshuffled else _REPLAYED,
                      span=ctx.span(cached.node, cached.file),
                      severity=ctx.severity(index.loops, cached.file))


RULE = Rule(
    code="BNL205",
    name="cached-batches",
    summary="Batches materialised once are replayed every epoch",
    kind=RuleKind.SCRIPT,
    severity=Severity.WARNING,
    doc=__doc__,
    check=find_cached_batches,
)
