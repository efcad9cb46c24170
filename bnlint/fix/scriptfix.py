"""Fixes for the script rules (BNL201-BNL204), planned on the CST the rules walked.

Each helper returns a ``Fix`` of text edits or None when the code is not in a shape the
fixer can follow (the finding then has no ``[*]``). The fixes change the data order on
purpose (that is what the rules ask for) and never touch a model, so they are marked
safe; BNL205 (cached batches) has no automatic fix.

Each helper decides first, on the tree and its parents only, whether it can fix the
code and what the fix does; the edits, which need source positions (a code generation
pass over the whole file), are computed only when the run plans fixes
(``ScriptContext.plan_fixes``: ``bnlint fix``, SARIF output). ``bnlint check`` gets the
same fixes without edits: the ``[*]`` marker and the description, cheaply.
"""
from __future__ import annotations

from typing import Callable, Iterable, List, Optional, Sequence, Set

import libcst as cst

from bnlint.findings import Edit, Fix, FixSafety
from bnlint.fix.cstindex import SourceIndex, callee_name

__all__ = ["planned", "set_epoch_fix", "cycle_fix", "shuffle_fix", "permutation_into_loop_fix", "seed_before_loop_fix",
           "CYCLE_HELPER"]

CYCLE_HELPER = "_reiterate_forever"
_HELPER_CODE = (
    "\n\ndef {name}(iterable):\n"
    '    """Like itertools.cycle, but iterates `iterable` anew on every pass (a new order\n'
    '    each epoch) instead of replaying the items of the first pass."""\n'
    "    while True:\n"
    "        empty = True\n"
    "        for item in iterable:\n"
    "            empty = False\n"
    "            yield item\n"
    "        if empty:\n"
    "            return\n"
)


def _names(node: cst.CSTNode) -> Iterable[cst.Name]:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, cst.Name):
            yield cur
        stack.extend(cur.children)


def _assigned_names(node: cst.CSTNode) -> Set[str]:
    out: Set[str] = set()
    stack = [node]
    while stack:
        cur = stack.pop()
        targets = []
        if isinstance(cur, cst.Assign):
            targets = [t.target for t in cur.targets]
        elif isinstance(cur, (cst.AugAssign, cst.AnnAssign)):
            targets = [cur.target]
        elif isinstance(cur, cst.For):
            targets = [cur.target]
        for t in targets:
            out.update(n.value for n in _names(t))
        stack.extend(cur.children)
    return out


def _bound_name(idx: SourceIndex, node: cst.CSTNode):
    """(name, guarded, assign statement) when ``node`` is assigned to a plain name."""
    parent = idx.parent(node)
    guarded = False
    if isinstance(parent, cst.IfExp):
        guarded, node, parent = True, parent, idx.parent(parent)
    if (isinstance(parent, cst.Assign) and parent.value is node and len(parent.targets) == 1
            and isinstance(parent.targets[0].target, cst.Name)):
        return parent.targets[0].target.value, guarded, idx.parent(parent)
    return None, False, None


def _safe_fix(ctx, description: str, edits: Callable[[], Sequence[Edit]]) -> Fix:
    """The fix, with its edits only when the run plans fixes (see the module docs)."""
    return Fix(FixSafety.SAFE, description, tuple(edits()) if ctx.plan_fixes else ())


def _first_in_body(loop: cst.CSTNode) -> Optional[cst.CSTNode]:
    """The first statement of an indented loop body (None: no such body)."""
    body = getattr(loop, "body", None)
    if not isinstance(body, cst.IndentedBlock) or not body.body:
        return None
    return body.body[0]


def _loop_body_start(idx: SourceIndex, loop: cst.CSTNode):
    first = _first_in_body(loop)
    line = idx.start(first)[0]
    return (line, 0), idx.indent_of(line)


def _inside_loop(loop: cst.CSTNode) -> Set[int]:
    """Ids of the nodes in the loop's header and body: its source range, which ends
    with the body (an ``else:`` clause is outside)."""
    inside: Set[int] = set()
    stack = [c for c in loop.children if c is not getattr(loop, "orelse", None)]
    while stack:
        cur = stack.pop()
        inside.add(id(cur))
        stack.extend(cur.children)
    return inside


def _comes_after(parent: cst.CSTNode, a: cst.CSTNode, b: cst.CSTNode) -> bool:
    """Does statement ``a`` come after statement ``b``, both in ``parent``'s body?"""
    order = {id(stmt): i for i, stmt in enumerate(getattr(parent, "body", ()))}
    return order[id(a)] > order[id(b)]


def _line_block(idx: SourceIndex, stmt: cst.CSTNode, indent: str) -> str:
    """The full lines of ``stmt``, re-indented to ``indent``."""
    first, last = idx.start(stmt)[0], idx.end(stmt)[0]
    old = idx.indent_of(first)
    out = []
    for n in range(first, last + 1):
        line = idx.line_text(n).rstrip("\r")
        out.append(indent + line[len(old):] if line.startswith(old) else line)
    return "\n".join(out) + "\n"


def _delete_lines(idx: SourceIndex, stmt: cst.CSTNode) -> Edit:
    return Edit(idx.path, (idx.start(stmt)[0], 0), (idx.end(stmt)[0] + 1, 0), "")


def _free_name(idx: SourceIndex, scope: cst.CSTNode, wanted: Sequence[str]) -> str:
    used = {n.value for n in _names(scope)}
    for name in wanted:
        if name not in used:
            return name
    n = 2
    while f"{wanted[-1]}{n}" in used:
        n += 1
    return f"{wanted[-1]}{n}"


# ---------------------------------------------------------------- BNL201
def set_epoch_fix(ctx, target, holders, epoch_loop) -> Optional[Fix]:
    """Insert ``<sampler>.set_epoch(<epoch>)`` as the first statement of the epoch loop."""
    if target.node is None or epoch_loop.file is not target.file:
        return None
    idx = ctx.source_index(target.file)
    loop = epoch_loop.node
    if _first_in_body(loop) is None:
        return None
    func = idx.function(loop) or idx.module
    name, guarded, stmt = _bound_name(idx, target.node)
    receiver = name
    if name is None or (idx.function(stmt) or idx.module) is not func:
        receiver = None
        attr = "dataset" if target.kind == "hfds" else "sampler"
        for holder in holders:
            if holder is None or holder.kind != "loader" or holder.node is None or holder.file is not target.file:
                continue
            lname, lguard, lstmt = _bound_name(idx, holder.node)
            if lname and not lguard and (idx.function(lstmt) or idx.module) is func:
                receiver, guarded = f"{lname}.{attr}", False
                break
    if receiver is None or (isinstance(loop, cst.For) and receiver.split(".")[0] in _assigned_names(loop)):
        return None
    counted = not (isinstance(loop, cst.For) and isinstance(loop.target, cst.Name) and loop.target.value != "_"
                   and epoch_loop.is_range)
    epoch = _free_name(idx, func, ["epoch", "bnlint_epoch"]) if counted else loop.target.value
    call = f"{receiver}.set_epoch({epoch})"

    def edits() -> List[Edit]:
        at, indent = _loop_body_start(idx, loop)
        out: List[Edit] = []
        extra = ""
        if counted:
            line = idx.start(loop)[0]
            out.append(Edit(idx.path, (line, 0), (line, 0), f"{idx.indent_of(line)}{epoch} = 0\n"))
            extra = f"{indent}{epoch} += 1\n"
        if guarded:
            step = idx.module.default_indent
            text = f"{indent}if {receiver} is not None:\n{indent}{step}{call}\n{extra}"
        else:
            text = f"{indent}{call}\n{extra}"
        out.append(Edit(idx.path, at, at, text))
        return out

    return _safe_fix(ctx, f"call {call} at the start of each epoch", edits)


# ---------------------------------------------------------------- BNL202
def cycle_fix(ctx, value, flagged: Sequence) -> Optional[Fix]:
    """Replace ``itertools.cycle(x)`` by a re-iterating generator defined once per file."""
    call = value.node
    if not isinstance(call, cst.Call) or callee_name(call) is None:
        return None
    idx = ctx.source_index(value.file)
    module = idx.module
    defined = any(isinstance(s, cst.FunctionDef) and s.name.value == CYCLE_HELPER for s in module.body)
    last_import = None
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine) and any(isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body):
            last_import = stmt
    if last_import is None:
        return None

    def edits() -> List[Edit]:
        out = [Edit(idx.path, idx.start(call.func), idx.end(call.func), CYCLE_HELPER)]
        if not defined:
            line = idx.end(last_import)[0] + 1
            out.append(Edit(idx.path, (line, 0), (line, 0), _HELPER_CODE.format(name=CYCLE_HELPER)))
        out.extend(_unused_cycle_import(idx, [v.node for v in flagged if v.file is value.file]))
        return out

    return _safe_fix(ctx, f"replace itertools.cycle with {CYCLE_HELPER}(), which re-iterates the loader "
                          f"every pass", edits)


def _unused_cycle_import(idx: SourceIndex, calls: Sequence[cst.Call]) -> List[Edit]:
    fixed = {id(n) for c in calls for n in _names(c.func)}
    for stmt in idx.module.body:
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            continue
        small = stmt.body[0]
        if isinstance(small, cst.ImportFrom) and isinstance(small.module, cst.Name) \
                and small.module.value == "itertools" and not isinstance(small.names, cst.ImportStar):
            for i, alias in enumerate(small.names):
                if not isinstance(alias.name, cst.Name) or alias.name.value != "cycle":
                    continue
                local = alias.asname.name.value if alias.asname else "cycle"
                if _used(idx, local, fixed, stmt):
                    return []
                if len(small.names) == 1:
                    return [_delete_lines(idx, stmt)]
                if i + 1 < len(small.names):
                    return [Edit(idx.path, idx.start(alias), idx.start(small.names[i + 1]), "")]
                return [Edit(idx.path, idx.end(small.names[i - 1].name if small.names[i - 1].asname is None
                                               else small.names[i - 1].asname.name), idx.end(alias.asname.name if alias.asname else alias.name), "")]
        if isinstance(small, cst.Import) and len(small.names) == 1 and small.names[0].asname is None \
                and isinstance(small.names[0].name, cst.Name) and small.names[0].name.value == "itertools":
            if not _used(idx, "itertools", fixed, stmt):
                return [_delete_lines(idx, stmt)]
    return []


def _used(idx: SourceIndex, name: str, fixed: Set[int], import_stmt) -> bool:
    skip = {id(n) for n in _names(import_stmt)}
    return any(n.value == name and id(n) not in fixed and id(n) not in skip for n in _names(idx.module))


# ---------------------------------------------------------------- BNL203
def shuffle_fix(ctx, loader) -> Optional[Fix]:
    """``shuffle=True`` on a map-style training loader without a sampler."""
    call = loader.node
    if not isinstance(call, cst.Call) or any(a.star for a in call.args) or not call.args:
        return None
    idx = ctx.source_index(loader.file)
    given = next((arg for arg in call.args if arg.keyword is not None and arg.keyword.value == "shuffle"), None)
    if given is None and len([a for a in call.args if a.keyword is None]) >= 3:
        return None  # shuffle given positionally, or a form we do not recognise

    def edits() -> List[Edit]:
        if given is not None:
            return [Edit(idx.path, idx.start(given.value), idx.end(given.value), "True")]
        end = idx.end(call.args[-1].value)
        return [Edit(idx.path, end, end, ", shuffle=True")]

    return _safe_fix(ctx, "pass shuffle=True so every epoch draws a new order", edits)


def permutation_into_loop_fix(ctx, perm, epoch_loop) -> Optional[Fix]:
    """Move ``perm = torch.randperm(n)`` to the top of the epoch loop (manual batching)."""
    if perm.node is None or epoch_loop.file is not perm.file:
        return None
    idx = ctx.source_index(perm.file)
    name, guarded, stmt = _bound_name(idx, perm.node)
    loop = epoch_loop.node
    if name is None or guarded or not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    if idx.parent(stmt) is not idx.parent(loop) or _comes_after(idx.parent(stmt), stmt, loop):
        return None
    scope = idx.function(loop) or idx.module
    inside: Optional[Set[int]] = None
    for n in _names(scope):
        if n.value != name or n is stmt.body[0].targets[0].target:
            continue
        if inside is None:
            inside = _inside_loop(loop)
        if id(n) not in inside:
            return None  # used outside the loop (a Subset, a sampler list): rebuild by hand
    if {n.value for n in _names(perm.node)} & _assigned_names(loop):
        return None
    if _first_in_body(loop) is None:
        return None

    def edits() -> List[Edit]:
        at, indent = _loop_body_start(idx, loop)
        return [_delete_lines(idx, stmt), Edit(idx.path, at, at, _line_block(idx, stmt, indent))]

    return _safe_fix(ctx, f"draw the permutation '{name}' anew at the start of each epoch", edits)


# ---------------------------------------------------------------- BNL204
def seed_before_loop_fix(ctx, seed, epoch_loop) -> Optional[Fix]:
    """Move the statement that seeds with a constant from the epoch loop to before it."""
    idx = ctx.source_index(epoch_loop.file)
    loop = epoch_loop.node
    body = getattr(loop, "body", None)
    if not isinstance(body, cst.IndentedBlock):
        return None
    stmt = None
    for s in body.body:
        if not isinstance(s, cst.SimpleStatementLine) or len(s.body) != 1:
            continue
        if seed.file is epoch_loop.file and _contains(s, seed.node):
            stmt = s
            break
        small = s.body[0]
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call) \
                and isinstance(small.value.func, cst.Name) and seed.file is epoch_loop.file:
            helper = idx.function(seed.node)
            if helper is not None and helper.name.value == small.value.func.value \
                    and any(f is helper for f in idx.module.body):
                stmt = s
                break
    if stmt is None:
        return None
    own = _assigned_names(stmt)
    if ({n.value for n in _names(stmt)} - own) & (_assigned_names(loop) - own):
        return None

    def edits() -> List[Edit]:
        line = idx.start(loop)[0]
        return [_delete_lines(idx, stmt),
                Edit(idx.path, (line, 0), (line, 0), _line_block(idx, stmt, idx.indent_of(line)))]

    return _safe_fix(ctx, "seed once, before the epoch loop, so each epoch draws a new order", edits)


def _contains(outer: cst.CSTNode, node: cst.CSTNode) -> bool:
    stack = [outer]
    while stack:
        cur = stack.pop()
        if cur is node:
            return True
        stack.extend(cur.children)
    return False


def planned(plan, *args) -> Optional[Fix]:
    """Run a fix planner; a planner that cannot follow the code gives no fix, never a crash."""
    try:
        return plan(*args)
    except (KeyError, AttributeError, IndexError, TypeError, ValueError):
        return None
