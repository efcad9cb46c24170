"""The BNL106 fix: build a conv/linear layer whose bias a BatchNorm cancels with
``bias=False``. Planned from the fact graph and the CST, applied as text edits.

The plan edits the layer's constructor call: ``bias=True``/``bias=expr`` becomes
``bias=False``, a positional bias argument becomes ``False``, or ``bias=False`` is
added after the last argument. It is unsafe: the state_dict loses the layer's ``bias``
key. The promise the fix check verifies (``bnlint.fix.equivalence``) is carried as
``bias_folds``: pairs of module paths relative to their common parent, e.g.
``("conv1", "bn1")``: in every model built from the file, the keys removed are exactly
biases ``P.conv1.bias`` with a ``P.bn1.running_mean`` to fold them into, and with the
fold (``running_mean -= bias``) the eval-mode outputs are unchanged.
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

import libcst as cst
import networkx as nx

from bnlint.findings import Edit, Fix, FixSafety
from bnlint.fix.cstindex import SourceIndex
from bnlint.model.graphwalk import describe

__all__ = ["plan_bias_fix", "BiasFixError", "relative_pair"]

# Position of ``bias`` among the constructor's positional parameters.
_BIAS_POSITION = {
    "Linear": 2, "LazyLinear": 1, "Bilinear": 3,
    "Conv1d": 7, "Conv2d": 7, "Conv3d": 7, "LazyConv1d": 6, "LazyConv2d": 6, "LazyConv3d": 6,
    "ConvTranspose1d": 7, "ConvTranspose2d": 7, "ConvTranspose3d": 7,
    "LazyConvTranspose1d": 6, "LazyConvTranspose2d": 6, "LazyConvTranspose3d": 6,
}


class BiasFixError(Exception):
    """No automatic fix; the message says why."""


def relative_pair(weight_path: str, bn_path: str) -> Tuple[str, str]:
    """Module paths below their common parent: ``("layer1.0.conv1", "layer1.0.bn1")``
    -> ``("conv1", "bn1")``."""
    a, b = weight_path.split("."), bn_path.split(".")
    common = 0
    while common < min(len(a), len(b)) - 1 and a[common] == b[common]:
        common += 1
    return ".".join(a[common:]), ".".join(b[common:])


def _site(facts: Dict) -> Tuple[str, int, int]:
    site = facts.get("defn") or {}
    file = str(site.get("file", ""))
    if not file or file.startswith("<") or "site-packages" in file or "dist-packages" in file:
        raise BiasFixError("the layer is built in installed code; build it with bias=False where you create it")
    return os.path.abspath(file), int(site.get("line", 0)), int(site.get("col", 0))


def _index(path: str, sources: Dict[str, SourceIndex]) -> SourceIndex:
    if path not in sources:
        from bnlint.sources import SourceError, read_source

        try:
            sources[path] = SourceIndex(path, read_source(path).text)
        except SourceError as exc:
            raise BiasFixError(str(exc)) from None
    return sources[path]


def _bias_edit(idx: SourceIndex, call: cst.Call, cls: str) -> Edit:
    for arg in call.args:
        if arg.star == "**":
            raise BiasFixError("the constructor takes **kwargs; add bias=False yourself")
        if arg.keyword is not None and arg.keyword.value == "bias":
            return Edit(idx.path, idx.start(arg.value), idx.end(arg.value), "False")
    positional = [a for a in call.args if a.keyword is None]
    if any(a.star for a in positional):
        raise BiasFixError("the constructor takes *args; add bias=False yourself")
    position = _BIAS_POSITION.get(cls)
    if position is None:
        raise BiasFixError(f"{cls} is not a torch layer whose bias parameter bnlint knows")
    if len(positional) > position:
        arg = positional[position]
        return Edit(idx.path, idx.start(arg.value), idx.end(arg.value), "False")
    if not call.args:
        raise BiasFixError("the constructor call has no arguments")
    last = call.args[-1]
    return Edit(idx.path, idx.end(last.value), idx.end(last.value), ", bias=False")


def _branch_marks(idx: SourceIndex, node: cst.CSTNode) -> set:
    """The blocks and conditional-expression arms that hold ``node``."""
    marks = set()
    child, parent = node, idx.parent(node)
    while parent is not None:
        if isinstance(parent, cst.IndentedBlock):
            marks.add(("block", id(parent)))
        elif isinstance(parent, cst.IfExp):
            marks.add(("ifexp", id(parent), "body" if child is parent.body else
                       "orelse" if child is parent.orelse else "test"))
        elif isinstance(parent, (cst.BooleanOperation, cst.CompFor, cst.CompIf)):
            marks.add(("cond", id(parent)))
        child, parent = parent, idx.parent(parent)
    return marks


def _same_unconditional_place(g: nx.DiGraph, idx: SourceIndex, call: cst.Call, bn: str, path: str) -> None:
    """The BatchNorm must be built in the same function as the layer, under no condition
    the layer's construction escapes: else ``bias=False`` would also reach layers built
    without a BatchNorm (torchvision's ``make_layers(cfg, batch_norm)`` builds the conv
    either way and the BN only ``if batch_norm:``)."""
    site = g.nodes[bn].get("defn") or {}
    if os.path.abspath(str(site.get("file", ""))) != path:
        raise BiasFixError(f"{describe(g, bn)} is built in another file")
    bn_call = idx.call_at(int(site.get("line", 0)), int(site.get("col", 0)))
    if bn_call is None:
        raise BiasFixError(f"cannot find where {describe(g, bn)} is constructed")
    if idx.function(bn_call) is not idx.function(call):
        raise BiasFixError(f"the layer is built in another function than {describe(g, bn)} (a helper that "
                           f"may build layers with no BatchNorm after them); pass bias=False where it is called")
    if not _branch_marks(idx, bn_call) <= _branch_marks(idx, call):
        raise BiasFixError(f"{describe(g, bn)} is built only under a condition (line "
                           f"{idx.start(bn_call)[0]}) and the layer is built either way; make its bias depend "
                           f"on the same condition (e.g. bias=not batch_norm)")


def plan_bias_fix(g: nx.DiGraph, node: str, file: str, sources: Dict[str, SourceIndex],
                  related: Sequence[str] = ()) -> Fix:
    """The unsafe ``bias=False`` fix for BNL106 on weight node ``node``, whose bias the
    BatchNorm nodes ``related`` cancel; BiasFixError says why there is none."""
    from bnlint.rules.bnl106_bias_before_batchnorm import cancelled_biases

    facts = g.nodes[node]
    if facts.get("op") != "call_module":
        raise BiasFixError(f"{describe(g, node)} is applied as a function; pass bias=None to it")
    path, line, col = _site(facts)
    if path != os.path.abspath(file):
        raise BiasFixError(f"the layer is built in {os.path.relpath(path)}, outside this file")
    cancelled = cancelled_biases(g)
    # Every layer built by this constructor call loses its bias: each must be one BN cancels.
    for other, data in g.nodes(data=True):
        site = data.get("defn") or {}
        if (data.get("kind") == "weight" and data.get("has_bias") and other not in cancelled
                and os.path.abspath(str(site.get("file", ""))) == path and site.get("line") == line
                and site.get("col", 0) == col):
            raise BiasFixError(f"line {line} also builds {describe(g, other)}, whose bias is not cancelled "
                               f"by a BatchNorm")
    idx = _index(path, sources)
    call = idx.call_at(line, col)
    if call is None:
        raise BiasFixError(f"cannot find where {describe(g, node)} is constructed")
    cls = str(facts.get("module_type", "")).rsplit(".", 1)[-1]
    edit = _bias_edit(idx, call, cls)
    weight_path = str(facts.get("module_path", ""))
    bns = [b for b in (related or cancelled.get(node, ())) if b in g]
    folds: List[Tuple[str, str]] = []
    for bn in bns:
        bn_path = g.nodes[bn].get("module_path")
        if g.nodes[bn].get("op") != "call_module" or not bn_path:
            raise BiasFixError(f"{describe(g, bn)} is applied as a function: its running mean cannot be "
                               f"adjusted to keep the outputs")
        _same_unconditional_place(g, idx, call, bn, path)
        folds.append(relative_pair(weight_path, str(bn_path)))
    if not folds:
        raise BiasFixError("the BatchNorm it feeds was not found")
    names = ", ".join(f"'{g.nodes[bn].get('module_path')}'" for bn in bns)
    others = sum(1 for _, data in g.nodes(data=True)
                 if data.get("kind") == "weight" and (data.get("defn") or {}).get("line") == line
                 and (data.get("defn") or {}).get("col", 0) == col
                 and os.path.abspath(str((data.get("defn") or {}).get("file", ""))) == path) - 1
    also = f" and the same key of the {others} other layer(s) built on this line" if others > 0 else ""
    return Fix(
        FixSafety.UNSAFE,
        f"build {describe(g, node)} with bias=False; removes state_dict key '{weight_path}.bias'{also} (to "
        f"load an old checkpoint, subtract the bias from the running_mean of {names} and drop the key)",
        (edit,),
        (("bias_folds", tuple(folds)),),
    )
