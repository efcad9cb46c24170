"""What a call means: library constructors and functions recognised by qualified name,
methods recognised on abstract values (dicts of keyword arguments included), and
project functions (resolved by ``bnlint.script.resolve``) followed by walking their
bodies with the caller's values."""
from __future__ import annotations

from typing import List, Optional

import libcst as cst

from bnlint.script import batchnorm, known, kwargs, lengths
from bnlint.script.calls import _EMPTY, _SELF_RETURNING, CallEvaluator, _const_bool, _kw, perm_of
from bnlint.script.facts import VARIES, SeedCall, SetEpochCall, Value, options, union
from bnlint.script.modes import is_training_step
from bnlint.script.names import dotted, last_part
from bnlint.script.project import ClassInfo, iter_nodes

__all__ = ["CallDispatch"]

_WRAPPERS = {"enumerate", "zip", "tqdm", "islice", "chain", "Bar", "track"}
_MODEL_WRAPPERS = {"DistributedDataParallel", "DataParallel", "compile",
                   "FullyShardedDataParallel", "convert_sync_batchnorm", "DDP", "FSDP"}


def _flatten(alternatives):
    """``(state, value, conds)`` per alternative: ``absent`` (not passed, or None),
    ``unknown`` (bnlint cannot tell) or ``value`` (an abstract value)."""
    out = []
    for alt, conds in alternatives:
        if alt is kwargs.ABSENT:
            out.append(("absent", None, conds))
        elif alt is kwargs.UNKNOWN:
            out.append(("unknown", None, conds))
        else:
            for opt, opt_conds in options(alt[0]):
                if opt is None:
                    out.append(("unknown", None, conds | opt_conds))
                elif opt.kind == "const" and "py" in opt.attrs and opt.get("py") is None:
                    out.append(("absent", None, conds | opt_conds))
                else:
                    out.append(("value", opt, conds | opt_conds))
    return out


def _single(alternatives, fr, loops) -> Optional[Value]:
    """One value for an argument: the value passed (a union stays the same object, so
    ``sampler.set_epoch`` on the variable matches it), or a union of the alternatives."""
    values = [(alt[0], conds) for alt, conds in alternatives
              if alt is not kwargs.ABSENT and alt is not kwargs.UNKNOWN]
    if not values:
        return None
    if len(values) == 1:
        return values[0][0]
    return union(values, fr.file, loops)


def _dataset_length(name: str, args) -> Optional[int]:
    """Samples in ``TensorDataset(x, ...)``, ``Subset(ds, indices)``, ``ConcatDataset([a, b])``."""
    values = [v for a, (v, _) in args if a.keyword is None and not a.star]
    if name == "TensorDataset" and values:
        return lengths.length_of(values[0])
    if name == "Subset" and len(values) == 2:
        return lengths.length_of(values[1])
    if name == "ConcatDataset" and len(values) == 1 and values[0] is not None and values[0].get("elems"):
        parts = [lengths.length_of(v) for v in values[0].get("elems")]
        return sum(parts) if all(p is not None for p in parts) else None
    return None


def _split_parts(call, args, file, loops) -> Optional[Value]:
    """``random_split(ds, [n1, n2])`` with literal lengths: one dataset per part."""
    sizes = kwargs.argument(call, args, "lengths", 1)
    if len(sizes) != 1 or sizes[0][0] in (kwargs.ABSENT, kwargs.UNKNOWN):
        return None
    value = sizes[0][0][0]
    if value is None or value.kind not in ("list", "tuple") or not value.get("elems"):
        return None
    parts = [lengths.const_int(v) for v in value.get("elems")]
    if any(p is None for p in parts):
        return None
    return Value("tuple", call, file, loops,
                 elems=[Value("dataset", call, file, loops, length=p) for p in parts])


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
        if is_training_step(call):
            self.modes.training_started()

        if local is not None and local[0] is not None and local[0].kind in ("libclass", "union"):
            out = self.call_classes(call, local[0], args, deps, fr, loops)
            if out is not None:
                return out
        if recv is not None:
            out = self.method_call(call, func.attr.value, recv, args, deps, fr, loops)
            if out is not None:
                self.launch(args, fr)
                return out
        if q is not None:
            out = self.library_call(call, q, args, deps, fr, loops)
            if out is not None:
                self.launch(args, fr)
                return out
        target = self.resolve_callee(call, q, local, fr)
        if target is not None:
            return self.call_project(call, target, args, deps, fr, loops)
        self.launch(args, fr)
        if isinstance(func, cst.Name) and local is None:
            out = self.builtin_call(call, func.value, args, deps, fr, loops)
            if out is not None:
                return out
        if local is not None and local[0] is not None and local[0].kind == "model":
            self.use_model(local[0], loops)
            self.model_called(local[0], call, fr, loops)
        elif local is not None and local[0] is not None and local[0].kind == "union":
            for opt, _ in options(local[0]):  # one of the models a name may hold (BNL105)
                if opt is not None and opt.kind == "model":
                    self.model_called(opt, call, fr, loops)
        elif isinstance(func, cst.Attribute) and recv is not None:
            called = self.eval_attribute(func, fr, loops)[0]
            if called is not None and called.kind == "model":
                self.use_model(called, loops)
                self.model_called(called, call, fr, loops)
        name = q or (func.value if isinstance(func, cst.Name) else None)
        pure = name in known.PURE_CALLS
        for _, (v, _) in args:
            p = perm_of(v)
            if p is not None and name not in ("len", "print", "sorted", "set"):
                return Value("permuted", call, file, loops, perm=p), deps
        return None, (deps if pure else deps | {VARIES})

    def call_classes(self, call, value, args, deps, fr, loops):
        """``cls(dataset)`` where ``cls`` names a library class, maybe one per path."""
        alternatives = []
        for opt, conds in options(value):
            if opt is None or opt.kind != "libclass":
                return None
            made = self.library_call(call, opt.get("q"), args, deps, fr, loops)
            alternatives.append((made[0] if made is not None else None, conds))
        # "branch": the fixer cannot guard a call on an object whose class was chosen.
        return union(alternatives, fr.file, loops, origin="branch"), deps

    def launch(self, args, fr) -> None:
        """Local functions passed to a call that is not followed (``mp.spawn(worker)``,
        ``Thread(target=worker)``, ``pool.submit(worker, ...)``) run on their own."""
        for _, (value, _) in args:
            if value is not None and value.kind in ("func", "union"):
                self.entry_value(value, fr)

    # -- recognised by value ----------------------------------------------------------
    def method_call(self, call, meth, recv, args, deps, fr, loops):
        rv, rdeps = recv
        if rv is not None and rv.kind == "union" and meth != "set_epoch":
            alternatives = []
            for opt, conds in options(rv):
                out = self.method_call(call, meth, (opt, rdeps), args, deps, fr, loops) if opt is not None else None
                alternatives.append((out[0] if out is not None else None, conds))
            if all(v is None for v, _ in alternatives):
                return None, deps | rdeps
            return union(alternatives, fr.file, loops, origin=rv.get("origin", "branch")), deps | rdeps
        deps = deps | rdeps
        file = fr.file
        if rv is not None and rv.kind == "dict":
            return self.dict_method(call, meth, rv, args, deps, fr, loops)
        if meth == "set_epoch":
            # An unresolved receiver is kept too: it may be the sampler (benefit of doubt).
            self.facts.set_epochs.append(SetEpochCall(rv, loops, call))
            return None, deps
        if meth in ("eval", "train") and (rv is None or rv.kind == "model"):
            self.switch_mode(rv, meth, args, loops)
        if rv is None:
            if meth == "shuffle" and (args or _kw(call, "seed")):
                return self.hf_shuffle(call, None, fr, loops), deps
            if meth in known.FRAMEWORK_METHODS:
                return self.hand_off(call, args, fr, loops), deps
            return None
        kind = rv.kind
        if kind == "instance":  # the project's own class: its method, whatever its name
            hit = self.project.method(rv.get("cls"), meth)
            if hit is not None:
                return self.call_project(call, (hit[0], hit[1], rv), args, deps, fr, loops)
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
            if meth == "forward":
                self.model_called(rv, call, fr, loops)
            elif meth not in _SELF_RETURNING:
                self.model_method(rv, meth, args)
            if meth in _SELF_RETURNING:
                return rv, deps
            return None, deps
        if kind in ("perm", "permuted") and meth in ("tolist", "numpy", "to", "cuda", "long", "cpu", "clone"):
            return rv, deps
        if kind == "array" and meth in ("to", "cuda", "cpu", "float", "long", "double", "half", "clone",
                                        "numpy", "astype", "contiguous", "detach", "int", "bool"):
            return rv, deps
        if kind in ("loader", "hfds", "dataset") and meth in ("with_format", "map", "select", "filter"):
            return rv, deps
        return None

    def dict_method(self, call, meth, d, args, deps, fr, loops):
        if meth == "update":
            self.dict_update(d, args, fr)
            return None, deps
        if meth == "setdefault" and args:
            key = kwargs.string_key(args[0][0].value)
            value = args[1][1] if len(args) > 1 else (Value("const", call, fr.file, loops, py=None), _EMPTY)
            kwargs.write(d, "default", key, value, fr.conds)
            return value[0], deps
        if meth == "pop" and args:
            key = kwargs.string_key(args[0][0].value)
            if key is not None:
                kwargs.write(d, "delete", key, None, fr.conds)
            return None, deps
        if meth == "copy":
            return kwargs.copy_dict(d, call, fr.file, loops, fr.conds), deps
        if meth in ("clear", "popitem"):
            kwargs.write(d, "any", None, None, fr.conds)
        return None, deps

    def dict_update(self, d, args, fr) -> None:
        """``d.update(other, k=v)``, ``d |= other``."""
        for arg, value in args:
            if arg is not None and arg.keyword is not None:
                kwargs.write(d, "set", arg.keyword.value, value, fr.conds)
            elif arg is not None and arg.star == "**":
                kwargs.merge(d, value[0], fr.conds)
            else:
                kwargs.merge(d, value[0], fr.conds)

    def new_dict_call(self, call, args, fr, loops):
        """``dict(...)``: a copy of a dict argument, then the keywords."""
        d = kwargs.new_dict(call, fr.file, loops, fr.conds)
        self.dict_update(d, args, fr)
        return d

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

    def new_model(self, node, file, loops, has_bn: bool, bn=None, cls=None) -> Value:
        """A model built here; ``bn`` is its ``bnlint.script.batchnorm.BNProfile`` (None:
        unknown), ``cls`` its class in the project."""
        model = Value("model", node, file, loops, has_bn=has_bn, bn=bn, cls=cls)
        self.facts.models.append(model)
        self.modes.new_model(model)
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
        if q in ("copy.copy", "copy.deepcopy") and first is not None and first.kind == "dict":
            return kwargs.copy_dict(first, call, file, loops, fr.conds), deps
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
            return Value("dataset", call, file, loops, perm=perms[0] if perms else None,
                         length=_dataset_length(last_part(q), args)), deps
        if last_part(q) == "random_split" and q.startswith("torch."):
            parts = _split_parts(call, args, file, loops)
            if parts is not None:
                return parts, deps | {VARIES}
        size = lengths.torchvision_length(q, call) or lengths.array_length(q, call, args)
        if size is not None:  # a dataset or tensor whose length the source gives (BNL107)
            kind = "dataset" if q.startswith("torchvision.datasets.") else "array"
            return Value(kind, call, file, loops, length=size), deps | {VARIES}
        if q in ("datasets.load_dataset", "datasets.load_from_disk"):
            streaming = _kw(call, "streaming")
            return Value("hfds", call, file, loops, streaming=bool(streaming and _const_bool(streaming.value))), deps
        if known.is_iterable_dataset_ctor(q):
            return Value("dataset", call, file, loops, iterable=True), deps
        if known.is_framework_ctor(q):
            return self.hand_off(call, args, fr, loops), deps
        first_str = None
        if call.args and isinstance(call.args[0].value, cst.SimpleString):
            first_str = call.args[0].value.evaluated_value
        has_bn = known.library_model_has_bn(q, first_str if isinstance(first_str, str) else None)
        if has_bn is not None:
            return self.new_model(call, file, loops, has_bn, bn=batchnorm.library_profile(call, has_bn)), deps
        if last_part(q) in ("Sequential", "ModuleList", "ModuleDict") and q.startswith("torch"):
            return self.new_model(call, file, loops, self.project.node_has_bn(file, call),
                                  bn=batchnorm.node_profile(self.project, file, call)), deps
        return None

    def kw_value(self, call, args, name) -> Optional[Value]:
        for arg, (v, _) in args:
            if arg.keyword is not None and arg.keyword.value == name:
                return v
        return None

    def make_loader(self, call, args, fr, loops) -> Value:
        """A ``DataLoader``: each argument as the alternatives it may be (keywords,
        positions, ``**kwargs`` dicts, values that differ by branch); see
        ``bnlint.script.loaders`` for how the rules read them."""
        def alternatives(name):
            return kwargs.argument(call, args, name, kwargs.DATALOADER_PARAMS.index(name))

        samplers = _flatten(alternatives("sampler"))
        batch_samplers = _flatten(alternatives("batch_sampler"))
        shuffles = kwargs.truth_options(alternatives("shuffle"))
        truths = {t for t, _ in shuffles}
        if None in truths:
            shuffle = "dynamic"
        elif truths == {True}:
            shuffle = True
        elif truths == {False}:
            shuffle = False
        else:
            shuffle = "conditional"
        batch_size = [state for state, _, _ in _flatten(alternatives("batch_size"))]
        return Value(
            "loader", call, fr.file, loops,
            dataset=_single(alternatives("dataset"), fr, loops),
            sampler=_single(alternatives("sampler"), fr, loops),
            batch_sampler=_single(alternatives("batch_sampler"), fr, loops),
            generator=_single(alternatives("generator"), fr, loops),
            shuffle=shuffle,
            has_sampler=any(state != "absent" for state, _, _ in samplers + batch_samplers),
            batch_none=batch_size == ["absent"] and kwargs.argument(
                call, args, "batch_size", 1)[0][0] is not kwargs.ABSENT,
            samplers=samplers, batch_samplers=batch_samplers, shuffles=shuffles,
            spread=any(a.star == "**" for a in call.args),
            batch_sizes=_flatten(alternatives("batch_size")),
            drop_lasts=kwargs.truth_options(alternatives("drop_last")),
        )

    def make_sampler(self, call, kind, args, fr, loops) -> Value:
        if kind == "batch":
            return Value("batch_sampler", call, fr.file, loops,
                         sampler=_single(kwargs.argument(call, args, "sampler", 0), fr, loops))
        position = 3 if kind == "distributed" else None
        truths = {t for t, _ in kwargs.truth_options(kwargs.argument(call, args, "shuffle", position),
                                                     default=True)}
        shuffle = truths.pop() if len(truths) == 1 else None
        data = _single(kwargs.argument(call, args, "data_source", 0), fr, loops) \
            or self.kw_value(call, args, "dataset")
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
            return Value("range", call, file, loops, length=lengths.range_length(args)), deps
        if name == "dict":
            return self.new_dict_call(call, args, fr, loops), deps
        if name in ("list", "tuple") and first is not None:
            if first.kind == "genexp":
                return Value("cached", first.node, file, first.loops, of=first.get("of")), deps
            if self.is_batch_source(first):
                return Value("cached", call, file, loops, of=first), deps
            if perm_of(first) is not None:
                return first, deps
            if first.kind == "range":
                return Value("list", call, file, loops, elems=None, ordered=True, length=first.get("length")), deps
        return None

    # -- helpers of the project ---------------------------------------------------------------
    def resolve_callee(self, call, q, local, fr):
        """(file or owning class, FunctionDef or ClassInfo, self value) a call reaches."""
        func = call.func
        if local is not None:
            value = local[0]
            if value is not None and value.kind == "func":
                return fr.file if value.file is None else value.file, value.get("fn"), None
            if isinstance(func, cst.Name) and fr.env is not fr.globals and func.value in fr.env:
                return None  # a local variable shadows the module's names
        sym = self.project.resolver.resolve(fr.file, func)
        if sym is None:
            return None
        if sym.kind == "function":
            return sym.file, sym.node, None
        if sym.kind == "class":
            return sym.file, sym.node, None
        if sym.kind == "method":
            return sym.owner, sym.node, None  # Class.method(obj, ...): obj is the first argument
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
        self.resolved.setdefault(id(call.func), set()).add(id(fn))
        from bnlint.script.walker import Frame

        env = self.bind_params(fn, args, self_val is not None, fr, loops)
        globals_ = self.module_envs.get(id(file), {})
        callee = Frame(file, env, globals_, self_val=self_val, cls=owner_cls, depth=fr.depth + 1,
                       stack=fr.stack + (fn,), conds=fr.conds, outer_no_grad=fr.no_grad or fr.outer_no_grad)
        if self.is_generator(fn):
            self.walked.add(id(fn))
            return Value("gen", call, file, loops, fn=fn, env=env, self_val=self_val,
                         cls=owner_cls, depth=fr.depth + 1), deps
        returns = self.walk_function(fn, callee, loops)
        values = [r for r in returns if r[0] is not None]
        if len(values) > 1 and any(v[0] is not values[0][0] for v in values[1:]):
            # Several returns: the function may give any of them.
            out = _EMPTY
            for _, d in values:
                out |= d
            return union([(v, ()) for v, _ in values], file, loops, origin="return"), out
        if values:
            return values[0]
        if returns:
            out = _EMPTY
            for _, d in returns:
                out |= d
            return None, out
        return None, deps

    def is_generator(self, fn: cst.FunctionDef) -> bool:
        memo = self.__dict__.setdefault("_generators", {})
        hit = memo.get(id(fn))
        if hit is None:
            hit = memo[id(fn)] = any(type(n) is cst.Yield for n in iter_nodes(fn.body, skip_defs=True))
        return hit

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
            return self.new_model(call, file, loops, project.class_has_bn(cls),
                                  bn=batchnorm.class_profile(project, cls), cls=cls), deps
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
