"""The statement walk: scopes, branches, loops, and calls followed into helpers.

The walk runs every scanned file's module body (dependencies first, as imports run
them), then the functions and methods that need a walk of their own
(``bnlint.script.roots``: decorated, used as values, not always reached by a followed
call). Calls that resolve to a project function (``bnlint.script.resolve``) are
followed by walking the callee with its parameters bound to the caller's values (up to
``MAX_DEPTH`` frames), so loops and events inside a helper carry the caller's loop
stack. Both arms of an ``if`` are walked from the same state and a name bound
differently in each becomes a union of both values, each tagged with its branch
condition (``bnlint.script.facts.union``). Expressions are evaluated in
``bnlint.script.calls`` and ``bnlint.script.dispatch``.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from bnlint.script import roots as roots_mod
from bnlint.script.dispatch import CallDispatch
from bnlint.script.facts import Cond, Loop, ScriptFacts, TrainUse, Value, options, union
from bnlint.script.modes import EVAL, ModeEvents, ModeTracker
from bnlint.script.names import dotted, last_part
from bnlint.script.project import ClassInfo, FileInfo, Project, calls_in, iter_nodes

__all__ = ["Frame", "Walker", "analyse_project", "MAX_DEPTH"]

MAX_DEPTH = 5
_NO_GRAD = ("no_grad", "inference_mode")
# Nodes that may bind a name when walked (assignments, loops, with-as, nested defs).
_BINDING = {cst.Assign, cst.AugAssign, cst.AnnAssign, cst.NamedExpr, cst.For, cst.AsName, cst.FunctionDef,
            cst.Del, cst.Import, cst.ImportFrom, cst.ClassDef}


class Frame:
    __slots__ = ("file", "env", "globals", "self_val", "cls", "depth", "stack", "returns",
                 "yield_trains", "no_grad", "conds", "outer_no_grad")

    def __init__(self, file: FileInfo, env: Dict, globals_: Dict, *, self_val=None, cls=None,
                 depth: int = 0, stack: Tuple = (), yield_trains: bool = False, no_grad: bool = False,
                 conds: Tuple[Cond, ...] = (), outer_no_grad: bool = False):
        self.file = file
        self.env = env
        self.globals = globals_
        self.self_val = self_val
        self.cls = cls
        self.depth = depth
        self.stack = stack
        self.returns: List = []
        self.yield_trains = yield_trains
        self.no_grad = no_grad
        self.conds = conds  # the branch conditions this code runs under
        self.outer_no_grad = outer_no_grad  # a caller runs this under no_grad/inference_mode

    def lookup(self, name: str):
        if name in self.env:
            return self.env[name]
        return self.globals.get(name)


def _has_yield(node: cst.CSTNode) -> bool:
    return any(isinstance(n, cst.Yield) for n in iter_nodes(node, skip_defs=True))


def _is_no_grad(expr: cst.BaseExpression) -> bool:
    target = expr.func if isinstance(expr, cst.Call) else expr
    return last_part(dotted(target)) in _NO_GRAD


def _const_test(test: cst.BaseExpression, consts) -> Optional[bool]:
    """``train`` / ``not train`` where ``train`` is a known constant, else None."""
    if not consts:
        return None
    negate = False
    while isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        test, negate = test.expression, not negate
    if isinstance(test, cst.Name) and test.value in consts:
        return bool(consts[test.value]) != negate
    return None


_PY_CONSTANTS = {"True": True, "False": False, "None": None}


def _const_args(fn: cst.FunctionDef, call: cst.Call, consts) -> dict:
    """Parameters of ``fn`` that ``call`` binds to a constant (a literal, or a name the
    caller knows to be constant), defaults included."""
    params = list(fn.params.posonly_params) + list(fn.params.params)
    if params and params[0].name.value in ("self", "cls"):
        params = params[1:]
    out = {}
    for p in params + list(fn.params.kwonly_params):
        if isinstance(p.default, cst.Name) and p.default.value in _PY_CONSTANTS:
            out[p.name.value] = _PY_CONSTANTS[p.default.value]
    index = 0
    for arg in call.args:
        if arg.star:
            return {}
        name = arg.keyword.value if arg.keyword is not None else (
            params[index].name.value if index < len(params) else None)
        if arg.keyword is None:
            index += 1
        if name is None:
            continue
        value = arg.value
        if isinstance(value, cst.Name) and value.value in _PY_CONSTANTS:
            out[name] = _PY_CONSTANTS[value.value]
        elif isinstance(value, cst.Name) and consts and value.value in consts:
            out[name] = consts[value.value]
        else:
            out.pop(name, None)
    return out


def _merge_states(target: Dict, states: List[Tuple[Dict, frozenset]], file, loops, origin: str) -> None:
    """Replace ``target``'s bindings with what either state may hold (in place, since
    module frames share their dict with the module's globals)."""
    names: List[str] = []
    seen = set()
    for state, _ in states:
        for name in state:
            if name not in seen:
                seen.add(name)
                names.append(name)
    merged = {}
    for name in names:
        # A name unbound on some path cannot be used after the branch on that path.
        bound = [(state[name], conds) for state, conds in states if name in state]
        first = bound[0][0]
        if all(b is first for b, _ in bound):
            merged[name] = first
            continue
        values = [(b[0] if b is not None else None, conds) for b, conds in bound]
        deps = frozenset().union(*[b[1] for b, _ in bound if b is not None])
        if all(v is values[0][0] for v, _ in values):
            merged[name] = (values[0][0], deps)
        else:
            merged[name] = (union(values, file, loops, origin), deps)
    target.clear()
    target.update(merged)


class Walker(CallDispatch, ModeEvents):
    max_depth = MAX_DEPTH

    def __init__(self, project: Project) -> None:
        self.project = project
        self.facts = ScriptFacts()
        self.module_envs: Dict[int, Dict] = {}
        self._order = itertools.count()
        self._trains_memo: Dict[int, bool] = {}
        self._instances: Dict[int, Value] = {}
        self._consumed_gens: set = set()
        self.walked: Set[int] = set()  # ids of functions walked (with context or as roots)
        self.rooted: Set[int] = set()  # ids of functions walked as roots
        self.resolved: Dict[int, Set[int]] = {}  # id(callee expression) -> ids of functions walked for it
        self.modes = ModeTracker()  # train/eval mode of the models, along the walk (BNL105)

    # -- entry points --------------------------------------------------------------
    def run(self) -> ScriptFacts:
        files = sorted(self.project.files, key=lambda f: f.abs_path)
        for f in self._import_order(files):
            env = self.module_envs.setdefault(id(f), {})
            self.modes.reset()
            self.walk_body(f.module.body, Frame(f, env, env), ())
        cands = roots_mod.candidates(files)
        uses = roots_mod.Uses(files)
        for cand in cands:  # a framework or launcher calls these
            if roots_mod.is_entry_decorated(cand.fn) or self._used_as_value(cand, uses):
                self.walk_root(cand)
        for cand in cands:  # nothing followed reaches these
            if id(cand.fn) not in self.walked:
                self.walk_root(cand)
        for cand in cands:  # some use of these was not followed
            if id(cand.fn) not in self.rooted and self._has_unfollowed_call(cand, uses):
                self.walk_root(cand)
        return self.facts

    def _import_order(self, files: List[FileInfo]) -> List[FileInfo]:
        """Scanned files with the ones they import first (as Python runs module bodies)."""
        layout = self.project.layout
        if layout is None:
            return files
        by_path = {f.abs_path: f for f in files}
        out: List[FileInfo] = []
        done: Set[str] = set()
        for f in files:
            stack = [(f.abs_path, False)]
            while stack:
                path, expanded = stack.pop()
                if expanded:
                    if path in by_path and by_path[path] not in out:
                        out.append(by_path[path])
                    continue
                if path in done:
                    continue
                done.add(path)
                stack.append((path, True))
                for dep in reversed(layout.imports_of(path)):
                    if dep not in done:
                        stack.append((dep, False))
        return out

    def _around(self, file: FileInfo) -> Set[str]:
        """Files that can name ``file``'s definitions (its importers, what they import)."""
        memo = self.__dict__.setdefault("_around_memo", {})
        hit = memo.get(file.abs_path)
        if hit is None:
            layout = self.project.layout
            hit = set(layout.context([file.abs_path])) if layout is not None else {f.abs_path for f in self.project.files}
            hit.add(file.abs_path)
            memo[file.abs_path] = hit
        return hit

    def _used_as_value(self, cand, uses) -> bool:
        return any(not is_callee for _, is_callee in
                   roots_mod.uses_of(cand, uses, self.project.resolver, self._around(cand.file)))

    def _has_unfollowed_call(self, cand, uses) -> bool:
        key = id(cand.fn)
        for node, is_callee in roots_mod.uses_of(cand, uses, self.project.resolver, self._around(cand.file)):
            if not is_callee or key not in self.resolved.get(id(node), ()):
                return True
        return False

    def walk_root(self, cand) -> None:
        self.rooted.add(id(cand.fn))
        env = self.module_envs.setdefault(id(cand.file), {})
        if cand.cls is None:
            fr = Frame(cand.file, {}, env, depth=1, stack=(cand.fn,))
        else:
            fr = Frame(cand.file, {}, env, self_val=self.instance_of(cand.cls), cls=cand.cls, depth=1,
                       stack=(cand.fn,))
        self.modes.reset()
        self.walk_function(cand.fn, fr, ())

    def next_order(self) -> int:
        return next(self._order)

    # -- functions -------------------------------------------------------------------
    def walk_function(self, fn: cst.FunctionDef, fr: Frame, loops: Tuple[Loop, ...]):
        self.walked.add(id(fn))
        for dec in fn.decorators:
            if _is_no_grad(dec.decorator):
                fr.no_grad = True
        if fr.self_val is not None:
            params = list(fn.params.params)
            if params and not any(last_part(dotted(d.decorator)) == "staticmethod" for d in fn.decorators):
                fr.env[params[0].name.value] = (fr.self_val, frozenset())
        self.walk_body(fn.body.body if isinstance(fn.body, cst.IndentedBlock) else [fn.body], fr, loops)
        return fr.returns

    def instance_of(self, cls: ClassInfo) -> Value:
        """The instance a root-walked method sees as ``self`` (``__init__`` walked once)."""
        key = id(cls)
        if key not in self._instances:
            inst = Value("instance", cls.node, cls.file, (), cls=cls, fields={})
            self._instances[key] = inst
            hit = self.project.method(cls, "__init__")
            if hit is not None:
                owner, init = hit
                env = self.module_envs.get(id(owner.file), {})
                fr = Frame(owner.file, {}, env, self_val=inst, cls=owner, depth=1, stack=(init,))
                self.walk_function(init, fr, ())
        return self._instances[key]

    def entry_value(self, value: Optional[Value], fr: Frame) -> None:
        """A local function handed to a launcher (``mp.spawn(worker)``,
        ``Process(target=worker)``): walk it as an entry point of its own."""
        for opt, _ in options(value):
            if opt is None or opt.kind != "func":
                continue
            fn = opt.get("fn")
            if not isinstance(fn, cst.FunctionDef) or fn in fr.stack or fr.depth >= self.max_depth:
                continue
            callee = Frame(opt.file, {}, fr.globals if opt.file is fr.file else self.module_envs.get(id(opt.file), {}),
                           depth=fr.depth + 1, stack=fr.stack + (fn,))
            callee.env.update({k: v for k, v in fr.env.items()})  # a closure sees its scope
            self.walk_function(fn, callee, ())

    # -- statements -------------------------------------------------------------------
    def walk_body(self, body, fr: Frame, loops: Tuple[Loop, ...]) -> None:
        for stmt in body:
            self.walk_stmt(stmt, fr, loops)

    def walk_block(self, block, fr: Frame, loops) -> None:
        if block is None:
            return
        if isinstance(block, cst.IndentedBlock):
            self.walk_body(block.body, fr, loops)
        elif isinstance(block, cst.SimpleStatementSuite):
            for small in block.body:
                self.walk_small(small, fr, loops)
        else:
            self.walk_stmt(block, fr, loops)

    def _fields(self, fr: Frame) -> Optional[Dict]:
        if fr.self_val is None:
            return None
        return fr.self_val.attrs.setdefault("fields", {})

    def _binds(self, block) -> bool:
        """Can walking ``block`` rebind a name or a field? (memoised per block)"""
        if block is None:
            return False
        memo = self.__dict__.setdefault("_binds_memo", {})
        hit = memo.get(id(block))
        if hit is None:
            hit = memo[id(block)] = any(type(n) in _BINDING for n in iter_nodes(block, skip_defs=True))
        return hit

    def walk_branches(self, fr: Frame, loops, arms, origin: str = "branch") -> None:
        """Walk alternative arms ``[(block, conds), ...]`` from the same state and merge
        the names (and ``self`` fields) they bind."""
        modes_before = self.modes.snapshot()
        mode_states = []
        if not any(self._binds(block) for block, _ in arms):
            conds_before = fr.conds
            for block, conds in arms:
                self.modes.restore(modes_before)
                if block is not None:
                    fr.conds = conds_before + tuple(conds)
                    self.walk_block(block, fr, loops)
                mode_states.append(self.modes.snapshot())
            fr.conds = conds_before
            self.modes.merge(mode_states)
            return
        env_before = dict(fr.env)
        fields = self._fields(fr)
        fields_before = dict(fields) if fields is not None else None
        conds_before = fr.conds
        env_states, field_states = [], []
        for block, conds in arms:
            self.modes.restore(modes_before)
            fr.env.clear()
            fr.env.update(env_before)
            if fields is not None:
                fields.clear()
                fields.update(fields_before)
            fr.conds = conds_before + tuple(conds)
            if block is not None:
                self.walk_block(block, fr, loops)
            env_states.append((dict(fr.env), frozenset(conds)))
            mode_states.append(self.modes.snapshot())
            if fields is not None:
                field_states.append((dict(fields), frozenset(conds)))
        fr.conds = conds_before
        self.modes.merge(mode_states)
        _merge_states(fr.env, env_states, fr.file, loops, origin)
        if fields is not None:
            _merge_states(fields, field_states, fr.file, loops, origin)

    def walk_if(self, stmt: cst.If, fr: Frame, loops) -> None:
        test = self.eval(stmt.test, fr, loops)[0]
        orelse = stmt.orelse
        if orelse is None:
            other = None
        elif isinstance(orelse, cst.If):
            other = orelse  # elif: walked as a statement in the else arm
        else:
            other = orelse.body
        if test is not None and test.kind == "const" and "py" in test.attrs:
            # A test known in this call (a helper called with train=True): one arm runs.
            self.walk_block(stmt.body if test.get("py") else other, fr, loops)
            return
        yes, no = Cond(stmt.test, True, fr.file), Cond(stmt.test, False, fr.file)
        self.walk_branches(fr, loops, [(stmt.body, (yes,)), (other, (no,))])

    def walk_stmt(self, stmt, fr: Frame, loops) -> None:
        if type(stmt) is cst.SimpleStatementLine:  # the commonest; by exact type (see eval)
            for small in stmt.body:
                self.walk_small(small, fr, loops)
        elif isinstance(stmt, cst.For):
            self.walk_for(stmt, fr, loops)
        elif isinstance(stmt, cst.While):
            self.eval(stmt.test, fr, loops)
            loop = Loop(stmt, fr.file, self.loop_trains(stmt.body, fr))
            modes_before = self.enter_loop(loop)
            self.walk_block(stmt.body, fr, loops + (loop,))
            self.modes.merge([modes_before, self.modes.snapshot()])  # the body may not run
            self.walk_block(stmt.orelse.body if stmt.orelse else None, fr, loops)
        elif isinstance(stmt, cst.If):
            self.walk_if(stmt, fr, loops)
        elif isinstance(stmt, cst.With):
            saved = fr.no_grad
            switched = []
            for item in stmt.items:
                if _is_no_grad(item.item):
                    fr.no_grad = True
                value = self.eval(item.item, fr, loops)
                switched.extend(self.enter_mode_context(value[0]))
                if item.asname is not None:
                    self.bind(item.asname.name, value, fr, loops)
            self.walk_block(stmt.body, fr, loops)
            for model, tokens in reversed(switched):  # the context manager restores the mode
                self.modes.state[id(model)] = tokens
            fr.no_grad = saved
        elif isinstance(stmt, cst.Try) or type(stmt).__name__ == "TryStar":
            self.walk_block(stmt.body, fr, loops)
            if stmt.handlers:
                # After the try statement, the body ran to its end or a handler ran.
                self.walk_branches(fr, loops, [(None, ())] + [(h.body, ()) for h in stmt.handlers])
            for extra in (stmt.orelse, stmt.finalbody):
                if extra is not None:
                    self.walk_block(extra.body, fr, loops)
        elif isinstance(stmt, cst.Match):
            self.eval(stmt.subject, fr, loops)
            self.walk_branches(fr, loops, [(case.body, ()) for case in stmt.cases]
                               + [(None, ())])
        elif isinstance(stmt, cst.FunctionDef):
            if fr.env is not fr.globals:  # a nested def: callable by name in this scope
                fr.env[stmt.name.value] = (Value("func", stmt, fr.file, loops, fn=stmt), frozenset())

    def walk_small(self, small, fr: Frame, loops) -> None:
        if isinstance(small, cst.Assign):
            value = self.eval(small.value, fr, loops)
            value = self.self_dependence(small.value, [t.target for t in small.targets], value, loops)
            for target in small.targets:
                self.bind(target.target, value, fr, loops)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                value = self.eval(small.value, fr, loops)
                self.bind(small.target, value, fr, loops)
        elif isinstance(small, cst.AugAssign):
            val, deps = self.eval(small.value, fr, loops)
            old = self.eval(small.target, fr, loops)
            deps = deps | old[1] | frozenset(l.id for l in loops)
            if old[0] is not None and old[0].kind == "dict" and isinstance(small.operator, cst.BitOrAssign):
                self.dict_update(old[0], [(None, (val, deps))], fr)
                return
            self.bind(small.target, (old[0] if old[0] is not None else val, deps), fr, loops)
        elif isinstance(small, cst.Expr):
            self.eval(small.value, fr, loops)
        elif isinstance(small, cst.Return):
            if small.value is not None:
                fr.returns.append(self.eval(small.value, fr, loops))
        elif isinstance(small, cst.Del):
            self.delete(small.target, fr, loops)

    def self_dependence(self, rhs, targets, value, loops):
        """``x = x + 1`` in a loop changes every iteration."""
        if not loops:
            return value
        names = {dotted(t) for t in targets}
        used = {dotted(n) for n in iter_nodes(rhs) if isinstance(n, (cst.Name, cst.Attribute))}
        if names & used:
            return value[0], value[1] | frozenset(l.id for l in loops)
        return value

    def walk_for(self, stmt: cst.For, fr: Frame, loops) -> None:
        it, deps = self.eval(stmt.iter, fr, loops)
        trains = self.loop_trains(stmt.body, fr)
        loop = Loop(stmt, fr.file, trains, is_range=it is not None and it.kind == "range")
        loop.source = it
        inner = loops + (loop,)
        if trains and it is not None:
            self.consume(it, inner, loop, stmt.iter, fr)
        item = Value("item", stmt.iter, fr.file, loops, of=it, site=stmt.iter) if it is not None else None
        self.bind(stmt.target, (item, deps | frozenset([loop.id])), fr, loops)
        modes_before = self.enter_loop(loop)
        self.walk_block(stmt.body, fr, inner)
        self.modes.merge([modes_before, self.modes.snapshot()])  # the body may not run
        if stmt.orelse is not None:
            self.walk_block(stmt.orelse.body, fr, loops)

    # -- train/eval modes (BNL105) ------------------------------------------------------
    def enter_loop(self, loop: Loop):
        """The mode state before a loop's body; a training loop uses up earlier ``train()``
        calls (``bnlint.script.modes``)."""
        if loop.trains:
            self.modes.training_started()
        return self.modes.snapshot()

    def enter_mode_context(self, value: Optional[Value]):
        """``with evaluating(model):``: a context manager of the project (a generator
        function, or a class with ``__enter__``) that switches to evaluation. Returns the
        ``(model, tokens before)`` pairs to restore when the block ends."""
        out = []
        for opt, _ in options(value):
            if opt is None:
                continue
            if opt.kind == "gen":
                fn = opt.get("fn")
                if not self.switches_to_eval(fn):
                    continue
                models = [bound[0] for bound in opt.get("env", {}).values()
                          if bound and bound[0] is not None and bound[0].kind == "model"]
            elif opt.kind == "instance":
                hit = self.project.method(opt.get("cls"), "__enter__")
                if hit is None or not self.switches_to_eval(hit[1]):
                    continue
                models = [bound[0] for bound in opt.get("fields", {}).values()
                          if bound and bound[0] is not None and bound[0].kind == "model"]
            else:
                continue
            if not models:
                self.modes.maybe_any()
            for model in models:
                out.append((model, self.modes.of(model)))
                self.modes.set(model, EVAL)
        return out

    # -- training -----------------------------------------------------------------------
    def loop_trains(self, body, fr: Frame) -> bool:
        if fr.no_grad:
            return False
        if fr.yield_trains and _has_yield(body):
            return True
        consts = {name: bound[0].get("py") for name, bound in fr.env.items()
                  if bound[0] is not None and bound[0].kind == "const" and "py" in bound[0].attrs}
        return self.code_trains(body, fr, 0, consts)

    def code_trains(self, node, fr: Frame, depth: int, consts=None) -> bool:
        """Does ``node`` run a backward pass or an optimizer step (directly or in the
        project functions it calls)? ``consts`` are names known to hold a constant
        (``train=False``): an ``if train:`` arm that cannot run is left out."""
        block = node.body if isinstance(node, (cst.IndentedBlock, cst.SimpleStatementSuite)) else [node]
        for stmt in block:
            if isinstance(stmt, cst.If):
                if self.code_trains(stmt.test, fr, depth, consts):
                    return True
                known = _const_test(stmt.test, consts)
                orelse = stmt.orelse
                other = orelse if isinstance(orelse, cst.If) else (orelse.body if orelse is not None else None)
                if known is not False and self.code_trains(stmt.body, fr, depth, consts):
                    return True
                if known is not True and other is not None and self.code_trains(other, fr, depth, consts):
                    return True
                continue
            if isinstance(stmt, (cst.For, cst.While, cst.With, cst.Try)) or type(stmt).__name__ == "TryStar":
                parts = [stmt.body] + [getattr(stmt, name) for name in ("orelse", "finalbody") if getattr(stmt, name, None)]
                parts = [p.body if isinstance(p, (cst.Else, cst.Finally)) else p for p in parts]
                parts += [h.body for h in getattr(stmt, "handlers", ())]
                head = [getattr(stmt, name) for name in ("iter", "test") if getattr(stmt, name, None) is not None]
                head += [item.item for item in getattr(stmt, "items", ())]
                if any(self._calls_train(h, fr, depth) for h in head):
                    return True
                if any(self.code_trains(p, fr, depth, consts) for p in parts):
                    return True
                continue
            if self._calls_train(stmt, fr, depth, consts):
                return True
        return False

    def _calls_train(self, node, fr: Frame, depth: int, consts=None) -> bool:
        for call in calls_in(node):
            func = call.func
            if isinstance(func, cst.Attribute):
                attr = func.attr.value
                if attr in ("backward", "manual_backward"):
                    return True
                if attr == "step":
                    recv = (dotted(func.value) or "").lower()
                    if "opt" in recv or any("opt" in (dotted(a.value) or "").lower() for a in call.args):
                        return True
            if depth < MAX_DEPTH:
                target = self.static_callee(call, fr)
                if target is not None and self.function_trains(target, depth + 1, _const_args(target[0], call, consts)):
                    return True
        return False

    def function_trains(self, target, depth: int, consts=None) -> bool:
        fn, frame = target
        key = (id(fn), tuple(sorted(consts.items(), key=repr)) if consts else ())
        if key not in self._trains_memo:
            self._trains_memo[key] = False  # recursion guard
            body = fn.body if isinstance(fn.body, (cst.IndentedBlock, cst.SimpleStatementSuite)) else fn.body
            self._trains_memo[key] = self.code_trains(body, frame, depth, consts)
        return self._trains_memo[key]

    def static_callee(self, call: cst.Call, fr: Frame):
        """The function a call reaches, from names alone (for ``trains``). The answer
        for a function is the same from every caller, so it is memoised by function."""
        func = call.func
        if isinstance(func, cst.Name):
            bound = fr.env.get(func.value)
            if bound and bound[0] is not None and bound[0].kind == "func" and fr.env is not fr.globals:
                fn = bound[0].get("fn")
                return fn, Frame(fr.file, {k: v for k, v in fr.env.items() if v[0] is not None and v[0].kind == "func"},
                                 fr.globals, cls=fr.cls, depth=fr.depth)
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name):
            cls = None
            if func.value.value == "self" and fr.cls is not None:
                cls = fr.cls
            else:
                recv = fr.env.get(func.value.value)
                if recv is not None and recv[0] is not None and recv[0].kind == "instance":
                    cls = recv[0].get("cls")
            hit = self.project.method(cls, func.attr.value) if cls is not None else None
            if hit is not None:
                return hit[1], Frame(hit[0].file, {}, self.module_envs.get(id(hit[0].file), {}), cls=hit[0],
                                     depth=fr.depth)
        sym = self.project.resolver.resolve(fr.file, func)
        if sym is not None and sym.kind in ("function", "method"):
            return sym.node, Frame(sym.file, {}, self.module_envs.get(id(sym.file), {}),
                                   cls=sym.owner if sym.kind == "method" else None, depth=fr.depth)
        return None

    def consume(self, value: Value, loops, iter_loop: Loop, node, fr: Frame, alternative: bool = False) -> None:
        """A training loop draws batches from ``value``."""
        kind = value.kind
        if kind == "union":
            for opt, _ in value.get("options", ()):
                if opt is not None:
                    self.consume(opt, loops, iter_loop, node, fr, alternative=True)
        elif kind == "wrap":
            for inner in value.get("of", ()):
                if inner is not None:
                    self.consume(inner, loops, iter_loop, node, fr, alternative)
        elif kind == "iter" and value.get("of") is not None:
            self.consume(value.get("of"), loops, iter_loop, node, fr, alternative)
        elif kind == "gen":
            self.run_generator(value, loops, iter_loop)
        elif kind == "instance":
            hit = self.project.method(value.get("cls"), "__iter__")
            if hit is not None:
                gen = Value("gen", value.node, hit[0].file, value.loops, fn=hit[1], env={},
                            self_val=value, cls=hit[0])
                self.run_generator(gen, loops, iter_loop)
        else:
            self.facts.train_uses.append(
                TrainUse(value, loops, iter_loop, node, fr.file, self.next_order(), alternative)
            )

    def run_generator(self, gen: Value, loops, iter_loop: Loop) -> None:
        key = (id(gen), id(iter_loop))
        if key in self._consumed_gens or len(loops) > 12:
            return
        self._consumed_gens.add(key)
        fn = gen.get("fn")
        file = gen.file
        fr = Frame(file, dict(gen.get("env", {})), self.module_envs.get(id(file), {}),
                   self_val=gen.get("self_val"), cls=gen.get("cls"), depth=gen.get("depth", 1),
                   stack=(fn,), yield_trains=iter_loop.trains)
        if isinstance(fn, cst.FunctionDef):
            self.walk_function(fn, fr, loops)
        for ret in fr.returns:  # __iter__ returning iter(self.loader)
            if ret[0] is not None:
                self.consume(ret[0], loops, iter_loop, fn, fr)


def analyse_project(project: Project) -> ScriptFacts:
    return Walker(project).run()
