"""Which BNs a model change is judged at: the ones its finding names.

A dropout-placement fix (BNL101) is about the BNs a dropout feeds directly. Those are
where its variance shift must go (to about 1); BNs further on, reached through weight
layers, keep part of any upstream shift whatever the fix does (research.md), so they
are reported apart and do not decide the verdict.

The BNs come from bnlint's own analysis of the two built models (the BNL101 rule on
the traced graph, every BN each finding's dropout feeds): the BNs fed by a dropout in
one version and not in the other are the ones the change is about. When both versions
feed the same BNs (a cosmetic change, or a fix of something else) those are judged;
when no dropout feeds any BN, every BN is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, Optional, Sequence, Tuple

from torch import nn

__all__ = ["JudgedBatchNorms", "dropout_fed_batchnorms", "judged_batchnorms", "FUNCTIONAL"]

FUNCTIONAL = "F.batch_norm"  # stands for every BN the model applies as a function on its own buffers


@dataclass(frozen=True)
class JudgedBatchNorms:
    """The BN module paths a change is judged at, and how they were chosen."""

    names: Tuple[str, ...]  # empty: every BN
    how: str
    before: Tuple[str, ...] = ()  # BNs a dropout feeds in each version (None: unknown)
    after: Tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"names": list(self.names), "how": self.how, "fed_before": list(self.before),
                "fed_after": list(self.after)}


def dropout_fed_batchnorms(model: nn.Module) -> Optional[FrozenSet[str]]:
    """Module paths of the BNs an active dropout feeds through value-preserving ops
    (what BNL101 reports, every instance of a repeated block included); None when the
    model could not be analysed. The model is traced in train mode; its mode is restored."""
    from bnlint.model.graphbuild import build_graph
    from bnlint.model.trace import trace_model
    from bnlint.registry import select_rules

    rules = [r for r in select_rules(["BNL101"], []) if r.code == "BNL101" and r.check is not None]
    if not rules:
        return None
    was_training = model.training
    model.train()
    try:
        graph, _, _ = build_graph(model, trace_model(model))
        fed = set()
        for hit in rules[0].check(graph):
            for node in hit.related:
                facts = graph.nodes[node]
                path = facts.get("module_path")
                if path:
                    fed.add(str(path))
                elif facts.get("kind") == "batchnorm":
                    fed.add(FUNCTIONAL)
        return frozenset(fed)
    except Exception:  # an analysis failure must not stop the verification
        return None
    finally:
        model.train(was_training)


def judged_batchnorms(before: Optional[FrozenSet[str]], after: Optional[FrozenSet[str]],
                      measured: Sequence[str], functional: Sequence[str] = ()) -> JudgedBatchNorms:
    """Choose the judged BNs (see the module docstring) among the ``measured`` module
    BNs and the ``functional`` ones (``F.batch_norm`` on buffers, named by buffer)."""
    measured_set = set(measured) | set(functional)
    if before is not None and FUNCTIONAL in before:
        before = (before - {FUNCTIONAL}) | frozenset(functional)
    if after is not None and FUNCTIONAL in after:
        after = (after - {FUNCTIONAL}) | frozenset(functional)
    if before is None or after is None:
        return JudgedBatchNorms((), "every BN (bnlint could not analyse the models' graphs)")
    changed = sorted((before ^ after) & measured_set)
    fed_b, fed_a = tuple(sorted(before)), tuple(sorted(after))
    if changed:
        return JudgedBatchNorms(tuple(changed), "the BNs a dropout feeds in one version and not in the other "
                                f"({_count(changed)})", fed_b, fed_a)
    common = sorted((before | after) & measured_set)
    if common:
        return JudgedBatchNorms(tuple(common), f"the BNs a dropout feeds in both versions ({_count(common)}; "
                                "the change does not move a dropout relative to a BN)", fed_b, fed_a)
    return JudgedBatchNorms((), "every BN (no dropout feeds a BN in either version)", fed_b, fed_a)


def _count(names: Sequence[str]) -> str:
    shown = ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")
    return shown
