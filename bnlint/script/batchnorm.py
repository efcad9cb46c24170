"""What the source says about a model's BatchNorm layers (BNL105, BNL107).

Read statically from the code that builds the model: its class (bases included), the
project classes and factory functions it calls, ``nn.Sequential(...)`` literals, and
library models known by name (``bnlint.script.known``). Nothing is imported or run,
so this is what the *source* names: a class that builds ``nn.BatchNorm1d`` is
assumed to use it. ``BNProfile`` holds the plain facts the rules read:

- ``kinds``: the BatchNorm classes named (``BatchNorm1d``, ``BatchNorm2d``,
  ``SyncBatchNorm``, ``batch_norm`` for ``F.batch_norm``, ...); empty: no BatchNorm
  (``FrozenBatchNorm2d``, ``GroupNorm``, ``LayerNorm`` are not BatchNorm here: they
  never use batch statistics);
- ``untracked``: every BatchNorm built with ``track_running_stats=False`` (batch
  statistics in evaluation too: ``eval()`` changes nothing for them);
- ``frozen``: the model class overrides ``train()`` and switches modules to ``eval()``
  there (mmdetection's ``norm_eval``, detectron-style frozen backbones);
- ``sequence_convs``: a ``Conv1d`` is built too, so a ``BatchNorm1d`` may see
  ``(N, C, L)`` sequences rather than one value per channel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, Optional

import libcst as cst

from bnlint.script.known import BN_NAMES, library_model_has_bn
from bnlint.script.names import dotted, last_part
from bnlint.script.project import iter_nodes

__all__ = ["BNProfile", "class_profile", "node_profile", "library_profile"]

_SEQUENCE_CONVS = {"Conv1d", "ConvTranspose1d", "LazyConv1d", "LazyConvTranspose1d"}
_MAX_DEPTH = 4


@dataclass(frozen=True)
class BNProfile:
    kinds: FrozenSet[str] = frozenset()
    untracked: bool = False
    frozen: bool = False
    sequence_convs: bool = False

    @property
    def has_bn(self) -> bool:
        return bool(self.kinds)

    @property
    def eval_matters(self) -> bool:
        """Does ``eval()`` change what the BatchNorms compute (running statistics)?"""
        return self.has_bn and not self.untracked and not self.frozen

    @property
    def one_value_per_channel(self) -> bool:
        """A BatchNorm1d that sees ``(N, C)`` features: no ``Conv1d`` feeds it sequences."""
        return bool(self.kinds & {"BatchNorm1d", "LazyBatchNorm1d"}) and not self.sequence_convs

    def describe(self) -> str:
        names = sorted(k for k in self.kinds if k != "batch_norm") or ["F.batch_norm"]
        return "/".join(names)


@dataclass
class _Scan:
    kinds: set
    tracked: int = 0
    untracked: int = 0
    sequence_convs: bool = False

    def profile(self, frozen: bool) -> BNProfile:
        return BNProfile(frozenset(self.kinds), untracked=self.untracked > 0 and self.tracked == 0,
                         frozen=frozen, sequence_convs=self.sequence_convs)


def _untracked_call(call: cst.Call) -> bool:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "track_running_stats":
            return isinstance(arg.value, cst.Name) and arg.value.value == "False"
    return False


def _scan(project, file, node, scan: _Scan, depth: int, seen: set) -> None:
    """Add what code under ``node`` builds to ``scan``, following the project's classes
    and functions it calls (bases of classes included). ``isinstance(m, nn.BatchNorm2d)``
    is a test, not a layer: it is skipped."""
    if id(node) in seen:
        return
    seen.add(id(node))
    skip = set()
    for n in iter_nodes(node):
        if id(n) in skip:
            continue
        if isinstance(n, cst.Call):
            name = last_part(dotted(n.func))
            if name in ("isinstance", "issubclass", "type"):
                skip.update(id(m) for m in iter_nodes(n))
                continue
            skip.update(id(m) for m in iter_nodes(n.func))
            if name in BN_NAMES:
                scan.kinds.add(name)
                if _untracked_call(n):
                    scan.untracked += 1
                else:
                    scan.tracked += 1
            elif name in _SEQUENCE_CONVS:
                scan.sequence_convs = True
            elif depth < _MAX_DEPTH:
                _follow(project, file, n, scan, depth, seen)
        elif isinstance(n, (cst.Name, cst.Attribute)):
            skip.update(id(m) for m in iter_nodes(n))
            name = last_part(dotted(n))
            if name in BN_NAMES:
                scan.kinds.add(name)
                scan.tracked += 1  # a BN class passed around (norm_layer=nn.BatchNorm2d)
            elif name in _SEQUENCE_CONVS:
                scan.sequence_convs = True
            elif depth < _MAX_DEPTH and dotted(n) is not None:
                _follow_reference(project, file, n, scan, depth, seen, node)


def _follow(project, file, call: cst.Call, scan: _Scan, depth: int, seen: set) -> None:
    sym = project.resolver.resolve(file, call.func)
    if sym is not None and sym.kind == "class":
        for c in project.base_classes(sym.node):
            _scan(project, c.file, c.node, scan, depth + 1, seen)
        return
    if sym is not None and sym.kind == "function":
        _scan(project, sym.file, sym.node, scan, depth + 1, seen)
        return
    q = file.imports.qualify(call.func)
    if library_model_has_bn(q, _first_str(call)):
        kinds = library_profile(call, True).kinds
        scan.kinds.update(kinds)
        scan.tracked += bool(kinds)


def _follow_reference(project, file, expr, scan: _Scan, depth: int, seen: set, scope) -> None:
    """A class or factory named without a call (``block=BasicBlock``, ``model_fun =
    resnet50``), or a module-level table of them (``model_dict = {"resnet50": [resnet50,
    2048]}``) read by name."""
    if isinstance(expr, cst.Name) and expr.value in ("self", "cls"):
        return
    sym = project.resolver.resolve(file, expr)
    if sym is not None and sym.kind in ("class", "function"):
        if sym.kind == "class":
            for c in project.base_classes(sym.node):
                _scan(project, c.file, c.node, scan, depth + 1, seen)
        else:
            _scan(project, sym.file, sym.node, scan, depth + 1, seen)
        return
    if isinstance(expr, cst.Name):
        table = _module_tables(file).get(expr.value)
        if table is not None and _calls_a_local(scope):
            _scan(project, file, table, scan, depth + 1, seen)


def _calls_a_local(scope) -> bool:
    """Does ``scope`` call a name it bound itself (``fn, dim = table[name]; fn()``)? Only
    then is a table it reads a table of things it builds."""
    bound = set()
    for n in iter_nodes(scope):
        if isinstance(n, cst.AssignTarget):
            bound.update(m.value for m in iter_nodes(n.target) if isinstance(m, cst.Name))
    return any(isinstance(n, cst.Call) and isinstance(n.func, cst.Name) and n.func.value in bound
               for n in iter_nodes(scope))


def _module_tables(file):
    """Module-level ``NAME = {...}`` / ``[...]`` / ``(...)`` literals of a file (memoised)."""
    memo = file.__dict__.get("_bn_tables")
    if memo is None:
        memo = {}
        for stmt in file.module.body:
            if not isinstance(stmt, cst.SimpleStatementLine):
                continue
            for small in stmt.body:
                if (isinstance(small, cst.Assign) and len(small.targets) == 1
                        and isinstance(small.targets[0].target, cst.Name)
                        and isinstance(small.value, (cst.Dict, cst.List, cst.Tuple))):
                    memo[small.targets[0].target.value] = small.value
        file.__dict__["_bn_tables"] = memo
    return memo


def _first_str(call: cst.Call) -> Optional[str]:
    if call.args and isinstance(call.args[0].value, cst.SimpleString):
        value = call.args[0].value.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _freezes(project, cls) -> bool:
    """The class (or a base) overrides ``train()`` and calls ``.eval()`` in it."""
    from bnlint.script.modes import sets_eval

    hit = project.method(cls, "train")
    return hit is not None and sets_eval(hit[1])


def class_profile(project, cls) -> BNProfile:
    """The profile of a model built from the project class ``cls`` (memoised)."""
    memo = project.__dict__.setdefault("_bn_profiles", {})
    hit = memo.get(id(cls))
    if hit is None:
        scan = _Scan(set())
        seen: set = set()
        for c in project.base_classes(cls):
            _scan(project, c.file, c.node, scan, 0, seen)
        hit = memo[id(cls)] = scan.profile(_freezes(project, cls))
    return hit


def node_profile(project, file, node) -> BNProfile:
    """The profile of a model built by the expression ``node`` (``nn.Sequential(...)``)."""
    scan = _Scan(set())
    _scan(project, file, node, scan, 0, set())
    return scan.profile(False)


def library_profile(call: cst.Call, has_bn: bool) -> BNProfile:
    """A library model (torchvision, timm) known by name: BatchNorm2d when it has BN,
    unless ``norm_layer=`` names something else (``FrozenBatchNorm2d``)."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "norm_layer":
            name = last_part(dotted(arg.value))
            if name in BN_NAMES:
                return BNProfile(frozenset({name}))
            return BNProfile()
    return BNProfile(frozenset({"BatchNorm2d"})) if has_bn else BNProfile()
