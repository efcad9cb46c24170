"""Fixes for the graph rules (BNL101, BNL102), planned from the fact graph and the CST.

The graph says what to move (the dropout node) and where (the BatchNorm it feeds, the
residual branch's last weight layer, the global pooling); the CST of the file says how
those nodes are spelled. A plan is a ``Fix`` of text edits on the checked file, or the
reason there is none. Pure: no torch, no I/O beyond reading the source once.

Placement (Kim et al., UAI 2023, section 4; design.md section 3):

* BNL101 in forward code: remove the dropout call and apply the same call, with the
  same arguments, around the input of the residual branch's last weight layer when the
  BatchNorm's output reaches a residual add through weight layers, else around the
  BatchNorm's output (after its activation when one follows directly).
* BNL101 in an ``nn.Sequential`` literal (or a list literal built for one): move the
  element after the BatchNorm element and its activations. Unsafe when elements with
  parameters change index (their state_dict keys are renamed).
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
from bnlint.fix.cstindex import SourceIndex, callee_name, first_input
from bnlint.model.graphwalk import VALUE_PRESERVING, describe, reach

__all__ = ["NoFix", "plan_model_fix", "FIXABLE_GRAPH_CODES"]

FIXABLE_GRAPH_CODES = ("BNL101", "BNL102", "BNL106")
PARAM_FREE = frozenset({"dropout", "activation", "reshape", "pool", "global-pool", "scale"})
_BRANCH_KINDS = frozenset({"activation", "reshape", "scale", "weight", "batchnorm", "pool", "dropout"})
_PURE_TEST = (cst.Name, cst.Attribute, cst.Comparison, cst.ComparisonTarget, cst.Integer, cst.Float,
              cst.BooleanOperation, cst.UnaryOperation, cst.SimpleString)




def _sub(parent_path: str, index: int) -> str:
    """Module path of element ``index`` of the nn.Sequential at ``parent_path``
    (``""``: the model itself is the nn.Sequential)."""
    return f"{parent_path}.{index}" if parent_path else str(index)

class NoFix(Exception):
    """No automatic fix; the message says why (shown with the finding)."""


def _is_library(file: str) -> bool:
    return "site-packages" in file or "dist-packages" in file or file.startswith("<")


class _Planner:
    def __init__(self, g: nx.DiGraph, file: str, sources: Dict[str, SourceIndex], related: Sequence[str] = ()):
        self.g = g
        self.related = [n for n in related if n in g]
        self.file = os.path.abspath(file)
        self.sources = sources

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

    # ------------------------------------------------------------ edits
    def wrap(self, idx: SourceIndex, drop: cst.Call, target: cst.CSTNode) -> List[Edit]:
        """Apply ``drop``'s call (same callee, same other arguments) around ``target``."""
        arg = first_input(drop)
        if arg is None:
            raise NoFix("the dropout call has no plain input argument")
        prefix = idx.between(idx.start(drop), idx.start(arg.value))
        suffix = idx.between(idx.end(arg.value), idx.end(drop))
        return [Edit(idx.path, idx.start(target), idx.start(target), prefix),
                Edit(idx.path, idx.end(target), idx.end(target), suffix)]

    def remove(self, idx: SourceIndex, drop: cst.Call) -> List[Edit]:
        """Take the dropout call out: drop ``x = drop(x)``, else replace it by its input."""
        arg = first_input(drop)
        if arg is None:
            raise NoFix("the dropout call has no plain input argument")
        parent = idx.parent(drop)
        if (isinstance(parent, cst.Assign) and parent.value is drop and len(parent.targets) == 1
                and isinstance(parent.targets[0].target, cst.Name) and isinstance(arg.value, cst.Name)
                and parent.targets[0].target.value == arg.value.value):
            stmt = idx.parent(parent)
            if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
                return self.delete_statement(idx, stmt)
        return [Edit(idx.path, idx.start(drop), idx.end(drop), idx.code(arg.value))]

    def delete_statement(self, idx: SourceIndex, stmt: cst.CSTNode) -> List[Edit]:
        block = idx.parent(stmt)
        if isinstance(block, cst.IndentedBlock) and len(block.body) == 1:
            owner = idx.parent(block)
            if (isinstance(owner, cst.If) and owner.orelse is None
                    and all(isinstance(n, _PURE_TEST) or not isinstance(n, cst.BaseExpression)
                            for n in _walk(owner.test))):
                return self.delete_statement(idx, owner)
            return [Edit(idx.path, idx.start(stmt), idx.end(stmt), "pass")]
        line0, line1 = idx.start(stmt)[0], idx.end(stmt)[0]
        return [Edit(idx.path, (line0, 0), (line1 + 1, 0), "")]

    # ------------------------------------------------------------ BNL101
    def fix_dropout_before_bn(self, drop: str) -> Fix:
        # The rule names the BatchNorm layers it found (Hit.related); else walk again.
        targets = [n for n in self.related if self.g.nodes[n].get("kind") == "batchnorm"]
        if not targets:
            targets = reach(self.g, drop, VALUE_PRESERVING, frozenset({"batchnorm"})).targets
        if not targets:
            raise NoFix("the BatchNorm it feeds was not found")
        bn = targets[0]
        if len(set(targets)) > 1:
            raise NoFix("it feeds several BatchNorm layers")
        self.require_same_layout(drop, bn)
        if self.g.nodes[drop].get("in_sequential"):
            return self.sequential_move_after(drop, bn)
        idx, dcall = self.call_of(drop)
        func = idx.function(dcall)
        weight = self.branch_last_weight(bn)
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
        edits = self.remove(idx, dcall) + self.wrap(idx, dcall, target)
        return Fix(FixSafety.SAFE, f"move {describe(self.g, drop)} {where}", tuple(edits))

    def require_same_layout(self, drop: str, bn: str) -> None:
        """A channel dropout (Dropout2d/3d, FeatureAlphaDropout: whole feature maps)
        must not move past a global pooling or a flatten onto pooled features: there
        it would drop single values instead (PyTorch warns, and will refuse)."""
        facts = self.g.nodes[drop]
        name = str(facts.get("module_type") if facts.get("op") == "call_module" else facts.get("target"))
        name = name.rsplit(".", 1)[-1].lower().replace("_", "")
        if not name.startswith(("dropout1d", "dropout2d", "dropout3d", "featurealphadropout")):
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

    # ------------------------------------------------------------ nn.Sequential literals
    def sequence_of(self, node: str) -> Tuple[SourceIndex, List[cst.BaseExpression], str, int]:
        facts = self.g.nodes[node]
        idx, ctor = self.constructor_of(node)
        path = str(facts.get("module_path", ""))
        if not path.rsplit(".", 1)[-1].isdigit():
            raise NoFix(f"{describe(self.g, node)} is added to its container by name, not listed in order")
        parent_path, index = (path.rsplit(".", 1)[0] if "." in path else ""), int(path.rsplit(".", 1)[-1])
        holder = idx.parent(ctor)
        elems: Optional[List[cst.BaseExpression]] = None
        if isinstance(holder, cst.Arg):
            owner = idx.parent(holder)
            if (isinstance(owner, cst.Call) and callee_name(owner) == "Sequential"
                    and all(a.keyword is None and not a.star for a in owner.args)):
                elems = [a.value for a in owner.args]
        elif isinstance(holder, cst.Element):
            owner = idx.parent(holder)
            if isinstance(owner, cst.List) and all(isinstance(e, cst.Element) for e in owner.elements):
                elems = [e.value for e in owner.elements]
        if elems is None:
            raise NoFix(f"{describe(self.g, node)} is not written in an nn.Sequential(...) or list literal")
        if index >= len(elems) or elems[index] is not ctor:
            raise NoFix("the nn.Sequential's elements do not line up with its indices (built in pieces)")
        return idx, elems, parent_path, index

    def child_kinds(self, parent_path: str, index: int) -> set:
        prefix = _sub(parent_path, index)
        return {d.get("kind") for _, d in self.g.nodes(data=True)
                if d.get("module_path") == prefix or str(d.get("module_path", "")).startswith(prefix + ".")}

    def has_state(self, parent_path: str, index: int) -> bool:
        kinds = self.child_kinds(parent_path, index)
        return not kinds or not kinds <= PARAM_FREE

    def child_index(self, node: str, parent_path: str) -> Optional[int]:
        path = str(self.g.nodes[node].get("module_path") or "")
        prefix = parent_path + "." if parent_path else ""
        if not path.startswith(prefix):
            return None
        head = path[len(prefix):].split(".", 1)[0]
        return int(head) if head.isdigit() else None

    def sequential_move_after(self, drop: str, bn: str) -> Fix:
        idx, elems, parent_path, i = self.sequence_of(drop)
        k = self.child_index(bn, parent_path)
        if k is None or k <= i or k >= len(elems):
            raise NoFix(f"the BatchNorm it feeds ({describe(self.g, bn)}) is not a later element of the same nn.Sequential")
        j = k
        while j + 1 < len(elems) and self.child_kinds(parent_path, j + 1) == {"activation"}:
            j += 1
        edits = [Edit(idx.path, idx.start(elems[i]), idx.start(elems[i + 1]), "")]
        text = idx.code(elems[i])
        if j + 1 < len(elems):
            sep = idx.between(idx.end(elems[i]), idx.start(elems[i + 1]))
            at = idx.start(elems[j + 1])
            edits.append(Edit(idx.path, at, at, text + sep))
        else:
            sep = idx.between(idx.end(elems[j - 1]), idx.start(elems[j]))
            at = idx.end(elems[j])
            edits.append(Edit(idx.path, at, at, sep + text))
        renames = tuple((_sub(parent_path, m) + ".", _sub(parent_path, m - 1) + ".")
                        for m in range(i + 1, j + 1) if self.has_state(parent_path, m))
        last = _sub(parent_path, j)
        return self._reorder_fix(drop, f"after '{last}' (the BatchNorm and its activation)", edits, renames)

    def _reorder_fix(self, drop: str, where: str, edits, renames) -> Fix:
        desc = f"move {describe(self.g, drop)} {where} in its nn.Sequential"
        if renames:
            desc += "; renames state_dict keys " + ", ".join(f"{a}* -> {b}*" for a, b in renames)
            return Fix(FixSafety.UNSAFE, desc, tuple(edits), (("renames", renames),))
        return Fix(FixSafety.SAFE, desc, tuple(edits))

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
        dfacts, pfacts = self.g.nodes[drop], self.g.nodes[pool]
        if dfacts.get("in_sequential"):
            idx, elems, parent_path, i = self.sequence_of(drop)
            k = self.child_index(pool, parent_path) if pfacts.get("in_sequential") else None
            if k is not None and k < i:
                return self.sequential_move_before(drop, idx, elems, parent_path, i, k)
            return self.identity_and_new_dropout(drop, pool, idx, elems[i])
        idx, dcall = self.call_of(drop)
        pidx, pcall = self.call_of(pool)
        if pidx.function(pcall) is not idx.function(dcall):
            raise NoFix(f"the pooling {describe(self.g, pool)} is applied in another function")
        target = self.pool_input(pool, pcall)
        edits = self.remove(idx, dcall) + self.wrap(idx, dcall, target)
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

    def sequential_move_before(self, drop, idx, elems, parent_path, i, k) -> Fix:
        text = idx.code(elems[i])
        sep = idx.between(idx.end(elems[k]), idx.start(elems[k + 1]))
        at = idx.start(elems[k])
        edits = [Edit(idx.path, at, at, text + sep)]
        if i + 1 < len(elems):
            edits.append(Edit(idx.path, idx.start(elems[i]), idx.start(elems[i + 1]), ""))
        else:
            edits.append(Edit(idx.path, idx.end(elems[i - 1]), idx.end(elems[i]), ""))
        renames = tuple((_sub(parent_path, m) + ".", _sub(parent_path, m + 1) + ".")
                        for m in range(k, i) if self.has_state(parent_path, m))
        return self._reorder_fix(drop, f"before the pooling '{_sub(parent_path, k)}'", edits, renames)

    def identity_and_new_dropout(self, drop: str, pool: str, idx: SourceIndex, ctor: cst.Call) -> Fix:
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


def _walk(node: cst.CSTNode):
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        stack.extend(cur.children)


def plan_model_fix(code: str, g: nx.DiGraph, node: str, file: str, sources: Dict[str, SourceIndex],
                   related: Sequence[str] = ()) -> Tuple[Optional[Fix], Optional[str]]:
    """(fix, None) or (None, why there is none) for one graph-rule hit on ``node``;
    ``related`` are the nodes the rule named (the BatchNorm layers, the pooling)."""
    if code not in FIXABLE_GRAPH_CODES or node not in g:
        return None, None
    planner = _Planner(g, file, sources, related)
    try:
        if code == "BNL106":  # bias=False on the constructor: bnlint.fix.biasfix
            from bnlint.fix.biasfix import BiasFixError, plan_bias_fix

            try:
                return plan_bias_fix(g, node, file, sources, related), None
            except BiasFixError as exc:
                return None, str(exc)
        if code == "BNL101":
            return planner.fix_dropout_before_bn(node), None
        return planner.fix_dropout_after_pool(node), None
    except NoFix as exc:
        return None, str(exc)
    except (cst.ParserSyntaxError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return None, f"the fixer could not follow this code ({type(exc).__name__})"
