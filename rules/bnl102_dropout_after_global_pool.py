"""## What it does
Flags an active dropout applied to globally pooled features (`AdaptiveAvgPool2d(1)`,
`AdaptiveMaxPool(1)`, `x.mean((2, 3))` or any mean over all spatial dimensions,
`F.adaptive_avg_pool2d(x, 1)`, an average pool whose window equals the feature map,
`x.flatten(2).mean(2)`), optionally followed by a flatten or reshape, before the
classifier. When that dropout feeds a BatchNorm instead, BNL101 reports it.

## Why is this bad?
After global pooling each unit averages a whole feature map, so its variance is small;
dropout then rescales individual pooled units and the train-time variance of the
classifier's input is many times the test-time one (for 64 positions: 6x at p = 0.1,
46x at p = 0.5, versus 1.2x and 2.7x when the same dropout is applied before pooling).
Kim et al. (UAI 2023, section 4.3) find dropout before global average pooling more
stable, even though the pooled form is today's common convention.

## Example
```python
x = self.avgpool(x)
x = torch.flatten(x, 1)
x = self.classifier(x)   # classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))
```

## Use instead
```python
x = self.avgpool(self.dropout(x))   # dropout on the feature map
x = torch.flatten(x, 1)
x = self.fc(x)
```

## Fix safety
Safe: the dropout moves (or is replaced by `nn.Identity()` in a classifier
`nn.Sequential` so indices stay) and an equivalent dropout is applied before the
pooling; state_dict keys and eval-mode outputs are unchanged.

## References
- Kim, Park, Lee. "How to Use Dropout Correctly on Residual Networks with Batch
  Normalization." UAI 2023 (arXiv 2302.06112), section 4.3.
- Li et al. CVPR 2019 (arXiv 1801.05134), section 3 (variance shift).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from bnlint.findings import Severity
from bnlint.model.graphwalk import VALUE_PRESERVING, active_dropouts, describe, pooled_sources, routes_to
from bnlint.rule import Hit, Rule, RuleKind

if TYPE_CHECKING:
    import networkx as nx


def find_dropout_after_global_pool(g: nx.DiGraph) -> Iterator[Hit]:
    feeds_bn = None
    pooled = None
    for drop in active_dropouts(g):
        if pooled is None:
            pooled = pooled_sources(g)
        pool = pooled.get(drop)
        if pool is None:
            continue
        if feeds_bn is None:
            feeds_bn = routes_to(g, VALUE_PRESERVING, frozenset({"batchnorm"}))
        if drop in feeds_bn:
            continue  # dropout feeding BN: BNL101's finding
        yield Hit(
            node=drop,
            related=(pool,),
            message=(
                f"{describe(g, drop)} is applied to globally pooled features (after "
                f"{describe(g, pool)}): the pooled units' train-time variance is many times the "
                f"test-time one; apply the dropout to the feature map before the pooling"
            ),
            data=(("pool", g.nodes[pool].get("module_path") or g.nodes[pool].get("target")),),
        )


RULE = Rule(
    code="BNL102",
    name="dropout-after-global-pool",
    summary="Active dropout applied after global average pooling instead of before it",
    kind=RuleKind.GRAPH,
    severity=Severity.ERROR,
    doc=__doc__,
    fixable=True,
    check=find_dropout_after_global_pool,
)
