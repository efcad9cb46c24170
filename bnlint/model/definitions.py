"""The definitions-only view of a module's top level: which statements may run when
bnlint imports a user's file to build its models (pure AST work, nothing is executed).

Kept: imports, classes, functions, docstrings, constant-like assignments, loops that
only name variants of definitions (``for d in (20, 32): setattr(sys.modules[__name__],
f"resnet{d}", partial(ResNet, d))``), and ``if``/``try`` blocks around them. A top-level assignment whose value calls something
(``config = ConfigNode(width=8)``, ``to_2tuple = _ntuple(2)``, ``opt =
parser.parse_args()``) is kept only when a kept definition reads the name it binds
(or another project module imports it), and never when the call does I/O, training,
downloads or process control (``DENIED_NAMES``, ``DENIED_ROOTS``; also a call of a
function of the same file that does). Statements that mutate a kept object
(``parser.add_argument(...)``, ``cfg.MODEL.WIDTH = 8``, ``sys.path.insert(...)``) are
kept with it. Everything else (training loops, ``print``, file writes, ``if __name__
== "__main__":``) is left out.

A kept statement never reads a name whose latest binding was left out: ``X, Y =
X[idx], Y[idx]`` after a dropped ``X = np.load(...)`` is dropped too, and so is every
statement that reads what it binds, so the view never half-runs. Line numbers are the
original ones, so tracebacks and stack traces point at the real source.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple

from bnlint.model.callpolicy import DENIED_NAMES, DENIED_ROOTS, CallPolicy
from bnlint.model.toplevel_names import dotted, reader, reads, root_name, stored_names

__all__ = ["DENIED_NAMES", "DENIED_ROOTS", "FilterResult", "LeftOut", "filter_definitions", "definitions_only"]

# Calls that are safe (and common) in a constant-like module-level assignment.
SAFE_CALLS = frozenset({
    "partial", "namedtuple", "NamedTuple", "TypeVar", "getLogger", "dict", "list", "tuple",
    "set", "frozenset", "OrderedDict", "defaultdict", "field", "getattr", "Enum", "IntEnum",
    "object", "str", "int", "float", "bool", "compile", "dataclass", "Path", "cast",
    "get_logger", "len", "range", "max", "min", "abs", "round", "sorted", "zip", "hasattr",
})

# Mutating methods a kept statement may call on a kept object (registries, argparse).
MUTATING_METHODS = frozenset({
    "add_argument", "add_argument_group", "add_mutually_exclusive_group", "set_defaults",
    "append", "extend", "insert", "update", "setdefault", "add", "register", "register_module",
    "freeze", "defrost",
})

# Top-level functions with these names train or evaluate: the globals they read are not
# needed to build a model, so reading them keeps no assignment (the functions stay).
_TRAINING_FUNCTION_PREFIXES = ("train", "test", "val", "eval", "main", "run", "fit", "predict", "infer")
_TRAINING_FUNCTION_WORDS = ("epoch", "checkpoint")


@dataclass(frozen=True)
class LeftOut:
    """A statement the view leaves out, and why (for the worker's notes)."""

    line: int
    why: str


@dataclass(frozen=True)
class FilterResult:
    module: ast.Module
    kept_names: FrozenSet[str]  # names some kept statement binds
    left_out_names: FrozenSet[str]  # names only left-out statements bind
    kept_leaves: Tuple[Tuple[int, int, bool], ...]  # (first line, last line, may be dropped on error)
    imports: Tuple[Tuple[str, int, Tuple[str, ...]], ...]  # kept imports: (module, level, names; "*")
    module_attribute_reads: Tuple[Tuple[str, str], ...]  # (imported module, attribute) read anywhere
    left_out: Tuple[LeftOut, ...]

    def droppable_leaf_at(self, line: int) -> Optional[int]:
        """The first line of the kept statement that contains ``line``, if that
        statement may be left out when it raises (not an import or a definition)."""
        for first, last, droppable in self.kept_leaves:
            if first <= line <= last:
                return first if droppable else None
        return None


# ---------------------------------------------------------------- classification

def _is_constantish(node: ast.AST) -> bool:
    if isinstance(node, (ast.Constant, ast.Name, ast.Lambda)):
        return True
    if isinstance(node, ast.Attribute):
        return _is_constantish(node.value)
    if isinstance(node, ast.Subscript):
        return _is_constantish(node.value) and _is_constantish(node.slice)
    if isinstance(node, ast.Slice):
        return all(_is_constantish(p) for p in (node.lower, node.upper, node.step) if p is not None)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_is_constantish(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(_is_constantish(k) for k in node.keys if k is not None) and all(
            _is_constantish(v) for v in node.values
        )
    if isinstance(node, ast.BinOp):
        return _is_constantish(node.left) and _is_constantish(node.right)
    if isinstance(node, ast.UnaryOp):
        return _is_constantish(node.operand)
    if isinstance(node, ast.BoolOp):
        return all(_is_constantish(v) for v in node.values)
    if isinstance(node, ast.Compare):
        return _is_constantish(node.left) and all(_is_constantish(c) for c in node.comparators)
    if isinstance(node, ast.IfExp):
        return all(_is_constantish(p) for p in (node.test, node.body, node.orelse))
    if isinstance(node, ast.Starred):
        return _is_constantish(node.value)
    if isinstance(node, ast.JoinedStr):
        return all(_is_constantish(v) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return _is_constantish(node.value)
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        return (
            name in SAFE_CALLS
            and all(_is_constantish(a) for a in node.args)
            and all(_is_constantish(k.value) for k in node.keywords)
        )
    return False


def _is_main_guard(test: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(test))


# Kinds of top-level statements:
_DEF = "definition"      # always kept (unless it reads a left-out name)
_CONST = "constant"      # constant-like assignment: kept likewise
_CALL = "computed"       # assignment from a call: kept when its names are needed
_MUTATE = "mutation"     # changes a kept object: kept when that object is kept and needed
_SYSPATH = "sys.path"    # sys.path.insert/append: kept (imports after it depend on it)
_REGISTER = "registration"  # a loop that only names variants of definitions: kept
_CODE = "code"           # left out

_ALWAYS = (_DEF, _CONST, _REGISTER)  # kept unless they read a left-out name


@dataclass
class _Leaf:
    node: ast.stmt
    kind: str
    binds: Set[str]
    star: bool
    mutates: Optional[str]
    reads_now: Set[str]
    demand: Set[str]  # names it needs when run or called later
    denied: Optional[str]
    attributes: Set[Tuple[str, str]]


def _is_module_itself(node: ast.AST) -> bool:
    """``sys.modules[__name__]``."""
    return (isinstance(node, ast.Subscript) and dotted(node.value) == "sys.modules"
            and isinstance(node.slice, ast.Name) and node.slice.id == "__name__")


def _registers(body: Sequence[ast.stmt]) -> Optional[bool]:
    """Whether ``body`` (of a top-level loop) only names variants of the module's
    definitions: nested loops over constant-like values, ``if`` on them, plain-name
    assignments of constant-like values (``partial(_resnet, layers=layers)`` is one),
    and ``setattr(<the module>, name, value)`` / ``globals()[name] = value``. None when
    it does anything else; else whether it sets a module attribute at all."""
    sets = False
    for stmt in body:
        if isinstance(stmt, ast.For):
            inner = _registers(stmt.body) if (not stmt.orelse and _plain_target(stmt.target)
                                              and _is_constantish(stmt.iter)) else None
        elif isinstance(stmt, ast.If):
            parts = [_registers(stmt.body), _registers(stmt.orelse)] if _is_constantish(stmt.test) else [None]
            inner = None if None in parts else any(parts)
        elif isinstance(stmt, ast.Assign) and _is_constantish(stmt.value):
            target = stmt.targets[0] if len(stmt.targets) == 1 else None
            if all(_plain_target(t) for t in stmt.targets):
                inner = False
            elif (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Call)
                  and dotted(target.value.func) == "globals" and not target.value.args):
                inner = True
            else:
                inner = None
        elif (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
              and dotted(stmt.value.func) == "setattr" and len(stmt.value.args) == 3 and not stmt.value.keywords):
            module, *rest = stmt.value.args
            inner = True if ((isinstance(module, ast.Name) or _is_module_itself(module))
                             and all(_is_constantish(a) for a in rest)) else None
        else:
            inner = None
        if inner is None:
            return None
        sets = sets or inner
    return sets


def _classify(stmt: ast.stmt, modules: FrozenSet[str] = frozenset()) -> Tuple[str, Optional[str]]:
    """(kind, mutated base name)."""
    if isinstance(stmt, ast.For):
        # ``for depth in (20, 32): setattr(sys.modules[__name__], f"resnet{depth}",
        # partial(ResNet, depth))``: the factories the module exports.
        return (_REGISTER if _registers([stmt]) else _CODE), None
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Pass)):
        return _DEF, None
    if isinstance(stmt, ast.Expr):
        if isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            return _DEF, None
        call = stmt.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
            if dotted(call.func) in ("sys.path.insert", "sys.path.append", "sys.path.extend"):
                return _SYSPATH, None
            base = root_name(call.func.value)
            if base is not None and call.func.attr in MUTATING_METHODS:
                return _MUTATE, base
        return _CODE, None
    if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        value = stmt.value
        if value is None:
            return _DEF, None  # x: int
        plain = all(_plain_target(t) for t in targets)
        if not plain:
            bases = {root_name(t) for t in targets}
            if len(bases) != 1 or None in bases:
                return _CODE, None
            base = bases.pop()
            if base in modules and not _is_constantish(value):
                return _CODE, None  # sys.stdout = Logger(...): only constants go into modules
            return _MUTATE, base
        if _is_constantish(value):
            return _CONST, None
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr in MUTATING_METHODS:
            return _CALL, root_name(value.func.value)  # group = parser.add_argument_group(...)
        return _CALL, None
    return _CODE, None


def _plain_target(target: ast.AST) -> bool:
    if isinstance(target, ast.Name):
        return True
    if isinstance(target, ast.Starred):
        return _plain_target(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(_plain_target(e) for e in target.elts)
    return False


def _is_training_function(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    name = stmt.name.lower().lstrip("_")
    return name.startswith(_TRAINING_FUNCTION_PREFIXES) or any(w in name for w in _TRAINING_FUNCTION_WORDS)


def _leaves(body: Sequence[ast.stmt], guard_reads: Set[str], guard_denied: Optional[str],
            policy: CallPolicy, future: bool, out: List[_Leaf]) -> None:
    for stmt in body:
        if isinstance(stmt, ast.If):
            main = _is_main_guard(stmt.test)
            test_reads = guard_reads | reads(stmt.test, False, future)
            denied = guard_denied or ("it is the script's main block" if main else policy.statement_denied(stmt.test))
            _leaves(stmt.body, test_reads, denied, policy, future, out)
            _leaves(stmt.orelse, test_reads, denied, policy, future, out)
            continue
        if isinstance(stmt, ast.Try):
            for part in (stmt.body, *[h.body for h in stmt.handlers], stmt.orelse, stmt.finalbody):
                _leaves(part, guard_reads, guard_denied, policy, future, out)
            continue
        kind, base = _classify(stmt, policy.module_names)
        star = isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names)
        if kind == _DEF:
            denied = guard_denied
        else:
            denied = guard_denied or policy.statement_denied(stmt)
        deep = reader(stmt, True, future)
        demand = set() if _is_training_function(stmt) else deep.names
        out.append(_Leaf(
            node=stmt, kind=kind, binds=stored_names([stmt]), star=star, mutates=base,
            reads_now=guard_reads | reads(stmt, False, future), demand=guard_reads | demand, denied=denied,
            attributes=deep.attributes,
        ))


# ---------------------------------------------------------------- the filter

def filter_definitions(tree: ast.Module, needed: Iterable[str] = (), forced_out: Iterable[int] = ()) -> FilterResult:
    """The definitions-only view of ``tree``.

    ``needed``: names other modules import from this one (``"*"``: every public name).
    ``forced_out``: first lines of statements to leave out (they raised at import).
    """
    future = any(isinstance(s, ast.ImportFrom) and s.module == "__future__"
                 and any(a.name == "annotations" for a in s.names) for s in tree.body)
    policy = CallPolicy(tree)
    leaves: List[_Leaf] = []
    _leaves(tree.body, set(), None, policy, future, leaves)
    external = set(needed)
    everything = "*" in external
    forced = set(forced_out)
    why_out: Dict[int, str] = {}
    out_ids: Set[int] = set()
    for i, leaf in enumerate(leaves):
        if leaf.node.lineno in forced:
            out_ids.add(i)
            why_out[i] = "it raised when imported"
        elif leaf.kind == _CODE:
            out_ids.add(i)
            why_out[i] = leaf.denied or "it is top-level code, not a definition"
        elif leaf.denied:
            out_ids.add(i)
            why_out[i] = leaf.denied

    while True:
        included = {i for i, l in enumerate(leaves) if l.kind in _ALWAYS and i not in out_ids}
        demand: Set[str] = set(external)
        if everything:
            demand |= {b for leaf in leaves for b in leaf.binds if not b.startswith("_")}
        for i in included:
            demand |= leaves[i].demand
        grew = True
        while grew:
            grew = False
            for i, leaf in enumerate(leaves):
                if i in included or i in out_ids or leaf.kind in _ALWAYS:
                    continue
                wanted = (
                    leaf.kind == _SYSPATH
                    or bool(leaf.binds & demand)
                    or (everything and any(not b.startswith("_") for b in leaf.binds))
                    or (leaf.mutates is not None and leaf.mutates in demand)
                )
                if wanted:
                    included.add(i)
                    demand |= leaf.demand
                    if leaf.mutates is not None:
                        demand |= leaf.binds  # what it binds is part of the object it changes
                    grew = True
        # Forward pass: a statement runs only if every name it reads at once was bound
        # by a statement that runs (or is never bound here: builtins, star imports).
        status: Dict[str, bool] = {}
        invalid: Set[int] = set()
        for i, leaf in enumerate(leaves):
            if i in included:
                missing = sorted(n for n in leaf.reads_now if status.get(n) is False)
                if missing:
                    invalid.add(i)
                    why_out[i] = f"it reads {missing[0]!r}, which was left out"
                else:
                    for b in leaf.binds:
                        status[b] = True
                    continue
            for b in leaf.binds:
                status[b] = False
        if not invalid:
            break
        out_ids |= invalid

    kept_ids = included
    kept_nodes = {id(leaves[i].node) for i in kept_ids}
    body = _rebuild(tree.body, kept_nodes)
    module = ast.Module(body=body, type_ignores=[])  # new nodes copy their locations

    kept_names: Set[str] = set()
    left_names: Set[str] = set()
    for i, leaf in enumerate(leaves):
        (kept_names if i in kept_ids else left_names).update(leaf.binds)
    imports = []
    for i in sorted(kept_ids):
        node = leaves[i].node
        if isinstance(node, ast.ImportFrom):
            imports.append((node.module or "", node.level, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            for a in node.names:
                imports.append((a.name, 0, ()))
    left_out = tuple(
        LeftOut(leaves[i].node.lineno, why_out.get(i, "nothing the definitions use reads what it binds"))
        for i in range(len(leaves)) if i not in kept_ids
    )
    leaves_out = tuple(
        (leaves[i].node.lineno, getattr(leaves[i].node, "end_lineno", None) or leaves[i].node.lineno,
         leaves[i].kind != _DEF) for i in sorted(kept_ids)
    )
    return FilterResult(
        module=module,
        kept_names=frozenset(kept_names),
        left_out_names=frozenset(left_names - kept_names),
        kept_leaves=leaves_out,
        imports=tuple(imports),
        module_attribute_reads=tuple(sorted(
            (policy.aliases[name], attr) for leaf in leaves for name, attr in leaf.attributes if name in policy.aliases
        )),
        left_out=left_out,
    )


def _rebuild(body: Sequence[ast.stmt], kept: Set[int]) -> List[ast.stmt]:
    out: List[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.If):
            inner, orelse = _rebuild(stmt.body, kept), _rebuild(stmt.orelse, kept)
            if inner or orelse:
                new = ast.If(test=stmt.test, body=inner or [_pass(stmt)], orelse=orelse)
                out.append(ast.copy_location(new, stmt))
        elif isinstance(stmt, ast.Try):
            parts = [_rebuild(stmt.body, kept)] + [_rebuild(h.body, kept) for h in stmt.handlers]
            orelse, final = _rebuild(stmt.orelse, kept), _rebuild(stmt.finalbody, kept)
            if parts[0] or orelse or final:
                handlers = [ast.copy_location(ast.ExceptHandler(type=h.type, name=h.name, body=b or [_pass(h)]), h)
                            for h, b in zip(stmt.handlers, parts[1:])]
                new = ast.Try(body=parts[0] or [_pass(stmt)], handlers=handlers, orelse=orelse, finalbody=final)
                if not handlers and not final:
                    new.finalbody = [_pass(stmt)]
                out.append(ast.copy_location(new, stmt))
        elif id(stmt) in kept:
            out.append(stmt)
    return out


def _pass(at: ast.AST) -> ast.Pass:
    return ast.copy_location(ast.Pass(), at)


def definitions_only(tree: ast.Module) -> ast.Module:
    """The module with only definitions left at its top level (see module docstring)."""
    return filter_definitions(tree).module
