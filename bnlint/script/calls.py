"""Expression evaluation for the walk: what each expression may hold, what it depends
on, and what its calls mean (loaders, samplers, permutations, seeds, helpers).

``eval`` returns ``(value, deps)``: an abstract ``Value`` or None, and the ids of the
loops whose iteration changes the expression (``VARIES`` when it changes anyway, e.g.
``time.time()``). A seed whose deps miss the epoch loop is constant across epochs.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import libcst as cst

from bnlint.script import known, kwargs
from bnlint.script.facts import VARIES, Cond, IndexUse, Loop, SeedCall, SetEpochCall, Value, options, union
from bnlint.script.names import dotted, last_part

__all__ = ["CallEvaluator"]

_EMPTY = frozenset()
_SELF_RETURNING = {"to", "cuda", "cpu", "float", "half", "double", "bfloat16", "train",
                   "eval", "requires_grad_", "to_empty", "share_memory"}
_LITERALS = (cst.Integer, cst.Float, cst.SimpleString, cst.ConcatenatedString,
             cst.FormattedString, cst.Imaginary)
_PERMUTED_KINDS = ("perm", "permuted")
_CONSTANTS = {"True": True, "False": False, "None": None}


def _kw(call: cst.Call, name: str) -> Optional[cst.Arg]:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return None


def _const_bool(expr) -> Optional[bool]:
    if isinstance(expr, cst.Name) and expr.value in ("True", "False"):
        return expr.value == "True"
    return None


def perm_of(value: Optional[Value]) -> Optional[Value]:
    if value is None:
        return None
    if value.kind == "perm":
        return value
    if value.kind in ("permuted", "hfds") or value.kind == "dataset":
        return value.get("perm")
    return None


class CallEvaluator:
    """Mixin for ``Walker``: expression evaluation and call dispatch."""

    # -- expressions -------------------------------------------------------------------
    def eval(self, expr, fr, loops) -> Tuple[Optional[Value], frozenset]:
        # The three commonest kinds by exact type (the parser makes no subclasses of
        # them): isinstance on libcst's ABC node classes is slow.
        kind = type(expr)
        if kind is cst.Name:
            if expr.value in _CONSTANTS:
                return Value("const", expr, fr.file, loops, py=_CONSTANTS[expr.value]), _EMPTY
            bound = fr.lookup(expr.value)
            if bound is None:
                return self.class_reference(expr, fr, loops), _EMPTY
            return bound
        if kind is cst.Call:
            return self.eval_call(expr, fr, loops)
        if kind is cst.Attribute:
            return self.eval_attribute(expr, fr, loops)
        if isinstance(expr, _LITERALS):
            if isinstance(expr, cst.FormattedString):  # f"{evaluate(model, loader)}" still calls
                for part in expr.parts:
                    if isinstance(part, cst.FormattedStringExpression):
                        self.eval(part.expression, fr, loops)
            value = Value("const", expr, fr.file, loops)
            if type(expr) is cst.Integer and expr.value.isdigit():
                value.attrs["py"] = int(expr.value)  # cheap; strings are not needed as values
            return value, _EMPTY
        if isinstance(expr, cst.Subscript):
            return self.eval_subscript(expr, fr, loops)
        if isinstance(expr, (cst.BinaryOperation, cst.BooleanOperation)):
            lv, ld = self.eval(expr.left, fr, loops)
            rv, rd = self.eval(expr.right, fr, loops)
            const = lv is not None and rv is not None and lv.kind == rv.kind == "const"
            return (Value("const", expr, fr.file, loops) if const else None), ld | rd
        if isinstance(expr, cst.UnaryOperation):
            value, deps = self.eval(expr.expression, fr, loops)
            if isinstance(expr.operator, cst.Not):
                return self.map_consts(value, lambda py: not py, expr, fr, loops), deps
            return value, deps
        if isinstance(expr, cst.Comparison):
            left, deps = self.eval(expr.left, fr, loops)
            for comp in expr.comparisons:
                deps |= self.eval(comp.comparator, fr, loops)[1]
            if (len(expr.comparisons) == 1 and isinstance(expr.comparisons[0].operator, (cst.Is, cst.IsNot))
                    and isinstance(expr.comparisons[0].comparator, cst.Name)
                    and expr.comparisons[0].comparator.value == "None"):
                negate = isinstance(expr.comparisons[0].operator, cst.IsNot)
                return self.is_none(left, negate, expr, fr, loops), deps
            return None, deps
        if isinstance(expr, (cst.Tuple, cst.List)):
            elems = [self.eval(e.value, fr, loops) for e in expr.elements]
            deps = frozenset().union(*[d for _, d in elems]) if elems else _EMPTY
            kind = "tuple" if isinstance(expr, cst.Tuple) else "list"
            return Value(kind, expr, fr.file, loops, elems=[v for v, _ in elems]), deps
        if isinstance(expr, (cst.ListComp, cst.GeneratorExp, cst.SetComp)):
            return self.eval_comprehension(expr, fr, loops)
        if isinstance(expr, cst.IfExp):
            test = self.eval(expr.test, fr, loops)[0]
            if test is not None and test.kind == "const" and "py" in test.attrs:
                return self.eval(expr.body if test.get("py") else expr.orelse, fr, loops)
            other = self.eval(expr.orelse, fr, loops)
            body = self.eval(expr.body, fr, loops)
            if body[0] is None or other[0] is None or body[0] is other[0]:
                return (body[0] or other[0]), body[1] | other[1]
            alternatives = [(body[0], (Cond(expr.test, True, fr.file),)),
                            (other[0], (Cond(expr.test, False, fr.file),))]
            return union(alternatives, fr.file, loops, origin="ifexp"), body[1] | other[1]
        if isinstance(expr, cst.Dict):
            return self.eval_dict(expr, fr, loops)
        if isinstance(expr, cst.Await):
            return self.eval(expr.expression, fr, loops)
        if isinstance(expr, cst.Yield):
            return self.eval_yield(expr, fr, loops)
        if isinstance(expr, cst.NamedExpr):
            value = self.eval(expr.value, fr, loops)
            self.bind(expr.target, value, fr, loops)
            return value
        return None, _EMPTY

    def class_reference(self, expr, fr, loops) -> Optional[Value]:
        """``RandomSampler`` named without a call (``cls = RandomSampler if ... else
        DistributedSampler``; ``cls(dataset)`` later): a library class bnlint knows."""
        q = fr.file.imports.qualify(expr)
        if q is not None and (known.sampler_kind(q) or known.is_dataloader(q)):
            return Value("libclass", expr, fr.file, loops, q=q)
        return None

    # -- constants, None tests, dicts ------------------------------------------------------
    def map_consts(self, value, fn, node, fr, loops):
        """Apply ``fn`` to a constant's Python value (per alternative of a union)."""
        alternatives = []
        for opt, conds in options(value):
            if opt is None or opt.kind != "const" or "py" not in opt.attrs:
                return None
            alternatives.append((Value("const", node, fr.file, loops, py=fn(opt.get("py"))), conds))
        return union(alternatives, fr.file, loops, origin="ifexp") if alternatives else None

    def is_none(self, value, negate: bool, node, fr, loops):
        """``x is None`` per alternative of ``x``: known where ``x`` is a constant or an
        object bnlint made (a sampler, a loader); unknown for anything else."""
        alternatives = []
        for opt, conds in options(value):
            if opt is None:
                return None
            if opt.kind == "const":
                if "py" not in opt.attrs:
                    return None
                result = opt.get("py") is None
            elif opt.kind in ("sampler", "batch_sampler", "loader", "dataset", "generator", "dict",
                              "perm", "list", "tuple", "model", "instance"):
                result = False
            else:
                return None
            alternatives.append((Value("const", node, fr.file, loops, py=result != negate), conds))
        return union(alternatives, fr.file, loops, origin="ifexp") if alternatives else None

    def eval_dict(self, expr: cst.Dict, fr, loops):
        d = kwargs.new_dict(expr, fr.file, loops, fr.conds)
        deps = _EMPTY
        for el in expr.elements:
            if isinstance(el, cst.StarredDictElement):
                other, odeps = self.eval(el.value, fr, loops)
                deps |= odeps
                kwargs.merge(d, other, fr.conds)
                continue
            value = self.eval(el.value, fr, loops)
            deps |= value[1]
            kwargs.write(d, "set", kwargs.string_key(el.key), value, fr.conds)
        return d, deps

    def eval_attribute(self, expr: cst.Attribute, fr, loops):
        base, deps = self.eval(expr.value, fr, loops)
        attr = expr.attr.value
        if base is not None and base.kind == "union":
            alternatives = [(self.attribute_of(opt, attr), conds) for opt, conds in options(base)]
            if all(v is None for v, _ in alternatives):
                return None, deps
            return union(alternatives, fr.file, loops, origin=base.get("origin", "branch")), deps
        return self.attribute_value(expr, base, deps, fr)

    @staticmethod
    def attribute_of(base, attr: str):
        if base is None:
            return None
        if base.kind == "loader":
            found = base.get(attr)
            return found if isinstance(found, Value) else None
        if base.kind == "batch_sampler" and attr == "sampler":
            return base.get("sampler")
        if base.kind == "instance":
            return base.get("fields", {}).get(attr, (None,))[0]
        if base.kind in _PERMUTED_KINDS and attr in ("T", "data"):
            return base
        return None

    def attribute_value(self, expr: cst.Attribute, base, deps, fr):
        attr = expr.attr.value
        if base is None:
            text = dotted(expr)
            if text is not None and text in fr.env:
                return fr.env[text]
            return self.class_reference(expr, fr, ()), deps
        if base.kind == "loader":
            found = base.get(attr)
            return (found if isinstance(found, Value) else None), deps
        if base.kind == "batch_sampler" and attr == "sampler":
            return base.get("sampler"), deps
        if base.kind == "instance":
            return base.get("fields", {}).get(attr, (None, deps))
        if base.kind in _PERMUTED_KINDS and attr in ("T", "data"):
            return base, deps
        if base.kind == "model" and attr == "training":  # saved to restore later (BNL105)
            return Value("mode_of", expr, fr.file, (), model=base, tokens=self.modes.of(base)), deps
        return None, deps

    def eval_subscript(self, expr: cst.Subscript, fr, loops):
        base, deps = self.eval(expr.value, fr, loops)
        index_perm = None
        is_int = False
        for el in expr.slice:
            sl = el.slice
            if isinstance(sl, cst.Index):
                iv, idep = self.eval(sl.value, fr, loops)
                deps |= idep
                index_perm = index_perm or perm_of(iv)
                is_int = isinstance(sl.value, cst.Integer)
            elif isinstance(sl, cst.Slice):
                for part in (sl.lower, sl.upper, sl.step):
                    if part is not None:
                        deps |= self.eval(part, fr, loops)[1]
        if base is not None and base.kind in ("perm", "permuted", "cached"):
            self.facts.index_uses.append(IndexUse(base, loops, expr, index_perm))
        if base is not None and base.kind == "tuple" and is_int:
            elems = base.get("elems", [])
            idx = int(expr.slice[0].slice.value.value)
            if -len(elems) <= idx < len(elems):
                return elems[idx], deps
        if index_perm is not None:
            return Value("permuted", expr, fr.file, loops, perm=index_perm), deps
        if base is not None and base.kind in _PERMUTED_KINDS:
            return Value("permuted", expr, fr.file, loops, perm=perm_of(base)), deps
        if base is not None and base.kind == "cached":
            return Value("item", expr, fr.file, loops, of=base), deps
        return None, deps

    def eval_comprehension(self, expr, fr, loops):
        deps = _EMPTY
        source = None
        for comp in self._comp_fors(expr.for_in):
            iv, idep = self.eval(comp.iter, fr, loops)
            deps |= idep
            if iv is not None and source is None:
                source = iv
            item = Value("item", comp.iter, fr.file, loops, of=iv) if iv is not None else None
            self.bind(comp.target, (item, idep), fr, loops)
        elt, edep = self.eval(expr.elt, fr, loops)
        if perm_of(elt) is not None:
            return Value("permuted", expr, fr.file, loops, perm=perm_of(elt)), deps
        if source is not None and self.is_batch_source(source):
            kind = "genexp" if isinstance(expr, cst.GeneratorExp) else "cached"
            return Value(kind, expr, fr.file, loops, of=source), deps
        return None, deps | edep

    @staticmethod
    def _comp_fors(comp):
        while comp is not None:
            yield comp
            comp = comp.inner_for_in

    def is_batch_source(self, value: Value) -> bool:
        if value.kind in ("loader", "iter", "wrap", "hfds", "cycle"):
            if value.kind == "wrap":
                return any(v is not None and self.is_batch_source(v) for v in value.get("of", ()))
            return True
        return False

    def eval_yield(self, expr: cst.Yield, fr, loops):
        if isinstance(expr.value, cst.From):
            value, deps = self.eval(expr.value.item, fr, loops)
            if value is not None and fr.yield_trains:
                loop = Loop(expr, fr.file, True)
                self.consume(value, loops + (loop,), loop, expr.value.item, fr)
            return None, deps
        if expr.value is not None:
            self.eval(expr.value, fr, loops)
        return None, _EMPTY

    # -- binding -------------------------------------------------------------------------
    def bind(self, target, value, fr, loops) -> None:
        val, deps = value
        if VARIES in deps:
            # A value that changes per evaluation changes with the loops around it only.
            deps = (deps - {VARIES}) | frozenset(l.id for l in loops)
        if isinstance(target, cst.Name):
            fr.env[target.value] = (val, deps)
        elif isinstance(target, (cst.Tuple, cst.List)):
            elems = val.get("elems") if val is not None and val.kind == "tuple" else None
            for i, el in enumerate(target.elements):
                if elems is not None and i < len(elems):
                    sub = elems[i]
                elif val is not None and val.kind in _PERMUTED_KINDS:
                    sub = Value("permuted", target, fr.file, loops, perm=perm_of(val))
                elif val is not None and val.kind == "item":
                    sub = val
                else:
                    sub = None
                self.bind(el.value, (sub, deps), fr, loops)
        elif isinstance(target, cst.Attribute):
            text = dotted(target)
            if text is None:
                return
            fr.env[text] = (val, deps)
            if (isinstance(target.value, cst.Name) and fr.self_val is not None
                    and fr.env.get(target.value.value, (None,))[0] is fr.self_val):
                fr.self_val.attrs.setdefault("fields", {})[target.attr.value] = (val, deps)
        elif isinstance(target, cst.StarredElement):
            self.bind(target.value, (None, deps), fr, loops)
        elif isinstance(target, cst.Subscript):
            base = self.eval(target.value, fr, loops)[0]
            if base is not None and base.kind == "dict":
                key = None
                if len(target.slice) == 1 and isinstance(target.slice[0].slice, cst.Index):
                    key = kwargs.string_key(target.slice[0].slice.value)
                kwargs.write(base, "set", key, (val, deps), fr.conds)

    def delete(self, target, fr, loops) -> None:
        """``del d["shuffle"]``."""
        if isinstance(target, (cst.Tuple, cst.List)):
            for el in target.elements:
                self.delete(el.value, fr, loops)
        elif isinstance(target, cst.Subscript):
            base = self.eval(target.value, fr, loops)[0]
            if base is not None and base.kind == "dict" and len(target.slice) == 1 \
                    and isinstance(target.slice[0].slice, cst.Index):
                key = kwargs.string_key(target.slice[0].slice.value)
                if key is not None:
                    kwargs.write(base, "delete", key, None, fr.conds)
