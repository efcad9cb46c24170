"""## What it does
Finds a training loader that gives a BatchNorm model batches of one sample: a
`DataLoader` built with `batch_size=1` (or with no `batch_size`, whose default is 1),
or one whose last batch holds a single sample because the dataset's length is known
from the source (`TensorDataset` of `torch.randn(1025, 16)`, `random_split(ds, [9025,
1000])`, a torchvision dataset split) and `len(dataset) % batch_size == 1` with
`drop_last` not set. The model is the one called in the training loop that draws the
batches (followed across functions and files); what it contains is read from the code
that builds it.

## Why is this bad?
In training mode BatchNorm normalises with the batch's statistics. A BatchNorm that
sees one value per channel (`BatchNorm1d` on `(N, C)` features, or any BatchNorm on a
1x1 map) cannot: with one sample PyTorch raises `ValueError: Expected more than 1
value per channel when training`, so a last batch of one crashes the run at the end of
the first epoch, after all the work before it. With larger maps (`BatchNorm2d` after
convolutions) a batch of one does not fail, but every example is normalised by its
own statistics (BatchNorm degenerates into instance normalisation) and the running
statistics used at test time are averages of single examples, which do not match what
the network saw in training (Ioffe & Szegedy 2015, §3; Wu & He 2018, §2).

## Known problems
What the model contains is read from its source: a model that builds `BatchNorm1d`
and no `Conv1d` is taken to apply it to `(N, C)` features (an error); other
BatchNorms with `batch_size=1` are a warning (they may run on maps larger than 1x1);
a last batch of one is reported only for the first kind. Lengths bnlint cannot read
(`ImageFolder`, `len` of a file list) are never guessed, and loaders with a sampler
are not checked for their last batch. Models whose BatchNorms stay in evaluation mode
(`FrozenBatchNorm2d`, a `train()` override that keeps them in `eval()`) are not
reported.

## Example
```python
train_set, val_set = random_split(dataset, [9025, 1000])
train_loader = DataLoader(train_set, batch_size=64, shuffle=True)  # 9025 = 141 * 64 + 1
model = nn.Sequential(nn.Linear(32, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 2))
```

## Use instead
```python
train_loader = DataLoader(train_set, batch_size=64, shuffle=True, drop_last=True)
```
With `batch_size=1`, use a batch size of at least 2, or a normalisation that does not
use the batch (`GroupNorm`, `LayerNorm`), or keep the BatchNorms in evaluation mode.

## Fix safety
No automatic fix: `drop_last=True` drops data every epoch and a larger batch changes
the training recipe; the message says which applies.

## References
- Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
  Reducing Internal Covariate Shift", ICML 2015, arXiv 1502.03167, §3 (batch and
  population statistics).
- Wu & He, "Group Normalization", ECCV 2018, arXiv 1803.08494, §2 (BatchNorm's
  dependence on the batch size).
- PyTorch documentation, `torch.utils.data.DataLoader` (`batch_size` defaults to 1,
  `drop_last`).
"""
from bnlint.findings import Severity
from bnlint.rule import Hit, Rule, RuleKind

_CRASH = (
    "this training loader gives {models} ({bn} over features) batches of one sample "
    "({why}): in training mode BatchNorm raises `ValueError: Expected more than 1 value "
    "per channel when training`; {advice}"
)
_DEGENERATE = (
    "this training loader gives {models} ({bn}) batches of one sample ({why}): each "
    "example is normalised by its own statistics and the running statistics average "
    "single examples; train with batches of at least 2, or use GroupNorm/LayerNorm or "
    "frozen BatchNorm"
)


def _batch_size(loader):
    """``(size, spelled)``: the batch size on every path (None: unknown or varies) and
    whether it was written (not DataLoader's default of 1)."""
    from bnlint.script.lengths import const_int  # libcst: imported when the rule runs
    if loader.get("batch_none"):
        return None, False
    sizes = set()
    spelled = False
    for state, value, _ in loader.get("batch_sizes") or [("absent", None, frozenset())]:
        if state == "absent":
            sizes.add(1)
        elif state == "value":
            sizes.add(const_int(value))
            spelled = True
        else:
            return None, False
    if len(sizes) != 1 or None in sizes:
        return None, False
    return sizes.pop(), spelled


def _no_batch_sampler(loader) -> bool:
    return all(state == "absent" for state, _, _ in loader.get("batch_samplers") or [])


def _no_sampler(loader) -> bool:
    return _no_batch_sampler(loader) and all(state == "absent" for state, _, _ in loader.get("samplers") or [])


def _keeps_last(loader) -> bool:
    """``drop_last`` is False on every path."""
    return all(truth is False for truth, _ in loader.get("drop_lasts") or [(False, frozenset())])


def _trained_models(facts, use):
    """The models called in the loop that draws the batches, with their BN profiles,
    unless every call there has them in evaluation mode."""
    from bnlint.script.modes import EVAL  # libcst: imported when the rule runs
    calls = [c for c in facts.model_calls if any(loop is use.iter_loop for loop in c.loops)]
    models = list(use.iter_loop.models)
    for c in calls:
        if c.model not in models:
            models.append(c.model)
    out = []
    for model in models:
        mine = [c for c in calls if c.model is model]
        if mine and all(c.modes == {EVAL} for c in mine):
            continue  # fine-tuned with BatchNorm in evaluation mode
        bn = model.get("bn")
        if bn is not None and bn.has_bn and not bn.frozen:
            name = None
            if mine:
                name = _code(mine[0].node.func, mine[0].file)
            out.append((model, bn, name))
    return out


def _code(node, file) -> str:
    try:
        return " ".join(file.module.code_for_node(node).split())
    except Exception:  # pragma: no cover - a node outside its module
        return "the model"


def find_batchnorm_batch_of_one(ctx):
    from bnlint.script.lengths import length_of  # libcst: imported when the rule runs
    facts = ctx.facts
    for use in facts.train_uses:
        loader = use.value
        if loader.kind != "loader" or use.alternative or not _no_batch_sampler(loader):
            continue
        size, spelled = _batch_size(loader)
        if size is None or size < 1:
            continue
        why = None
        last_batch = False
        if size == 1:
            why = "`batch_size=1`" if spelled else "no `batch_size`: DataLoader's default is 1"
        elif _no_sampler(loader) and _keeps_last(loader):
            n = length_of(loader.get("dataset"))
            if n is not None and n % size == 1:
                why = (f"the last batch of every epoch: {n} samples = {n // size} x {size} + 1, "
                       f"`drop_last` not set")
                last_batch = True
        if why is None:
            continue
        models = _trained_models(facts, use)
        flat = [(m, bn, name) for m, bn, name in models if bn.one_value_per_channel]
        if flat:
            names = ", ".join(f"`{name}`" for _, _, name in flat if name) or "the model"
            kinds = sorted({k for _, bn, _ in flat for k in bn.kinds if k in ("BatchNorm1d", "LazyBatchNorm1d")})
            advice = ("pass `drop_last=True`" if last_batch else
                      "use a batch size of at least 2, or GroupNorm/LayerNorm")
            yield Hit(message=_CRASH.format(models=names, bn="/".join(kinds), why=why, advice=advice),
                      span=ctx.span(loader.node, loader.file), severity=Severity.ERROR)
        elif models and not last_batch:
            names = ", ".join(f"`{name}`" for _, _, name in models if name) or "the model"
            kinds = sorted({k for _, bn, _ in models for k in bn.kinds})
            yield Hit(message=_DEGENERATE.format(models=names, bn="/".join(kinds), why=why),
                      span=ctx.span(loader.node, loader.file), severity=Severity.WARNING)


RULE = Rule(
    code="BNL107",
    name="batchnorm-batch-of-one",
    summary="A BatchNorm model is trained with batches of one sample",
    kind=RuleKind.SCRIPT,
    severity=Severity.ERROR,
    doc=__doc__,
    check=find_batchnorm_batch_of_one,
)
