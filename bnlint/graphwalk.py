"""Pure walks over bnlint's fact graphs (networkx DiGraph; see bnlint.graphbuild).

No torch here. Every function takes the graph first, never mutates it, and visits
each node at most once per call, so rules stay linear in the graph size.
"""
from __future__ import annotations

from collections import deque
from typing import Dict, FrozenSet, Iterator, List, NamedTuple, Optional

import networkx as nx

__all__ = [
    "VALUE_PRESERVING", "Reach", "active_dropouts", "reach", "pooled_source", "describe",
]

# Ops that pass the dropout's variance statistics on unchanged in kind (design.md §3).
VALUE_PRESERVING: FrozenSet[str] = frozenset(
    {"activation", "reshape", "pool", "global-pool", "concat", "scale", "dropout"}
)


def active_dropouts(g: nx.DiGraph) -> Iterator[str]:
    """Dropout nodes with p > 0 that are applied in training mode.

    >>> g = nx.DiGraph(); g.add_node("d", kind="dropout", p=0.5, active=True)
    >>> list(active_dropouts(g))
    ['d']
    """
    for node, data in g.nodes(data=True):
        if data.get("kind") == "dropout" and data.get("active"):
            yield node


class Reach(NamedTuple):
    """What a downstream walk found: the targets hit, and each visited node's parent."""

    targets: List[str]
    parent: Dict[str, Optional[str]]

    def path_to(self, target: str) -> List[str]:
        """Nodes from the walk's start to ``target`` (both included)."""
        path = [target]
        while self.parent.get(path[-1]) is not None:
            path.append(self.parent[path[-1]])  # type: ignore[arg-type]
        return list(reversed(path))


def reach(g: nx.DiGraph, start: str, through: FrozenSet[str], targets: FrozenSet[str]) -> Reach:
    """Breadth-first walk downstream of ``start``.

    Continues through nodes whose ``kind`` is in ``through``; stops at nodes whose kind
    is in ``targets`` (recorded) and at anything else.

    >>> g = nx.DiGraph([("d", "r"), ("r", "bn")])
    >>> nx.set_node_attributes(g, {"d": "dropout", "r": "activation", "bn": "batchnorm"}, "kind")
    >>> reach(g, "d", VALUE_PRESERVING, frozenset({"batchnorm"})).targets
    ['bn']
    """
    parent: Dict[str, Optional[str]] = {start: None}
    found: List[str] = []
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in g.successors(node):
            if succ in parent:
                continue
            parent[succ] = node
            kind = g.nodes[succ].get("kind")
            if kind in targets:
                found.append(succ)
            elif kind in through:
                queue.append(succ)
    return Reach(found, parent)


def pooled_source(g: nx.DiGraph, node: str, through: FrozenSet[str] = frozenset({"reshape", "activation", "dropout", "scale"})) -> Optional[str]:
    """The global-pooling node that feeds ``node`` through only ``through`` ops."""
    seen = {node}
    current = node
    while True:
        preds = [p for p in g.predecessors(current) if g.nodes[p].get("kind") not in ("param", "meta")]
        if len(preds) != 1:
            return None
        pred = preds[0]
        if pred in seen:
            return None
        seen.add(pred)
        kind = g.nodes[pred].get("kind")
        if kind == "global-pool":
            return pred
        if kind not in through:
            return None
        current = pred


def describe(g: nx.DiGraph, node: str) -> str:
    """A short human name: ``Dropout(p=0.3) 'layer1.0.drop'`` or ``F.dropout(p=0.3)``."""
    d = g.nodes[node]
    p = d.get("p")
    p_text = f"p={p:g}" if isinstance(p, (int, float)) else ""
    if d.get("op") == "call_module":
        cls = str(d.get("module_type", "")).rsplit(".", 1)[-1] or "module"
        args = f"({p_text})" if p_text else ""
        return f"{cls}{args} '{d.get('module_path')}'"
    target = d.get("target", "?")
    prefix = "F." if d.get("op") == "call_function" and target not in ("mean", "cat", "add") else ""
    if d.get("op") == "call_method":
        prefix = "."
    return f"{prefix}{target}({p_text})"
