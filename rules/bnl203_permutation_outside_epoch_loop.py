"""## What it does
Finds a permutation (`torch.randperm`, `np.random.permutation`, `random.shuffle`,
`np.random.shuffle`, `sklearn.utils.shuffle`, a Hugging Face `Dataset.shuffle(seed=...)`)
drawn once, outside the epoch loop, that then orders the training batches of every
epoch: manual index batching (`perm[i:i + bs]`, `x[perm]` sliced into batches),
`Subset(ds, perm)` or permuted arrays given to a loader that does not shuffle, or a
fixed index list as `sampler=`. Also reports a training loader that never shuffles at
all (no sampler, `shuffle` omitted or `False`, a `SequentialSampler`, or
`DistributedSampler(shuffle=False)`) when it is iterated in an epoch loop.

## Why is this bad?
A permutation drawn once and replayed is exactly Single Shuffle: the same examples meet
in the same batches every epoch. With BatchNorm each example is normalised with the
statistics of its fixed batch, so training minimises one distorted copy of the data and
can converge to a distorted optimum or diverge where a fresh permutation each epoch
(Random Reshuffle) does not (Wu, Yun & Sra 2023). A loader that never shuffles is the
same with the file order as the permutation. Evaluation loaders are never reported, nor
are IterableDatasets (their order is theirs to define).

## Example
```python
perm = torch.randperm(len(x))
for epoch in range(epochs):
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        ...
```

## Use instead
```python
for epoch in range(epochs):
    perm = torch.randperm(len(x))  # a new order every epoch
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        ...
```
or `DataLoader(train_set, batch_size=batch_size, shuffle=True)`.

## Fix safety
Safe where the fixer can follow the code: `shuffle=True` on a map-style training loader
without a sampler, or, for manual batching, the permutation statement moved to the top
of the epoch loop (when nothing outside the loop uses it). Unsafe: a permutation applied
to arrays once before the loop (`x, y = x[perm], y[perm]`, as notebook exports do)
drawn and applied at the top of every epoch instead; a loader over data put in a fixed
order once (a `Subset` of a permutation, permuted tensors) given `shuffle=True`, or its
fixed index list given as `sampler=` wrapped in `SubsetRandomSampler`: the same
examples in a new order every epoch, and the fixed order is no longer used.

## References
- Wu, Yun & Sra, "On the Training Instability of Shuffling SGD with Batch
  Normalization", ICML 2023, arXiv 2302.12444, §2 (SS and RR), §3-4 (distorted optima,
  divergence) and §5.
"""
from bnlint.findings import Severity
from bnlint.rule import Hit, Rule, RuleKind

_ONCE = (
    "this permutation is drawn once, before the epoch loop, and orders the training "
    "batches of every epoch (single shuffle); draw a new one inside the epoch loop or "
    "use a loader with `shuffle=True`"
)
_NEVER = (
    "this training loader never shuffles, so every epoch visits the data in the same "
    "order; pass `shuffle=True` (or a shuffling sampler)"
)
_SEQUENTIAL = (
    "this sampler never shuffles the training data, so every epoch visits it in the same "
    "order; use a shuffling sampler (`RandomSampler`, `DistributedSampler(shuffle=True)`)"
)


_CONDITIONAL = (
    "this training loader shuffles only when `{cond}`; on the other path every epoch visits "
    "the data in the same order; shuffle whatever the condition (`shuffle=True` or a "
    "shuffling sampler)"
)
_CONDITIONAL_NOT = (
    "this training loader does not shuffle when `{cond}`: on that path every epoch visits "
    "the data in the same order; shuffle whatever the condition (`shuffle=True` or a "
    "shuffling sampler)"
)


def _replayed(facts, use, perm) -> bool:
    return bool(facts.epoch_loops(use, perm))


def _conditional(loader, shuffling, fixed):
    """The warning for a loader that shuffles on some paths only, naming the condition;
    None when the paths' conditions cannot be told apart."""
    from bnlint.script.facts import describe_conds  # libcst: imported when the rule runs
    if all(v.conds for v in shuffling):
        cond = " or ".join(sorted({describe_conds(v.conds) for v in shuffling}))
        return loader, _CONDITIONAL.format(cond=cond)
    if all(v.conds for v in fixed):
        cond = " or ".join(sorted({describe_conds(v.conds) for v in fixed}))
        return loader, _CONDITIONAL_NOT.format(cond=cond)
    return None


def _loader_hits(facts, use):
    """(anchor, message) for a training loader, read path by path
    (``bnlint.script.loaders``): every path must shuffle."""
    from bnlint.script import loaders  # libcst: imported when the rule runs
    from bnlint.script.calls import perm_of  # libcst: imported when the rule runs
    loader = use.value
    if use.alternative:
        return  # one of several loaders a name may hold: which one trains is not known
    paths = [(loaders.order(loader, v, perm_of), v) for v in loaders.variants(loader)]
    kinds = {kind for (kind, _), _ in paths}
    if not paths or loaders.UNKNOWN in kinds:
        return  # an argument bnlint cannot resolve: say nothing rather than guess
    fixed = [(kind, anchor, v) for (kind, anchor), v in paths
             if kind in (loaders.NEVER, loaders.SEQUENTIAL, loaders.PERMUTED)]
    if not fixed or not facts.epoch_loops(use):
        return
    if len(fixed) < len(paths):
        hit = _conditional(loader, [v for (kind, _), v in paths if kind in (loaders.SHUFFLES, loaders.EXEMPT)],
                           [v for _, _, v in fixed])
        if hit is not None:
            yield hit
        return
    seen = set()
    for kind, anchor, _ in fixed:
        if id(anchor) in seen:
            continue
        seen.add(id(anchor))
        if kind == loaders.PERMUTED:
            if _replayed(facts, use, anchor):
                yield anchor, _ONCE
        elif kind == loaders.SEQUENTIAL:
            yield anchor, _SEQUENTIAL
        else:
            yield anchor, _NEVER


def find_permutation_outside_epoch_loop(ctx):
    from bnlint.script.calls import perm_of  # libcst: imported when the rule runs
    from bnlint.fix.scriptfix import (  # libcst: imported when the rule runs
        permutation_and_uses_into_loop_fix, permutation_into_loop_fix, permuted_loader_fix, planned, shuffle_fix,
    )
    facts = ctx.facts
    for use in facts.train_uses:
        value = use.value
        if value.kind == "loader":
            hits = _loader_hits(facts, use)
        elif perm_of(value) is not None and value.kind in ("perm", "permuted"):
            perm = perm_of(value)
            hits = [(perm, _ONCE)] if _replayed(facts, use, perm) else []
        else:
            continue
        for anchor, message in hits:
            fix = None
            severity = ctx.severity(use.loops, use.file)
            if message is _NEVER:
                fix = planned(shuffle_fix, ctx, anchor)
            elif message is _ONCE and facts.epoch_loops(use, anchor):
                loop = facts.epoch_loops(use, anchor)[-1]
                fix = (planned(permutation_into_loop_fix, ctx, anchor, loop)
                       or planned(permutation_and_uses_into_loop_fix, ctx, anchor, loop))
                if fix is None and value.kind == "loader":
                    fix = planned(permuted_loader_fix, ctx, value)
            elif message not in (_ONCE, _SEQUENTIAL):
                severity = Severity.WARNING  # shuffles on some paths: a warning naming the condition
            yield Hit(message=message, span=ctx.span(anchor.node, anchor.file),
                      severity=severity, fix=fix)
    for index in facts.index_uses:
        perm = index.index_from_perm or perm_of(index.value)
        if perm is None or not index.loops or not index.loops[-1].trains:
            continue
        inner = {id(loop) for loop in perm.loops}
        if any(id(loop) not in inner for loop in index.loops[:-1]):
            outer = [loop for loop in index.loops[:-1] if id(loop) not in inner]
            yield Hit(message=_ONCE, span=ctx.span(perm.node, perm.file),
                      severity=ctx.severity(index.loops, perm.file),
                      fix=(planned(permutation_into_loop_fix, ctx, perm, outer[-1])
                           or planned(permutation_and_uses_into_loop_fix, ctx, perm, outer[-1])))


RULE = Rule(
    code="BNL203",
    name="permutation-outside-epoch-loop",
    summary="A permutation drawn once orders the training batches of every epoch",
    kind=RuleKind.SCRIPT,
    severity=Severity.WARNING,
    doc=__doc__,
    fixable=True,
    check=find_permutation_outside_epoch_loop,
)
