"""## What it does
Flags a convolution or linear layer with a bias (`nn.Conv1d/2d/3d`,
`nn.ConvTranspose*`, `nn.Linear`, `F.conv*`/`F.linear` with a bias) whose output is
used only by BatchNorm layers (`BatchNorm1d/2d/3d`, `SyncBatchNorm`, `F.batch_norm`
with running statistics), directly or through operations that keep a per-channel
constant offset a per-channel constant: reshapes and views (`flatten`, `view`,
`permute`/`transpose`, indexing, `nn.Identity`), scaling or shifting by a constant,
max and adaptive pooling, global pooling and interpolation. A layer whose output
also reaches anything else (an activation, a residual add, a concatenation, a
dropout, the model's output) is not flagged, nor is a layer built with
`bias=False`, nor a normalisation that is not a BatchNorm (LayerNorm, GroupNorm). A
layer applied more than once (shared weights) is flagged only when every application
feeds a BatchNorm; layers built inside installed packages are left alone.

## Why is this bad?
BatchNorm subtracts the per-channel mean of its input, in training mode the batch's
and in evaluation mode the running estimate of it. A bias adds the same constant to
every value of its channel, so it moves that mean by exactly the bias and is
subtracted again: it never changes the network's output, and its gradient is zero in
training mode. The parameters are wasted, and with weight decay they only drift the
running mean. This is why Ioffe & Szegedy (2015, section 3.2) drop the bias of the
layer before BN ("the bias b can be ignored since its effect will be canceled by the
subsequent mean subtraction"), and why torchvision's ResNets build every convolution
before a BN with `bias=False`. It does not affect the variance shift of Li et al.
(2019) or the shuffling instability of Wu, Yun & Sra (2023); it is a cheap clean-up
in the same layers.

## Example
```python
self.conv1 = nn.Conv2d(64, 128, 3, padding=1)   # bias=True by default
self.bn1 = nn.BatchNorm2d(128)
...
out = F.relu(self.bn1(self.conv1(x)))
```

## Use instead
```python
self.conv1 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
self.bn1 = nn.BatchNorm2d(128)
```

## Fix safety
Unsafe: `bias=False` removes the layer's `bias` key from the state_dict, so old
checkpoints no longer load as they are. The function is unchanged: in training mode
exactly (BN's batch mean absorbs the bias), and in evaluation mode once the old bias
is folded into the BN's running mean (`running_mean -= bias`). `bnlint fix
--unsafe-fixes` checks exactly that before writing: the fixed model's keys are the old
ones minus the promised biases, and with each removed bias folded into the running
mean of the BN it feeds, the eval-mode outputs are equal. To load an old checkpoint,
apply the same fold:
`state["bn1.running_mean"] -= state.pop("conv1.bias")`. Only the constructor call is
edited; a layer built on a line that also builds layers whose bias matters, or applied
as a function, is not fixed automatically.

## References
- Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
  Reducing Internal Covariate Shift", ICML 2015, arXiv 1502.03167, section 3.2.
- Li, Chen, Hu, Yang. "Understanding the Disharmony between Dropout and Batch
  Normalization by Variance Shift." CVPR 2019 (arXiv 1801.05134), section 3 (BN's
  train/test statistics).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Tuple

from bnlint.findings import Severity
from bnlint.model.graphwalk import describe
from bnlint.rule import Hit, Rule, RuleKind

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["RULE", "find_bias_before_batchnorm", "cancelled_biases", "keeps_channel_offset"]

# Ops that move or select values, or scale/shift them by a constant: a per-channel
# constant offset stays a per-channel constant (and BN still removes it).
_OFFSET_KEEPING_CALLS = frozenset({
    "flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous", "clone", "to", "type", "float",
    "half", "double", "bfloat16", "detach", "permute", "transpose", "movedim", "t", "getitem", "expand",
    "expand_as", "view_as", "reshape_as", "unflatten", "narrow", "select", "index_select", "chunk",
    "split", "unbind", "interpolate", "upsample", "flip", "roll",
})
_OFFSET_KEEPING_MODULES = frozenset({"Identity", "Flatten", "Unflatten", "Upsample", "UpsamplingNearest2d",
                                     "UpsamplingBilinear2d", "ChannelShuffle"})
# Pooling without zero padding: max(x + b) = max(x) + b; an adaptive average has no padding.
_OFFSET_KEEPING_POOLS = ("max_pool", "adaptive_", "MaxPool", "AdaptiveAvgPool", "AdaptiveMaxPool")
_MAX_VISITS = 64


def _name(facts: Dict) -> str:
    if facts.get("op") == "call_module":
        return str(facts.get("module_type", "")).rsplit(".", 1)[-1]
    return str(facts.get("target", ""))


def keeps_channel_offset(facts: Dict) -> bool:
    """Whether a node passes a per-channel constant offset on as a per-channel constant.

    >>> keeps_channel_offset({"kind": "reshape", "op": "call_method", "target": "flatten"})
    True
    >>> keeps_channel_offset({"kind": "reshape", "op": "call_function", "target": "pad"})
    False
    """
    kind = facts.get("kind")
    name = _name(facts)
    if kind == "scale" or kind == "global-pool":
        return True
    if kind == "reshape":
        if facts.get("op") == "call_module":
            return name in _OFFSET_KEEPING_MODULES
        return name in _OFFSET_KEEPING_CALLS
    if kind == "pool":
        return name.startswith(_OFFSET_KEEPING_POOLS)
    return False


def _installed(facts: Dict) -> bool:
    for key in ("defn", "call"):
        site = facts.get(key) or {}
        file = str(site.get("file", ""))
        if "site-packages" in file or "dist-packages" in file:
            return True
    return False


def _batchnorms_only(g: nx.DiGraph, weight: str) -> Optional[List[str]]:
    """The BatchNorm layers that are the only users of ``weight``'s output (through
    offset-keeping ops), or None when anything else uses it."""
    found: List[str] = []
    seen = {weight}
    stack = [weight]
    while stack:
        node = stack.pop()
        for succ in g.successors(node):
            if succ in seen:
                continue
            seen.add(succ)
            if len(seen) > _MAX_VISITS:
                return None
            facts = g.nodes[succ]
            kind = facts.get("kind")
            if kind == "batchnorm":
                found.append(succ)
            elif kind == "meta":
                continue  # x.size(), x.shape: reads no values
            elif keeps_channel_offset(facts):
                stack.append(succ)
            else:
                return None
    return found or None


def cancelled_biases(g: nx.DiGraph) -> Dict[str, Tuple[str, ...]]:
    """Weight layers with a bias whose output only BatchNorm layers use (through
    offset-keeping ops), and those BatchNorm layers. Each walk is local (bounded).

    >>> import networkx as nx
    >>> g = nx.DiGraph([("conv", "bn"), ("bn", "relu")])
    >>> nx.set_node_attributes(g, {"conv": {"kind": "weight", "has_bias": True},
    ...     "bn": {"kind": "batchnorm"}, "relu": {"kind": "activation"}})
    >>> cancelled_biases(g)
    {'conv': ('bn',)}
    """
    out: Dict[str, Tuple[str, ...]] = {}
    kept: set = set()  # modules applied somewhere their bias matters (a shared layer)
    for node, facts in g.nodes(data=True):
        if facts.get("kind") != "weight" or not facts.get("has_bias") or _installed(facts):
            continue
        bns = _batchnorms_only(g, node)
        if bns:
            out[node] = tuple(bns)
        elif facts.get("op") == "call_module":
            kept.add(facts.get("module_path"))
    return {n: bns for n, bns in out.items()
            if g.nodes[n].get("op") != "call_module" or g.nodes[n].get("module_path") not in kept}


def find_bias_before_batchnorm(g: nx.DiGraph) -> Iterator[Hit]:
    for weight, bns in cancelled_biases(g).items():
        names = ", ".join(describe(g, bn) for bn in bns)
        yield Hit(
            node=weight,
            related=bns,
            message=(
                f"{describe(g, weight)} adds a bias that {names} cancels (BatchNorm subtracts the "
                f"per-channel mean): wasted parameters with zero gradient; build it with bias=False"
            ),
            data=(("batchnorm", [g.nodes[bn].get("module_path") or g.nodes[bn].get("target") for bn in bns]),),
        )


RULE = Rule(
    code="BNL106",
    name="bias-before-batchnorm",
    summary="A conv/linear bias that the BatchNorm it feeds cancels (wasted parameters)",
    kind=RuleKind.GRAPH,
    severity=Severity.WARNING,
    doc=__doc__,
    fixable=True,
    check=find_bias_before_batchnorm,
)
