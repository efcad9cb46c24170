"""The statement walk: scopes, loops, and calls followed into helpers.

The walk starts at every module body and at every function nobody in the checked files
calls (a Lightning hook, a library entry point). Calls to functions, methods and
classes of the checked files are followed by walking the callee with its parameters
bound to the caller's values (up to ``MAX_DEPTH`` frames), so loops and events inside
a helper carry the caller's loop stack. Expressions are evaluated in
``bnlint.script.calls``.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Tuple

import libcst as cst

from bnlint.script.dispatch import CallDispatch
from bnlint.script.facts import Loop, ScriptFacts, TrainUse, Value
from bnlint.script.names import dotted, last_part
from bnlint.script.project import ClassInfo, FileInfo, Project, calls_in, iter_nodes

__all__ = ["Frame", "Walker", "analyse_project", "MAX_DEPTH"]

MAX_DEPTH = 5
_NO_GRAD = ("no_grad", "inference_mode")


class Frame:
    __slots__ = ("file", "env", "globals", "self_val", "cls", "depth", "stack", "returns",
                 "yield_trains", "no_grad")

    def __init__(self, file: FileInfo, env: Dict, globals_: Dict, *, self_val=None, cls=None,
                 depth: int = 0, stack: Tuple = (), yield_trains: bool = False, no_grad: bool = False):
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

    def lookup(self, name: str):
        if name in self.env:
            return self.env[name]
        return self.globals.get(name)


def _has_yield(node: cst.CSTNode) -> bool:
    return any(isinstance(n, cst.Yield) for n in iter_nodes(node, skip_defs=True))


def _is_no_grad(file: FileInfo, expr: cst.BaseExpression) -> bool:
    target = expr.func if isinstance(expr, cst.Call) else expr
    return last_part(dotted(target)) in _NO_GRAD


class Walker(CallDispatch):
    max_depth = MAX_DEPTH

    def __init__(self, project: Project) -> None:
        self.project = project
        self.facts = ScriptFacts()
        self.module_envs: Dict[int, Dict] = {}
        self._order = itertools.count()
        self._trains_memo: Dict[int, bool] = {}
        self._instances: Dict[int, Value] = {}
        self._consumed_gens: set = set()

    # -- entry points --------------------------------------------------------------
    def run(self) -> ScriptFacts:
        for f in self.project.files:
            env = self.module_envs.setdefault(id(f), {})
            self.walk_body(f.module.body, Frame(f, env, env), ())
        called = self.project.called_names
        for f in self.project.files:
            env = self.module_envs[id(f)]
            for name, fn in f.functions.items():
                if name not in called:
                    self.walk_function(fn, Frame(f, {}, env, depth=1, stack=(fn,)), ())
            for cls in f.classes.values():
                for name, fn in cls.methods.items():
                    implicit = name.startswith("__") and cls.name in called
                    if name in called or implicit or name == "__init__":
                        continue
                    self_val = self.instance_of(cls)
                    fr = Frame(f, {}, env, self_val=self_val, cls=cls, depth=1, stack=(fn,))
                    self.walk_function(fn, fr, ())
        return self.facts

    def next_order(self) -> int:
        return next(self._order)

    # -- functions -------------------------------------------------------------------
    def walk_function(self, fn: cst.FunctionDef, fr: Frame, loops: Tuple[Loop, ...]):
        for dec in fn.decorators:
            if _is_no_grad(fr.file, dec.decorator):
                fr.no_grad = True
        if fr.self_val is not None:
            params = list(fn.params.params)
            if params:
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

    def walk_stmt(self, stmt, fr: Frame, loops) -> None:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                self.walk_small(small, fr, loops)
        elif isinstance(stmt, cst.For):
            self.walk_for(stmt, fr, loops)
        elif isinstance(stmt, cst.While):
            self.eval(stmt.test, fr, loops)
            loop = Loop(stmt, fr.file, self.loop_trains(stmt.body, fr))
            self.walk_block(stmt.body, fr, loops + (loop,))
            self.walk_block(stmt.orelse.body if stmt.orelse else None, fr, loops)
        elif isinstance(stmt, cst.If):
            self.eval(stmt.test, fr, loops)
            self.walk_block(stmt.body, fr, loops)
            orelse = stmt.orelse
            if orelse is None:
                return
            after_body = dict(fr.env)
            if isinstance(orelse, cst.If):
                self.walk_stmt(orelse, fr, loops)
            else:
                self.walk_block(orelse.body, fr, loops)
            # Either branch may run: keep what is known from either.
            for name, (value, deps) in after_body.items():
                now = fr.env.get(name)
                if now is not None and now is not (value, deps):
                    fr.env[name] = (now[0] if now[0] is not None and now[0].kind != "const" else value,
                                    deps | now[1])
        elif isinstance(stmt, cst.With):
            saved = fr.no_grad
            for item in stmt.items:
                if _is_no_grad(fr.file, item.item):
                    fr.no_grad = True
                value = self.eval(item.item, fr, loops)
                if item.asname is not None:
                    self.bind(item.asname.name, value, fr, loops)
            self.walk_block(stmt.body, fr, loops)
            fr.no_grad = saved
        elif isinstance(stmt, cst.Try) or type(stmt).__name__ == "TryStar":
            self.walk_block(stmt.body, fr, loops)
            for handler in stmt.handlers:
                self.walk_block(handler.body, fr, loops)
            for extra in (stmt.orelse, stmt.finalbody):
                if extra is not None:
                    self.walk_block(extra.body, fr, loops)
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
            self.bind(small.target, (old[0] if old[0] is not None else val, deps), fr, loops)
        elif isinstance(small, cst.Expr):
            self.eval(small.value, fr, loops)
        elif isinstance(small, cst.Return):
            if small.value is not None:
                fr.returns.append(self.eval(small.value, fr, loops))

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
        inner = loops + (loop,)
        if trains and it is not None:
            self.consume(it, inner, loop, stmt.iter, fr)
        item = Value("item", stmt.iter, fr.file, loops, of=it, site=stmt.iter) if it is not None else None
        self.bind(stmt.target, (item, deps | frozenset([loop.id])), fr, loops)
        self.walk_block(stmt.body, fr, inner)
        if stmt.orelse is not None:
            self.walk_block(stmt.orelse.body, fr, loops)

    # -- training -----------------------------------------------------------------------
    def loop_trains(self, body, fr: Frame) -> bool:
        if fr.no_grad:
            return False
        if fr.yield_trains and _has_yield(body):
            return True
        return self.code_trains(body, fr, 0)

    def code_trains(self, node, fr: Frame, depth: int) -> bool:
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
                if target is not None and self.function_trains(target, depth + 1):
                    return True
        return False

    def function_trains(self, target, depth: int) -> bool:
        fn, frame = target
        key = id(fn)
        if key not in self._trains_memo:
            self._trains_memo[key] = False  # recursion guard
            self._trains_memo[key] = self.code_trains(fn.body, frame, depth)
        return self._trains_memo[key]

    def static_callee(self, call: cst.Call, fr: Frame):
        """The function a call reaches, without evaluating anything (for ``trains``)."""
        func = call.func
        if isinstance(func, cst.Name):
            bound = fr.env.get(func.value)
            if bound and bound[0] is not None and bound[0].kind == "func":
                return bound[0].get("fn"), fr
            if func.value in fr.file.functions:
                return fr.file.functions[func.value], Frame(fr.file, {}, fr.globals, depth=fr.depth)
        if isinstance(func, cst.Attribute):
            recv = fr.lookup(func.value.value)[0] if isinstance(func.value, cst.Name) and fr.lookup(func.value.value) else None
            if recv is not None and recv.kind == "instance":
                hit = self.project.method(recv.get("cls"), func.attr.value)
                if hit is not None:
                    return hit[1], Frame(hit[0].file, {}, fr.globals, self_val=recv, cls=hit[0], depth=fr.depth)
        q = fr.file.imports.qualify(func)
        if q:
            hit = self.project.lookup(q)
            if hit and isinstance(hit[1], cst.FunctionDef):
                f = hit[0]
                return hit[1], Frame(f, {}, self.module_envs.get(id(f), {}), depth=fr.depth)
        return None

    def consume(self, value: Value, loops, iter_loop: Loop, node, fr: Frame) -> None:
        """A training loop draws batches from ``value``."""
        kind = value.kind
        if kind == "wrap":
            for inner in value.get("of", ()):
                if inner is not None:
                    self.consume(inner, loops, iter_loop, node, fr)
        elif kind == "iter" and value.get("of") is not None:
            self.consume(value.get("of"), loops, iter_loop, node, fr)
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
                TrainUse(value, loops, iter_loop, node, fr.file, self.next_order())
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
