"""The fix of BNL105 (eval-in-train-mode): switch the model to evaluation mode around
the evaluation loop, and back to the mode it was in after it.

Planned on the CST the rule walked, as text edits (``bnlint.findings.Fix``)::

    was_training = model.training
    model.eval()
    for x, y in val_loader:
        ...
    model.train(was_training)

The fix is unsafe (the pass computes something else afterwards: that is the point) and
is offered only when it can be written where the loop is: every flagged model is
called by a name (``model``, ``self.net``) in the loop's own function, that name is not
rebound inside the loop, and the loop neither returns nor yields (the mode would not be
restored).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import libcst as cst

from bnlint.findings import Edit, Fix, FixSafety
from bnlint.fix.scriptfix import _assigned_names, _free_name
from bnlint.script.names import dotted
from bnlint.script.project import iter_nodes

__all__ = ["eval_mode_fix"]


def _leaves_early(loop: cst.CSTNode) -> bool:
    return any(isinstance(n, (cst.Return, cst.Yield)) for n in iter_nodes(loop, skip_defs=True))


def eval_mode_fix(ctx, loop, calls: Sequence) -> Optional[Fix]:
    """``loop``: the evaluation ``Loop`` (a ``for`` statement); ``calls``: the flagged
    ``ModelCall`` facts in it."""
    node = loop.node
    if not isinstance(node, cst.For) or _leaves_early(node):
        return None
    idx = ctx.source_index(loop.file)
    scope = idx.function(node)
    receivers: List[str] = []
    for call in calls:
        if call.file is not loop.file or idx.function(call.node) is not scope:
            return None  # the model is called in a helper: no name for it here
        name = dotted(call.node.func)
        if name is None:
            return None
        if name not in receivers:
            receivers.append(name)
    rebound = _assigned_names(node)
    if any(name.split(".")[0] in rebound for name in receivers):
        return None
    first, last = idx.start(node)[0], idx.end(node)[0]
    indent = idx.indent_of(first)
    owner = scope if scope is not None else idx.module
    before, after = [], []
    for i, name in enumerate(receivers):
        flag = _free_name(idx, owner, ["was_training"] if i == 0 else [f"was_training{i + 1}"])
        before.append(f"{indent}{flag} = {name}.training\n{indent}{name}.eval()\n")
        after.append(f"{indent}{name}.train({flag})\n")
    edits = (Edit(idx.path, (first, 0), (first, 0), "".join(before)),
             Edit(idx.path, (last + 1, 0), (last + 1, 0), "".join(reversed(after))))
    shown = " and ".join(f"{name}.eval()" for name in receivers)
    return Fix(FixSafety.UNSAFE, f"call {shown} before the loop and restore the previous mode after it", edits)
