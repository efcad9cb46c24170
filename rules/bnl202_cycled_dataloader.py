"""## What it does
Finds `itertools.cycle(...)` over a data loader (or any batch source) whose batches
feed a training loop.

## Why is this bad?
`itertools.cycle` saves every item of the first pass and replays the saved items
afterwards. The loader is iterated once, so its shuffling happens once: every later
"epoch" sees the same batches in the same order (Single Shuffle), and random
augmentations are frozen too. With BatchNorm, Single Shuffle can converge to a
distorted optimum or diverge (Wu, Yun & Sra 2023).

## Example
```python
from itertools import cycle

batches = cycle(train_loader)
for step in range(num_steps):
    x, y = next(batches)
    ...
```

## Use instead
```python
def forever(loader):
    while True:
        yield from loader  # a new pass, a new order

batches = forever(train_loader)
```

## Fix safety
Safe: the fix replaces `itertools.cycle(loader)` with a re-iterating generator helper
(added once per file) and drops the `cycle` import when nothing else uses it. The data
order and the augmentations drawn change every pass, which is the point.

## References
- Wu, Yun & Sra, "On the Training Instability of Shuffling SGD with Batch
  Normalization", ICML 2023, arXiv 2302.12444, §2 (Single Shuffle) and §5.
- Python documentation, `itertools.cycle` ("saving a copy of each").
"""
from bnlint.findings import Severity
from bnlint.rule import Hit, Rule, RuleKind

_NOT_BATCHES = ("const", "range", "list", "tuple", "model", "generator", "rng")
_MESSAGE = (
    "`itertools.cycle` replays the batches of the first pass, so the data order (and "
    "augmentation) repeats every epoch; use a generator that re-iterates the loader "
    "(`while True: yield from loader`)"
)


def find_cycled_dataloader(ctx):
    from bnlint.fix.scriptfix import cycle_fix, planned  # libcst: imported when the rule runs
    found = []
    for use in ctx.facts.train_uses:
        value = use.value
        if value.kind != "cycle":
            continue
        source = value.get("of")
        if source is not None and source.kind in _NOT_BATCHES:
            continue
        found.append(use)
    flagged = [use.value for use in found]
    for use in found:
        value = use.value
        yield Hit(
            message=_MESSAGE,
            span=ctx.span(value.node, value.file),
            severity=ctx.severity(use.loops, use.file),
            fix=planned(cycle_fix, ctx, value, flagged),
        )


RULE = Rule(
    code="BNL202",
    name="cycled-dataloader",
    summary="itertools.cycle over a training loader repeats the first pass's order",
    kind=RuleKind.SCRIPT,
    severity=Severity.WARNING,
    doc=__doc__,
    fixable=True,
    check=find_cycled_dataloader,
)
