"""## What it does
Finds a model with BatchNorm that is run over the batches of a loader in a pass that
does not train (no backward pass or optimizer step in the loop) while the model is
still in training mode: it was never switched with `model.eval()` on that path, or the
`model.train()` in effect was set for training. The pass counts as an evaluation when
it runs under `torch.no_grad()` / `torch.inference_mode()` (in the loop, around it or
in a caller), in a function named like one (`evaluate`, `validate`, `test`, `infer`,
`predict`, ...), or when the model is trained elsewhere in the script from another
loader. Calls are followed across functions and files, so `model.eval()` in the
helper that evaluates, in a `with evaluating(model):` context manager of the project,
or in a method like `freeze_bn()` is seen; passes run by a framework (Lightning's
`trainer.validate`, the Hugging Face `Trainer`) are never reported.

## Why is this bad?
In training mode a BatchNorm layer normalises each batch with that batch's own mean
and variance, and it overwrites its running statistics (momentum 0.1 per batch) with
the statistics of the data it sees. An evaluation pass in training mode therefore
reports metrics of a different function than the one that will be deployed (each
prediction depends on the other examples in its batch), and it moves the running
statistics towards the validation data, so the evaluation leaks into the model
(Ioffe & Szegedy 2015, §3.1: inference must use population statistics).

## Known problems
The mode is followed along the walk of the script (branches merged, loops walked
once): an `.eval()` bnlint cannot attribute to the model (`self.net.eval()` on an
object it cannot see, `m.eval()` over `model.modules()`) counts as "maybe in
evaluation mode", and passes that deliberately run BatchNorm in training mode are
left alone when they say so: an explicit `model.train()` just before a pass with no
training in between (test-time BN adaptation, MC-dropout), or a pass that resets or
reads BN statistics (`reset_running_stats()`, `running_mean`, a function named like
`bn_update` / `recalibrate`). Models whose BatchNorms never change in evaluation
(`track_running_stats=False` everywhere, a `train()` override that keeps them in
`eval()`, `FrozenBatchNorm2d`) are not reported.

## Example
```python
for epoch in range(epochs):
    model.train()
    for x, y in train_loader:
        ...
    with torch.no_grad():
        for x, y in val_loader:  # model still in training mode
            correct += (model(x).argmax(1) == y).sum().item()
```

## Use instead
```python
    model.eval()
    with torch.no_grad():
        for x, y in val_loader:
            correct += (model(x).argmax(1) == y).sum().item()
    model.train()
```

## Fix safety
Unsafe: the fix stores the model's mode (`was_training = model.training`), calls
`model.eval()` just before the loop and `model.train(was_training)` just after it, in
the function that holds the loop. It changes what the pass computes (running
statistics instead of batch statistics, dropout off), which is the point, but the
reported numbers change. It is offered only when the model is called by a name in the
loop's own function and the loop neither returns nor yields.

## References
- Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
  Reducing Internal Covariate Shift", ICML 2015, arXiv 1502.03167, §3.1 (inference
  with population statistics).
- PyTorch documentation, `torch.nn.Module.eval` and `torch.nn.BatchNorm2d`
  (`track_running_stats`, `momentum`).
"""
import re

from bnlint.findings import Severity
from bnlint.rule import Hit, Rule, RuleKind

_MESSAGE = (
    "{models} (BatchNorm) {verb} in training mode over the batches of `{source}`, a pass "
    "that does not train: BatchNorm normalises with each batch's own statistics and "
    "overwrites its running statistics with this data; call {evals} before the loop "
    "and switch back with `.train()` after it"
)
_EVALUATION = re.compile(r"^(eval|evaluate|evaluation|evaluating|valid|validate|validation|val|test|testing|"
                         r"infer|inference|predict|prediction|predictions|score|scoring|benchmark)$")
_RECALIBRATION = re.compile(r"^(bn|bns|batchnorm|batchnorms|norm|calib|calibrate|recalibrate|recalibration|"
                            r"calibration|precise|adapt|adabn|recompute)$")
_BN_STATISTICS = {"running_mean", "running_var", "reset_running_stats", "num_batches_tracked"}


def _loader_of(value, depth=0):
    """The DataLoader a loop draws from (through ``enumerate``/``tqdm``/``zip``/``iter``)."""
    from bnlint.script.facts import options  # libcst: imported when the rule runs
    if value is None or depth > 4:
        return None
    if value.kind == "loader":
        return value
    if value.kind in ("iter", "cycle"):
        return _loader_of(value.get("of"), depth + 1)
    if value.kind == "wrap":
        inner = [_loader_of(v, depth + 1) for v in value.get("of", ())]
        return next((v for v in inner if v is not None), None)
    if value.kind == "union":
        inner = [_loader_of(v, depth + 1) for v, _ in options(value)]
        return next((v for v in inner if v is not None), None)
    return None


def _evaluation_loop(call):
    """(loop, loader): the innermost loop around the call that draws a loader's batches,
    when neither it nor a loop inside it trains."""
    for i in range(len(call.loops) - 1, -1, -1):
        loader = _loader_of(call.loops[i].source)
        if loader is not None:
            if any(loop.trains for loop in call.loops[i:]):
                return None, None
            return call.loops[i], loader
    return None, None


def _words(name: str):
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return [w for w in spaced.split("_") if w]


def _is_pytest(fn, file) -> bool:
    base = file.path.replace("\\", "/").rsplit("/", 1)[-1]
    return fn.name.value.startswith("test") and (base.startswith("test_") or base.endswith("_test.py"))


def _named_like_evaluation(call) -> bool:
    return any(any(_EVALUATION.match(w) for w in _words(fn.name.value)) and not _is_pytest(fn, call.file)
               for fn in call.stack)


def _recalibrates(call, loop) -> bool:
    """A pass that runs BatchNorm in training mode on purpose: it resets or reads the
    BN statistics, or a function on its call chain is named for it (``bn_update``)."""
    import libcst as cst  # libcst: imported when the rule runs

    from bnlint.script.project import iter_nodes
    if any(any(_RECALIBRATION.match(w) for w in _words(fn.name.value)) for fn in call.stack):
        return True
    for scope in (loop.node, *call.stack):
        for n in iter_nodes(scope):
            if isinstance(n, cst.Attribute) and n.attr.value in _BN_STATISTICS:
                return True
            if isinstance(n, cst.AssignTarget) and isinstance(n.target, cst.Attribute) \
                    and n.target.attr.value == "momentum":
                return True
    return False


def _code(node, file) -> str:
    try:
        return " ".join(file.module.code_for_node(node).split())
    except Exception:  # pragma: no cover - a node outside its module
        return "?"


def find_eval_in_train_mode(ctx):
    from bnlint.fix.evalmode import eval_mode_fix  # libcst: imported when the rule runs
    from bnlint.fix.scriptfix import planned  # libcst: imported when the rule runs
    from bnlint.script.modes import ACCIDENTAL  # libcst: imported when the rule runs
    facts = ctx.facts
    trained = {id(m) for use in facts.train_uses for m in use.iter_loop.models}
    training_sources = {id(use.value) for use in facts.train_uses}
    groups = {}
    for call in facts.model_calls:
        bn = call.model.get("bn")
        if bn is None or not bn.eval_matters or not call.modes or not call.modes <= ACCIDENTAL:
            continue
        loop, loader = _evaluation_loop(call)
        if loop is None:
            continue
        evaluation = (call.no_grad or _named_like_evaluation(call)
                      or (id(call.model) in trained and id(loader) not in training_sources))
        if not evaluation or _recalibrates(call, loop):
            continue
        key = (loop.file.abs_path, id(loop.node))
        group = groups.setdefault(key, (loop, []))
        group[1].append(call)
    for loop, calls in groups.values():
        names = []
        for call in calls:
            name = _code(call.node.func, call.file)
            if name not in names:
                names.append(name)
        shown = ", ".join(f"`{n}`" for n in names)
        yield Hit(
            message=_MESSAGE.format(models=shown, verb="runs" if len(names) == 1 else "run",
                                    source=_code(loop.node.iter, loop.file),
                                    evals=" and ".join(f"`{n}.eval()`" for n in names)),
            span=ctx.span(loop.node.iter, loop.file),
            fix=planned(eval_mode_fix, ctx, loop, calls),
        )


RULE = Rule(
    code="BNL105",
    name="eval-in-train-mode",
    summary="A BatchNorm model is evaluated while still in training mode",
    kind=RuleKind.SCRIPT,
    severity=Severity.ERROR,
    doc=__doc__,
    fixable=True,
    check=find_eval_in_train_mode,
)
