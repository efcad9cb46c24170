"""Tracing models with torch.fx, with fallbacks for modules that do not trace.

Runs in the worker. ``trace_model`` returns a ``TraceResult``: one fx GraphModule for
the root (or none when the root's own forward does not trace), plus, for every
submodule that had to be made a leaf, its own ``TraceResult`` so the graph builder can
inline it. What could not be inspected at all is listed in ``opaque``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set

import torch
import torch.fx as fx
import torch.nn as nn

from bnlint.model.sites import call_sites

__all__ = ["TraceResult", "BnTracer", "trace_model", "MAX_LEAF_RETRIES"]

MAX_LEAF_RETRIES = 8


class BnTracer(fx.Tracer):
    """fx tracer that records stack traces and remembers which module it was in."""

    def __init__(self, extra_leaves: Set[str]):
        super().__init__()
        # fx's own stack-trace recording imports torch._dynamo (seconds) and formats
        # every frame; we keep just the two frames bnlint needs (bnlint.model.sites).
        self.record_stack_traces = False
        self.extra_leaves = extra_leaves
        self.failed_in: Optional[str] = None  # innermost module whose forward raised

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.extra_leaves:
            return True
        return super().is_leaf_module(m, qualname)

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        node.meta["bnlint_sites"] = call_sites(skip=1)
        node.meta["bnlint_scope"] = self.scope.module_path  # whose forward made the call
        return node

    def call_module(self, m, forward, args, kwargs):
        qualname = self.path_of_module(m)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = qualname
            raise


@dataclass
class TraceResult:
    """The outcome of tracing one module (the root or a leafed child)."""

    def walk(self):
        """This result and every nested one (leaves and children), depth first."""
        yield self
        for child in list(self.leaves.values()) + list(self.children.values()):
            yield from child.walk()

    path: str  # module path relative to the analysed model ("" for the root)
    # The graph to analyse and the module its call_module targets are relative to:
    # the fx GraphModule's, or one recorded by running the module (bnlint.model.concrete).
    graph: Optional[fx.Graph] = None
    root: Optional[nn.Module] = None
    concrete: bool = False
    error: Optional[str] = None  # why the module's own forward did not trace
    leaves: Dict[str, "TraceResult"] = field(default_factory=dict)  # leafed child path -> result
    children: Dict[str, "TraceResult"] = field(default_factory=dict)  # analysed apart (root failed)
    opaque: List[str] = field(default_factory=list)  # nothing could be inspected inside
    traced: Optional[nn.Module] = None  # the module fx traced symbolically (None: it did not trace)
    _gm: Optional[fx.GraphModule] = None

    @property
    def graph_module(self) -> Optional[fx.GraphModule]:
        """The symbolic trace as a runnable GraphModule, built on first use: generating
        and compiling its code costs about as much as the trace, and most models are
        checked without running it (only shape propagation needs it)."""
        if self.traced is None or self._symbolic is None:
            return None
        if self._gm is None:
            self._gm = fx.GraphModule(self.traced, self._symbolic, type(self.traced).__name__)
        return self._gm

    _symbolic: Optional[fx.Graph] = None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _concrete_defaults(module: nn.Module) -> Dict[str, Any]:
    """Optional forward arguments (``mask=None``) are traced with their defaults."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    out = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is not inspect.Parameter.empty:
            out[p.name] = p.default
    return out


def _is_user_module(m: nn.Module) -> bool:
    mod = type(m).__module__
    return not (mod.startswith("torch.nn") or mod.startswith("torch.ao.nn"))


def _trace_once(module: nn.Module, leaves: Set[str]):
    tracer = BnTracer(leaves)
    concrete = _concrete_defaults(module)
    try:
        graph = tracer.trace(module, concrete_args=concrete or None)
    except Exception as exc:  # user code may raise anything while being traced
        if getattr(exc, "stops_analysis", False):
            raise  # e.g. a stand-in for a missing package met a tensor: no fallback helps
        failing = tracer.failed_in or ""
        return None, failing, exc
    return graph, None, None


def trace_model(module: nn.Module, path: str = "", depth: int = 0) -> TraceResult:
    """Trace ``module``; make failing submodules leaves and trace those apart.

    ``path`` is the module's path inside the analysed model, used to prefix the paths
    of its submodules.
    """
    result = TraceResult(path=path)
    leaves: Set[str] = set()
    first_error: Optional[BaseException] = None
    for _ in range(MAX_LEAF_RETRIES + 1):
        graph, failing, exc = _trace_once(module, leaves)
        if graph is not None:
            # call_module and get_attr targets are paths in the traced module itself.
            result.traced, result._symbolic, result.graph, result.root = module, graph, graph, module
            break
        first_error = first_error or exc
        if not failing or failing in leaves:
            # The module's own forward does not trace: analyse its children one by one.
            result.error = _describe(exc)
            break
        leaves.add(failing)
    else:
        result.error = _describe(first_error) if first_error else "too many untraceable submodules"

    if result.traced is not None:
        for leaf in sorted(leaves):
            child = module.get_submodule(leaf)
            full = f"{path}.{leaf}" if path else leaf
            result.leaves[leaf] = trace_model(child, full, depth + 1)
        return result

    # Root forward failed: analyse each direct child on its own.
    for name, child in module.named_children():
        full = f"{path}.{name}" if path else name
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            for sub_name, sub in child.named_children():
                sub_full = f"{full}.{sub_name}"
                if _is_user_module(sub) or isinstance(sub, nn.Sequential):
                    result.children[f"{name}.{sub_name}"] = trace_model(sub, sub_full, depth + 1)
            continue
        if _is_user_module(child) or isinstance(child, nn.Sequential):
            result.children[name] = trace_model(child, full, depth + 1)
    result.opaque.append(path or "<root>")
    return result
