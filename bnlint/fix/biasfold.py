"""Worker side of the BNL106 fix check: which biases the fix removed, and the state of
the fixed model that must behave like the original (each removed bias folded into the
running mean of the BatchNorm it fed: ``running_mean -= bias``).

In training mode a bias before BatchNorm changes nothing (the batch mean absorbs it);
in evaluation mode BN subtracts its running mean instead, so the fixed model matches
the original only when the running mean moves by the bias too. That is the meaning of
"equivalent" for this fix, and ``bnlint.fix.equivalence`` checks it.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

__all__ = ["removed_biases", "fold_biases"]


def removed_biases(keys_before: Sequence[str], keys_after: Sequence[str],
                   folds: Sequence[Tuple[str, str]]) -> Tuple[Dict[str, List[str]], str]:
    """({removed bias key: running-mean keys to fold it into}, why not) for the keys the
    fix removed. Every removed key must be a promised bias (``P.<weight>.bias`` for a
    fold pair ``(<weight>, <bn>)``) with a ``P.<bn>.running_mean`` to fold into."""
    after = set(keys_after)
    before = set(keys_before)
    removed: Dict[str, List[str]] = {}
    for key in keys_before:
        if key in after:
            continue
        partners = []
        for weight, bn in folds:
            suffix = f"{weight}.bias"
            if key == suffix or key.endswith("." + suffix):
                prefix = key[: len(key) - len(suffix)]
                partner = f"{prefix}{bn}.running_mean"
                if partner in before:
                    partners.append(partner)
        if not partners:
            return {}, f"the fix removed state_dict key {key!r}, which it did not promise"
        removed[key] = partners
    return removed, ""


def fold_biases(state: Dict[str, "object"], removed: Dict[str, List[str]]) -> Tuple[Dict[str, "object"], str]:
    """``state`` without the removed biases, each subtracted from its BN's running mean
    (repeated per feature when a flatten spread each channel over several features)."""
    out = dict(state)
    for key, partners in removed.items():
        bias = out.pop(key).detach()
        for partner in partners:
            mean = out[partner]
            if mean.numel() % bias.numel():
                return {}, f"cannot fold {key} ({bias.numel()} values) into {partner} ({mean.numel()} values)"
            shift = bias.reshape(-1).repeat_interleave(mean.numel() // bias.numel()).reshape(mean.shape)
            out[partner] = mean - shift.to(mean.dtype)
    return out, ""
