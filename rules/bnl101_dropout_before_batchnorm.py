"""## What it does
Flags an active dropout (p > 0: `nn.Dropout`, `Dropout1d/2d/3d`, `AlphaDropout`,
`FeatureAlphaDropout`, `F.dropout*`, `torch.dropout`) whose output reaches a
BatchNorm layer (`BatchNorm1d/2d/3d`, `SyncBatchNorm`, `LazyBatchNorm*`,
`F.batch_norm`) through only value-preserving operations: activations, reshapes,
pooling, channel concatenation, scaling by a constant, other dropouts. A path through
a residual add is not flagged.

## Why is this bad?
BatchNorm collects its running variance in training mode, where dropout scales the
surviving activations by 1/(1-p). In evaluation mode dropout is the identity, so the
BN sees a smaller variance than the one it normalises by (about a factor 1-p for the
dropped part of the signal): the "variance shift" of Li et al. (CVPR 2019, section 3).
Outputs drift between train and test, and accuracy drops (DenseNet on CIFAR-100:
77.42% without dropout vs 68.55% with dropout 0.5 in each bottleneck, their Table 1).

## Example
```python
out = self.dropout(self.conv1(F.relu(self.bn1(x))))
out = self.conv2(F.relu(self.bn2(out)))       # bn2 normalises dropout's output
```

## Use instead
Inside a residual branch, one dropout after the branch's last BN and before its last
weight layer (Kim et al., UAI 2023, section 4):
```python
out = self.conv1(F.relu(self.bn1(x)))
out = self.conv2(self.dropout(F.relu(self.bn2(out))))
```
Elsewhere, move the dropout to just after the BN and its activation.

A dropout whose output feeds several BNs (a DenseNet layer's new features are
concatenated into every later layer's input) goes just before the weight layer it
follows, W(D(ReLU(BN(x)))):
```python
new_features = self.relu2(self.norm2(bottleneck_output))
if self.drop_rate > 0:
    new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
new_features = self.conv2(new_features)
```
It may still reach those BNs through that layer: BNL103, a warning.

## Fix safety
Moving a dropout keeps the eval-mode function (dropout is the identity there) and, in
forward code, the state_dict keys: safe. The moved call keeps its arguments and the
`if` that guarded it. Reordering the children of an `nn.Sequential` (its arguments, a
list literal, `append`/`extend` calls in a loop, `add_module` calls) renumbers the keys
of children registered by index: unsafe, and the fix lists the renames; children
registered by name (`add_module`, `OrderedDict`) keep their keys: safe.

## References
- Li, Chen, Hu, Yang. "Understanding the Disharmony between Dropout and Batch
  Normalization by Variance Shift." CVPR 2019 (arXiv 1801.05134), sections 3-4.
- Kim, Park, Lee. "How to Use Dropout Correctly on Residual Networks with Batch
  Normalization." UAI 2023 (arXiv 2302.06112), section 4.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from bnlint.findings import Severity
from bnlint.model.graphwalk import VALUE_PRESERVING, active_dropouts, describe, follow_route, reach, route_ends, routes_to
from bnlint.rule import Hit, Rule, RuleKind

if TYPE_CHECKING:
    import networkx as nx

BATCHNORM = frozenset({"batchnorm"})


def find_dropout_before_batchnorm(g: nx.DiGraph) -> Iterator[Hit]:
    route = routes_to(g, VALUE_PRESERVING, BATCHNORM)
    ends = route_ends(g, route, BATCHNORM)
    for drop in active_dropouts(g):
        if drop not in route:
            continue
        path = follow_route(g, route, drop, BATCHNORM)
        bn = ends[drop]
        between = [g.nodes[n].get("target") for n in path[1:] if n != bn]
        via = f" (through {', '.join(str(b) for b in between)})" if between else ""
        p = g.nodes[drop].get("p")
        factor = f"about {1 - p:.2g}x" if isinstance(p, (int, float)) and 0 < p < 1 else "smaller than"
        # Every BN this dropout feeds (the fixer must not move it past only one of
        # them); a bounded local walk, it stops at BNs, adds and weights.
        fed = reach(g, drop, VALUE_PRESERVING, BATCHNORM, max_visits=256).targets
        yield Hit(
            node=drop,
            related=(bn, *[b for b in fed if b != bn]),
            message=(
                f"{describe(g, drop)} feeds {describe(g, bn)}{via}: BN's running variance is "
                f"collected with dropout on, so at test time its input variance is {factor} "
                f"the estimate; move the dropout after the BN and its activation (in a residual "
                f"branch: just before the branch's last weight layer)"
            ),
            data=(("batchnorm", g.nodes[bn].get("module_path") or g.nodes[bn].get("target")),),
        )


RULE = Rule(
    code="BNL101",
    name="dropout-before-batchnorm",
    summary="Active dropout whose output is normalised by a BatchNorm (variance shift)",
    kind=RuleKind.GRAPH,
    severity=Severity.ERROR,
    doc=__doc__,
    fixable=True,
    check=find_dropout_before_batchnorm,
)
