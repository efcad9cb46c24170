"""Which mode (training or evaluation) each model may be in, as the walk goes (BNL105).

A model's mode is a set of *tokens*, one per way the walk may have reached the current
point:

- ``default``: built in this walk and never switched: training mode, implicitly;
- ``train``: ``model.train()`` was called and no training loop has run since (someone
  asked for training mode here on purpose: BN recalibration, test-time adaptation);
- ``trained``: training mode that served training (a backward pass, an optimizer step
  or a training loop came after the ``model.train()``) and was never switched back;
- ``eval``: ``model.eval()`` / ``model.train(False)``;
- ``unknown``: anything bnlint cannot tell: ``model.train(flag)``, an ``.eval()`` on a
  receiver the walk cannot resolve (``self.net.eval()``, ``m.eval()`` for ``m in
  model.modules()``), a model built by an earlier, separate walk.

Only a model whose tokens are all ``default`` / ``trained`` is certainly in training
mode through no one's choice (``ACCIDENTAL``). Alternative paths (``if``/``else``
arms, a loop body that may not run) are walked from the same state and their tokens
merged, so an ``.eval()`` on any path keeps a model from being reported.

Each module body and each root walk (``bnlint.script.roots``) starts afresh: models made
elsewhere are ``unknown``, so a file's answer never depends on which other files were
walked before it.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional, Set

import libcst as cst

from bnlint.script.facts import ModelCall, Value, options
from bnlint.script.names import dotted
from bnlint.script.project import iter_nodes

__all__ = ["DEFAULT", "TRAIN", "TRAINED", "EVAL", "UNKNOWN", "ACCIDENTAL", "ModeTracker",
           "train_token", "sets_eval", "record_call", "is_training_step", "ModeEvents"]

DEFAULT = "default"
TRAIN = "train"
TRAINED = "trained"
EVAL = "eval"
UNKNOWN = "unknown"
ACCIDENTAL = frozenset({DEFAULT, TRAINED})
_UNKNOWN = frozenset({UNKNOWN})


class ModeTracker:
    """Mode tokens per model (by identity) along the walk."""

    def __init__(self) -> None:
        self.state: Dict[int, FrozenSet[str]] = {}
        self.created: Set[int] = set()

    def reset(self) -> None:
        """A new, separate walk: every model made so far is ``unknown``."""
        self.state = {}
        self.created = set()

    def new_model(self, model: Value) -> None:
        self.state[id(model)] = frozenset({DEFAULT})
        self.created.add(id(model))

    def of(self, model: Value) -> FrozenSet[str]:
        return self.state.get(id(model), _UNKNOWN)

    def set(self, model: Value, token: str) -> None:
        self.state[id(model)] = frozenset({token})

    def maybe_any(self) -> None:
        """An ``.eval()``/``.train(...)`` on something the walk cannot see: it may be
        any model."""
        for key, tokens in list(self.state.items()):
            self.state[key] = tokens | _UNKNOWN

    def training_started(self) -> None:
        """A training loop starts, or a backward pass / optimizer step runs: a
        ``train()`` asked for before it served training."""
        for key, tokens in list(self.state.items()):
            if TRAIN in tokens:
                self.state[key] = (tokens - {TRAIN}) | {TRAINED}

    def snapshot(self) -> Dict[int, FrozenSet[str]]:
        return dict(self.state)

    def restore(self, snap: Dict[int, FrozenSet[str]]) -> None:
        self.state = dict(snap)

    def merge(self, states: List[Dict[int, FrozenSet[str]]]) -> None:
        """The state after alternative paths: each model may be in any of their modes. A
        model missing on a path was built on another path (it does not exist there), or
        was made by an earlier walk (``unknown`` there)."""
        keys: List[int] = []
        for st in states:
            keys.extend(k for k in st if k not in keys)
        merged: Dict[int, FrozenSet[str]] = {}
        for key in keys:
            tokens: FrozenSet[str] = frozenset()
            for st in states:
                if key in st:
                    tokens |= st[key]
                elif key not in self.created:
                    tokens |= _UNKNOWN
            merged[key] = tokens
        self.state = merged


def train_token(args) -> str:
    """The token of ``model.train(...)`` called with ``args`` (``(cst.Arg, (Value, deps))``
    pairs)."""
    if not args:
        return TRAIN
    arg, (value, _) = args[0]
    if arg.star or (arg.keyword is not None and arg.keyword.value != "mode"):
        return UNKNOWN
    truths = set()
    for opt, _ in options(value):
        if opt is None or opt.kind != "const" or "py" not in opt.attrs:
            return UNKNOWN
        truths.add(bool(opt.get("py")))
    if truths == {False}:
        return EVAL
    if truths == {True}:
        return TRAIN
    return UNKNOWN


def is_training_step(call: cst.Call) -> bool:
    """``loss.backward()``, ``accelerator.backward(loss)``, ``optimizer.step()``,
    ``scaler.step(optimizer)`` (what makes a loop a training loop in the walker)."""
    func = call.func
    if not isinstance(func, cst.Attribute):
        return False
    attr = func.attr.value
    if attr in ("backward", "manual_backward"):
        return True
    if attr == "step":
        receiver = (dotted(func.value) or "").lower()
        return "opt" in receiver or any("opt" in (dotted(a.value) or "").lower() for a in call.args)
    return False


def sets_eval(node: Optional[cst.CSTNode]) -> bool:
    """Does code under ``node`` call ``.eval()`` or ``.train(False)`` on anything (a
    ``freeze_bn`` method, a context manager that switches to evaluation)?"""
    if node is None:
        return False
    for n in iter_nodes(node):
        if not isinstance(n, cst.Call) or not isinstance(n.func, cst.Attribute):
            continue
        attr = n.func.attr.value
        if attr == "eval" and not n.args:
            return True
        if attr == "train" and n.args and not (isinstance(n.args[0].value, cst.Name)
                                               and n.args[0].value.value == "True"):
            return True
    return False


def record_call(facts, tracker: ModeTracker, model: Value, call: cst.CSTNode, fr, loops) -> None:
    """A model is called: remember its possible modes there (for BNL105)."""
    if not loops:
        return
    facts.model_calls.append(ModelCall(
        model=model, loops=loops, node=call, file=fr.file, modes=tracker.of(model),
        no_grad=bool(fr.no_grad or fr.outer_no_grad), stack=fr.stack,
    ))



class ModeEvents:
    """Mixin for ``bnlint.script.walker.Walker``: what calls do to the models' modes."""

    def switch_mode(self, model: Optional[Value], meth: str, args, loops) -> None:
        """``model.eval()`` / ``model.train(...)``; an unresolved receiver may be any model."""
        if model is None:
            self.modes.maybe_any()
            return
        if meth == "train" and len(args) == 1 and not args[0][0].star:
            saved = args[0][1][0]
            if saved is not None and saved.kind == "mode_of" and saved.get("model") is model:
                self.modes.state[id(model)] = saved.get("tokens")  # model.train(was_training)
                return
        self.modes.set(model, EVAL if meth == "eval" else train_token(args))

    def model_method(self, model: Value, meth: str, args) -> None:
        """Other methods on a model that may switch (part of) it to evaluation:
        ``model.apply(set_bn_eval)``, the model class's own ``freeze_bn()``."""
        if meth == "apply":
            for _, (value, _) in args:
                for opt, _ in options(value):
                    if opt is not None and opt.kind == "func" and sets_eval(opt.get("fn")):
                        self.modes.set(model, UNKNOWN)
            return
        cls = model.get("cls")
        hit = self.project.method(cls, meth) if cls is not None else None
        if hit is not None and sets_eval(hit[1]):
            self.modes.set(model, UNKNOWN)

    def model_called(self, model: Value, call: cst.CSTNode, fr, loops) -> None:
        record_call(self.facts, self.modes, model, call, fr, loops)
