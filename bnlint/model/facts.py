"""What one Python file says at its top level, read with ``ast`` (nothing imported).

``module_facts`` returns a :class:`ModuleFacts` of plain values: imports (resolved to
project files, else external dotted names), top-level classes and functions with their
parameters, the names their bodies read and what functions return, module constants
and each function's assignments with the if-tests that guard them, argparse options
with their defaults, the calls that may build a project model, and the input sizes the
file's code implies. The results cache keeps them by the file's stat signature;
``bnlint.model.project`` resolves names across files from them.
"""
from __future__ import annotations

import ast
import builtins
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

from bnlint.model.targets import dotted_name, function_body_nodes, layer_classes, may_define_models
from bnlint.model.tolerant import tolerant_parse

__all__ = ["Param", "Definition", "CallSite", "Assignment", "ModuleFacts", "module_facts", "size_hints",
           "may_imply_size", "parse_for_facts"]

# Names a call's callee cannot be a project model through (builtins, the usual tensor
# and numerics libraries): calls on them are not recorded.
_NOT_CALLEES = frozenset(dir(builtins)) | {
    "self", "cls", "super", "torch", "nn", "F", "np", "numpy", "math", "os", "sys", "random",
    "time", "json", "re", "logging", "logger", "plt", "pd", "copy", "shutil", "warnings",
}


@dataclass(frozen=True)
class Param:
    """A parameter of a constructor or function (``self`` left out)."""

    name: str
    kind: str  # "positional" | "keyword" | "varargs" | "varkw"
    required: bool
    default: Optional[str] = None  # source text of the default, when there is one


@dataclass(frozen=True)
class Definition:
    """A top-level class or function of a module."""

    name: str
    kind: str  # "class" | "function"
    line: int
    params: Optional[Tuple[Param, ...]]  # None: a class without its own __init__ (inherits one)
    bases: Tuple[str, ...] = ()
    returns: Tuple[str, ...] = ()  # functions: source of the callees of the calls they return
    annotated_model: bool = False  # the return annotation may name an nn.Module
    may_be_model: bool = False  # class: a base may be an nn.Module (targets.may_define_models)
    # class: a subclass of one torch.nn layer that adds no dropout or normalisation, not a
    # model: targets.LAYER, or targets.LAYER_IF_BASE when its base is in another file
    # (bnlint.model.plan looks it up); None otherwise (targets.layer_classes)
    layer: Optional[str] = None
    refs: FrozenSet[str] = frozenset()  # dotted names read in the body
    # class: classmethods/staticmethods that return an instance (``from_name``, ``build``),
    # with their parameters (``cls`` left out)
    constructors: Tuple[Tuple[str, Tuple["Param", ...]], ...] = ()
    # parameter -> the attributes its body reads of it (``config.model``, ``config.dataset``
    # in ``def __init__(self, config)``): what an object passed for it must have
    param_attrs: Tuple[Tuple[str, FrozenSet[str]], ...] = ()

    @property
    def required(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.params or () if p.required)


@dataclass(frozen=True)
class CallSite:
    """A call that may build a project model, as written."""

    callee: str
    line: int
    col: int
    args: Tuple[str, ...]  # source of positional arguments ("*x" for a starred one)
    kwargs: Tuple[Tuple[Optional[str], str], ...]  # (name, source); name None for **x
    scope: Optional[str]  # qualified name of the enclosing function, None at module level
    guards: Tuple[Tuple[str, bool], ...] = ()  # the if-tests (source, outcome) it runs under


@dataclass(frozen=True)
class Assignment:
    """``NAME = value`` at ``line``, run when every (test source, outcome) guard holds."""

    value: str
    line: int
    guards: Tuple[Tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class ModuleFacts:
    path: str
    # local name -> (kind, target): ("module", path-or-dotted) | ("from", (path-or-dotted, attr))
    imports: Dict[str, Tuple[str, object]] = field(default_factory=dict)
    star_imports: Tuple[str, ...] = ()  # project files imported with *
    definitions: Dict[str, Definition] = field(default_factory=dict)
    # Module-level and function-local ``NAME = <source>`` assignments, each with the
    # if-tests that guard it (see Assignment); names also bound otherwise (loops,
    # augmented assignments, item writes, ...) are left out.
    constants: Dict[str, Tuple["Assignment", ...]] = field(default_factory=dict)
    scopes: Dict[str, Dict[str, Tuple["Assignment", ...]]] = field(default_factory=dict)
    scope_params: Dict[str, Tuple[str, ...]] = field(default_factory=dict)  # function -> its parameters
    # function -> its parameters whose default is a literal other than None -> that default's source
    scope_defaults: Dict[str, Dict[str, str]] = field(default_factory=dict)
    options: Dict[str, Tuple[Optional[str], Optional[str], Optional[str]]] = field(default_factory=dict)
    # the options' flags, for reading command lines: flag -> (dest, how many values it
    # takes: "0" (store_true, count, ...), "1", "?", "+", "*" or a number as text)
    option_flags: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    # ``args.num_classes = 10`` after ``args = parser.parse_args()``: attributes the code
    # sets on the parsed options with a literal, the first in the file (dest -> (value, line))
    set_options: Dict[str, Tuple[str, int]] = field(default_factory=dict)
    calls: Tuple[CallSite, ...] = ()
    size_hints: Tuple[int, ...] = ()  # input sizes the file implies (datasets, crops)
    syntax_error: bool = False
    # A file that does not parse as it is, read with its statements that do not parse
    # left out (bnlint.model.tolerant): those physical lines. Its classes and functions
    # are not kept (the file cannot be imported, nothing of it is built); its calls,
    # options and sizes are.
    left_out: Tuple[int, ...] = ()
    # Module-level configuration objects built attribute by attribute (yacs, EasyDict,
    # ml_collections style: ``_C = CN()``, ``_C.MODEL = CN()``, ``_C.MODEL.DEPTH = 50``):
    # name -> ConfigTree. ``cfg = _C`` aliases are included.
    config_trees: Dict[str, "ConfigTree"] = field(default_factory=dict)
    # modules whose namespace the code fills with another module's members, as (the
    # filled module's source, the other's): ``models.__dict__[name] =
    # customized_models.__dict__[name]``, ``models.__dict__.update(custom.__dict__)``,
    # ``setattr(models, name, getattr(custom, name))``: a registry call of the first
    # (``models.__dict__[args.arch](...)``) may build a member of the second
    registry_merges: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ConfigTree:
    """A configuration object's defaults as its module writes them: ``node`` maps a key
    to a nested node (a dict) or to the source of the value assigned (read in the
    module's top-level scope); ``line`` is where the object is created."""

    name: str
    line: int
    node: Dict[str, Any]


_DATASET_SIZES = (
    (re.compile(r"^(?:Fashion|K|E|Q)?MNIST$", re.IGNORECASE), 28),
    (re.compile(r"^(?:CIFAR-?10|CIFAR-?100|SVHN)$", re.IGNORECASE), 32),
    (re.compile(r"^STL-?10$", re.IGNORECASE), 96),
    (re.compile(r"^(?:ImageNet|ImageFolder|ILSVRC\d*)$", re.IGNORECASE), 224),
)
_CROPS = frozenset({"RandomResizedCrop", "CenterCrop", "RandomCrop", "Resize"})


def size_hints(tree: ast.AST) -> Tuple[int, ...]:
    """Input sizes a file's code implies (not its comments or docstrings): MNIST-like
    datasets 28, CIFAR/SVHN 32, STL10 96, ImageNet/ImageFolder 224, named as classes,
    attributes or string values; and the sizes of crops and resizes."""
    out: List[int] = []
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body \
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            docstrings.add(id(node.body[0].value))
    for node in ast.walk(tree):
        word = None
        if isinstance(node, ast.Name):
            word = node.id
        elif isinstance(node, ast.Attribute):
            word = node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and len(node.value) <= 20:
            word = node.value
        if word:
            for pattern, size in _DATASET_SIZES:
                if pattern.match(word):
                    out.append(size)
        if isinstance(node, ast.Call) and node.args:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            first = node.args[0]
            if isinstance(first, ast.Tuple) and first.elts:
                first = first.elts[0]
            if name in _CROPS and isinstance(first, ast.Constant) and isinstance(first.value, int) \
                    and 8 <= first.value <= 1024:
                out.append(first.value)
    return tuple(out)


# What a file's text must contain for ``size_hints`` of it to find anything: a dataset
# word or a crop/resize name, written out (case aside) ...
_SIZE_WORDS = re.compile(rb"(?i:mnist|cifar|svhn|stl|imagenet|imagefolder|ilsvrc|crop|resize)")
# ... unless a string value may differ from its text: a literal with escapes, or
# literals written next to each other (``"CIF" "AR10"`` is one constant). Literals and
# comments are found as the tokenizer finds them (comments first, so that quotes in
# them do not count; escaped characters skipped inside literals).
_LITERALS = re.compile(
    rb"#[^\n]*"
    rb"|(?P<lit>[rRbBuUfF]{0,2}(?:'''(?:[^\\]|\\.)*?'''|\"\"\"(?:[^\\]|\\.)*?\"\"\""
    rb"|'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"))",
    re.S,
)
_CODING = re.compile(rb"[ \t\f]*#.*?coding[:=]")  # PEP 263, on the first two lines
_BETWEEN_LITERALS = re.compile(rb"(?:[ \t\r\n\f]|\\\r?\n|#[^\n]*)*")


def _escaped_value_may_imply_size(literal: bytes) -> bool:
    """A literal with backslashes: bytes never make a str constant, a raw string's
    value is its text (already searched), an f-string is parsed; the others are
    evaluated and their value searched."""
    prefix = literal[:len(literal) - len(literal.lstrip(b"rRbBuUfF"))].lower()
    if b"b" in prefix or b"r" in prefix:
        return False
    if b"f" in prefix:
        return True
    try:
        value = ast.literal_eval(literal.decode("ascii"))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return True
    return not isinstance(value, str) or bool(_SIZE_WORDS.search(value.encode("utf-8", "replace")))


def may_imply_size(raw: bytes) -> bool:
    """False only when ``size_hints`` of the file's tree is certainly empty: in an ASCII
    text every name is spelled out, and so is every string value when no literal has
    escapes and none is written next to another; a text that then contains no dataset
    word and no crop or resize name implies no size. Saves parsing most files of a
    project for its input size."""
    if not raw.isascii() or any(_CODING.match(line) for line in raw.split(b"\n", 2)[:2]):
        return True  # identifiers may be normalised, the text decoded otherwise
    if _SIZE_WORDS.search(raw):
        return True
    end = None  # where the last literal ended
    for match in _LITERALS.finditer(raw):
        if match.group("lit") is None:
            continue  # a comment
        if b"\\" in match.group() and _escaped_value_may_imply_size(match.group()):
            return True
        if end is not None and _BETWEEN_LITERALS.fullmatch(raw, end, match.start()):
            return True
        end = match.end()
    return False


def _source(node: ast.AST) -> str:
    return ast.unparse(node)


def _literal_not_none(source: str) -> bool:
    try:
        return ast.literal_eval(source) is not None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _params(args: ast.arguments, drop_first: bool) -> Tuple[Param, ...]:
    out: List[Param] = []
    positional = list(args.posonlyargs) + list(args.args)
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, defaults))
    if drop_first and pairs:
        pairs = pairs[1:]
    for a, d in pairs:
        out.append(Param(a.arg, "positional", d is None, _source(d) if d is not None else None))
    if args.vararg is not None:
        out.append(Param(args.vararg.arg, "varargs", False))
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        out.append(Param(a.arg, "keyword", d is None, _source(d) if d is not None else None))
    if args.kwarg is not None:
        out.append(Param(args.kwarg.arg, "varkw", False))
    return tuple(out)


def _refs(node: ast.AST) -> FrozenSet[str]:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute):
            d = dotted_name(n)
            if d:
                names.add(d)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            names.add(n.id)
    return frozenset(names)


def _constructors(cls: ast.ClassDef) -> Tuple[Tuple[str, Tuple["Param", ...]], ...]:
    """Alternative constructors: ``@classmethod``/``@staticmethod`` methods whose return
    is a call of ``cls``, of the class by name, or of another such method
    (``return cls(blocks_args, global_params)``, ``return cls.from_name(name)``)."""
    out = []
    for node in cls.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
            continue
        kinds = {d.id for d in node.decorator_list if isinstance(d, ast.Name)}
        if not kinds & {"classmethod", "staticmethod"}:
            continue
        local = _single_assignments(list(function_body_nodes(node)))
        for callee in _function_returns(node, local):
            head = callee.split(".")[0]
            if head == cls.name or (head == "cls" and "classmethod" in kinds):
                out.append((node.name, _params(node.args, drop_first="classmethod" in kinds)))
                break
    return tuple(out)


def _param_attrs(func: Optional[ast.AST], params: Optional[Sequence["Param"]],
                 cls: Optional[ast.ClassDef] = None) -> Tuple[Tuple[str, FrozenSet[str]], ...]:
    """For each parameter of ``func``, the attributes its body reads of it
    (``config.model``); for a constructor also what the class's methods read of the
    attribute it is kept in (``self.config = config`` ... ``self.config.n_cells``)."""
    if func is None or not params:
        return ()
    names = {p.name for p in params if p.kind in ("positional", "keyword")}
    reads: Dict[str, set] = {}
    kept: Dict[str, str] = {}  # self.<attribute> -> the parameter it holds
    for n in ast.walk(func):
        if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load) and isinstance(n.value, ast.Name) \
                and n.value.id in names:
            reads.setdefault(n.value.id, set()).add(n.attr)
        elif cls is not None and isinstance(n, ast.Assign) and isinstance(n.value, ast.Name) \
                and n.value.id in names:
            for t in n.targets:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                    kept[t.attr] = n.value.id
    if kept:
        for n in ast.walk(cls):
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load) and isinstance(n.value, ast.Attribute) \
                    and n.value.attr in kept and isinstance(n.value.value, ast.Name) and n.value.value.id == "self":
                reads.setdefault(kept[n.value.attr], set()).add(n.attr)
    return tuple(sorted((name, frozenset(attrs)) for name, attrs in reads.items()))


def _attribute_path(node: ast.AST) -> Optional[List[str]]:
    """``_C.MODEL.DEPTH`` -> ['_C', 'MODEL', 'DEPTH']; None for anything else."""
    parts: List[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or not parts:
        return None
    return [node.id] + parts[::-1]


def _plain_call(node: ast.AST) -> Optional[str]:
    """The callee of a call with only constant arguments (``CN()``, ``CN(new_allowed=True)``)."""
    if not isinstance(node, ast.Call) or not all(isinstance(a, ast.Constant) for a in node.args) \
            or not all(k.arg and isinstance(k.value, ast.Constant) for k in node.keywords):
        return None
    callee = dotted_name(node.func) if isinstance(node.func, (ast.Name, ast.Attribute)) else None
    return callee or None


def _config_trees(body: Sequence[ast.stmt]) -> Dict[str, ConfigTree]:
    """Module-level configuration objects written attribute by attribute (see
    ModuleFacts.config_trees): a name bound to a call with constant arguments, then at
    least two attribute assignments on it, nested nodes made by the same call."""
    roots: Dict[str, Tuple[str, int, Dict[str, Any], List[int]]] = {}  # name -> (callee, line, node, [count])
    aliases: Dict[str, str] = {}
    for stmt in body:
        if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
            for n in ast.walk(stmt) if isinstance(stmt, (ast.AugAssign, ast.AnnAssign)) else ():
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    roots.pop(n.id, None)
                    aliases.pop(n.id, None)
            continue
        target, value = stmt.targets[0], stmt.value
        if isinstance(target, ast.Name):
            roots.pop(target.id, None)
            aliases.pop(target.id, None)
            callee = _plain_call(value)
            if callee is not None:
                roots[target.id] = (callee, stmt.lineno, {}, [0])
            elif isinstance(value, ast.Name) and (value.id in roots or value.id in aliases):
                aliases[target.id] = aliases.get(value.id, value.id)
            continue
        path = _attribute_path(target)
        if path is None:
            continue
        root = aliases.get(path[0], path[0])
        if root not in roots:
            continue
        callee, _, node, count = roots[root]
        for key in path[1:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        if _plain_call(value) == callee:
            if not isinstance(node.get(path[-1]), dict):
                node[path[-1]] = {}
        else:
            node[path[-1]] = _source(value)
        count[0] += 1
    # A configuration object has sections (``_C.MODEL = CN()``); attributes set one level
    # deep on an object (``config = args; config.n_embed = len(vocab)``) are not one.
    out = {name: ConfigTree(name, line, node) for name, (_, line, node, count) in roots.items()
           if count[0] >= 2 and any(isinstance(v, dict) for v in node.values())}
    for alias, root in aliases.items():
        if root in out:
            out[alias] = out[root]
    return out


def _function_returns(func: ast.AST, local: Dict[str, str]) -> Tuple[str, ...]:
    out: List[str] = []
    for n in function_body_nodes(func):
        if isinstance(n, ast.Return) and n.value is not None:
            value = n.value
            if isinstance(value, ast.Name) and value.id in local:
                try:
                    value = ast.parse(local[value.id], mode="eval").body
                except SyntaxError:
                    continue
            if isinstance(value, ast.Call):
                out.append(_source(value.func))
    return tuple(out)


def _single_assignments(nodes: Sequence[ast.AST]) -> Dict[str, str]:
    """``NAME = <expr>`` bound exactly once among ``nodes``, and bound no other way."""
    seen: Counter = Counter()
    value: Dict[str, str] = {}
    for n in nodes:
        if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None:
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                if isinstance(t, ast.Name):
                    seen[t.id] += 1
                    value[t.id] = _source(n.value)
    spoiled = _spoiled_names(nodes)
    return {k: v for k, v in value.items() if seen[k] == 1 and k not in spoiled}


def _spoiled_names(nodes: Sequence[ast.AST]) -> set:
    """Names bound by something other than a plain assignment: their value is not one
    expression (loops, augmented assignments, unpacking, item writes, ``.update``)."""
    spoiled = set()
    for n in nodes:
        if isinstance(n, ast.Assign):
            for t in n.targets:
                if not isinstance(t, ast.Name):
                    for sub in ast.walk(t):
                        if isinstance(sub, ast.Name):
                            spoiled.add(sub.id)
        elif isinstance(n, ast.AugAssign):
            for sub in ast.walk(n.target):
                if isinstance(sub, ast.Name):
                    spoiled.add(sub.id)
        elif isinstance(n, (ast.For, ast.AsyncFor, ast.comprehension)):
            for sub in ast.walk(n.target):
                if isinstance(sub, ast.Name):
                    spoiled.add(sub.id)
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            for item in n.items:
                if item.optional_vars is not None:
                    for sub in ast.walk(item.optional_vars):
                        if isinstance(sub, ast.Name):
                            spoiled.add(sub.id)
        elif isinstance(n, ast.NamedExpr) and isinstance(n.target, ast.Name):
            spoiled.add(n.target.id)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name) \
                and n.func.attr in ("update", "setdefault", "pop", "append", "extend", "insert", "__setitem__"):
            spoiled.add(n.func.value.id)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            spoiled.update(n.names)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            spoiled.add(n.name)
    return spoiled


def _assignments(body: Sequence[ast.stmt], owned: Sequence[ast.AST]) -> Dict[str, Tuple[Assignment, ...]]:
    """Plain ``NAME = value`` statements of a scope with the if-tests that guard them;
    assignments inside loops, and names bound any other way, are left out."""
    out: Dict[str, List[Assignment]] = {}
    looped = set()

    def visit(stmts: Sequence[ast.stmt], guards: Tuple[Tuple[str, bool], ...], in_loop: bool) -> None:
        for stmt in stmts:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if stmt.value is None:
                    continue
                for t in targets:
                    if isinstance(t, ast.Name):
                        if in_loop:
                            looped.add(t.id)
                        out.setdefault(t.id, []).append(Assignment(_source(stmt.value), stmt.lineno, guards))
            elif isinstance(stmt, ast.If):
                test = _source(stmt.test)
                visit(stmt.body, guards + ((test, True),), in_loop)
                visit(stmt.orelse, guards + ((test, False),), in_loop)
            elif isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
                visit(stmt.body, guards, True)
                visit(stmt.orelse, guards, True)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                visit(stmt.body, guards, in_loop)
            elif isinstance(stmt, ast.Try):
                visit(stmt.body, guards, in_loop)
                visit(stmt.orelse, guards, in_loop)
                visit(stmt.finalbody, guards, in_loop)
                for h in stmt.handlers:
                    visit(h.body, guards + (("<exception>", True),), in_loop)

    visit(body, (), False)
    spoiled = _spoiled_names(owned) | looped
    return {name: tuple(values) for name, values in out.items() if name not in spoiled}


def _call_guards(body: Sequence[ast.stmt]) -> Dict[int, Tuple[Tuple[str, bool], ...]]:
    """For every call in a scope's statements (not in nested functions), the if-tests
    it runs under: {id(call): ((test source, outcome), ...)}."""
    out: Dict[int, Tuple[Tuple[str, bool], ...]] = {}

    def expressions(node: ast.AST, guards: Tuple[Tuple[str, bool], ...]) -> None:
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            if isinstance(n, ast.Call):
                out[id(n)] = guards
            stack.extend(ast.iter_child_nodes(n))

    def visit(stmts: Sequence[ast.stmt], guards: Tuple[Tuple[str, bool], ...]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                test = _source(stmt.test)
                expressions(stmt.test, guards)
                visit(stmt.body, guards + ((test, True),))
                visit(stmt.orelse, guards + ((test, False),))
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            elif isinstance(stmt, (ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try)):
                for field_name in ("target", "iter", "test", "items"):
                    value = getattr(stmt, field_name, None)
                    for part in value if isinstance(value, list) else [value]:
                        if isinstance(part, ast.AST):
                            expressions(part, guards)
                visit(stmt.body, guards)
                visit(getattr(stmt, "orelse", []) or [], guards)
                visit(getattr(stmt, "finalbody", []) or [], guards)
                for h in getattr(stmt, "handlers", []) or []:
                    visit(h.body, guards)
            else:
                expressions(stmt, guards)

    visit(body, ())
    return out


def _option(call: ast.Call) -> Optional[Tuple[str, Tuple[Optional[str], Optional[str], Optional[str]], Tuple[str, ...], str]]:
    """``parser.add_argument('-w', '--widen-factor', default=10, type=int)`` ->
    ('widen_factor', (default source, type source, action), ('-w', '--widen-factor'), "1"):
    the dest, its default, its flags and how many values it takes."""
    flags = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if not flags:
        return None
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    if "dest" in kw and isinstance(kw["dest"], ast.Constant) and isinstance(kw["dest"].value, str):
        dest = kw["dest"].value
    else:
        longs = [f for f in flags if f.startswith("--")]
        name = longs[0] if longs else flags[0]
        dest = name.lstrip("-").replace("-", "_")
    if not dest.isidentifier():
        return None
    default = _source(kw["default"]) if "default" in kw else None
    typ = _source(kw["type"]) if "type" in kw else None
    action = kw["action"].value if "action" in kw and isinstance(kw["action"], ast.Constant) else None
    nargs = kw["nargs"].value if "nargs" in kw and isinstance(kw["nargs"], ast.Constant) else None
    if action in ("store_true", "store_false", "store_const", "count", "help", "version", "append_const"):
        arity = "0"
    elif "nargs" in kw and nargs is None:
        arity = "?"  # computed: unknown
    else:
        arity = str(nargs) if nargs is not None else "1"
    return dest, (default, typ, action), tuple(f for f in flags if f.startswith("-")), arity


def _scope_nodes(tree: ast.Module) -> Iterator[Tuple[Optional[str], ast.AST, List[ast.AST]]]:
    """(qualified scope name or None, scope node, the nodes it owns) for the module and
    every function (methods and nested functions included)."""
    def owned(node: ast.AST) -> List[ast.AST]:
        out: List[ast.AST] = []
        stack = list(ast.iter_child_nodes(node))
        while stack:
            n = stack.pop()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            out.append(n)
            stack.extend(ast.iter_child_nodes(n))
        return out

    yield None, tree, owned(tree)
    stack: List[Tuple[str, ast.AST]] = [("", tree)]
    while stack:
        prefix, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                yield name, child, owned(child)
                stack.append((name + ".", child))
            elif isinstance(child, ast.ClassDef):
                stack.append((prefix + child.name + ".", child))
            elif not isinstance(child, ast.Lambda):
                stack.append((prefix, child))


def _top_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """Top-level statements, looking into if/try/with blocks (guarded imports and
    definitions), but not into ``if __name__ == "__main__":``."""
    stack = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and any(isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(node.test)):
            continue
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            children: List[ast.stmt] = []
            for part in ("body", "orelse", "finalbody"):
                children.extend(getattr(node, part, []) or [])
            for h in getattr(node, "handlers", []) or []:
                children.extend(h.body)
            stack.extend(reversed(children))


def module_facts(path: str, raw: bytes, resolve_import) -> ModuleFacts:
    """Facts of one file. ``resolve_import(module, level)`` returns the project file
    an import names, or None for an external module."""
    try:
        tree, left_out = parse_for_facts(raw, path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ModuleFacts(path=path, syntax_error=True)
    layers = layer_classes(tree)
    candidates = set(may_define_models(tree, layers))
    imports: Dict[str, Tuple[str, object]] = {}
    stars: List[str] = []
    definitions: Dict[str, Definition] = {}
    top_nodes = list(_top_level(tree))
    for node in top_nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for name, binding, target in _import_bindings(node, resolve_import):
                if name != "*":
                    imports[name] = binding
                elif target:
                    stars.append(target)
        elif isinstance(node, ast.ClassDef):
            init = next((b for b in node.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and b.name == "__init__"), None)
            params = _params(init.args, drop_first=True) if init is not None else None
            definitions[node.name] = Definition(
                name=node.name, kind="class", line=node.lineno, params=params,
                bases=tuple(_source(b) for b in node.bases), may_be_model=node.name in candidates,
                layer=layers.get(node.name),
                refs=_refs(node), constructors=_constructors(node), param_attrs=_param_attrs(init, params, node),
            )
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local = _single_assignments(list(function_body_nodes(node)))
            fn_params = _params(node.args, drop_first=False)
            definitions[node.name] = Definition(
                name=node.name, kind="function", line=node.lineno, params=fn_params,
                returns=_function_returns(node, local), annotated_model=node.name in candidates,
                refs=_refs(node), param_attrs=_param_attrs(node, fn_params),
            )
    _add_function_imports(tree, top_nodes, imports, definitions, resolve_import)
    scope_list = list(_scope_nodes(tree))
    constants = _assignments(tree.body, scope_list[0][2])
    for name in list(constants):
        if name in definitions or name in imports:
            constants.pop(name)
    scopes: Dict[str, Dict[str, Tuple[Assignment, ...]]] = {}
    scope_params: Dict[str, Tuple[str, ...]] = {}
    scope_defaults: Dict[str, Dict[str, str]] = {}
    calls: List[CallSite] = []
    options: Dict[str, Tuple[Optional[str], Optional[str], Optional[str]]] = {}
    option_flags: Dict[str, Tuple[str, str]] = {}
    conflicting = set()
    project_names = set(definitions) | {
        name for name, (kind, target) in imports.items()
        if (kind == "module" and os.path.isabs(str(target)))
        or (kind == "from" and os.path.isabs(str(target[0])))  # type: ignore[index]
    }
    merges = _registry_merges(tree) if b"__dict__" in raw or b"setattr" in raw else ()
    # an installed module filled with the project's members is searched like a project's
    project_names |= {target.split(".")[0] for target, _ in merges}
    bound_elsewhere = (set(imports) | set(constants)) - project_names
    for scope, node, owned in scope_list:
        guards = _call_guards(node.body)
        local_vars = {n.id for n in owned if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if scope is not None:
            scopes[scope] = _assignments(node.body, owned)
            fn_params = _params(node.args, drop_first=False)
            scope_params[scope] = tuple(p.name for p in fn_params)
            literal = {p.name: p.default for p in fn_params if p.default is not None and _literal_not_none(p.default)}
            if literal:
                scope_defaults[scope] = literal
            local_vars.update(scope_params[scope])
        for n in owned:
            if not isinstance(n, ast.Call):
                continue
            if isinstance(n.func, ast.Attribute) and n.func.attr == "add_argument":
                opt = _option(n)
                if opt is not None:
                    dest, value, flags, arity = opt
                    if dest in options and options[dest] != value:
                        conflicting.add(dest)
                    options[dest] = value
                    for flag in flags:
                        option_flags[flag] = (dest, arity)
                continue
            callee = _callee_text(n.func)
            if callee is None:
                continue
            root = callee[len("getattr("):] if callee.startswith("getattr(") else callee
            root = re.split(r"[.\[,(]", root, 1)[0].strip()
            if root not in project_names and (root in _NOT_CALLEES or root in bound_elsewhere or root in local_vars):
                continue  # a builtin, an external library, a local variable: never a project model
            if not (n.args or n.keywords):
                continue  # a call without arguments needs no resolving
            calls.append(CallSite(
                callee=callee, line=n.lineno, col=n.col_offset,
                args=tuple(("*" + _source(a.value)) if isinstance(a, ast.Starred) else _source(a) for a in n.args),
                kwargs=tuple((k.arg, _source(k.value)) for k in n.keywords),
                scope=scope, guards=guards.get(id(n), ()),
            ))
    for dest in conflicting:
        options.pop(dest, None)
    return ModuleFacts(
        set_options=_set_options(tree),
        path=path, imports=imports, star_imports=tuple(stars), definitions={} if left_out else definitions,
        constants=constants, scopes=scopes, scope_params=scope_params, scope_defaults=scope_defaults,
        options=options, option_flags=option_flags,
        calls=tuple(sorted(calls, key=lambda c: (c.line, c.col))), size_hints=size_hints(tree),
        syntax_error=bool(left_out), left_out=left_out, config_trees=_config_trees(tree.body),
        registry_merges=merges,
    )


def parse_for_facts(raw: bytes, path: str) -> Tuple[ast.Module, Tuple[int, ...]]:
    """(tree, lines left out) of a file: as it is, else with the statements that do not
    parse under this Python left out (bnlint.model.tolerant); raises SyntaxError when
    neither parses."""
    try:
        return ast.parse(raw, filename=path), ()
    except SyntaxError as exc:
        tolerated = tolerant_parse(raw, path)
        if tolerated is None or not tolerated[1]:
            raise exc from None
        return tolerated


def _import_bindings(node: ast.AST, resolve_import) -> List[Tuple[str, Tuple[str, object], Optional[str]]]:
    """(local name, imports entry, the project file it names or None) of each name an
    ``import`` / ``from ... import`` statement binds (``*`` for a star import)."""
    out: List[Tuple[str, Tuple[str, object], Optional[str]]] = []
    if isinstance(node, ast.Import):
        for a in node.names:
            dotted = a.name if a.asname else a.name.split(".")[0]
            target = resolve_import(dotted, 0)
            out.append((a.asname or dotted, ("module", target or dotted), target))
    elif isinstance(node, ast.ImportFrom):
        module = node.module or ""
        target = resolve_import(module, node.level) if (module or node.level) else None
        base = target if target else ("." * node.level) + module
        out.extend((a.asname or a.name, ("from", (base, a.name)), target) for a in node.names)
    return out


def _add_function_imports(tree: ast.Module, top_nodes, imports, definitions, resolve_import) -> None:
    """Imports of project modules inside functions (``def create_model(args): import
    models.wideresnet as models``), for the names the module level does not bind: the
    first in the file, as calls in that function resolve through them."""
    top = {id(n) for n in top_nodes}
    found = []
    for node in ast.walk(tree):
        if id(node) not in top and isinstance(node, (ast.Import, ast.ImportFrom)):
            found.extend((node.lineno, name, binding) for name, binding, target in _import_bindings(node, resolve_import)
                         if target and name != "*")
    for _, name, binding in sorted(found, key=lambda item: item[0]):
        if name not in imports and name not in definitions:
            imports[name] = binding


def _registry_merges(tree: ast.Module) -> Tuple[Tuple[str, str], ...]:
    """(filled module, source module) for each statement that copies one module's members
    into another's namespace (ModuleFacts.registry_merges)."""
    def namespace_of(node: ast.AST) -> Optional[str]:
        # ``X.__dict__[k]``, ``getattr(X, k)``, ``vars(X)[k]`` -> "X"
        if isinstance(node, ast.Subscript):
            inner = node.value
            if isinstance(inner, ast.Attribute) and inner.attr == "__dict__":
                return dotted_name(inner.value)
            if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id == "vars" \
                    and len(inner.args) == 1:
                return dotted_name(inner.args[0])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) == 2:
            return dotted_name(node.args[0])
        return None

    out: List[Tuple[str, str]] = []
    for node in ast.walk(tree):
        pair = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Subscript):
            pair = (namespace_of(node.targets[0]), namespace_of(node.value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update" \
                and len(node.args) == 1 and isinstance(node.func.value, ast.Attribute) \
                and node.func.value.attr == "__dict__" and isinstance(node.args[0], ast.Attribute) \
                and node.args[0].attr == "__dict__":
            pair = (dotted_name(node.func.value.value), dotted_name(node.args[0].value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" \
                and len(node.args) == 3:
            pair = (dotted_name(node.args[0]), namespace_of(node.args[2]))
        if pair is not None and pair[0] and pair[1] and pair[0] != pair[1] and pair not in out:
            out.append(pair)  # type: ignore[arg-type]
    return tuple(out)  # type: ignore[return-value]


def _set_options(tree: ast.Module) -> Dict[str, Tuple[str, int]]:
    """``args.x = <literal>`` where ``args`` holds ``parser.parse_args()`` somewhere in the
    file: dest -> (literal source, line) of the first such assignment in the file."""
    parsed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "parse_args":
            parsed.update(t.id for t in node.targets if isinstance(t, ast.Name))
    if not parsed:
        return {}
    out: Dict[str, Tuple[str, int]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and type(node.value.value) in (int, float, str, bool)):
            continue
        for target in node.targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                    and target.value.id in parsed:
                if target.attr not in out or node.lineno < out[target.attr][1]:
                    out[target.attr] = (_source(node.value), node.lineno)
    return out


def _callee_text(func: ast.AST) -> Optional[str]:
    """``models.resnet.ResNet``, ``models.__dict__[args.arch]``, ``getattr(models, args.arch)``."""
    dotted = dotted_name(func)
    if dotted is not None:
        return dotted
    if isinstance(func, ast.Subscript) and isinstance(func.value, ast.Attribute) and func.value.attr == "__dict__":
        inner = dotted_name(func.value.value)
        if inner:
            return f"{inner}.__dict__[{_source(func.slice)}]"
    if isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and func.func.id == "getattr" \
            and len(func.args) == 2:
        inner = dotted_name(func.args[0])
        if inner:
            return f"getattr({inner}, {_source(func.args[1])})"
    return None


