"""Pure walks over bnlint's fact graphs (networkx DiGraph; see bnlint.model.graphbuild).

No torch here. Every function takes the graph first, never mutates it, and visits
each node at most once per call, so rules stay linear in the graph size.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Dict, FrozenSet, Iterator, List, NamedTuple, Optional

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "VALUE_PRESERVING", "Reach", "active_dropouts", "reach", "routes_to", "follow_route", "route_ends",
    "POOL_PASSTHROUGH", "pooled_sources", "describe",
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


def reach(g: nx.DiGraph, start: str, through: FrozenSet[str], targets: FrozenSet[str],
          max_visits: Optional[int] = None) -> Reach:
    """Breadth-first walk downstream of ``start``.

    Continues through nodes whose ``kind`` is in ``through``; stops at nodes whose kind
    is in ``targets`` (recorded) and at anything else; and after ``max_visits`` nodes
    when given (a bounded, local walk).

    >>> g = nx.DiGraph([("d", "r"), ("r", "bn")])
    >>> nx.set_node_attributes(g, {"d": "dropout", "r": "activation", "bn": "batchnorm"}, "kind")
    >>> reach(g, "d", VALUE_PRESERVING, frozenset({"batchnorm"})).targets
    ['bn']
    """
    parent: Dict[str, Optional[str]] = {start: None}
    found: List[str] = []
    queue = deque([start])
    while queue:
        if max_visits is not None and len(parent) > max_visits:
            break
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


def routes_to(g: nx.DiGraph, through: FrozenSet[str], targets: FrozenSet[str]) -> Dict[str, str]:
    """For every node that reaches a ``targets`` node through only ``through`` nodes
    (the node itself excluded), the successor to take: one pass, linear in the graph.

    Walk a route with :func:`follow_route`.

    >>> g = nx.DiGraph([("d", "r"), ("r", "bn"), ("d", "fc")])
    >>> nx.set_node_attributes(g, {"d": "dropout", "r": "activation", "bn": "batchnorm", "fc": "weight"}, "kind")
    >>> routes_to(g, VALUE_PRESERVING, frozenset({"batchnorm"}))
    {'r': 'bn', 'd': 'r'}
    """
    try:
        import networkx as nx

        order = list(nx.topological_sort(g))
    except nx.NetworkXUnfeasible:  # not a DAG: fall back to one walk per node
        order = None
    route: Dict[str, str] = {}
    if order is None:
        for node in g:
            walk = reach(g, node, through, targets)
            if walk.targets:
                route[node] = walk.path_to(walk.targets[0])[1]
        return route
    for node in reversed(order):
        for succ in g.successors(node):
            kind = g.nodes[succ].get("kind")
            if kind in targets or (kind in through and succ in route):
                route[node] = succ
                break
    return route


def follow_route(g: nx.DiGraph, route: Dict[str, str], start: str, targets: FrozenSet[str], limit: int = 12) -> List[str]:
    """The first nodes (at most ``limit`` hops) from ``start`` along its route; the
    last one is the target when it is that close. Use :func:`route_ends` for the
    target itself."""
    path = [start]
    while path[-1] in route and len(path) <= limit:
        nxt = route[path[-1]]
        path.append(nxt)
        if g.nodes[nxt].get("kind") in targets:
            break
    return path


def route_ends(g: nx.DiGraph, route: Dict[str, str], targets: FrozenSet[str]) -> Dict[str, str]:
    """The target each routed node ends at; linear (each node resolved once)."""
    ends: Dict[str, str] = {}
    for node in route:
        chain = []
        current = node
        while current not in ends:
            nxt = route[current]
            chain.append(current)
            if g.nodes[nxt].get("kind") in targets or nxt not in route:
                ends[current] = nxt
                chain.pop()
                break
            current = nxt
        end = ends[current]
        for n in chain:
            ends[n] = end
    return ends


POOL_PASSTHROUGH: FrozenSet[str] = frozenset({"reshape", "activation", "dropout", "scale"})


def pooled_sources(g: nx.DiGraph, through: FrozenSet[str] = POOL_PASSTHROUGH) -> Dict[str, str]:
    """For every node fed (through a single chain of ``through`` nodes) by a global
    pooling node, that pooling node. One pass in topological order.

    >>> g = nx.DiGraph([("gap", "flat"), ("flat", "drop"), ("drop", "fc")])
    >>> nx.set_node_attributes(g, {"gap": "global-pool", "flat": "reshape", "drop": "dropout", "fc": "weight"}, "kind")
    >>> pooled_sources(g)
    {'flat': 'gap', 'drop': 'gap', 'fc': 'gap'}
    """
    try:
        import networkx as nx

        order = list(nx.topological_sort(g))
    except nx.NetworkXUnfeasible:
        return {}
    pooled: Dict[str, str] = {}
    for node in order:
        preds = [p for p in g.predecessors(node) if g.nodes[p].get("kind") not in ("param", "meta")]
        if len(preds) != 1:
            continue
        pred = preds[0]
        kind = g.nodes[pred].get("kind")
        if kind == "global-pool":
            pooled[node] = pred
        elif kind in through and pred in pooled:
            pooled[node] = pooled[pred]
    return pooled


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
