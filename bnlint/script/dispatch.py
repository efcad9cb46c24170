"""What a call means: library constructors and functions recognised by qualified name,
methods recognised on abstract values, and helpers of the checked files followed by
walking their bodies with the caller's values."""
from __future__ import annotations

from typing import List, Optional

import libcst as cst

from bnlint.script import known
from bnlint.script.calls import _EMPTY, _SELF_RETURNING, CallEvaluator, _const_bool, _kw, perm_of
from bnlint.script.facts import VARIES, SeedCall, SetEpochCall, Value
from bnlint.script.names import dotted, last_part
from bnlint.script.project import ClassInfo, iter_nodes

__all__ = ["CallDispatch"]

_WRAPPERS = {"enumerate", "zip", "tqdm", "islice", "chain", "Bar", "track"}
_MODEL_WRAPPERS = {"DistributedDataParallel", "DataParallel", "compile",
                   "FullyShardedDataParallel", "convert_sync_batchnorm", "DDP", "FSDP"}


class CallDispatch(CallEvaluator):
    def eval_call(self, call: cst.Call, fr, loops):
        func = call.func
        file = fr.file
        q = file.imports.qualify(func)
        local = None
        if isinstance(func, cst.Name):
            local = fr.lookup(func.value)
        recv = None
        if isinstance(func, cst.Attribute) and q is None:
            recv = self.eval(func.value, fr, loops)
        args = [(a, self.eval(a.value, fr, loops)) for a in call.args]
        deps = frozenset().union(*[d for _, (_, d) in args]) if args else _EMPTY

        if recv is not None:
            out = self.method_call(call, func.attr.value, recv, args, deps, fr, loops)
            if out is not None:
                return out
        if q is not None:
            out = self.library_call(call, q, args, deps, fr, loops)
            if out is not None:
                return out
        target = self.resolve_callee(call, q, local, fr)
        if target is not None:
            return self.call_project(call, target, args, deps, fr, loops)
        if isinstance(func, cst.Name) and local is None:
            out = self.builtin_call(call, func.value, args, deps, fr, loops)
            if out is not None:
                return out
        if local is not None and local[0] is not None and local[0].kind == "model":
            self.use_model(local[0], loops)
        elif isinstance(func, cst.Attribute) and recv is not None:
            called = self.eval_attribute(func, fr, loops)[0]
            if called is not None and called.kind == "model":
                self.use_model(called, loops)
        name = q or (func.value if isinstance(func, cst.Name) else None)
        pure = name in known.PURE_CALLS
        for _, (v, _) in args:
            p = perm_of(v)
            if p is not None and name not in ("len", "print", "sorted", "set"):
                return Value("permuted", call, file, loops, perm=p), deps
        return None, (deps if pure else deps | {VARIES})

    # -- recognised by value ----------------------------------------------------------
    def method_call(self, call, meth, recv, args, deps, fr, loops):
        rv, rdeps = recv
        deps = deps | rdeps
        file = fr.file
        if meth == "set_epoch":
            # An unresolved receiver is kept too: it may be the sampler (benefit of doubt).
            self.facts.set_epochs.append(SetEpochCall(rv, loops, call))
            return None, deps
        if rv is None:
            if meth == "shuffle" and (args or _kw(call, "seed")):
                return self.hf_shuffle(call, None, fr, loops), deps
            if meth in known.FRAMEWORK_METHODS:
                return self.hand_off(call, args, fr, loops), deps
            return None
        kind = rv.kind
        if meth == "manual_seed" and kind == "generator":
            self.facts.seeds.append(SeedCall("generator", deps - rdeps, loops, call, file,
                                             self.next_order(), generator=rv))
            return rv, deps
        if kind == "rng" and meth in ("permutation", "shuffle"):
            perm = Value("perm", call, file, loops, lib="numpy", rng=rv)
            self.facts.perms.append(perm)
            if meth == "shuffle" and call.args:
                self.bind(call.args[0].value, (perm, deps), fr, loops)
                return None, deps
            return perm, deps
        if meth == "shuffle" and kind in ("hfds", "dataset", "const") or meth == "shuffle" and kind not in ("list", "rng"):
            return self.hf_shuffle(call, rv, fr, loops), deps
        if meth == "to_iterable_dataset":
            return Value("hfds", call, file, loops, streaming=True), deps
        if meth in known.FRAMEWORK_METHODS and kind not in ("model",):
            return self.hand_off(call, args, fr, loops), deps
        if meth in ("append", "extend") and kind == "list" and args:
            item = args[0][1][0]
            if item is not None and item.kind in ("item", "genexp", "cached") and item.get("of") is not None \
                    and self.is_batch_source(item.get("of")):
                cached = Value("cached", item.get("site") or call, file, rv.loops, of=item.get("of"))
                self.rebind_receiver(call.func.value, cached, fr)
            return None, deps
        if kind == "model":
            if meth in ("parameters", "named_parameters", "train", "forward"):
                self.use_model(rv, loops)
            if meth in _SELF_RETURNING:
                return rv, deps
            return None, deps
        if kind in ("perm", "permuted") and meth in ("tolist", "numpy", "to", "cuda", "long", "cpu", "clone"):
            return rv, deps
        if kind == "instance":
            hit = self.project.method(rv.get("cls"), meth)
            if hit is not None:
                return self.call_project(call, (hit[0], hit[1], rv), args, deps, fr, loops)
        if kind in ("loader", "hfds", "dataset") and meth in ("with_format", "map", "select", "filter"):
            return rv, deps
        return None

    def rebind_receiver(self, expr, value, fr) -> None:
        if isinstance(expr, cst.Name):
            old = fr.lookup(expr.value)
            target = fr.env if expr.value in fr.env else fr.globals
            target[expr.value] = (value, old[1] if old else _EMPTY)

    def hf_shuffle(self, call, rv, fr, loops) -> Value:
        streaming = bool(rv is not None and rv.get("streaming")) or _kw(call, "buffer_size") is not None
        value = Value("hfds", call, fr.file, loops, shuffled=True, streaming=streaming,
                      perm=None)
        if not streaming:
            value.attrs["perm"] = value  # a map-style dataset permuted once
            value.attrs["lib"] = "datasets"
        return value

    def hand_off(self, call, args, fr, loops):
        values = [v for _, (v, _) in args]
        for v in values:
            self.mark_handed_off(v)
        if len(values) == 1:
            return values[0]
        return Value("tuple", call, fr.file, loops, elems=values)

    def mark_handed_off(self, v: Optional[Value]) -> None:
        if v is None:
            return
        self.facts.handed_off.add(id(v))
        for key in ("sampler", "batch_sampler", "dataset"):
            inner = v.get(key)
            if isinstance(inner, Value):
                self.facts.handed_off.add(id(inner))
        for inner in v.get("elems", None) or ():
            if isinstance(inner, Value):
                self.mark_handed_off(inner)

    def new_model(self, node, file, loops, has_bn: bool) -> Value:
        model = Value("model", node, file, loops, has_bn=has_bn)
        self.facts.models.append(model)
        return model

    def use_model(self, model: Value, loops) -> None:
        for loop in loops:
            if model not in loop.models:
                loop.models.append(model)

    # -- recognised by qualified name -------------------------------------------------
    def library_call(self, call, q, args, deps, fr, loops):
        file = fr.file
        first = args[0][1][0] if args else None
        if known.is_dataloader(q):
            return self.make_loader(call, args, fr, loops), deps
        kind = known.sampler_kind(q)
        if kind is not None:
            return self.make_sampler(call, kind, args, fr, loops), deps
        lib = known.permutation_lib(q)
        if lib is not None:
            perm = Value("perm", call, file, loops, lib=lib, generator=self.kw_value(call, args, "generator"))
            self.facts.perms.append(perm)
            return perm, deps
        lib = known.inplace_shuffle_lib(q)
        if lib is not None:
            if call.args:
                old = args[0][1][0]
                if old is not None and old.kind == "cached":
                    # Shuffling cached batches reorders them; their members stay fixed.
                    perm = Value("cached", old.node, old.file, old.loops, of=old.get("of"),
                                 reshuffled=True)
                else:
                    perm = Value("perm", call, file, loops, lib=lib)
                    self.facts.perms.append(perm)
                self.bind(call.args[0].value, (perm, deps), fr, loops)
            return None, deps
        lib = known.seed_lib(q)
        if lib is not None:
            seed_deps = args[0][1][1] if args else frozenset([VARIES])
            self.facts.seeds.append(SeedCall(lib, seed_deps, loops, call, file, self.next_order()))
            return None, deps
        if known.is_cycle(q):
            return Value("cycle", call, file, loops, of=first), deps
        if known.is_generator_ctor(q):
            return Value("generator", call, file, loops), deps
        if known.is_rng_ctor(q):
            return Value("rng", call, file, loops), deps
        if last_part(q) in _WRAPPERS:
            return Value("wrap", call, file, loops, of=[v for _, (v, _) in args]), deps
        if last_part(q) in _MODEL_WRAPPERS and first is not None and first.kind == "model":
            return first, deps
        if last_part(q) in ("Subset", "TensorDataset", "ConcatDataset", "StackDataset"):
            perms = [perm_of(v) for _, (v, _) in args if perm_of(v) is not None]
            return Value("dataset", call, file, loops, perm=perms[0] if perms else None), deps
        if q in ("datasets.load_dataset", "datasets.load_from_disk"):
            streaming = _kw(call, "streaming")
            return Value("hfds", call, file, loops, streaming=bool(streaming and _const_bool(streaming.value))), deps
        if known.is_framework_ctor(q):
            return self.hand_off(call, args, fr, loops), deps
        first_str = None
        if call.args and isinstance(call.args[0].value, cst.SimpleString):
            first_str = call.args[0].value.evaluated_value
        has_bn = known.library_model_has_bn(q, first_str if isinstance(first_str, str) else None)
        if has_bn is not None:
            return self.new_model(call, file, loops, has_bn), deps
        if last_part(q) in ("Sequential", "ModuleList", "ModuleDict") and q.startswith("torch"):
            return self.new_model(call, file, loops, self.project.node_has_bn(file, call)), deps
        return None

    def kw_value(self, call, args, name) -> Optional[Value]:
        for arg, (v, _) in args:
            if arg.keyword is not None and arg.keyword.value == name:
                return v
        return None

    def make_loader(self, call, args, fr, loops) -> Value:
        pos = [v for a, (v, _) in args if a.keyword is None and not a.star]
        shuffle_arg = _kw(call, "shuffle")
        shuffle = False if shuffle_arg is None else _const_bool(shuffle_arg.value)
        if shuffle_arg is not None and shuffle is None:
            shuffle = "dynamic"
        return Value(
            "loader", call, fr.file, loops,
            dataset=self.kw_value(call, args, "dataset") or (pos[0] if pos else None),
            sampler=self.kw_value(call, args, "sampler") or (pos[3] if len(pos) > 3 else None),
            batch_sampler=self.kw_value(call, args, "batch_sampler"),
            generator=self.kw_value(call, args, "generator"),
            shuffle=shuffle,
            has_sampler=_kw(call, "sampler") is not None or _kw(call, "batch_sampler") is not None
            or len(pos) > 3,
            batch_none=(_kw(call, "batch_size") is not None
                        and isinstance(_kw(call, "batch_size").value, cst.Name)
                        and _kw(call, "batch_size").value.value == "None"),
        )

    def make_sampler(self, call, kind, args, fr, loops) -> Value:
        pos = [v for a, (v, _) in args if a.keyword is None]
        if kind == "batch":
            return Value("batch_sampler", call, fr.file, loops,
                         sampler=self.kw_value(call, args, "sampler") or (pos[0] if pos else None))
        shuffle_arg = _kw(call, "shuffle")
        shuffle = True if shuffle_arg is None else _const_bool(shuffle_arg.value)
        data = pos[0] if pos else self.kw_value(call, args, "data_source") or self.kw_value(call, args, "dataset")
        return Value("sampler", call, fr.file, loops, kind=kind,
                     needs_set_epoch=kind == "distributed" and shuffle is not False,
                     shuffle=shuffle if kind == "distributed" else kind == "random",
                     generator=self.kw_value(call, args, "generator"),
                     data=data, perm=perm_of(data) if kind == "sequential" else None)

    # -- builtins ---------------------------------------------------------------------------
    def builtin_call(self, call, name, args, deps, fr, loops):
        file = fr.file
        first = args[0][1][0] if args else None
        if name == "iter" and first is not None:
            return Value("iter", call, file, loops, of=first), deps
        if name == "next" and first is not None:
            if loops and loops[-1].trains:
                self.consume(first, loops, loops[-1], call, fr)
            return Value("item", call, file, loops, of=first, site=call), deps
        if name in _WRAPPERS:
            return Value("wrap", call, file, loops, of=[v for _, (v, _) in args]), deps
        if name == "range":
            return Value("range", call, file, loops), deps
        if name in ("list", "tuple") and first is not None:
            if first.kind == "genexp":
                return Value("cached", first.node, file, first.loops, of=first.get("of")), deps
            if self.is_batch_source(first):
                return Value("cached", call, file, loops, of=first), deps
            if perm_of(first) is not None:
                return first, deps
            if first.kind == "range":
                return Value("list", call, file, loops, elems=None, ordered=True), deps
        return None

    # -- helpers of the checked files -------------------------------------------------------
    def resolve_callee(self, call, q, local, fr):
        func = call.func
        if local is not None and local[0] is not None and local[0].kind == "func":
            return fr.file, local[0].get("fn"), None
        if isinstance(func, cst.Name) and local is None:
            if func.value in fr.file.functions:
                return fr.file, fr.file.functions[func.value], None
            if func.value in fr.file.classes:
                return fr.file, fr.file.classes[func.value], None
        if q is not None:
            hit = self.project.lookup(q)
            if hit is not None:
                return hit[0], hit[1], None
        return None

    def call_project(self, call, target, args, deps, fr, loops):
        file, fn, self_val = target
        if isinstance(fn, ClassInfo):
            return self.construct(call, fn, args, deps, fr, loops)
        owner_cls = None
        if hasattr(file, "file"):  # a ClassInfo owning the method
            owner_cls, file = file, file.file
        if fr.depth >= self.max_depth or fn in fr.stack:
            return None, deps | {VARIES}
        from bnlint.script.walker import Frame

        env = self.bind_params(fn, args, self_val is not None, fr, loops)
        globals_ = self.module_envs.get(id(file), {})
        callee = Frame(file, env, globals_, self_val=self_val, cls=owner_cls, depth=fr.depth + 1,
                       stack=fr.stack + (fn,))
        if any(isinstance(n, cst.Yield) for n in iter_nodes(fn.body, skip_defs=True)):
            return Value("gen", call, file, loops, fn=fn, env=env, self_val=self_val,
                         cls=owner_cls, depth=fr.depth + 1), deps
        returns = self.walk_function(fn, callee, loops)
        values = [r for r in returns if r[0] is not None]
        if values:
            return values[0]
        if returns:
            out = _EMPTY
            for _, d in returns:
                out |= d
            return None, out
        return None, deps

    def bind_params(self, fn: cst.FunctionDef, args, is_method: bool, fr, loops):
        env = {}
        params = list(fn.params.posonly_params) + list(fn.params.params)
        if is_method and params:
            params = params[1:]
        kwonly = list(fn.params.kwonly_params)
        for p in params + kwonly:
            if p.default is not None:
                env[p.name.value] = self.eval(p.default, fr, ()) if isinstance(
                    p.default, (cst.Integer, cst.Float, cst.SimpleString, cst.Name)) else (None, _EMPTY)
            else:
                env[p.name.value] = (None, _EMPTY)
        i = 0
        for arg, value in args:
            if arg.star:
                continue
            if arg.keyword is not None:
                env[arg.keyword.value] = value
            elif i < len(params):
                env[params[i].name.value] = value
                i += 1
        return env

    def construct(self, call, cls: ClassInfo, args, deps, fr, loops):
        project = self.project
        bases = project.base_names(cls)
        file = fr.file
        if "Module" in bases or "LightningModule" in bases:
            return self.new_model(call, file, loops, project.class_has_bn(cls)), deps
        if project.is_iterable_dataset(cls):
            return Value("dataset", call, file, loops, iterable=True, cls=cls), deps
        if project.method(cls, "set_epoch") is not None or "Sampler" in bases:
            return Value("sampler", call, file, loops, kind="custom", cls=cls,
                         needs_set_epoch=project.sampler_needs_set_epoch(cls)), deps
        perms = [perm_of(v) for _, (v, _) in args if perm_of(v) is not None]
        if "Dataset" in bases:
            return Value("dataset", call, file, loops, cls=cls, perm=perms[0] if perms else None), deps
        inst = Value("instance", call, file, loops, cls=cls, fields={})
        hit = project.method(cls, "__init__")
        if hit is not None:
            self.call_project(call, (hit[0], hit[1], inst), args, deps, fr, loops)
        return inst, deps
