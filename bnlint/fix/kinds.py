"""Which findings' fixes change a model and which change a training script.

Model fixes (graph rules) are checked by building the model before and after; script
fixes by re-running the script rules. The rule's kind decides, not its code: BNL105
(eval-in-train-mode) is a script rule with a code in the BNL1xx range.
"""
from __future__ import annotations

from bnlint.findings import Finding
from bnlint.rule import RuleKind

__all__ = ["is_model_finding", "is_script_finding"]


def _kind(finding: Finding):
    from bnlint.registry import rule_by_code

    rule = rule_by_code(finding.code)
    return rule.kind if rule is not None else None


def is_model_finding(finding: Finding) -> bool:
    """A graph rule's finding: its fix edits a model's definition."""
    return _kind(finding) is RuleKind.GRAPH


def is_script_finding(finding: Finding) -> bool:
    """A script rule's finding: its fix edits training code."""
    return _kind(finding) is RuleKind.SCRIPT
