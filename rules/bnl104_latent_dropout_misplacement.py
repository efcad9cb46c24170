"""## What it does
Flags a dropout that is off by default in the project's own model (its rate parameter
defaults to 0 or None, or a `use_dropout`-style flag to False) and that would trigger
BNL101, BNL102 or BNL103 once switched on. bnlint builds the model a second time with
that parameter at 0.1 (a flag: True), and reports what the dropout rules find about
the dropouts that only then become active. The message names the parameter and the
rule it would trigger.

## Why is this bad?
Research models keep dropout behind a constructor argument (`dropRate=0.0`,
`drop_rate=0.`, `p_drop=None`) and users switch it on from the command line
(`--droprate 0.3`). The default build then passes every check while the configuration
people actually train is misplaced: with the dropout feeding a BatchNorm, BN's
running variance is collected with dropout on and used with it off (Li et al., CVPR
2019, section 3); after global pooling the pooled units' variance shifts many times
more (Kim et al., UAI 2023, section 4.3). The same placement rules apply whatever the
default.

## Example
```python
class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, drop_rate=0.0):
        ...
    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(F.relu(self.bn2(out)))  # bn2 would normalise dropout's output
```

## Use instead
Place the dropout where the rule it would trigger asks, whatever its default: in a
residual branch after the last BN and before the last weight layer.
```python
    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = F.relu(self.bn2(out))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out)
```

## Fix safety
No automatic fix yet: the move is the one BNL101/BNL102 would make, but bnlint cannot
yet check it on the model built with the dropout switched on. Move it by hand and run
`bnlint check` again.

## References
- Li, Chen, Hu, Yang. "Understanding the Disharmony between Dropout and Batch
  Normalization by Variance Shift." CVPR 2019 (arXiv 1801.05134), section 3.
- Kim, Park, Lee. "How to Use Dropout Correctly on Residual Networks with Batch
  Normalization." UAI 2023 (arXiv 2302.06112), sections 4 and 4.3.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from bnlint.findings import Severity
from bnlint.rule import Hit, Rule, RuleKind

if TYPE_CHECKING:
    import networkx as nx


def find_latent_dropout_misplacement(g: nx.DiGraph) -> Iterator[Hit]:
    """What BNL101/102/103 find about the dropouts marked ``latent_param`` (a graph
    built with an off-by-default dropout parameter switched on; bnlint.model.latent)."""
    from bnlint.rules.bnl101_dropout_before_batchnorm import RULE as BNL101
    from bnlint.rules.bnl102_dropout_after_global_pool import RULE as BNL102
    from bnlint.rules.bnl103_dropout_shift_through_weights import RULE as BNL103

    if not any(d.get("latent_param") for _, d in g.nodes(data=True)):
        return
    seen = set()
    for rule in (BNL101, BNL102, BNL103):
        for hit in rule.check(g):
            d = g.nodes[hit.node] if hit.node in g else {}
            if not d.get("latent_param") or hit.node in seen:
                continue
            seen.add(hit.node)
            condition = d.get("latent_text") or f"{d['latent_param']} > 0"
            yield Hit(
                node=hit.node,
                related=hit.related,
                severity=Severity.WARNING,
                message=f"when {condition} ({d.get('latent_owner')}), {hit.message} ({rule.code})",
                data=hit.data + (("rule", rule.code), ("parameter", d["latent_param"])),
            )


RULE = Rule(
    code="BNL104",
    name="latent-dropout-misplacement",
    summary="Dropout that is off by default and would be misplaced around BatchNorm once enabled",
    kind=RuleKind.GRAPH,
    severity=Severity.WARNING,
    doc=__doc__,
    fixable=False,
    check=find_latent_dropout_misplacement,
)
