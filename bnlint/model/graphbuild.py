"""Turn traced fx graphs into a networkx DiGraph of plain facts.

Runs in the worker (it needs the live modules); the result is serialised to JSON and
the rules run on it in the CLI process. This is the only place that attaches facts to
nodes. Node attributes (all plain values):

``kind``        dropout | batchnorm | global-pool | pool | weight | add | concat |
                activation | reshape | scale | param | meta | input | output | other
``op``          fx op; ``target`` a readable target name
``module_path`` path of the submodule in the analysed model (call_module nodes)
``module_type`` qualified class name of that submodule
``p``, ``active``  dropout rate and whether it is applied (p > 0 in train mode)
``in_sequential`` the module is applied by an ``nn.Sequential`` container
``call``        {file, line, col, ...}: innermost non-torch frame of the call in forward
``user_call``   innermost frame of the call in a non-library file
``defn``/``user_defn``  where the submodule was constructed (see bnlint.model.sites)
``scope``       for a call made in installed code (a library's forward): path of the module
                whose forward made it; ``scope_installed`` whether that forward is itself
                installed code, and then ``scope_user_defn``, the user's line that built
                that module (the user's handle on a library's ``F.dropout``)
``shape``       output shape when shape propagation succeeded
"""
from __future__ import annotations

import operator
from typing import Any, Dict, List, Optional, Sequence, Tuple

import networkx as nx
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from bnlint.model.sites import (
    construction_site, forward_is_installed, frames_from_stack_trace, is_library_file, is_torch_file,
    site_dict,
)
from bnlint.model.trace import TraceResult

__all__ = ["build_graph", "graph_to_json", "needs_shapes"]

_DROPOUT_FUNC_DEFAULT_TRAINING = {
    "dropout": True, "dropout1d": True, "dropout2d": True, "dropout3d": True,
    "alpha_dropout": False, "feature_alpha_dropout": False,
    "feature_dropout": None, "feature_dropout_": None, "dropout_": None,
    "alpha_dropout_": None, "feature_alpha_dropout_": None,
}
_ACTIVATIONS = {
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid",
    "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu", "mish", "softplus", "tanh",
    "sigmoid", "hardtanh", "hardtanh_", "prelu", "rrelu", "swish", "softsign", "tanhshrink",
    "log_sigmoid", "threshold", "clamp", "clamp_", "clip", "abs",
}
_RESHAPES = {
    "flatten", "view", "reshape", "squeeze", "unsqueeze", "permute", "transpose", "contiguous",
    "getitem", "unflatten", "t", "expand", "expand_as", "clone", "to", "type", "float", "half",
    "double", "bfloat16", "chunk", "split", "narrow", "view_as", "reshape_as", "movedim",
    "interpolate", "upsample", "pixel_shuffle", "pixel_unshuffle", "pad", "roll", "flip",
    "unbind", "select", "index_select", "detach",
}
_CONCATS = {"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack"}
_ADDS = {"add", "add_", "iadd", "sub", "sub_", "isub", "__add__", "__radd__", "__sub__", "__iadd__", "rsub"}
_MULS = {"mul", "mul_", "imul", "truediv", "div", "div_", "itruediv", "floordiv", "__mul__", "__rmul__", "__truediv__", "neg"}
_POOLS = {
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "lp_pool1d", "lp_pool2d",
    "max_pool1d_with_indices", "max_pool2d_with_indices",
}
_REDUCTIONS = {"mean", "amax", "nanmean", "sum", "max", "logsumexp"}
_WEIGHT_FUNCS = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "bilinear"}
_MATMULS = {"matmul", "mm", "bmm", "einsum", "addmm", "baddbmm", "__matmul__"}
_META = {"size", "dim", "numel", "shape", "getattr", "ndimension", "nelement", "stride", "device", "dtype"}

_WEIGHT_MODULES = (
    nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.Embedding, nn.EmbeddingBag,
)
_POOL_MODULES = (
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
)
_ACT_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.ELU,
    nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.PReLU, nn.RReLU,
    nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Threshold,
)
_PAD_MODULES = tuple(
    getattr(nn.modules.padding, name) for name in ("_ReflectionPadNd", "_ReplicationPadNd", "_ConstantPadNd", "_CircularPadNd")
    if hasattr(nn.modules.padding, name)
)  # like the functional F.pad, which is a reshape
_RESHAPE_MODULES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle,
                    nn.ChannelShuffle) + _PAD_MODULES


def _target_name(node: fx.Node) -> str:
    t = node.target
    if isinstance(t, str):
        return t
    return getattr(t, "__name__", str(t))


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_node(x: Any) -> bool:
    return isinstance(x, fx.Node)


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if name in node.kwargs:
        return node.kwargs[name]
    if len(node.args) > index:
        return node.args[index]
    return default


def _shape(node: Any) -> Optional[Tuple[int, ...]]:
    if not _is_node(node):
        return None
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        return None


def _all_ones(value: Any) -> bool:
    if isinstance(value, int):
        return value == 1
    if isinstance(value, (tuple, list)) and value:
        return all(v == 1 for v in value)
    return False


def _globally_pooled(node: fx.Node) -> Optional[bool]:
    """From shapes: True when the output keeps only batch and channels of a >=3-d input."""
    src = node.args[0] if node.args else None
    in_shape, out_shape = _shape(src), _shape(node)
    if not in_shape or out_shape is None or len(in_shape) < 3:
        return None
    spatial = 1
    for d in in_shape[2:]:
        spatial *= d
    per_sample = 1
    for d in out_shape[1:]:
        per_sample *= d
    return spatial > 1 and len(out_shape) >= 2 and out_shape[0] == in_shape[0] and out_shape[1] == in_shape[1] and per_sample == in_shape[1]


def _reduction_dims(node: fx.Node) -> Optional[List[int]]:
    dims = _arg(node, 1, "dim")
    if dims is None and node.op == "call_function" and "axis" in node.kwargs:
        dims = node.kwargs["axis"]
    if isinstance(dims, int):
        return [dims]
    if isinstance(dims, (tuple, list)) and all(isinstance(d, int) for d in dims):
        return list(dims)
    return None


def _reduction_is_global(node: fx.Node) -> bool:
    dims = _reduction_dims(node)
    if dims is None:
        return False
    rank = len(_shape(node.args[0]) or ())
    if rank:
        norm = {d % rank for d in dims}
        if 0 in norm or 1 in norm:
            return False
        if norm == set(range(2, rank)):
            # Every dimension after batch and channels: global pooling by its form,
            # whatever the map's size (a guessed input may leave it 1x1).
            return True
        return bool(_globally_pooled(node))
    # No shapes: the usual spellings over an NCHW map.
    return set(dims) in ({2, 3}, {-1, -2}, {-2, -1})


def _classify_module(module: nn.Module, node: fx.Node) -> Dict[str, Any]:
    facts: Dict[str, Any] = {"module_type": _qualname(module)}
    if isinstance(module, nn.modules.dropout._DropoutNd):
        facts.update(kind="dropout", p=float(module.p), active=bool(module.p > 0 and module.training))
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        # Without running statistics BN normalises with batch statistics at test time
        # too, so there is no train/test variance shift to speak of.
        facts.update(kind="batchnorm" if module.track_running_stats else "other",
                     training=bool(module.training))
    elif isinstance(module, _POOL_MODULES):
        is_global = False
        if isinstance(module, (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
            is_global = _all_ones(module.output_size)
        if not is_global:
            is_global = bool(_globally_pooled(node))
        facts.update(kind="global-pool" if is_global else "pool")
    elif isinstance(module, _WEIGHT_MODULES):
        facts.update(kind="weight")
    elif isinstance(module, _ACT_MODULES):
        facts.update(kind="activation")
    elif isinstance(module, _RESHAPE_MODULES):
        facts.update(kind="reshape")
    else:
        facts.update(kind="other")
    return facts


def _has_param_input(node: fx.Node) -> bool:
    return any(n.op == "get_attr" for n in node.all_input_nodes)


def _classify_callable(node: fx.Node, kinds: Dict[str, str]) -> Dict[str, Any]:
    name = _target_name(node)
    if node.op == "call_function" and name in ("getitem", "getattr"):
        src = node.args[0] if node.args else None
        if name == "getattr" or (_is_node(src) and kinds.get(src.name) == "meta"):
            return {"kind": "meta"}
        return {"kind": "reshape"}
    if name in _DROPOUT_FUNC_DEFAULT_TRAINING:
        p = _arg(node, 1, "p", 0.5)
        default_training = _DROPOUT_FUNC_DEFAULT_TRAINING[name]
        training = _arg(node, 2, "training", _arg(node, 2, "train", default_training))
        if _is_node(p):
            p_value, active = None, True  # computed at run time: assume it is on
        else:
            p_value = float(p) if isinstance(p, (int, float)) else None
            active = bool(p_value is None or p_value > 0)
        if training is False:
            active = False
        return {"kind": "dropout", "p": p_value, "active": active}
    if name == "batch_norm":
        training = _arg(node, 5, "training", False)
        running = _arg(node, 1, "running_mean")
        has_stats = running is not None
        return {"kind": "batchnorm" if has_stats or not training else "other"}
    if name in _ACTIVATIONS:
        return {"kind": "activation"}
    if name in _RESHAPES:
        return {"kind": "reshape"}
    if name in _CONCATS:
        return {"kind": "concat"}
    if name in _META:
        return {"kind": "meta"}
    tensor_inputs = [a for a in node.args if _is_node(a) and kinds.get(a.name) not in ("meta",)]
    if name in _ADDS:
        return {"kind": "add" if len(tensor_inputs) >= 2 else "scale"}
    if name in _MULS:
        return {"kind": "other" if len(tensor_inputs) >= 2 else "scale"}
    if name in _POOLS:
        is_global = False
        if name.startswith("adaptive_"):
            is_global = _all_ones(_arg(node, 1, "output_size"))
        if not is_global:
            is_global = bool(_globally_pooled(node))
        return {"kind": "global-pool" if is_global else "pool"}
    if name in _REDUCTIONS:
        if name in ("max",) and _reduction_dims(node) is None:
            return {"kind": "other"}
        return {"kind": "global-pool" if _reduction_is_global(node) else "other"}
    if name in _WEIGHT_FUNCS:
        return {"kind": "weight"}
    if name in _MATMULS:
        return {"kind": "weight" if _has_param_input(node) else "other"}
    return {"kind": "other"}


def _frames(node: fx.Node) -> Tuple[Optional[Dict[str, int]], Optional[Dict[str, int]]]:
    """(innermost non-torch frame, innermost user frame) of the node's call."""
    sites = node.meta.get("bnlint_sites")
    if sites is not None:
        return sites
    frames = frames_from_stack_trace(node.stack_trace)
    call = user = None
    for file, line, _func in reversed(frames):
        if is_torch_file(file):
            continue
        if call is None:
            call = {"file": file, "line": line, "col": 0}
        if not is_library_file(file):
            user = {"file": file, "line": line, "col": 0}
            break
    return call, user


def _scope_facts(node: fx.Node, root: nn.Module, prefix: str, call: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Which module's forward made a function call in installed code, and where the user
    built that module. ``root``: the module the trace's paths are relative to."""
    scope = node.meta.get("bnlint_scope")
    if scope is None or call is None or not is_library_file(call["file"]):
        return {}
    facts: Dict[str, Any] = {"scope": ".".join(p for p in (prefix, scope) if p)}
    try:
        owner = root.get_submodule(scope) if scope else root
    except AttributeError:
        return facts
    facts["scope_installed"] = forward_is_installed(owner)
    if facts["scope_installed"]:
        facts["scope_user_defn"] = site_dict(construction_site(owner)[1])
    return facts


def _parent_is_sequential(model: nn.Module, path: str) -> bool:
    try:
        parent = model.get_submodule(path.rsplit(".", 1)[0] if "." in path else "")
    except AttributeError:
        return False
    return isinstance(parent, nn.Sequential)


def _add_traced(g: nx.DiGraph, model: nn.Module, tr: TraceResult, prefix: str) -> Tuple[List[str], Optional[str]]:
    """Add the nodes of one traced graph; returns (placeholder ids, output id)."""
    gm = tr.root
    assert gm is not None and tr.graph is not None
    kinds: Dict[str, str] = {}
    placeholders: List[str] = []
    output: Optional[str] = None
    mod_prefix = tr.path
    for node in tr.graph.nodes:
        nid = f"{prefix}{node.name}"
        facts: Dict[str, Any] = {"op": node.op, "target": _target_name(node)}
        if node.op == "placeholder":
            facts["kind"] = "input"
            placeholders.append(nid)
        elif node.op == "output":
            facts["kind"] = "output"
            output = nid
        elif node.op == "get_attr":
            facts["kind"] = "param"
        elif node.op == "call_module":
            sub = gm.get_submodule(node.target)
            full = f"{mod_prefix}.{node.target}" if mod_prefix else str(node.target)
            facts.update(_classify_module(sub, node))
            facts["module_path"] = full
            facts["in_sequential"] = _parent_is_sequential(model, full)
            site, user_site = construction_site(sub)
            facts["defn"] = site_dict(site)
            facts["user_defn"] = site_dict(user_site)
            if full in tr.leaves:
                facts["kind"] = "opaque"
        else:
            facts.update(_classify_callable(node, kinds))
        kinds[node.name] = facts["kind"]
        if node.op not in ("placeholder", "output", "get_attr"):
            facts["call"], facts["user_call"] = _frames(node)
            if node.op != "call_module":
                facts.update(_scope_facts(node, gm, mod_prefix, facts["call"]))
        shape = _shape(node)
        if shape is not None:
            facts["shape"] = list(shape)
        g.add_node(nid, **facts)
        for i, src in enumerate(node.all_input_nodes):
            g.add_edge(f"{prefix}{src.name}", nid)
    return placeholders, output


def _splice(g: nx.DiGraph, call_id: str, placeholders: Sequence[str], output: Optional[str]) -> None:
    """Replace an opaque call node by the child graph added with ``placeholders``/``output``."""
    inputs = [u for u in g.predecessors(call_id) if g.nodes[u].get("kind") not in ("param", "meta")]
    users = list(g.successors(call_id))
    for i, ph in enumerate(placeholders):
        if i < len(inputs):
            for succ in list(g.successors(ph)):
                g.add_edge(inputs[i], succ)
        g.remove_node(ph)
    if output is not None:
        for src in list(g.predecessors(output)):
            for user in users:
                g.add_edge(src, user)
        g.remove_node(output)
    g.remove_node(call_id)


def _add_result(g: nx.DiGraph, model: nn.Module, tr: TraceResult, prefix: str, opaque: List[Dict[str, str]]) -> Tuple[List[str], Optional[str]]:
    placeholders: List[str] = []
    output: Optional[str] = None
    if tr.graph is not None:
        placeholders, output = _add_traced(g, model, tr, prefix)
        for leaf, child in tr.leaves.items():
            child_prefix = f"{prefix}{leaf}/"
            call_id = next(
                (n for n, d in g.nodes(data=True)
                 if n.startswith(prefix) and d.get("op") == "call_module" and d.get("target") == leaf),
                None,
            )
            c_ph, c_out = _add_result(g, model, child, child_prefix, opaque)
            if call_id is not None and child.graph is not None:
                _splice(g, call_id, c_ph, c_out)
    else:
        opaque.append({"module": tr.path or "<root>", "reason": tr.error or "does not trace"})
        for name, child in tr.children.items():
            _add_result(g, model, child, f"{prefix}{name}/", opaque)
    return placeholders, output


def _shape_dependent(node: fx.Node, root: nn.Module) -> bool:
    """A pooling or reduction whose globality only tensor shapes can tell."""
    if node.op == "call_module":
        sub = root.get_submodule(node.target)
        return isinstance(sub, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._LPPoolNd))
    if node.op in ("call_function", "call_method"):
        name = _target_name(node)
        return name in _REDUCTIONS or (name in _POOLS and not name.startswith("adaptive_"))
    return False


def _is_active_dropout(node: fx.Node, root: nn.Module) -> bool:
    if node.op == "call_module":
        sub = root.get_submodule(node.target)
        return isinstance(sub, nn.modules.dropout._DropoutNd) and sub.p > 0
    return node.op in ("call_function", "call_method") and _target_name(node) in _DROPOUT_FUNC_DEFAULT_TRAINING


def needs_shapes(tr: TraceResult) -> bool:
    """Whether a finding could depend on tensor shapes: only BNL102 does, for a
    dropout fed (through reshapes/activations) by a pooling or reduction whose
    globality only shapes can tell. When not, the worker skips running the model,
    the expensive part of the analysis."""
    passthrough = {"reshape", "activation", "dropout", "scale"}
    for r in tr.walk():
        if r.graph is None:
            continue
        for node in r.graph.nodes:
            if not _is_active_dropout(node, r.root):
                continue
            current = node
            for _ in range(64):
                # The data input is the first argument of these ops (view(x, x.size(0), -1)).
                pred = current.args[0] if current.args and _is_node(current.args[0]) else None
                if pred is None:
                    break
                if pred.op == "placeholder" or _shape_dependent(pred, r.root):
                    return True  # a placeholder: the pooling may sit in the parent graph
                if pred.op == "call_module":
                    kind = _classify_module(r.root.get_submodule(pred.target), pred)["kind"]
                else:
                    kind = _classify_callable(pred, {})["kind"]
                if kind not in passthrough:
                    break
                current = pred
    return False


def build_graph(model: nn.Module, tr: TraceResult) -> Tuple[nx.DiGraph, List[Dict[str, str]], List[Dict[str, str]]]:
    """The facts graph of ``model``, the modules that could not be traced at all, and
    the modules traced only by running them (one branch of their control flow)."""
    g = nx.DiGraph()
    opaque: List[Dict[str, str]] = []
    _add_result(g, model, tr, "", opaque)
    concrete = [{"module": r.path or "<root>", "reason": r.error or ""} for r in tr.walk() if r.concrete]
    return g, opaque, concrete


def graph_to_json(g: nx.DiGraph) -> Dict[str, Any]:
    return {
        "nodes": [dict(id=n, **d) for n, d in g.nodes(data=True)],
        "edges": [[u, v] for u, v in g.edges()],
    }
