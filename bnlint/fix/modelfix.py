"""Fixes for the graph rules (BNL101, BNL102), planned from the fact graph and the CST.

The graph says what to move (the dropout node) and where (the BatchNorm it feeds, the
residual branch's last weight layer, the weight layer before it, the global pooling);
the CST of the file says how those nodes are spelled. A plan is a ``Fix`` of text edits
on the checked file, or the reason there is none. Planning is separate from applying
(``bnlint.fix.runner``). Pure: no torch, no I/O beyond reading the source once.

Placement (Kim et al., UAI 2023, section 4; design.md section 3):

* BNL101, a dropout feeding one BatchNorm, in forward code: remove the dropout call and
  apply the same call (same arguments, same ``if`` condition: ``bnlint.fix.moves``)
  around the input of the residual branch's last weight layer when the BatchNorm's
  output reaches a residual add through weight layers, else around the BatchNorm's
  output (after its activation when one follows directly).
* BNL101, a dropout feeding several BatchNorm layers (a DenseNet layer's output is
  concatenated into every later layer's input, or a fan-out), or one whose BatchNorm
  is out of reach (applied in another block's forward): move it just before the weight
  layer whose output it dropped, W(D(ReLU(BN(.)))), Kim et al.'s position. The moved
  dropout may still reach a later BatchNorm through that weight layer (BNL103, a
  warning the fixer reports).
* Inside an ``nn.Sequential`` (however its children are written: arguments, list
  literals, append/extend calls, add_module calls, ``OrderedDict``:
  ``bnlint.fix.containers``): move the dropout's registration after the BatchNorm and
  its activations, or before the weight layer. Unsafe when children registered by
  index change index (their state_dict keys are renamed, in every copy of the
  container the model builds); safe when they are registered by name.
* BNL102: move the dropout onto the feature map before the global pooling; a dropout
  inside a classifier ``nn.Sequential`` is replaced by ``nn.Identity()`` and an
  equivalent dropout attribute is defined next to the pooling's definition.
"""
from __future__ import annotations

import os
from collections import deque
from typing import Any, Dict, List, Optional, Sequence, Tuple

import libcst as cst
import networkx as nx

from bnlint.findings import Edit, Fix, FixSafety
from bnlint.fix.containers import Instance, NoContainerMove, move_edits, run_of, shifted_keys
from bnlint.fix.cstindex import SourceIndex, first_input
from bnlint.fix.moves import NoMove, put_in, take_out
from bnlint.model.graphwalk import VALUE_PRESERVING, describe, reach

__all__ = ["NoFix", "plan_model_fix", "FIXABLE_GRAPH_CODES"]

FIXABLE_GRAPH_CODES = ("BNL101", "BNL102")
PARAM_FREE = frozenset({"dropout", "activation", "reshape", "pool", "global-pool", "scale"})
_BRANCH_KINDS = frozenset({"activation", "reshape", "scale", "weight", "batchnorm", "pool", "dropout"})
# What may lie between a weight layer and the dropout moved in front of it.
_BEFORE_WEIGHT = frozenset({"activation", "reshape", "scale", "pool", "global-pool"})
_SHOWN_RENAMES = 4
_BATCHNORM = frozenset({"batchnorm"})
_CHANNEL_DROPOUTS = ("dropout1d", "dropout2d", "dropout3d", "featurealphadropout")


def _sub(parent_path: str, index: int) -> str:
    """Module path of element ``index`` of the nn.Sequential at ``parent_path``
    (``""``: the model itself is the nn.Sequential)."""
    return f"{parent_path}.{index}" if parent_path else str(index)


def _is_channel_dropout(facts: Dict[str, Any]) -> bool:
    """Dropout1d/2d/3d, FeatureAlphaDropout: they drop whole feature maps."""
    name = str(facts.get("module_type") if facts.get("op") == "call_module" else facts.get("target"))
    return name.rsplit(".", 1)[-1].lower().replace("_", "").startswith(_CHANNEL_DROPOUTS)


class NoFix(Exception):
    """No automatic fix; the message says why (shown with the finding)."""


_NO_MOVE = (NoFix, NoMove, NoContainerMove)


def _is_library(file: str) -> bool:
    return "site-packages" in file or "dist-packages" in file or file.startswith("<")


class _Planner:
    def __init__(self, g: nx.DiGraph, file: str, sources: Dict[str, SourceIndex], related: Sequence[str] = ()):
        self.g = g
        self.related = [n for n in related if n in g]
        self.file = os.path.abspath(file)
        self.sources = sources
        self._defns: Optional[Dict[Tuple[int, int], List[str]]] = None

    # ------------------------------------------------------------ source access
    def index(self, path: str) -> SourceIndex:
        path = os.path.abspath(path)
        if path != self.file:
            raise NoFix(f"the code to change is in {os.path.relpath(path)}, outside this file")
        if path not in self.sources:
            from bnlint.sources import SourceError, read_source

            try:
                self.sources[path] = SourceIndex(path, read_source(path).text)
            except SourceError as exc:
                raise NoFix(str(exc)) from None
        return self.sources[path]

    def site(self, node: str, key: str = "call") -> Dict[str, Any]:
        facts = self.g.nodes[node]
        site = facts.get(key)
        if not site:
            raise NoFix(f"no source location is known for {describe(self.g, node)}")
        if _is_library(site["file"]):
            raise NoFix(f"{describe(self.g, node)} is applied in library code; change how it is built instead")
        return site

    def call_of(self, node: str) -> Tuple[SourceIndex, cst.Call]:
        """The forward call of a graph node."""
        facts = self.g.nodes[node]
        site = self.site(node)
        idx = self.index(site["file"])
        op = facts.get("op")
        if op == "call_module":
            if facts.get("in_sequential"):
                raise NoFix(f"{describe(self.g, node)} is applied by an nn.Sequential, not in forward code")
            name = str(facts.get("module_path", "")).rsplit(".", 1)[-1]
            if not name or name.isdigit():
                raise NoFix(f"{describe(self.g, node)} is called by index (a ModuleList element)")
            calls = [c for c in idx.calls_at(site["line"], name) if isinstance(c.func, cst.Attribute)]
        elif op in ("call_function", "call_method"):
            calls = idx.calls_at(site["line"], str(facts.get("target")))
            if op == "call_method":
                calls = [c for c in calls if isinstance(c.func, cst.Attribute)]
        else:
            calls = []
        if len(calls) != 1:
            raise NoFix(f"cannot single out the call of {describe(self.g, node)} on line {site['line']}")
        return idx, calls[0]

    def constructor_of(self, node: str) -> Tuple[SourceIndex, cst.Call]:
        site = self.site(node, "defn")
        idx = self.index(site["file"])
        call = idx.call_at(site["line"], site.get("col", 0))
        if call is None:
            raise NoFix(f"cannot find where {describe(self.g, node)} is constructed")
        return idx, call

    # ------------------------------------------------------------ BNL101
    def fix_dropout_before_bn(self, drop: str) -> Fix:
        # The rule names the BatchNorm layers it found (Hit.related); else walk again.
        targets = [n for n in self.related if self.g.nodes[n].get("kind") == "batchnorm"]
        if not targets:
            targets = reach(self.g, drop, VALUE_PRESERVING, frozenset({"batchnorm"})).targets
        if not targets:
            raise NoFix("the BatchNorm it feeds was not found")
        if len(set(targets)) == 1:
            try:
                return self.after_batchnorm(drop, targets[0])
            except _NO_MOVE as exc:
                first = exc
            try:  # e.g. the BN is in the next block's forward: the guideline position instead
                return self.before_weight(drop)
            except _NO_MOVE:
                raise NoFix(str(first)) from None
        try:
            return self.before_weight(drop)
        except _NO_MOVE as exc:
            raise NoFix(f"it feeds several BatchNorm layers, and {exc}") from None

    def after_batchnorm(self, drop: str, bn: str) -> Fix:
        """Behind the BN and its activation; in a residual branch, before the branch's
        last weight layer (Kim et al.)."""
        self.require_same_layout(drop, bn)
        weight = self.branch_last_weight(bn)
        if weight is None or self.g.nodes[drop].get("in_sequential"):
            # Behind the BN it must feed no other BN (a concatenation into a norm, a
            # second BN), in every use of this code: else the weight layer before it.
            for other in self.siblings(drop):
                fed = reach(self.g, other, VALUE_PRESERVING, _BATCHNORM).targets
                later = [n for b in fed[:1] for n in reach(self.g, b, VALUE_PRESERVING, _BATCHNORM).targets]
                if later:
                    raise NoFix(f"behind {describe(self.g, fed[0])} it would still feed {describe(self.g, later[0])}")
        if self.g.nodes[drop].get("in_sequential"):
            return self.container_move(drop, bn, after=True)
        idx, dcall = self.call_of(drop)
        func = idx.function(dcall)
        if weight is not None:
            widx, wcall = self.call_of(weight)
            if idx.function(wcall) is not func:
                raise NoFix(f"the residual branch's last weight layer {describe(self.g, weight)} is applied in another function")
            self.require_downstream(idx, dcall, wcall, weight)
            warg = first_input(wcall)
            if warg is None:
                raise NoFix(f"cannot find the input of {describe(self.g, weight)}")
            target, where = warg.value, (f"before {describe(self.g, weight)}, the residual branch's last "
                                         f"weight layer (Kim et al.)")
        else:
            target, last = self.after_bn_and_activation(idx, bn, func, dcall)
            where = f"after {describe(self.g, last)}"
        taken = take_out(idx, dcall)
        edits = list(taken.edits) + put_in(idx, dcall, target, taken, func)
        return Fix(FixSafety.SAFE, f"move {describe(self.g, drop)} {where}", tuple(edits))

    def before_weight(self, drop: str) -> Fix:
        """Just before the weight layer whose output it drops, W(D(ReLU(BN(.)))): Kim et
        al.'s position, for a dropout whose output feeds several BatchNorm layers (a
        DenseNet layer's new features are concatenated into every later layer's input)."""
        weight, between = self.weight_before(drop)
        self.require_layout_before_weight(drop, weight, between)
        for other in self.siblings(drop)[1:]:  # the same place in every use of this code
            self.weight_before(other)
        where = f"before {describe(self.g, weight)}, the weight layer whose output it dropped (Kim et al.)"
        if self.g.nodes[drop].get("in_sequential"):
            return self.container_move(drop, weight, after=False)
        idx, dcall = self.call_of(drop)
        func = idx.function(dcall)
        widx, wcall = self.call_of(weight)
        if idx.function(wcall) is not func:
            raise NoFix(f"{describe(self.g, weight)}, the weight layer before it, is applied in another function")
        arg = first_input(dcall)
        inside = arg is not None and idx.start(arg.value) <= idx.start(wcall) and idx.end(wcall) <= idx.end(arg.value)
        if not (inside or idx.end(wcall) <= idx.start(dcall)):
            raise NoFix(f"{describe(self.g, weight)} belongs to another call of this code")
        warg = first_input(wcall)
        if warg is None:
            raise NoFix(f"cannot find the input of {describe(self.g, weight)}")
        taken = take_out(idx, dcall)
        edits = list(taken.edits) + put_in(idx, dcall, warg.value, taken, func)
        return Fix(FixSafety.SAFE, f"move {describe(self.g, drop)} {where}", tuple(edits))

    def siblings(self, drop: str) -> List[str]:
        """The dropout nodes written by the same source as ``drop`` (a block class or a
        loop builds several), ``drop`` first: one edit moves them all."""
        facts = self.g.nodes[drop]
        key = "defn" if facts.get("in_sequential") else "call"
        site = facts.get(key) or {}
        where = (site.get("file"), site.get("line"), site.get("col", 0), facts.get("op"),
                 facts.get("target") if facts.get("op") != "call_module" else facts.get("module_type"))
        out = [drop]
        for node, d in self.g.nodes(data=True):
            other = d.get(key) or {}
            if (node != drop and d.get("kind") == "dropout" and d.get("active")
                    and (other.get("file"), other.get("line"), other.get("col", 0), d.get("op"),
                         d.get("target") if d.get("op") != "call_module" else d.get("module_type")) == where):
                out.append(node)
        return out

    def weight_before(self, drop: str) -> Tuple[str, List[str]]:
        """The weight layer whose output reaches the dropout through value-preserving
        ops that nothing else reads, and those ops."""
        current, between = drop, []
        while True:
            preds = self.data_preds(current)
            if len(preds) != 1:
                raise NoFix("its input is not the output of a single layer")
            pred = preds[0]
            users = [s for s in self.g.successors(pred) if self.g.nodes[s].get("kind") != "meta"]
            if len(users) != 1:
                raise NoFix(f"the output of {describe(self.g, pred)} before it is also used elsewhere")
            kind = self.g.nodes[pred].get("kind")
            if kind == "weight":
                return pred, between
            if kind not in _BEFORE_WEIGHT:
                raise NoFix(f"no weight layer precedes it in its block ({describe(self.g, pred)} does)")
            between.append(pred)
            current = pred

    def data_preds(self, node: str) -> List[str]:
        return [p for p in self.g.predecessors(node) if self.g.nodes[p].get("kind") not in ("param", "meta")]

    def require_layout_before_weight(self, drop: str, weight: str, between: Sequence[str]) -> None:
        """A channel dropout stays on feature maps: only before a convolution, with no
        pooling to a vector or flatten in between."""
        if not _is_channel_dropout(self.g.nodes[drop]):
            return
        w = self.g.nodes[weight]
        what = str(w.get("module_type") if w.get("op") == "call_module" else w.get("target")).lower()
        if "conv" not in what:
            raise NoFix(f"this channel dropout cannot move before {describe(self.g, weight)} (not a convolution)")
        for node in between:
            if self.g.nodes[node].get("kind") in ("global-pool", "reshape"):
                raise NoFix(f"moving this channel dropout past {describe(self.g, node)} would apply it to "
                            f"features of another shape")

    def require_same_layout(self, drop: str, bn: str) -> None:
        """A channel dropout (Dropout2d/3d, FeatureAlphaDropout: whole feature maps)
        must not move past a global pooling or a flatten onto pooled features: there
        it would drop single values instead (PyTorch warns, and will refuse)."""
        if not _is_channel_dropout(self.g.nodes[drop]):
            return
        walk = reach(self.g, drop, VALUE_PRESERVING, frozenset({"batchnorm"}))
        if bn not in walk.parent:
            return
        for node in walk.path_to(bn)[1:-1]:
            d = self.g.nodes[node]
            what = str(d.get("module_type") if d.get("op") == "call_module" else d.get("target")).lower()
            if d.get("kind") == "global-pool" or (d.get("kind") == "reshape" and any(
                    w in what for w in ("flatten", "view", "reshape", "squeeze"))):
                raise NoFix(f"moving this channel dropout past {describe(self.g, node)} would apply it to "
                            f"features of another shape")

    def branch_last_weight(self, bn: str) -> Optional[str]:
        """The last weight layer between ``bn`` and the residual add its output reaches."""
        parent: Dict[str, Optional[str]] = {bn: None}
        queue = deque([bn])
        while queue and len(parent) < 500:
            node = queue.popleft()
            for succ in self.g.successors(node):
                if succ in parent:
                    continue
                parent[succ] = node
                kind = self.g.nodes[succ].get("kind")
                if kind == "add":
                    path = [node]
                    while parent.get(path[-1]) is not None:
                        path.append(parent[path[-1]])  # type: ignore[arg-type]
                    weights = [n for n in path if self.g.nodes[n].get("kind") == "weight"]
                    return weights[0] if weights else None
                if kind in _BRANCH_KINDS:
                    queue.append(succ)
        return None

    def require_downstream(self, idx: SourceIndex, dcall: cst.Call, call: cst.Call, node: str) -> None:
        """``call`` must come after the dropout call in the source (or contain it): a call
        written before it runs in another invocation of this code (the next layer of a
        stack built from the same class), where moving the dropout would change which
        tensor it drops."""
        if idx.start(call) >= idx.end(dcall):
            return
        if idx.start(call) <= idx.start(dcall) and idx.end(dcall) <= idx.end(call):
            return
        raise NoFix(f"{describe(self.g, node)} belongs to another call of this code (e.g. the next "
                    f"layer built from the same class)")

    def after_bn_and_activation(self, idx: SourceIndex, bn: str, func, dcall: cst.Call) -> Tuple[cst.CSTNode, str]:
        bidx, bcall = self.call_of(bn)
        if bidx.function(bcall) is not func:
            raise NoFix(f"the BatchNorm it feeds ({describe(self.g, bn)}) is applied in another function")
        self.require_downstream(idx, dcall, bcall, bn)
        node, call = bn, bcall
        while True:
            succs = [s for s in self.g.successors(node) if self.g.nodes[s].get("kind") not in ("param", "meta")]
            if len(succs) != 1 or self.g.nodes[succs[0]].get("kind") != "activation":
                break
            nxt = self._consumer_call(idx, call, succs[0], func)
            if nxt is None:
                break
            node, call = succs[0], nxt
        return call, node

    def _consumer_call(self, idx: SourceIndex, call: cst.Call, node: str, func) -> Optional[cst.Call]:
        """The CST call of activation ``node`` that takes ``call``'s result as input."""
        try:
            _, cand = self.call_of(node)
        except NoFix:
            return None
        if idx.function(cand) is not func:
            return None
        arg = first_input(cand) if not (isinstance(cand.func, cst.Attribute)
                                       and self.g.nodes[node].get("op") == "call_method") else None
        value = arg.value if arg is not None else (cand.func.value if isinstance(cand.func, cst.Attribute) else None)
        if value is call:
            return cand
        parent = idx.parent(call)
        if (isinstance(parent, cst.Assign) and parent.value is call and len(parent.targets) == 1
                and isinstance(parent.targets[0].target, cst.Name) and isinstance(value, cst.Name)
                and value.value == parent.targets[0].target.value and idx.start(cand) > idx.end(call)):
            return cand
        return None

    # ------------------------------------------------------------ children of an nn.Sequential
    def container_move(self, drop: str, anchor: str, after: bool) -> Fix:
        """Move the dropout's registration in its nn.Sequential: after ``anchor`` (a
        BatchNorm; its activations follow it) or before it (a weight layer, a pooling)."""
        idx, ctor = self.constructor_of(drop)
        path = str(self.g.nodes[drop].get("module_path", ""))
        parent_path, _, name = path.rpartition(".")
        named = not name.isdigit()
        run, src, _ = run_of(idx, ctor, named)
        aidx, actor = self.constructor_of(anchor)
        apath = str(self.g.nodes[anchor].get("module_path", ""))
        loc = run.unit_of(idx, *aidx.start(actor)) if aidx is idx else None
        if loc is None or apath.rpartition(".")[0] != parent_path:
            raise NoFix(f"{describe(self.g, anchor)} is not registered in the same {run.spelling}")
        dst, offset = loc
        if after:
            unit = run.units[dst]
            if dst <= src:
                raise NoFix(f"{describe(self.g, anchor)} is registered before it")
            if any(self.kinds_at(e) != {"activation"} for e in unit.elements[offset + 1:]):
                raise NoFix(f"{describe(self.g, anchor)} is listed together with other layers")
            while dst + 1 < len(run.units) and all(self.kinds_at(e) == {"activation"}
                                                   for e in run.units[dst + 1].elements):
                dst += 1
        elif dst >= src or offset != 0:
            raise NoFix(f"{describe(self.g, anchor)} is not registered before it on its own")
        edits = move_edits(idx, run, src, dst, after)
        renames = shifted_keys(run, src, dst, after, self.instances(drop), self.present, self.has_state)
        where = f"{'after' if after else 'before'} {describe(self.g, anchor)}"
        last = self.node_at(run.units[dst].elements[-1]) if after else None
        if last is not None and last != anchor and self.g.nodes[last].get("kind") == "activation":
            where += f" and {describe(self.g, last)}"
        how = "in its nn.Sequential" if not run.statements else f"(reorders the {run.spelling})"
        desc = f"move {describe(self.g, drop)} {where} {how}"
        if renames:
            shown = ", ".join(f"{a}* -> {b}*" for a, b in renames[:_SHOWN_RENAMES])
            more = f" and {len(renames) - _SHOWN_RENAMES} more" if len(renames) > _SHOWN_RENAMES else ""
            return Fix(FixSafety.UNSAFE, f"{desc}; renames state_dict keys {shown}{more}", tuple(edits),
                       (("renames", renames),))
        return Fix(FixSafety.SAFE, desc, tuple(edits))

    def _defn_index(self) -> Dict[Tuple[int, int], List[str]]:
        if self._defns is None:
            self._defns = {}
            for node, d in self.g.nodes(data=True):
                site = d.get("defn")
                if site and os.path.abspath(site["file"]) == self.file:
                    self._defns.setdefault((site["line"], site.get("col", 0)), []).append(node)
        return self._defns

    def node_at(self, expr: cst.CSTNode) -> Optional[str]:
        nodes = self._defn_index().get(self.index(self.file).start(expr), [])
        return nodes[0] if nodes else None

    def kinds_at(self, expr: cst.CSTNode) -> set:
        """Kinds of the graph nodes constructed by the module expression ``expr``."""
        return {self.g.nodes[n].get("kind") for n in self._defn_index().get(self.index(self.file).start(expr), [])}

    def instances(self, drop: str) -> List[Instance]:
        """Every built copy of the dropout's container (a loop or a block class builds
        several): where the dropout sits in it."""
        site = self.g.nodes[drop].get("defn") or {}
        seen = {}
        for node in self._defn_index().get((site.get("line"), site.get("col", 0)), []):
            path = str(self.g.nodes[node].get("module_path", ""))
            parent, _, index = path.rpartition(".")
            if index.isdigit():
                seen[path] = Instance(parent, int(index))
        return list(seen.values())

    def present(self, container: str, index: int, unit) -> bool:
        """Whether the guarded ``unit`` registered the child ``index`` of ``container``."""
        child = _sub(container, index)
        own = [n for n, d in self.g.nodes(data=True) if d.get("module_path") == child]
        if not own:
            if any(str(d.get("module_path", "")).startswith(child + ".") for _, d in self.g.nodes(data=True)):
                raise NoFix(f"cannot tell which layer the conditional registration of '{child}' added")
            return False
        want = self.index(self.file).start(unit.elements[0])
        return any(((self.g.nodes[n].get("defn") or {}).get("line"), (self.g.nodes[n].get("defn") or {}).get("col", 0))
                   == want for n in own)

    def child_kinds(self, parent_path: str, index: int) -> set:
        prefix = _sub(parent_path, index)
        return {d.get("kind") for _, d in self.g.nodes(data=True)
                if d.get("module_path") == prefix or str(d.get("module_path", "")).startswith(prefix + ".")}

    def has_state(self, parent_path: str, index: int) -> bool:
        kinds = self.child_kinds(parent_path, index)
        return not kinds or not kinds <= PARAM_FREE

    # ------------------------------------------------------------ BNL102
    def pooling_before(self, drop: str) -> Optional[str]:
        """The global pooling the rule found (Hit.related), else the one feeding ``drop``
        through reshapes and activations."""
        for n in self.related:
            if self.g.nodes[n].get("kind") == "global-pool":
                return n
        current, seen = drop, {drop}
        while True:
            preds = [p for p in self.g.predecessors(current) if self.g.nodes[p].get("kind") not in ("param", "meta")]
            if len(preds) != 1 or preds[0] in seen:
                return None
            current = preds[0]
            seen.add(current)
            kind = self.g.nodes[current].get("kind")
            if kind == "global-pool":
                return current
            if kind not in ("reshape", "activation", "dropout", "scale"):
                return None

    def fix_dropout_after_pool(self, drop: str) -> Fix:
        pool = self.pooling_before(drop)
        if pool is None:
            raise NoFix("the global pooling was not found")
        if self.g.nodes[drop].get("in_sequential"):
            if self.g.nodes[pool].get("in_sequential"):
                try:
                    return self.container_move(drop, pool, after=False)
                except _NO_MOVE:
                    pass
            return self.identity_and_new_dropout(drop, pool)
        idx, dcall = self.call_of(drop)
        pidx, pcall = self.call_of(pool)
        func = idx.function(dcall)
        if pidx.function(pcall) is not func:
            raise NoFix(f"the pooling {describe(self.g, pool)} is applied in another function")
        target = self.pool_input(pool, pcall)
        taken = take_out(idx, dcall)
        edits = list(taken.edits) + put_in(idx, dcall, target, taken, func)
        return Fix(FixSafety.SAFE, f"move {describe(self.g, drop)} before {describe(self.g, pool)}", tuple(edits))

    def pool_input(self, pool: str, pcall: cst.Call) -> cst.CSTNode:
        if self.g.nodes[pool].get("op") == "call_method":
            if not isinstance(pcall.func, cst.Attribute):
                raise NoFix("cannot find the pooling's input")
            return pcall.func.value
        arg = first_input(pcall)
        if arg is None:
            raise NoFix("cannot find the pooling's input")
        return arg.value

    def identity_and_new_dropout(self, drop: str, pool: str) -> Fix:
        idx, ctor = self.constructor_of(drop)
        if not isinstance(ctor.func, cst.Attribute):
            raise NoFix("cannot spell nn.Identity() next to a bare Dropout name")
        identity = f"{idx.code(ctor.func.value)}.Identity()"
        pidx, pcall = self.call_of(pool)
        klass = idx.klass(pcall)
        init = idx.function(ctor)
        anchor_stmt = idx.statement(ctor)
        if self.g.nodes[pool].get("op") == "call_module" and self.g.nodes[pool].get("defn"):
            try:
                _, pctor = self.constructor_of(pool)
                if idx.function(pctor) is init:
                    anchor_stmt = idx.statement(pctor)
            except NoFix:
                pass
        if anchor_stmt is None or klass is None or idx.klass(anchor_stmt) is not klass or init is None:
            raise NoFix("the classifier and the pooling belong to different classes")
        name = "feature_dropout"
        class_code = idx.code(klass)
        n = 1
        while f"self.{name}" in class_code or f"'{name}'" in class_code or f'"{name}"' in class_code:
            n += 1
            name = f"feature_dropout{n}"
        args = []
        for pos, a in enumerate(ctor.args):
            if (a.keyword is not None and a.keyword.value == "inplace") or (a.keyword is None and pos >= 1):
                continue
            args.append(a)
        if args:
            args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        new_ctor = idx.module.code_for_node(ctor.with_changes(args=args))
        end_line = idx.end(anchor_stmt)[0]
        indent = idx.indent_of(idx.start(anchor_stmt)[0])
        target = self.pool_input(pool, pcall)
        edits = [
            Edit(idx.path, idx.start(ctor), idx.end(ctor), identity),
            Edit(idx.path, (end_line + 1, 0), (end_line + 1, 0), f"{indent}self.{name} = {new_ctor}\n"),
            Edit(idx.path, idx.start(target), idx.start(target), f"self.{name}("),
            Edit(idx.path, idx.end(target), idx.end(target), ")"),
        ]
        return Fix(FixSafety.SAFE,
                   f"replace {describe(self.g, drop)} by {identity} (indices and keys stay) and apply "
                   f"self.{name} = {new_ctor} before {describe(self.g, pool)}", tuple(edits))


def plan_model_fix(code: str, g: nx.DiGraph, node: str, file: str, sources: Dict[str, SourceIndex],
                   related: Sequence[str] = ()) -> Tuple[Optional[Fix], Optional[str]]:
    """(fix, None) or (None, why there is none) for one graph-rule hit on ``node``;
    ``related`` are the nodes the rule named (the BatchNorm layers, the pooling)."""
    if code not in FIXABLE_GRAPH_CODES or node not in g:
        return None, None
    planner = _Planner(g, file, sources, related)
    try:
        if code == "BNL101":
            return planner.fix_dropout_before_bn(node), None
        return planner.fix_dropout_after_pool(node), None
    except _NO_MOVE as exc:
        return None, str(exc)
    except (cst.ParserSyntaxError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return None, f"the fixer could not follow this code ({type(exc).__name__})"
