"""Record an fx graph by *running* a module on example inputs.

The fallback for a forward that fx cannot trace symbolically (data-dependent control
flow such as ``if x.sum() > 0``): a TorchFunctionMode sees every torch function and
tensor method, forward hooks see every torch.nn leaf module, and tensors are tied to
the node that produced them. Only the branch actually taken is recorded, which the
caller reports as an info note. Runs in the worker.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.passes.shape_prop import _extract_tensor_metadata
from torch.overrides import TorchFunctionMode

from bnlint.model.sites import call_sites

__all__ = ["record_graph"]


def _is_leaf(m: nn.Module) -> bool:
    mod = type(m).__module__
    return (mod.startswith("torch.nn") or mod.startswith("torch.ao.nn")) and not isinstance(
        m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    )


def _sites():
    return call_sites(skip=2)


class _Recorder(TorchFunctionMode):
    def __init__(self, graph: fx.Graph):
        super().__init__()
        self.graph = graph
        self.producer: Dict[int, fx.Node] = {}
        self.keep: List[Any] = []  # keep tensors alive so their ids stay unique
        self.leaf_depth = 0
        self.scopes: List[str] = [""]  # paths of the modules whose forward is running

    def node_args(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return self.producer.get(id(value), None)
        if isinstance(value, (list, tuple)):
            return type(value)(self.node_args(v) for v in value)
        if isinstance(value, dict):
            return {k: self.node_args(v) for k, v in value.items()}
        if isinstance(value, (int, float, bool, str, type(None), torch.dtype, torch.device, slice)):
            return value
        return None

    def bind(self, node: fx.Node, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            node.meta["tensor_meta"] = _extract_tensor_metadata(out)
            self.producer[id(out)] = node
            self.keep.append(out)
        elif isinstance(out, (tuple, list)):
            for i, t in enumerate(out):
                if isinstance(t, torch.Tensor):
                    item = self.graph.create_node("call_function", _getitem, (node, i), {})
                    item.meta["tensor_meta"] = _extract_tensor_metadata(t)
                    item.meta["bnlint_sites"] = node.meta.get("bnlint_sites")
                    item.meta["bnlint_scope"] = node.meta.get("bnlint_scope")
                    self.producer[id(t)] = item
                    self.keep.append(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.leaf_depth == 0 and _touches_recorded(self, args, kwargs):
            node = self.graph.create_node(
                "call_function", func, self.node_args(tuple(args)), self.node_args(dict(kwargs)),
            )
            node.meta["bnlint_sites"] = _sites()
            node.meta["bnlint_scope"] = self.scopes[-1]
            self.bind(node, out)
        return out


def _getitem(x, i):  # stands for operator.getitem on a recorded tuple output
    return x[i]


_getitem.__name__ = "getitem"


def _touches_recorded(rec: _Recorder, args, kwargs) -> bool:
    def walk(v):
        if isinstance(v, torch.Tensor):
            return id(v) in rec.producer
        if isinstance(v, (list, tuple)):
            return any(walk(x) for x in v)
        if isinstance(v, dict):
            return any(walk(x) for x in v.values())
        return False

    return walk(args) or walk(kwargs)


def record_graph(module: nn.Module, inputs: Tuple[Any, ...]) -> fx.Graph:
    """Run ``module(*inputs)`` and return the graph of what ran."""
    graph = fx.Graph()
    rec = _Recorder(graph)
    for i, value in enumerate(inputs):
        ph = graph.placeholder(f"input_{i}")
        if isinstance(value, torch.Tensor):
            ph.meta["tensor_meta"] = _extract_tensor_metadata(value)
            rec.producer[id(value)] = ph
            rec.keep.append(value)
    names = {m: n for n, m in module.named_modules()}
    handles = []

    def pre_hook(mod, args):
        rec.leaf_depth += 1

    def post_hook(mod, args, out):
        rec.leaf_depth -= 1
        if rec.leaf_depth == 0 and _touches_recorded(rec, args, {}):
            node = graph.create_node("call_module", names[mod], rec.node_args(tuple(args)), {})
            node.meta["bnlint_sites"] = _sites()
            rec.bind(node, out)

    def enter(mod, args):
        rec.scopes.append(names[mod])

    def leave(mod, args, out):
        rec.scopes.pop()

    for mod in module.modules():
        if mod is not module:
            handles.append(mod.register_forward_pre_hook(enter))
            handles.append(mod.register_forward_hook(leave, always_call=True))
        if mod is not module and _is_leaf(mod):
            handles.append(mod.register_forward_pre_hook(pre_hook))
            handles.append(mod.register_forward_hook(post_hook))
    try:
        with torch.no_grad(), rec:
            out = module(*inputs)
    finally:
        for h in handles:
            h.remove()
    graph.output(rec.node_args(out))
    return graph
