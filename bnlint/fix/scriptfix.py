"""Fixes for the script rules (BNL201-BNL204), planned on the CST the rules walked.

Each helper returns a ``Fix`` of text edits or None when the code is not in a shape the
fixer can follow (the finding then has no ``[*]``). The fixes change the data order on
purpose (that is what the rules ask for) and never touch a model, so they are marked
safe, except where they change more than where an order is drawn: a loader told to
shuffle data that was put in a fixed order once (the fixed order is no longer used),
and permuted arrays re-permuted every epoch. BNL205 (cached batches) has no automatic
fix.

A helper that seeds the global RNG and then draws from it (a fixed batch of latent
vectors, a fixed preview sample), called inside the epoch loop, keeps its draws and
stops resetting the data order when its body runs under ``torch.random.fork_rng()``
(and with the ``numpy``/``random`` states saved and restored): the helper returns what
it returned before, and everything outside it continues from where it was. That is
safer than giving the helper a local ``torch.Generator``: every draw in the helper, and
in what it calls, would need ``generator=g`` (and numpy/``random`` their own ``Generator``
/ ``Random``), and a draw that was missed would silently keep using the reseeded
global state.

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
from bnlint.fix.cstindex import SourceIndex, callee_name, sub_nodes

__all__ = ["planned", "set_epoch_fix", "cycle_fix", "shuffle_fix", "permutation_into_loop_fix", "seed_before_loop_fix",
           "permuted_loader_fix", "permutation_and_uses_into_loop_fix", "reseed_fix", "CYCLE_HELPER"]

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
        stack.extend(sub_nodes(cur))


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
        stack.extend(sub_nodes(cur))
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


def _fix(ctx, safety: FixSafety, description: str, edits: Callable[[], Sequence[Edit]]) -> Fix:
    """The fix, with its edits only when the run plans fixes (see the module docs)."""
    return Fix(safety, description, tuple(edits()) if ctx.plan_fixes else ())


def _safe_fix(ctx, description: str, edits: Callable[[], Sequence[Edit]]) -> Fix:
    return _fix(ctx, FixSafety.SAFE, description, edits)


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
    stack = [c for c in sub_nodes(loop) if c is not getattr(loop, "orelse", None)]
    while stack:
        cur = stack.pop()
        inside.add(id(cur))
        stack.extend(sub_nodes(cur))
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


def _permutation_statement(ctx, perm, epoch_loop):
    """(source index, bound name, statement, loop node) of ``perm = torch.randperm(n)``
    when it is an unguarded statement of its own in the epoch loop's file; else None."""
    if perm.node is None or epoch_loop.file is not perm.file:
        return None
    idx = ctx.source_index(perm.file)
    name, guarded, stmt = _bound_name(idx, perm.node)
    if name is None or guarded or not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    return idx, name, stmt, epoch_loop.node


def permutation_into_loop_fix(ctx, perm, epoch_loop) -> Optional[Fix]:
    """Move ``perm = torch.randperm(n)`` to the top of the epoch loop (manual batching)."""
    found = _permutation_statement(ctx, perm, epoch_loop)
    if found is None:
        return None
    idx, name, stmt, loop = found
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


def _module_alias(module: cst.Module, name: str) -> Optional[str]:
    """The name a top-level ``import name`` / ``import name as alias`` binds."""
    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Import):
                for alias in small.names:
                    if isinstance(alias.name, cst.Name) and alias.name.value == name:
                        return alias.asname.name.value if alias.asname else name
    return None


def permuted_loader_fix(ctx, loader) -> Optional[Fix]:
    """A training loader over data put in a fixed order once (a ``Subset`` of a
    permutation, permuted tensors): ``shuffle=True``; a fixed index list given as
    ``sampler=``: ``SubsetRandomSampler`` over it. The same examples, a new order every
    epoch. Unsafe: the order changes by design, and the fixed order is no longer used."""
    call = loader.node
    if not isinstance(call, cst.Call) or any(a.star for a in call.args) or not call.args:
        return None
    idx = ctx.source_index(loader.file)
    keywords = {a.keyword.value: a for a in call.args if a.keyword is not None}
    if "batch_sampler" in keywords or len([a for a in call.args if a.keyword is None]) >= 3:
        return None
    sampler = keywords.get("sampler")
    if sampler is not None:
        value = sampler.value
        torch_name = _module_alias(idx.module, "torch")
        if torch_name is None or (isinstance(value, cst.Call) and (callee_name(value) or "").endswith("Sampler")):
            return None
        return _fix(ctx, FixSafety.UNSAFE, "sample the fixed index list in a new order every epoch "
                                           "(SubsetRandomSampler)", lambda: (
            Edit(idx.path, idx.start(value), idx.start(value), f"{torch_name}.utils.data.SubsetRandomSampler("),
            Edit(idx.path, idx.end(value), idx.end(value), ")")))
    shuffle = keywords.get("shuffle")

    def edits() -> List[Edit]:
        if shuffle is not None:
            return [Edit(idx.path, idx.start(shuffle.value), idx.end(shuffle.value), "True")]
        end = idx.end(call.args[-1].value)
        return [Edit(idx.path, end, end, ", shuffle=True")]

    return _fix(ctx, FixSafety.UNSAFE, "pass shuffle=True: the loader visits the same examples in a new order every "
                                       "epoch (the order fixed before training is no longer used)", edits)


def _reads_only_as_index(node: cst.CSTNode, name: str) -> bool:
    """Every use of ``name`` in ``node`` is a whole index: ``x[perm]``."""
    found = False
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, cst.Subscript) and len(cur.slice) == 1 and isinstance(cur.slice[0].slice, cst.Index) \
                and isinstance(cur.slice[0].slice.value, cst.Name) and cur.slice[0].slice.value.value == name:
            found = True
            stack.append(cur.value)
            continue
        if isinstance(cur, cst.Name) and cur.value == name:
            return False
        stack.extend(sub_nodes(cur))
    return found


def permutation_and_uses_into_loop_fix(ctx, perm, epoch_loop) -> Optional[Fix]:
    """A permutation applied to arrays once before the epoch loop (``perm =
    torch.randperm(n)`` then ``x, y = x[perm], y[perm]``, as notebook exports do): draw
    and apply it at the top of every epoch instead. Unsafe: the arrays are put in a new
    order every epoch (each epoch re-permutes the previous order: a uniformly random
    order all the same)."""
    found = _permutation_statement(ctx, perm, epoch_loop)
    if found is None:
        return None
    idx, name, stmt, loop = found
    block = idx.parent(stmt)
    if block is not idx.parent(loop) or not isinstance(block, (cst.Module, cst.IndentedBlock)):
        return None
    body = list(block.body)
    first, at_loop = body.index(stmt), body.index(loop)
    if first > at_loop:
        return None
    moved, assigned = [stmt], {name}
    for other in body[first + 1:at_loop]:
        names = {n.value for n in _names(other)}
        if name in names:
            small = other.body[0] if isinstance(other, cst.SimpleStatementLine) and len(other.body) == 1 else None
            if not (isinstance(small, cst.Assign) and _reads_only_as_index(small.value, name)):
                return None
            moved.append(other)
            assigned |= _assigned_names(other)
        elif names & assigned:
            return None  # reads the permuted arrays before training (a split): keep the order fixed
    if len(moved) == 1:
        return None  # nothing applies it: permutation_into_loop_fix's case
    for other in body[at_loop + 1:]:
        if {n.value for n in _names(other)} & assigned:
            return None  # used after training too
    own = set().union(*(_assigned_names(m) for m in moved))
    reads = set().union(*({n.value for n in _names(m)} for m in moved)) - own
    if (reads | own) & _assigned_names(loop):
        return None
    if _first_in_body(loop) is None:
        return None

    def edits() -> List[Edit]:
        at, indent = _loop_body_start(idx, loop)
        out = [_delete_lines(idx, m) for m in moved]
        out.append(Edit(idx.path, at, at, "".join(_line_block(idx, m, indent) for m in moved)))
        return out

    applied = ", ".join(sorted(own - {name}))
    return _fix(ctx, FixSafety.UNSAFE, f"draw the permutation '{name}' and re-order {applied} with it at the start "
                                       f"of each epoch", edits)


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


def _helper_of(idx: SourceIndex, seed, loop) -> Optional[cst.FunctionDef]:
    helper = idx.function(seed.node)
    if helper is None or _contains(helper, loop):
        return None
    return helper


def _only_seeds(helper: cst.FunctionDef, seeds) -> bool:
    """The helper does nothing but seed (``seed_everything``): moving its call out of
    the loop is the fix; wrapping it would make it do nothing at all."""
    nodes = {id(s.node) for s in seeds}
    body = helper.body.body if isinstance(helper.body, cst.IndentedBlock) else []
    for stmt in body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            return False
        for small in stmt.body:
            if isinstance(small, cst.Pass) or (isinstance(small, cst.Expr) and isinstance(small.value, cst.SimpleString)):
                continue
            if isinstance(small, cst.Expr) and id(small.value) in nodes:
                continue
            return False
    return True


def reseed_fix(ctx, seed, epoch_loop) -> Optional[Fix]:
    """The fix for a constant seed set inside the epoch loop: a helper that seeds and
    then draws runs under saved-and-restored RNG states (``reseed_helper_fix``); any
    other seed moves before the loop (``seed_before_loop_fix``)."""
    idx = ctx.source_index(seed.file)
    helper = _helper_of(idx, seed, epoch_loop.node)
    if helper is not None and seed.lib != "generator":
        seeds = [s for s in ctx.facts.seeds if s.file is seed.file and _contains(helper, s.node)]
        if not _only_seeds(helper, seeds):
            return reseed_helper_fix(ctx, seed, helper, seeds)
    return seed_before_loop_fix(ctx, seed, epoch_loop)


def reseed_helper_fix(ctx, seed, helper: cst.FunctionDef, seeds) -> Optional[Fix]:
    """Run the body of a helper that reseeds the global RNGs under
    ``torch.random.fork_rng()`` and with the numpy / ``random`` states saved and
    restored (module docstring: why not a local generator)."""
    idx = ctx.source_index(seed.file)
    body = helper.body
    if not isinstance(body, cst.IndentedBlock) or not body.body:
        return None
    for node in _walk(helper):
        if isinstance(node, (cst.Yield, cst.Global, cst.Nonlocal)):
            return None  # a generator would restore the state only when exhausted
        if isinstance(node, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)) \
                and _spans_lines(idx.module, node):
            return None  # re-indenting would change a multi-line string
    libs = {s.lib for s in seeds if s.lib != "generator"}
    if "all" in libs:
        libs = (libs - {"all"}) | {lib for lib, mod in (("torch", "torch"), ("numpy", "numpy"), ("random", "random"))
                                   if _module_alias(idx.module, mod)}
    alias = {lib: _module_alias(idx.module, mod) for lib, mod in (("torch", "torch"), ("numpy", "numpy"),
                                                                   ("random", "random")) if lib in libs}
    if not libs or None in alias.values():
        return None
    stmts = list(body.body)
    if isinstance(stmts[0], cst.SimpleStatementLine) and isinstance(stmts[0].body[0], cst.Expr) \
            and isinstance(stmts[0].body[0].value, (cst.SimpleString, cst.ConcatenatedString)):
        stmts = stmts[1:]  # the docstring stays first
    if not stmts:
        return None
    step = idx.module.default_indent
    saved = []
    if "numpy" in alias:
        saved.append((_free_name(idx, helper, ["np_state", "bnlint_np_state"]), f"{alias['numpy']}.random.get_state()",
                      f"{alias['numpy']}.random.set_state"))
    if "random" in alias:
        saved.append((_free_name(idx, helper, ["py_state", "bnlint_py_state"]), f"{alias['random']}.getstate()",
                      f"{alias['random']}.setstate"))

    def edits() -> List[Edit]:
        first, last = idx.start(stmts[0])[0], idx.end(stmts[-1])[0]
        indent = idx.indent_of(first)
        head, depth = [], 0
        if saved:
            head += [f"{indent}{name} = {get}\n" for name, get, _ in saved] + [f"{indent}try:\n"]
            depth += 1
        if "torch" in alias:
            head.append(f"{indent}{step * depth}with {alias['torch']}.random.fork_rng():\n")
            depth += 1
        lines = []
        for n in range(first, last + 1):
            line = idx.line_text(n).rstrip("\r")
            lines.append((step * depth + line if line.strip() else line) + "\n")
        tail = []
        if saved:
            tail = [f"{indent}finally:\n"] + [f"{indent}{step}{put}({name})\n" for name, _, put in saved]
        return [Edit(idx.path, (first, 0), (last + 1, 0), "".join(head + lines + tail))]

    how = []
    if "torch" in alias:
        how.append("under torch.random.fork_rng()")
    if saved:
        how.append(f"with the {' and '.join(lib for lib in ('numpy', 'random') if lib in alias)} RNG "
                   f"state{'s' if len(saved) > 1 else ''} saved and restored")
    return _safe_fix(ctx, f"run {helper.name.value}() {' and '.join(how)}: it draws what it drew before and "
                          f"no longer resets the global random order of each epoch", edits)


def _spans_lines(module: cst.Module, string: cst.BaseExpression) -> bool:
    """Does a string literal's text (without its own parentheses: the span its
    position covers) run over more than one line?"""
    code = module.code_for_node(string.with_changes(lpar=(), rpar=()))
    return "\n" in code or "\r" in code


def _walk(node: cst.CSTNode):
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        stack.extend(sub_nodes(cur))


def _contains(outer: cst.CSTNode, node: cst.CSTNode) -> bool:
    stack = [outer]
    while stack:
        cur = stack.pop()
        if cur is node:
            return True
        stack.extend(sub_nodes(cur))
    return False


def planned(plan, *args) -> Optional[Fix]:
    """Run a fix planner; a planner that cannot follow the code gives no fix, never a crash."""
    try:
        return plan(*args)
    except (KeyError, AttributeError, IndexError, TypeError, ValueError):
        return None
