"""## What it does
Finds a random number generator seeded with a constant inside the epoch loop, before
the training data is drawn, when that generator decides the order of the training
batches: `torch.manual_seed(c)` / `torch.random.manual_seed(c)` with a shuffling loader
or `torch.randperm`, `g.manual_seed(c)` on the loader's (or sampler's) generator, a new
`torch.Generator().manual_seed(c)` given to a loader built every epoch,
`np.random.seed(c)` / `random.seed(c)` in front of a numpy / `random` permutation, and
`seed_everything(c)`-style helpers. A seed that depends on the epoch is fine, and so is
a seeding call reached through a helper when the helper is given the epoch.

## Why is this bad?
A shuffling `DataLoader` draws its permutation from the generator at every `iter()`.
Re-seeding that generator with the same value each epoch makes every epoch draw the
same permutation: Single Shuffle in disguise. With BatchNorm, Single Shuffle can
converge to a distorted optimum or diverge where Random Reshuffle does not (Wu, Yun &
Sra 2023).

## Example
```python
for epoch in range(epochs):
    torch.manual_seed(0)  # same permutation every epoch
    for x, y in train_loader:  # shuffle=True
        ...
```

## Use instead
```python
torch.manual_seed(0)  # once, before training
for epoch in range(epochs):
    for x, y in train_loader:
        ...
```
or seed with the epoch: `torch.manual_seed(base_seed + epoch)`.

## Fix safety
Safe where the fixer can follow the code: the statement that seeds (or the call of the
helper that seeds) moves from the top level of the epoch loop to just before the loop,
so the generator advances across epochs. It changes the data order, which is the point.
A helper that seeds and then draws (a fixed batch of latent vectors for a progress
grid) keeps its draws instead: its body runs under `torch.random.fork_rng()`, with the
`numpy.random` and `random` states saved and restored when it reseeds those, so it
returns what it returned before and the global order of each epoch is no longer reset.
This is safer than a local `torch.Generator(...).manual_seed(seed)`, which would need
`generator=` on every draw in the helper and in what it calls; a missed one would keep
the reseeded global state. Callers that relied on the helper seeding the global RNG
for what follows lose that side effect.

## References
- Wu, Yun & Sra, "On the Training Instability of Shuffling SGD with Batch
  Normalization", ICML 2023, arXiv 2302.12444, §2 (Single Shuffle vs Random Reshuffle).
- PyTorch `RandomSampler`: a new seed is drawn from the generator at each `iter()`.
"""
from bnlint.findings import Severity
from bnlint.rule import Hit, Rule, RuleKind

_MESSAGE = (
    "constant seed inside the epoch loop: the training data is drawn in the same order "
    "every epoch; seed once before the loop, or seed with the epoch"
)


def _order_sources(use):
    """(library, generator) pairs that decide the order of one training iteration."""
    from bnlint.script.calls import perm_of  # libcst: imported when the rule runs
    value = use.value
    if value.kind == "loader":
        sampler = value.get("sampler")
        if value.get("shuffle") is True and sampler is None:
            yield "torch", value.get("generator"), value
        elif sampler is not None and sampler.kind == "sampler" and sampler.get("kind") == "random":
            yield "torch", sampler.get("generator"), sampler
        perm = perm_of(sampler) or perm_of(value.get("dataset"))
        if perm is not None:
            yield perm.get("lib"), perm.get("generator") or perm.get("rng"), perm
    else:
        perm = perm_of(value)
        if perm is not None:
            yield perm.get("lib"), perm.get("generator") or perm.get("rng"), perm


def _drives(seed, lib, generator) -> bool:
    if seed.lib == "generator":
        return generator is not None and seed.generator is generator
    if generator is not None:
        return False
    return seed.lib == "all" or seed.lib == lib


_RESTORES = {"numpy": "set_state", "random": "setstate"}


def _scoped(ctx, seed) -> bool:
    """A seed whose effect ends with its block: under ``torch.random.fork_rng()``
    (torch), or in a ``try`` whose ``finally`` puts the numpy / ``random`` state back."""
    import libcst as cst  # imported when the rule runs

    from bnlint.fix.cstindex import callee_name

    text = seed.file.text
    if text is not None and ("fork_rng" if seed.lib == "torch" else "finally") not in text:
        return False  # no such block in the file: no parents needed
    if seed.lib != "torch" and seed.lib not in _RESTORES:
        return False
    idx = ctx.source_index(seed.file)
    current = idx.parent(seed.node)
    while current is not None and not isinstance(current, (cst.FunctionDef, cst.ClassDef, cst.Module)):
        if seed.lib == "torch" and isinstance(current, cst.With) and any(
                isinstance(item.item, cst.Call) and callee_name(item.item) == "fork_rng" for item in current.items):
            return True
        if seed.lib in _RESTORES and isinstance(current, cst.Try) and current.finalbody is not None:
            stack = [current.finalbody]
            while stack:
                node = stack.pop()
                if isinstance(node, cst.Call) and callee_name(node) == _RESTORES[seed.lib]:
                    return True
                stack.extend(node.children)
        current = idx.parent(current)
    return False


def find_reseeded_each_epoch(ctx):
    from bnlint.script.facts import VARIES  # libcst: imported when the rule runs
    from bnlint.script.calls import perm_of  # libcst: imported when the rule runs
    from bnlint.fix.scriptfix import planned, reseed_fix  # libcst: imported when the rule runs
    facts = ctx.facts
    uses = list(facts.train_uses)
    for index in facts.index_uses:  # manual batching: the index loop draws the data
        if index.loops and index.loops[-1].trains:
            uses.append(index)
    by_loop = {}  # loop -> the uses inside it, by place in ``uses``
    for at, use in enumerate(uses):
        for loop in use.loops:
            by_loop.setdefault(id(loop), []).append(at)
    for seed in facts.seeds:
        if VARIES in seed.deps:
            continue
        seed_loops = {id(loop) for loop in seed.loops}
        # Only a use inside one of the seed's loops can be one it repeats (and a whole
        # project's uses need not be tried against every seed).
        near = sorted({at for loop in seed_loops for at in by_loop.get(loop, ())})
        for use in (uses[at] for at in near):
            iter_loop = getattr(use, "iter_loop", use.loops[-1] if use.loops else None)
            if iter_loop is None or id(iter_loop) in seed_loops:
                continue
            epochs = [l for l in use.loops if l is not iter_loop and id(l) in seed_loops]
            if not epochs or any(l.id in seed.deps for l in epochs):
                continue
            sources = _order_sources(use) if hasattr(use, "iter_loop") else (
                (p.get("lib"), p.get("generator") or p.get("rng"), p)
                for p in [use.index_from_perm or perm_of(use.value)] if p is not None
            )
            epoch_ids = {id(l) for l in epochs}
            hit = False
            for lib, generator, source in sources:
                if not _drives(seed, lib, generator):
                    continue
                # A permutation drawn once before the loop is BNL203's; here the order is
                # drawn inside the epoch loop, after the seed.
                if source.kind == "perm" and not any(id(l) in epoch_ids for l in source.loops):
                    continue
                hit = True
            if hit:
                if _scoped(ctx, seed):  # asked only here: it needs the file's parents
                    break
                yield Hit(message=_MESSAGE, span=ctx.span(seed.node, seed.file),
                          severity=ctx.severity(use.loops, seed.file),
                          fix=planned(reseed_fix, ctx, seed, epochs[-1]))
                break


RULE = Rule(
    code="BNL204",
    name="reseeded-each-epoch",
    summary="A constant seed set inside the epoch loop repeats the data order",
    kind=RuleKind.SCRIPT,
    severity=Severity.WARNING,
    doc=__doc__,
    fixable=True,
    check=find_reseeded_each_epoch,
)
