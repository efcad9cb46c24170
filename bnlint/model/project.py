"""Static facts about the project a model file lives in: ast only, nothing imported.

Before a worker imports a model file, the CLI works out from the project itself what
to build: which top-level names are models, the constructor arguments the project
passes them, which models of other files use this file's classes, and what input
size the project's scripts imply. This module holds the project-wide index those
decisions read:

- :class:`ModuleFacts` -- what one file says at its top level: imports (resolved to
  project files or external modules), classes and functions with their parameters,
  the names their bodies refer to and what functions return, module constants,
  argparse options with their defaults, local assignments of each function, and the
  calls that may build a project model. Plain values, cached by the file's stat
  signature in the results cache's file index.
- :class:`Project` -- every ``.py`` file below the project root (the nearest folder
  with ``.git``, ``pyproject.toml``, ``setup.py``, ...; else the top of the file's
  package), facts parsed lazily, and name resolution across files: re-exports
  through package ``__init__`` files, star imports, relative imports.

The project of a file never depends on the other files named on the command line,
so neither does anything planned from it.
"""
from __future__ import annotations

import ast
import builtins
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

from bnlint.model.targets import may_define_models

__all__ = [
    "Param", "Definition", "CallSite", "ModuleFacts", "Binding", "Project", "project_root_of",
    "module_facts", "SKIP_DIRS",
]

SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", ".venv", "venv", "env", ".env", "__pycache__", ".tox", ".nox",
    "build", "dist", "node_modules", "site-packages", "dist-packages", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".bnlint_cache", ".eggs", ".ipynb_checkpoints",
})
MAX_PROJECT_FILES = 20000

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
    refs: FrozenSet[str] = frozenset()  # dotted names read in the body

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
    options: Dict[str, Tuple[Optional[str], Optional[str], Optional[str]]] = field(default_factory=dict)
    calls: Tuple[CallSite, ...] = ()
    size_hints: Tuple[int, ...] = ()  # input sizes the file implies (datasets, crops)
    syntax_error: bool = False


# ---------------------------------------------------------------- project root

PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "tox.ini", "pytest.ini", "conftest.py", ".git")


def package_root(path: str) -> str:
    """The folder that holds the top-most package of ``path`` (its sys.path entry)."""
    folder = os.path.dirname(os.path.abspath(path))
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        parent = os.path.dirname(folder)
        if parent == folder or not os.path.basename(folder).isidentifier():
            break
        folder = parent
    return folder


def project_root_of(path: str) -> str:
    """The nearest folder at or above ``path`` with a project marker (``.git``,
    ``pyproject.toml``, ``setup.py``, ...), as pytest finds its rootdir; without one,
    the folder holding the file's top-level package."""
    start = os.path.dirname(os.path.abspath(path))
    current = start
    while True:
        if any(os.path.exists(os.path.join(current, m)) for m in PROJECT_MARKERS):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return package_root(path)
        current = parent


# ---------------------------------------------------------------- one module's facts

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


def _dotted(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _source(node: ast.AST) -> str:
    return ast.unparse(node)


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
            d = _dotted(n)
            if d:
                names.add(d)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            names.add(n.id)
    return frozenset(names)


def _function_returns(func: ast.AST, local: Dict[str, str]) -> Tuple[str, ...]:
    out: List[str] = []
    for n in _walk_function(func):
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


def _walk_function(func: ast.AST) -> Iterator[ast.AST]:
    """Nodes of a function body, not entering nested functions, classes or lambdas."""
    stack = list(getattr(func, "body", []))
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            stack.append(child)


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


def _option(call: ast.Call) -> Optional[Tuple[str, Tuple[Optional[str], Optional[str], Optional[str]]]]:
    """``parser.add_argument('--widen-factor', default=10, type=int)`` ->
    ('widen_factor', (default source, type source, action))."""
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
    return dest, (default, typ, action)


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
        tree = ast.parse(raw, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ModuleFacts(path=path, syntax_error=True)
    candidates = set(may_define_models(tree))
    imports: Dict[str, Tuple[str, object]] = {}
    stars: List[str] = []
    definitions: Dict[str, Definition] = {}
    top_nodes = list(_top_level(tree))
    for node in top_nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    target = resolve_import(a.name, 0)
                    imports[a.asname] = ("module", target or a.name)
                else:
                    head = a.name.split(".")[0]
                    target = resolve_import(head, 0)
                    imports[head] = ("module", target or head)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            target = resolve_import(module, node.level) if (module or node.level) else None
            for a in node.names:
                if a.name == "*":
                    if target:
                        stars.append(target)
                    continue
                base = target if target else ("." * node.level) + module
                imports[a.asname or a.name] = ("from", (base, a.name))
        elif isinstance(node, ast.ClassDef):
            init = next((b for b in node.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and b.name == "__init__"), None)
            params = _params(init.args, drop_first=True) if init is not None else None
            definitions[node.name] = Definition(
                name=node.name, kind="class", line=node.lineno, params=params,
                bases=tuple(_source(b) for b in node.bases), may_be_model=node.name in candidates,
                refs=_refs(node),
            )
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local = _single_assignments(list(_walk_function(node)))
            definitions[node.name] = Definition(
                name=node.name, kind="function", line=node.lineno, params=_params(node.args, drop_first=False),
                returns=_function_returns(node, local), annotated_model=node.name in candidates,
                refs=_refs(node),
            )
    scope_list = list(_scope_nodes(tree))
    constants = _assignments(tree.body, scope_list[0][2])
    for name in list(constants):
        if name in definitions or name in imports:
            constants.pop(name)
    scopes: Dict[str, Dict[str, Tuple[Assignment, ...]]] = {}
    scope_params: Dict[str, Tuple[str, ...]] = {}
    calls: List[CallSite] = []
    options: Dict[str, Tuple[Optional[str], Optional[str], Optional[str]]] = {}
    conflicting = set()
    project_names = set(definitions) | {
        name for name, (kind, target) in imports.items()
        if (kind == "module" and os.path.isabs(str(target)))
        or (kind == "from" and os.path.isabs(str(target[0])))  # type: ignore[index]
    }
    bound_elsewhere = (set(imports) | set(constants)) - project_names
    for scope, node, owned in scope_list:
        local_vars = {n.id for n in owned if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if scope is not None:
            scopes[scope] = _assignments(node.body, owned)
            scope_params[scope] = tuple(p.name for p in _params(node.args, drop_first=False))
            local_vars.update(scope_params[scope])
        for n in owned:
            if not isinstance(n, ast.Call):
                continue
            if isinstance(n.func, ast.Attribute) and n.func.attr == "add_argument":
                opt = _option(n)
                if opt is not None:
                    dest, value = opt
                    if dest in options and options[dest] != value:
                        conflicting.add(dest)
                    options[dest] = value
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
                scope=scope,
            ))
    for dest in conflicting:
        options.pop(dest, None)
    return ModuleFacts(
        path=path, imports=imports, star_imports=tuple(stars), definitions=definitions,
        constants=constants, scopes=scopes, scope_params=scope_params, options=options,
        calls=tuple(sorted(calls, key=lambda c: (c.line, c.col))), size_hints=size_hints(tree),
    )


def _callee_text(func: ast.AST) -> Optional[str]:
    """``models.resnet.ResNet``, ``models.__dict__[args.arch]``, ``getattr(models, args.arch)``."""
    dotted = _dotted(func)
    if dotted is not None:
        return dotted
    if isinstance(func, ast.Subscript) and isinstance(func.value, ast.Attribute) and func.value.attr == "__dict__":
        inner = _dotted(func.value.value)
        if inner:
            return f"{inner}.__dict__[{_source(func.slice)}]"
    if isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and func.func.id == "getattr" \
            and len(func.args) == 2:
        inner = _dotted(func.args[0])
        if inner:
            return f"getattr({inner}, {_source(func.args[1])})"
    return None


# ---------------------------------------------------------------- the project

@dataclass(frozen=True)
class Binding:
    """What a name means at the top level of a project module."""

    kind: str  # "def" | "module" | "external" | "constant"
    path: Optional[str] = None  # the project file (def, module, constant)
    name: Optional[str] = None  # def / constant name; external: dotted name


class Project:
    """The ``.py`` files below a project root, their facts (parsed on first use, and
    kept in the results cache's file index when there is one) and name resolution."""

    def __init__(self, root: str, files: Sequence[str], index=None):
        self.root = root
        self.files = sorted(files)
        self._file_set = frozenset(self.files)
        self.index = index
        self._raw: Dict[str, Optional[bytes]] = {}
        self._facts: Dict[str, ModuleFacts] = {}
        self._modules: Dict[Tuple[str, str, int], Optional[str]] = {}

    # -- files

    @classmethod
    def scan(cls, root: str, index=None, exclude=None) -> "Project":
        files: List[str] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(
                d for d in dirnames
                if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
                and not (exclude and exclude(os.path.join(dirpath, d)))
            )
            for name in filenames:
                if name.endswith(".py") and not name.startswith(("_bnlint_fix_", "_bnlint_verify_")):
                    full = os.path.join(dirpath, name)
                    # Regular files only: opening a named pipe would wait for a writer.
                    if os.path.isfile(full) and not os.path.islink(full) and not (exclude and exclude(full)):
                        files.append(os.path.abspath(full))
            if len(files) > MAX_PROJECT_FILES:
                break
        return cls(os.path.abspath(root), files, index)

    def contains(self, path: str) -> bool:
        return os.path.abspath(path) in self._file_set

    def raw(self, path: str) -> Optional[bytes]:
        if path not in self._raw:
            self._raw[path] = None
            if os.path.isfile(path):  # a regular file: a named pipe would block
                try:
                    with open(path, "rb") as fh:
                        self._raw[path] = fh.read()
                except OSError:
                    pass
        return self._raw[path]

    def files_mentioning(self, word: str) -> List[str]:
        """Project files whose text contains ``word`` as a whole word."""
        needle = re.compile(rb"(?<![\w])" + re.escape(word.encode()) + rb"(?![\w])")
        return [p for p in self.files if (self.raw(p) or b"").find(word.encode()) >= 0 and needle.search(self.raw(p) or b"")]

    def facts(self, path: str) -> ModuleFacts:
        path = os.path.abspath(path)
        if path in self._facts:
            return self._facts[path]
        st = None
        if self.index is not None:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            cached = self.index.lookup(path, st, "project-facts")
            if isinstance(cached, ModuleFacts):
                self._facts[path] = cached
                return cached
        raw = self.raw(path)
        facts = module_facts(path, raw or b"", lambda module, level: self.resolve_module(path, module, level)) \
            if raw is not None else ModuleFacts(path=path, syntax_error=True)
        self._facts[path] = facts
        if self.index is not None and st is not None:
            self.index.store(path, st, facts, "project-facts")
        return facts

    # -- modules

    def _roots_for(self, path: str) -> List[str]:
        out = []
        for r in (os.path.dirname(os.path.abspath(path)), package_root(path), self.root):
            if r not in out:
                out.append(r)
        return out

    def resolve_module(self, from_path: str, module: str, level: int) -> Optional[str]:
        """The project file ``import module`` (``level`` dots) names from ``from_path``:
        ``pkg/mod.py`` or ``pkg/__init__.py``; None when it is not in the project."""
        key = (from_path, module, level)
        if key in self._modules:
            return self._modules[key]
        found = None
        rel = module.replace(".", os.sep) if module else ""
        if level > 0:
            base = os.path.dirname(os.path.abspath(from_path))
            for _ in range(level - 1):
                base = os.path.dirname(base)
            starts = [base]
        else:
            starts = self._roots_for(from_path)
        for start in starts:
            for candidate in ((os.path.join(start, rel + ".py"), os.path.join(start, rel, "__init__.py"))
                              if rel else (os.path.join(start, "__init__.py"),)):
                candidate = os.path.abspath(candidate)
                if candidate in self._file_set:
                    found = candidate
                    break
            if found:
                break
        self._modules[key] = found
        return found

    def submodule(self, package_file: str, name: str) -> Optional[str]:
        """``pkg/__init__.py`` + ``mod`` -> ``pkg/mod.py`` (or ``pkg/mod/__init__.py``)."""
        if os.path.basename(package_file) != "__init__.py":
            return None
        folder = os.path.dirname(package_file)
        for candidate in (os.path.join(folder, name + ".py"), os.path.join(folder, name, "__init__.py")):
            if candidate in self._file_set:
                return candidate
        return None

    def lookup(self, path: str, name: str, _depth: int = 0) -> Optional[Binding]:
        """What top-level ``name`` means in project module ``path``, following imports,
        re-exports and star imports to the defining file."""
        if _depth > 12:
            return None
        facts = self.facts(path)
        if name in facts.definitions:
            return Binding("def", path, name)
        if name in facts.imports:
            kind, target = facts.imports[name]
            if kind == "module":
                return Binding("module", target) if self.contains(str(target)) else Binding("external", name=str(target))
            base, attr = target  # type: ignore[misc]
            if self.contains(str(base)):
                inner = self.lookup(str(base), attr, _depth + 1)
                if inner is not None:
                    return inner
                sub = self.submodule(str(base), attr)
                return Binding("module", sub) if sub else None
            return Binding("external", name=f"{str(base).lstrip('.')}.{attr}")
        if name in facts.constants:
            return Binding("constant", path, name)
        for star in facts.star_imports:
            if name.startswith("_"):
                break
            inner = self.lookup(star, name, _depth + 1)
            if inner is not None and inner.kind != "module":
                return inner
        if os.path.basename(path) == "__init__.py":
            sub = self.submodule(path, name)
            if sub:
                return Binding("module", sub)
        return None

    def lookup_dotted(self, path: str, dotted: str) -> Optional[Binding]:
        """``models.resnet.ResNet`` as read in ``path``."""
        parts = dotted.split(".")
        binding = self.lookup(path, parts[0])
        for part in parts[1:]:
            if binding is None:
                return None
            if binding.kind == "external":
                binding = Binding("external", name=f"{binding.name}.{part}")
            elif binding.kind == "module":
                binding = self.lookup(str(binding.path), part)
            else:
                return None
        return binding

    def definition(self, binding: Optional[Binding]) -> Optional[Definition]:
        if binding is None or binding.kind != "def":
            return None
        return self.facts(str(binding.path)).definitions.get(str(binding.name))

    def option_files(self) -> List[str]:
        """Project files that declare command-line options (argparse)."""
        if not hasattr(self, "_option_files"):
            self._option_files = [p for p in self.files if b"add_argument" in (self.raw(p) or b"")
                                  and self.facts(p).options]
        return self._option_files

    # -- what files imply about inputs

    def size_hint(self, paths: Sequence[str]) -> Optional[int]:
        """The most common input size the given files imply, else the project's."""
        for group in (paths, self.files):
            counts: Counter = Counter()
            for p in group:
                counts.update(self.size_hints_of(p))
            if counts:
                best = max(counts.values())
                return min(size for size, n in counts.items() if n == best)
        return None

    def size_hints_of(self, path: str) -> Tuple[int, ...]:
        """``facts(path).size_hints``, without the rest of the facts when they are not
        known yet: only a file whose text may imply a size is parsed (``may_imply_size``),
        and then only for its hints. The project-wide size, the fallback of every plan,
        would otherwise compute every file's facts (seconds per thousand files)."""
        path = os.path.abspath(path)
        if path in self._facts:
            return self._facts[path].size_hints
        st = None
        if self.index is not None:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            cached = self.index.lookup(path, st, "project-facts")
            if isinstance(cached, ModuleFacts):
                self._facts[path] = cached
                return cached.size_hints
            hints = self.index.lookup(path, st, "project-size-hints")
            if isinstance(hints, tuple):
                return hints
        raw = self.raw(path)
        hints: Tuple[int, ...] = ()
        if raw is not None and may_imply_size(raw):
            try:
                hints = size_hints(ast.parse(raw, filename=path))
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                hints = ()  # as module_facts: a file that does not parse implies nothing
        if self.index is not None and st is not None:
            self.index.store(path, st, hints, "project-size-hints")
        return hints
