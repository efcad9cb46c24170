"""## What it does
Flags an active dropout that reaches a BatchNorm through one or more weight layers
(convolutions, linear layers) with no residual add on the path, when it does not feed
a BN directly (that case is BNL101).

## Why is this bad?
A weight layer mixes the dropped units but does not undo the variance shift: the BN
behind it still normalises with a running variance collected while dropout was on.
In our measurement (p = 0.5, a conv net) a BN reached through one conv read an
eval/running variance ratio of about 0.44 whether or not the dropout right in front of
the earlier BN had been moved. Li et al. (CVPR 2019, section 3) show the shift
accumulates through the following layers.

## Example
```python
nn.Sequential(
    nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.Dropout(0.3),
    nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
)
```

## Use instead
Put dropout only after the last BatchNorm of the network (e.g. in the head), use a
residual structure where the dropout sits at the end of the branch (Kim et al.), or
re-estimate BN statistics with dropout off after training.

## Fix safety
No automatic fix: this is an architectural choice. The message lists the options.

## References
- Li, Chen, Hu, Yang. CVPR 2019 (arXiv 1801.05134), sections 3 and 5.
- Kim, Park, Lee. UAI 2023 (arXiv 2302.06112), section 4.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from bnlint.findings import Severity
from bnlint.model.graphwalk import VALUE_PRESERVING, active_dropouts, describe, follow_route, route_ends, routes_to
from bnlint.rule import Hit, Rule, RuleKind

if TYPE_CHECKING:
    import networkx as nx

BATCHNORM = frozenset({"batchnorm"})
THROUGH_WEIGHTS = VALUE_PRESERVING | {"weight"}


def find_dropout_shift_through_weights(g: nx.DiGraph) -> Iterator[Hit]:
    direct = routes_to(g, VALUE_PRESERVING, BATCHNORM)
    through_weights = routes_to(g, THROUGH_WEIGHTS, BATCHNORM)
    ends = route_ends(g, through_weights, BATCHNORM)
    for drop in active_dropouts(g):
        if drop in direct or drop not in through_weights:
            continue  # feeds a BN directly (BNL101), or reaches none
        path = follow_route(g, through_weights, drop, BATCHNORM)
        bn = ends[drop]
        weights = [n for n in path if g.nodes[n].get("kind") == "weight"]
        through = ", ".join(describe(g, w) for w in weights[:2]) or "weight layers"
        yield Hit(
            node=drop,
            related=(bn,),
            severity=Severity.WARNING,
            message=(
                f"{describe(g, drop)} reaches {describe(g, bn)} through {through} with no residual "
                f"add: the variance shift survives weight layers; keep dropout after the last BN, "
                f"at the end of a residual branch, or re-estimate BN statistics after training"
            ),
            data=(("batchnorm", g.nodes[bn].get("module_path") or g.nodes[bn].get("target")),),
        )


RULE = Rule(
    code="BNL103",
    name="dropout-shift-through-weights",
    summary="Active dropout that reaches a BatchNorm through weight layers, no residual add",
    kind=RuleKind.GRAPH,
    severity=Severity.WARNING,
    doc=__doc__,
    fixable=False,
    check=find_dropout_shift_through_weights,
)
