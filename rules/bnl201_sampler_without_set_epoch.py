"""## What it does
Finds a sampler whose order depends on the epoch (`DistributedSampler`, any sampler
class whose `__iter__` reads what its `set_epoch` stores, or a Hugging Face streaming
dataset shuffled with a seed) that feeds a training loop inside an epoch loop, when
nothing in that epoch loop calls `set_epoch` on it, directly, through
`loader.sampler`, or in a helper the loop calls. A sampler chosen by a branch
(`DistributedSampler` when distributed, `RandomSampler` or `None` otherwise) is checked
on the path that has it.

## Why is this bad?
`DistributedSampler.__iter__` seeds its permutation with `seed + epoch`. Without
`set_epoch(epoch)` the epoch stays 0 and "the same ordering will be always used":
every epoch visits the examples in one fixed order (Single Shuffle). With BatchNorm,
Single Shuffle can converge to a distorted optimum or diverge where a fresh order per
epoch (Random Reshuffle) does not (Wu, Yun & Sra 2023). Loaders handed to Lightning,
Fabric, Accelerate or the Hugging Face `Trainer` are not reported: those call
`set_epoch` themselves.

## Example
```python
sampler = DistributedSampler(train_set)
loader = DataLoader(train_set, batch_size=64, sampler=sampler)
for epoch in range(epochs):
    for x, y in loader:
        ...
```

## Use instead
```python
for epoch in range(epochs):
    sampler.set_epoch(epoch)
    for x, y in loader:
        ...
```

## Fix safety
Safe: the fix inserts `sampler.set_epoch(epoch)` as the first statement of the epoch
loop (with the loop variable, or a counter it adds when the loop has none; guarded
with `is not None` when the sampler may be None). It changes the data order, which is
the point, and touches no model. A sampler that may be another object on another path
(picked in an `if`/`else` statement, `RandomSampler` in the other arm, a sampler class
chosen by a condition) gets no automatic fix: the call must be guarded the way the
branch is.

## References
- Wu, Yun & Sra, "On the Training Instability of Shuffling SGD with Batch
  Normalization", ICML 2023, arXiv 2302.12444, §2 (Single Shuffle vs Random Reshuffle)
  and §5 (experiments).
- `torch.utils.data.distributed.DistributedSampler` documentation (`set_epoch`).
"""
from bnlint.findings import Severity
from bnlint.rule import Hit, Rule, RuleKind

_MESSAGE = (
    "{what} never gets `set_epoch(epoch)` in the epoch loop, so every epoch replays the "
    "same order; call `{call}` at the start of each epoch"
)


def _epoch_sensitive(use):
    """(value that needs set_epoch, its holders, what to call it, the call to add, fixable)
    for one training iteration; a loader whose sampler differs by branch is checked on
    every path that has one."""
    from bnlint.script.facts import options  # libcst: imported when the rule runs
    value = use.value
    if value.kind == "loader":
        batch = value.get("batch_sampler")
        holder = value.get("sampler")
        seen = set()
        alternatives = [v for state, v, _ in value.get("samplers", ()) if state == "value"]
        for state, b, _ in value.get("batch_samplers", ()):
            if state == "value" and b.kind == "batch_sampler":
                alternatives.extend(opt for opt, _ in options(b.get("sampler")) if opt is not None)
        for sampler in alternatives:
            if id(sampler) in seen:
                continue
            seen.add(id(sampler))
            if sampler.kind == "sampler" and sampler.get("needs_set_epoch"):
                kind = "DistributedSampler" if sampler.get("kind") == "distributed" else "this sampler"
                yield sampler, (value, batch, holder), kind, "sampler.set_epoch(epoch)", _fixable(sampler, holder)
        data = value.get("dataset")
        if data is not None and data.kind == "hfds" and data.get("streaming") and data.get("shuffled"):
            yield data, (value,), "this streaming dataset, shuffled with a seed,", "dataset.set_epoch(epoch)", True
    elif value.kind == "hfds" and value.get("streaming") and value.get("shuffled"):
        yield value, (), "this streaming dataset, shuffled with a seed,", "dataset.set_epoch(epoch)", True


def _fixable(sampler, holder) -> bool:
    """The fixer adds ``sampler.set_epoch(epoch)``, guarded by ``is not None`` when the
    sampler comes from ``X if cond else None``; a sampler that may be another object
    on another path (an ``if`` statement, ``RandomSampler`` in the other arm, a class
    chosen by a condition) needs a guard the fixer cannot write."""
    from bnlint.script.facts import options  # libcst: imported when the rule runs
    if holder is None or holder.kind != "union":
        return True
    if holder.get("origin") != "ifexp":
        return False
    return all(opt is sampler or (opt is not None and opt.kind == "const" and "py" in opt.attrs
                                  and opt.get("py") is None) for opt, _ in options(holder))


def _told(call_, target, holders) -> bool:
    """Is this ``set_epoch`` call on ``target`` (or on something that may hold it)?"""
    from bnlint.script.facts import options  # libcst: imported when the rule runs
    receiver = call_.target
    if receiver is None or receiver is target or any(receiver is h for h in holders if h is not None):
        return True
    return any(opt is target for opt, _ in options(receiver))


def find_sampler_without_set_epoch(ctx):
    from bnlint.fix.scriptfix import planned, set_epoch_fix  # libcst: imported when the rule runs
    facts = ctx.facts
    for use in facts.train_uses:
        epochs = facts.epoch_loops(use)
        if not epochs:
            continue
        epoch_ids = {id(loop) for loop in epochs}
        for target, holders, what, call, fixable in _epoch_sensitive(use):
            if facts.is_handed_off(target, *holders):
                continue
            told = any(
                _told(call_, target, holders) and any(id(loop) in epoch_ids for loop in call_.loops)
                for call_ in facts.set_epochs
            )
            if told:
                continue
            yield Hit(
                message=_MESSAGE.format(what=what, call=call),
                span=ctx.span(target.node, target.file),
                severity=ctx.severity(use.loops, use.file),
                fix=planned(set_epoch_fix, ctx, target, holders, epochs[-1]) if fixable else None,
            )


RULE = Rule(
    code="BNL201",
    name="sampler-without-set-epoch",
    summary="A sampler that needs set_epoch is used in an epoch loop that never calls it",
    kind=RuleKind.SCRIPT,
    severity=Severity.WARNING,
    doc=__doc__,
    fixable=True,
    check=find_sampler_without_set_epoch,
)
