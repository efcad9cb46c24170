"""Constructor arguments from the project's own call sites, resolved statically.

``WideResNet(args.depth, args.widen_factor, dropRate=args.droprate)`` in ``train.py``
becomes ``WideResNet(28, 10, dropRate=0.3)`` when ``train.py`` (or a module it
imports) declares ``parser.add_argument('--depth', default=28, type=int)`` and so on.
What resolves: literals and containers of them, arithmetic, comparisons and
conditional expressions on resolved values, module constants, dict literals and their
subscripts, single assignments in the enclosing function, ``args.x`` / ``opt.x`` /
``cfg.x`` from the argparse ``default=`` of the matching option, ``int()``/``float()``
and friends, and references to classes and functions (``ResNet(BasicBlock, [2, 2])``,
``norm_layer=nn.BatchNorm2d``). Anything else leaves the call site unresolved: no
value that appears nowhere in the project is ever guessed.
"""
from __future__ import annotations

import ast
import operator
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bnlint.model.commands import UNKNOWN
from bnlint.model.project import Assignment, Binding, CallSite, Definition, Project
from bnlint.model.targets import dotted_name

__all__ = ["Unresolved", "Ref", "Ext", "ResolvedCall", "Evaluator", "resolve_call", "encode", "callee_binding",
           "parameters_of", "registry_call"]


class Unresolved(Exception):
    """A value bnlint cannot know statically."""


@dataclass(frozen=True)
class Ref:
    """A class or function defined in the project."""

    path: str
    name: str


@dataclass(frozen=True)
class Ext:
    """An object of an installed package, by dotted name (``torch.nn.BatchNorm2d``)."""

    dotted: str


@dataclass(frozen=True)
class _ModuleRef:
    path: str


@dataclass(frozen=True)
class _Members:
    """``module.__dict__``: subscripting it looks a name up."""

    owner: Any


class _Namespace:
    """The result of ``parse_args()`` (or a parameter holding it): attributes are options."""


@dataclass(frozen=True)
class ConfigRef:
    """A node of a project configuration object (``_C``, ``_C.MODEL``; see
    bnlint.model.facts.ConfigTree): its attributes are the defaults its module writes."""

    path: str
    name: str
    keys: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Built:
    """An object passed whole to a constructor: a configuration object's defaults
    (``kind`` "config", ``values`` its nested keys) or the parsed command-line options
    (``kind`` "options", ``values`` dest -> default). ``origin`` says where they come from."""

    kind: str
    values: Any
    origin: str


_NAMESPACE = _Namespace()
_NOT_NAMESPACES = frozenset({"self", "cls", "super", "torch", "nn", "F", "np", "math", "os", "sys"})

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_CMPOPS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_PURE_CALLS = {
    "int": int, "float": float, "str": str, "bool": bool, "round": round, "abs": abs, "min": min,
    "max": max, "len": len, "tuple": tuple, "list": list, "sorted": sorted, "sum": sum,
}
_LITERAL_TYPES = (int, float, str, bool, type(None), list, tuple, dict, Ref, Ext, Built)
# Methods of a resolved string that compute a plain value (``args.arch.startswith('resnext')``).
_STR_METHODS = frozenset({"startswith", "endswith", "lower", "upper", "strip", "lstrip", "rstrip", "replace"})


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in value.items())
    return isinstance(value, _LITERAL_TYPES)


class Evaluator:
    """Evaluates expressions as read in one project file and function scope."""

    def __init__(self, project: Project, path: str, scope: Optional[str], _depth: int = 0,
                 line: Optional[int] = None, overrides: Optional[Dict[str, Any]] = None):
        self.project = project
        self.path = path
        self.scope = scope
        self.depth = _depth
        self.line = line  # the call site's line: later assignments do not count
        self.used_options: Dict[str, Any] = {}
        # if-tests taken to have this outcome whatever they evaluate to: those of a call
        # site that the defaults do not run (resolve_call(assume_guards=True))
        self.assumed: Dict[str, bool] = {}
        # option values a documented command line sets (bnlint.model.commands), which
        # take the place of the defaults; UNKNOWN where the shell computes them
        self.overrides: Dict[str, Any] = overrides or {}

    # -- entry points

    def text(self, source: str) -> Any:
        try:
            node = ast.parse(source.strip(), mode="eval").body
        except SyntaxError:
            raise Unresolved(source) from None
        return self.node(node)

    def node(self, node: ast.AST) -> Any:
        if self.depth > 40:
            raise Unresolved("too deep")
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise Unresolved(type(node).__name__)
        return method(node)

    def _child(self, path: str, scope: Optional[str]) -> "Evaluator":
        child = Evaluator(self.project, path, scope, self.depth + 1, overrides=self.overrides)
        child.used_options = self.used_options
        child.assumed = self.assumed if path == self.path else {}
        return child

    # -- leaves

    def _Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, (bytes, complex)) or node.value is Ellipsis:
            raise Unresolved("constant")
        return node.value

    def _Name(self, node: ast.Name) -> Any:
        return self.name(node.id)

    def name(self, name: str) -> Any:
        facts = self.project.facts(self.path)
        scope = self.scope
        while scope:
            local = facts.scopes.get(scope, {})
            if name in local:
                return self.assigned(local[name], scope, self.line if scope == self.scope else None)
            if name in facts.scope_params.get(scope, ()):
                default = facts.scope_defaults.get(scope, {}).get(name)
                if default is not None:  # def get_model(conf, num_class=10): what its author wrote
                    return self._child(self.path, None).text(default)
                if name in _NOT_NAMESPACES:
                    raise Unresolved(name)
                return _NAMESPACE  # a parameter: only its attributes may be options
            scope = scope.rsplit(".", 1)[0] if "." in scope else None
        if name in facts.config_trees:
            return ConfigRef(self.path, facts.config_trees[name].name)
        if name in facts.constants:
            return self.assigned(facts.constants[name], None, self.line if self.scope is None else None)
        binding = self.project.lookup(self.path, name)
        return self.binding(binding, name)

    def assigned(self, assignments: Sequence[Assignment], scope: Optional[str], before: Optional[int]) -> Any:
        """The value a name holds: its last assignment (before line ``before``) whose
        if-tests all hold; unresolved when a test that matters cannot be decided."""
        child = self._child(self.path, scope)
        chosen = None
        for a in sorted(assignments, key=lambda a: a.line):
            if before is not None and a.line >= before:
                break
            runs = True
            for test, outcome in a.guards:
                if "__name__" in test:
                    value = True  # the script is run: its main block runs
                elif test == "<exception>":
                    value = False  # an except handler: assume the try worked
                elif test in self.assumed:
                    value = self.assumed[test]
                else:
                    value = bool(child.text(test))
                if value != outcome:
                    runs = False
                    break
            if runs:
                chosen = a
        if chosen is None:
            raise Unresolved("unassigned")
        return child.text(chosen.value)

    def binding(self, binding: Optional[Binding], what: str) -> Any:
        if binding is None:
            raise Unresolved(what)
        if binding.kind == "def":
            return Ref(str(binding.path), str(binding.name))
        if binding.kind == "module":
            return _ModuleRef(str(binding.path))
        if binding.kind == "external":
            return Ext(str(binding.name))
        if binding.kind == "constant":
            facts = self.project.facts(str(binding.path))
            if str(binding.name) in facts.config_trees:  # from config import cfg
                return ConfigRef(str(binding.path), facts.config_trees[str(binding.name)].name)
            return self._child(str(binding.path), None).assigned(facts.constants[str(binding.name)], None, None)
        raise Unresolved(what)

    # -- containers and operators

    def _List(self, node: ast.List) -> Any:
        return [self.node(e) for e in self._elements(node.elts)]

    def _Tuple(self, node: ast.Tuple) -> Any:
        return tuple(self.node(e) for e in self._elements(node.elts))

    def _Set(self, node: ast.Set) -> Any:
        return [self.node(e) for e in self._elements(node.elts)]

    def _elements(self, elts: Sequence[ast.AST]) -> List[ast.AST]:
        if any(isinstance(e, ast.Starred) for e in elts):
            raise Unresolved("starred")
        return list(elts)

    def _Dict(self, node: ast.Dict) -> Any:
        out: Dict[Any, Any] = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                value = self.node(v)
                if not isinstance(value, dict):
                    raise Unresolved("**")
                out.update(value)
            else:
                out[self.node(k)] = self.node(v)
        return out

    def _BinOp(self, node: ast.BinOp) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise Unresolved("operator")
        left, right = self.node(node.left), self.node(node.right)
        if isinstance(left, (Ref, Ext, _ModuleRef, _Namespace)) or isinstance(right, (Ref, Ext, _ModuleRef, _Namespace)):
            raise Unresolved("operator")
        try:
            return op(left, right)
        except Exception:
            raise Unresolved("operator") from None

    def value(self, node: ast.AST) -> Any:
        """A plain value: a parameter, a module or a namespace is not one."""
        value = self.node(node)
        if isinstance(value, (_Namespace, _ModuleRef, _Members)) or (
                isinstance(value, tuple) and value and isinstance(value[0], _Namespace)):
            raise Unresolved("not a value")
        return value

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.value(node.operand)
        try:
            if isinstance(node.op, ast.USub):
                return -value
            if isinstance(node.op, ast.UAdd):
                return +value
            if isinstance(node.op, ast.Not):
                return not value
        except TypeError:
            pass
        raise Unresolved("unary")

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        value = None
        for v in node.values:
            value = self.value(v)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def _Compare(self, node: ast.Compare) -> Any:
        left = self.value(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = self.value(comp)
            try:
                if not _CMPOPS[type(op)](left, right):
                    return False
            except Exception:
                raise Unresolved("compare") from None
            left = right
        return True

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.node(node.body) if self.value(node.test) else self.node(node.orelse)

    def _JoinedStr(self, node: ast.JoinedStr) -> Any:
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue) and v.format_spec is None and v.conversion == -1:
                value = self.node(v.value)
                if not isinstance(value, (int, float, str)):
                    raise Unresolved("f-string")
                parts.append(str(value))
            else:
                raise Unresolved("f-string")
        return "".join(parts)

    def _Subscript(self, node: ast.Subscript) -> Any:
        value = self.node(node.value)
        index = self.node(node.slice)
        if isinstance(value, _Members) and isinstance(index, str):  # models.__dict__[args.arch]
            return self.member(value.owner, index)
        if isinstance(value, (dict, list, tuple, str)):
            try:
                return value[index]
            except (KeyError, IndexError, TypeError):
                raise Unresolved("subscript") from None
        raise Unresolved("subscript")

    def _Attribute(self, node: ast.Attribute) -> Any:
        base_node = node.value
        if isinstance(base_node, ast.Name) and base_node.id in _NOT_NAMESPACES:
            binding = self.project.lookup(self.path, base_node.id)
            if binding is None or binding.kind != "external":
                raise Unresolved(base_node.id)
        try:
            base = self.node(base_node)
        except Unresolved:
            if isinstance(base_node, ast.Name):
                base = _NAMESPACE  # args = get_args(); opt, _ = parser.parse_known_args(); ...
            else:
                raise
        if node.attr == "__dict__" and isinstance(base, (_ModuleRef, Ext)):
            return _Members(base)
        return self.member(base, node.attr)

    def member(self, base: Any, attr: str) -> Any:
        """``base.attr`` (also ``getattr(base, attr)`` and ``base.__dict__[attr]``)."""
        if isinstance(base, _Namespace):
            try:
                return self.option(attr)
            except Unresolved:
                # Not an option: a section of the project's configuration object
                # (``config.MODEL.TYPE`` in ``def build_model(config)``).
                found = self.config_with((attr,), section=attr)
                if found is None:
                    raise
                return ConfigRef(found.path, found.name, (attr,))
        if isinstance(base, ConfigRef):
            value = self.config_node(base).get(attr)
            if isinstance(value, dict):
                return ConfigRef(base.path, base.name, base.keys + (attr,))
            if value is None:
                raise Unresolved(attr)
            return self._child(base.path, None).text(value)
        if isinstance(base, _ModuleRef):
            return self.binding(self.project.lookup(base.path, attr), attr)
        if isinstance(base, Ext):
            return Ext(f"{base.dotted}.{attr}")
        if isinstance(base, dict) and attr in base:  # EasyDict-style configs
            return base[attr]
        raise Unresolved(attr)

    def _Call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) == 2 and not node.keywords \
                and self.project.lookup(self.path, "getattr") is None:
            attr = self.node(node.args[1])
            if not isinstance(attr, str):
                raise Unresolved("getattr")
            return self.member(self.node(node.args[0]), attr)
        if isinstance(func, ast.Attribute) and func.attr in ("parse_args", "parse_known_args"):
            return _NAMESPACE if func.attr == "parse_args" else (_NAMESPACE, [])
        if isinstance(func, ast.Attribute) and func.attr in _STR_METHODS and not node.keywords:
            base = self.value(func.value)
            args = [self.value(a) for a in self._elements(node.args)]
            if not isinstance(base, str) or not all(isinstance(a, (str, int, tuple)) for a in args):
                raise Unresolved(func.attr)
            try:
                return getattr(base, func.attr)(*args)
            except Exception:
                raise Unresolved(func.attr) from None
        if isinstance(func, ast.Name) and func.id in _PURE_CALLS and self.project.lookup(self.path, func.id) is None:
            args = [self.node(a) for a in self._elements(node.args)]
            if node.keywords or any(isinstance(a, (Ref, Ext, _ModuleRef, _Namespace)) for a in args):
                raise Unresolved(func.id)
            try:
                return _PURE_CALLS[func.id](*args)
            except Exception:
                raise Unresolved(func.id) from None
        if isinstance(func, ast.Name) and func.id == "dict" and not node.args \
                and self.project.lookup(self.path, "dict") is None:
            out: Dict[Any, Any] = {}
            for k in node.keywords:
                value = self.node(k.value)
                if k.arg is None:
                    if not isinstance(value, dict):
                        raise Unresolved("**")
                    out.update(value)
                else:
                    out[k.arg] = value
            return out
        raise Unresolved("call")

    # -- argparse options

    def option(self, dest: str) -> Any:
        """``args.<dest>``: the argparse default declared in this file or a project file
        it imports; else in the other project files that declare it, when they agree. A
        value the command line being read sets comes first."""
        if dest in self.overrides:
            value = self.overrides[dest]
            if value is UNKNOWN:
                raise Unresolved(f"--{dest} is computed by the shell")
            self.used_options[dest] = value
            return value
        near = self.near_files()
        for path in near:
            if dest in self.project.facts(path).options:
                value = self._option_value(path, dest)
                self.used_options[dest] = value
                return value
        values = [self._option_value(p, dest) for p in self.project.option_files()
                  if p not in near and dest in self.project.facts(p).options]
        if not values:
            # Not an option: an attribute the script sets on the parsed options
            # (``args.num_classes = 10``), in this file or one it imports.
            for path in near:
                found = self.project.facts(path).set_options.get(dest)
                if found is not None:
                    value = self._child(path, None).text(found[0])
                    self.used_options[dest] = value
                    return value
        if not values or any(v != values[0] for v in values):
            raise Unresolved(f"--{dest}")
        self.used_options[dest] = values[0]
        return values[0]

    def _option_value(self, path: str, dest: str) -> Any:
        default, typ, action = self.project.facts(path).options[dest]
        if default is None:
            if action in ("store_true", "store_false"):
                return action == "store_false"
            raise Unresolved(f"--{dest} has no default")
        value = self._child(path, None).text(default)
        if value is None:
            raise Unresolved(f"--{dest} defaults to None")
        if isinstance(value, str) and typ in ("int", "float"):
            try:
                value = int(value) if typ == "int" else float(value)
            except ValueError:
                raise Unresolved(f"--{dest}") from None
        return value

    # -- configuration objects and whole option namespaces

    def config_node(self, ref: ConfigRef) -> Dict[str, Any]:
        node = self.project.facts(ref.path).config_trees[ref.name].node
        for key in ref.keys:
            node = node.get(key)
            if not isinstance(node, dict):
                raise Unresolved(".".join(ref.keys))
        return node

    def config_with(self, keys: Sequence[str], section: Optional[str] = None) -> Optional[ConfigRef]:
        """The project configuration object that has every key of ``keys`` at its top
        (``section`` among them as a nested node): in this file or one it imports, else
        the only one in the project."""
        def fits(path: str) -> List[ConfigRef]:
            out = []
            for name, tree in sorted(self.project.facts(path).config_trees.items()):
                if name == tree.name and all(k in tree.node for k in keys) \
                        and (section is None or isinstance(tree.node.get(section), dict)):
                    out.append(ConfigRef(path, name))
            return out
        for path in self.near_files():
            found = fits(path)
            if len(found) == 1:
                return found[0]
        found = [ref for path in self.project.config_files() for ref in fits(path)]
        return found[0] if len(found) == 1 else None

    def built(self, value: Any, reads: Sequence[str]) -> Any:
        """``value`` as an argument: a configuration node or the parsed options become
        the object they stand for (Built); ``reads``, the attributes the parameter it is
        passed to reads, decide between options and a configuration object."""
        if isinstance(value, _Namespace):
            if reads:
                try:
                    options = {attr: self.option(attr) for attr in sorted(reads)}
                except Unresolved:
                    options = None
                if options is not None:
                    return Built("options", dict(sorted({**self.all_options(), **options}.items())),
                                 "the command-line options" if self.overrides else "the command-line options' defaults")
                found = self.config_for(reads)
                if found is not None:
                    value = found
            if isinstance(value, _Namespace):
                raise Unresolved("a parameter passed whole")
        if isinstance(value, ConfigRef):
            shown = ".".join((value.name,) + value.keys)
            return Built("config", self.config_values(value), f"{shown} of {self.config_where(value)}")
        return value

    def config_for(self, reads: Sequence[str]) -> Optional[ConfigRef]:
        """The configuration object a parameter read for ``reads`` stands for: the one
        that has them all at its top (config_with), one of them a section."""
        found = self.config_with(sorted(reads))
        if found is None or not any(isinstance(self.config_node(found).get(r), dict) for r in reads):
            return None
        return found

    def config_where(self, ref: ConfigRef) -> str:
        """``config/defaults.py:3``: where the configuration object is made."""
        line = self.project.facts(ref.path).config_trees[ref.name].line
        return f"{relative(self.project, ref.path)}:{line}"

    def config_values(self, ref: ConfigRef) -> Dict[str, Any]:
        """A configuration node's values, nested; a value that does not resolve is left
        out (reading it fails the build, as a missing key would)."""
        out: Dict[str, Any] = {}
        for key, value in self.config_node(ref).items():
            if isinstance(value, dict):
                out[key] = self.config_values(ConfigRef(ref.path, ref.name, ref.keys + (key,)))
                continue
            try:
                resolved = self._child(ref.path, None).text(value)
            except Unresolved:
                continue
            if _plain(resolved):
                out[key] = resolved
        return out

    def all_options(self) -> Dict[str, Any]:
        """Every option declared in this file and the project files it imports, with
        its default (None where it has none), as ``parse_args([])`` would give them."""
        out: Dict[str, Any] = {}
        for path in reversed(self.near_files()):
            for dest in self.project.facts(path).options:
                try:
                    out[dest] = self._option_value(path, dest)
                except Unresolved:
                    default = self.project.facts(path).options[dest][0]
                    if default is None or default == "None":
                        out[dest] = None
        for dest, value in self.overrides.items():
            if value is UNKNOWN:
                out.pop(dest, None)
            else:
                out[dest] = value
        return out

    def near_files(self) -> List[str]:
        facts = self.project.facts(self.path)
        out = [self.path]
        for kind, target in facts.imports.values():
            path = target if kind == "module" else target[0]  # type: ignore[index]
            if isinstance(path, str) and self.project.contains(path) and path not in out:
                out.append(path)
        return out


def encode(value: Any) -> Any:
    """A resolved value as JSON for the worker: tuples, project references and
    installed objects are tagged."""
    if isinstance(value, Ref):
        return {"__ref__": [value.path, value.name]}
    if isinstance(value, Ext):
        return {"__ext__": value.dotted}
    if isinstance(value, Built):
        return {"__built__": {"kind": value.kind, "values": encode(value.values), "origin": value.origin}}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def show(value: Any) -> str:
    if isinstance(value, Built):
        return f"<{value.origin}>"
    if isinstance(value, Ref):
        return value.name
    if isinstance(value, Ext):
        return value.dotted.rsplit(".", 2)[-2] + "." + value.dotted.rsplit(".", 1)[-1] if "." in value.dotted else value.dotted
    if isinstance(value, tuple):
        return "(" + ", ".join(show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {show(v)}" for k, v in value.items()) + "}"
    return repr(value)


# ---------------------------------------------------------------- call sites

def registry_call(project: Project, path: str, site: CallSite) -> Optional[Tuple[Binding, str]]:
    """(the project module, the key's source) of a registry call site,
    ``models.__dict__[args.arch](...)`` or ``getattr(models, args.arch)(...)``."""
    text = site.callee
    if "__dict__[" not in text and not text.startswith("getattr("):
        return None
    if text.startswith("getattr("):
        inner = text[len("getattr("):-1]
        module_text, _, key_text = inner.partition(",")
    else:
        module_text, _, rest = text.partition(".__dict__[")
        key_text = rest[:-1]
    module_text = module_text.strip()
    module = project.lookup_dotted(path, module_text)
    if module is None or module.kind != "module":
        # ``import torchvision.models as models`` filled with the project's own
        # (``models.__dict__[name] = customized_models.__dict__[name]``)
        merged = [project.lookup_dotted(path, source) for target, source in project.facts(path).registry_merges
                  if target == module_text]
        module = next((m for m in merged if m is not None and m.kind == "module"), None)
        if module is None:
            return None
    return module, key_text.strip()


def callee_binding(project: Project, path: str, site: CallSite) -> Optional[Binding]:
    """What a call site's callee names: ``ResNet``, ``models.ResNet``,
    ``models.__dict__[args.arch]``, ``getattr(models, args.arch)``."""
    text = site.callee
    if "__dict__[" in text or text.startswith("getattr("):
        registry = registry_call(project, path, site)
        if registry is None:
            return None
        module, key_text = registry
        try:
            key = Evaluator(project, path, site.scope, line=site.line).text(key_text)
        except Unresolved:
            return None
        return project.lookup(str(module.path), key) if isinstance(key, str) else None
    facts = project.facts(path)
    root = text.split(".")[0]
    scope = site.scope
    while scope:  # shadowed by a local of the calling function
        if root in facts.scopes.get(scope, {}) or root in facts.scope_params.get(scope, ()):
            return None
        scope = scope.rsplit(".", 1)[0] if "." in scope else None
    return project.lookup_dotted(path, text)


def parameters_of(project: Project, binding: Binding, _depth: int = 0):
    """The definition's parameters; a class without its own ``__init__`` takes its
    first project base's. None when they come from outside the project."""
    definition = project.definition(binding)
    if definition is None or _depth > 8:
        return None
    if definition.params is not None:
        return definition.params
    for base in definition.bases:
        inner = project.lookup_dotted(str(binding.path), base)
        if inner is not None and inner.kind == "def":
            return parameters_of(project, inner, _depth + 1)
    return ()  # nn.Module and other installed bases: no required parameters


@dataclass(frozen=True)
class ResolvedCall:
    """Argument values for one definition, from one call site."""

    args: Tuple[Any, ...]
    kwargs: Tuple[Tuple[str, Any], ...]
    path: str  # the file of the call site
    line: int
    options: Tuple[Tuple[str, Any], ...]  # argparse options read, with their defaults
    # the if-tests (source, outcome) the call runs under that the defaults do not meet
    # (resolve_call(assume_guards=True)): the arguments hold when they are met
    assumed: Tuple[Tuple[str, bool], ...] = ()

    def shown(self, name: str, params: Optional[Sequence] = None) -> str:
        names = [p.name for p in params or () if p.kind == "positional"]
        parts = []
        for i, value in enumerate(self.args):
            parts.append(f"{names[i]}={show(value)}" if i < len(names) else show(value))
        parts += [f"{k}={show(v)}" for k, v in self.kwargs]
        return f"{name}({', '.join(parts)})"


def resolve_call(project: Project, path: str, site: CallSite, definition: Definition, params,
                 assume_guards: bool = False, key: Optional[Tuple[str, str]] = None,
                 overrides: Optional[Dict[str, Any]] = None) -> ResolvedCall:
    """Evaluate a call site's arguments for ``definition``; raises Unresolved unless
    every argument resolves and the required parameters are all given.

    A call under an if-test that the defaults make false (``if args.net_type ==
    'lenet': net = LeNet(num_classes)``) does not run by default: unresolved, unless
    ``assume_guards``; then its tests are taken to hold (also for the assignments the
    arguments read), and the arguments resolve only when they read no option and no
    name that those tests read (the defaults of those do not hold there).

    ``key``: (the key's source, a member's name) for a registry call
    (``models.__dict__[args.arch](...)``) taken as a call of that member: its if-tests
    that read the key must hold with the key equal to the name, and one of them must
    hold with outcome true (``if args.arch.startswith('resnext'):``); the key then
    counts as one more unmet if-test (``args.arch == 'resnext'``), unless it has that
    value (``-a resnext`` on a documented command line).

    ``overrides``: the option values of a documented command line of the script
    (bnlint.model.commands), read in place of the defaults, in the if-tests too."""
    def evaluator() -> Evaluator:
        return Evaluator(project, path, site.scope, line=site.line, overrides=overrides)

    ev = evaluator()
    unmet: List[Tuple[str, bool]] = []
    guard_options: set = set()
    guard_names: set = set()
    if key is not None:
        key_text, member = key
        key_names = _names_read(key_text)
        probe = evaluator()
        try:
            key_value = probe.text(key_text)
        except Unresolved:
            key_value = None
        guard_options |= set(probe.used_options)
        guard_names |= key_names
        pinned = False
        for test, outcome in site.guards:
            if not _names_read(test) & key_names:
                continue
            try:
                holds = bool(evaluator().text(_substituted(test, key_text, member)))
            except Unresolved:
                raise Unresolved(f"{test} with {key_text} = {member!r}") from None
            if holds != outcome:
                raise Unresolved(f"not run for {member!r}: {test} is {holds}")
            pinned = pinned or outcome
        if not pinned:
            raise Unresolved(f"no if-test selects {member!r}")
        if key_value != member:
            unmet.append((f"{key_text} == {member!r}", True))
        else:
            guard_options, guard_names = set(), set()
    for test, outcome in site.guards:
        if "__name__" in test or (key is not None and _names_read(test) & _names_read(key[0])):
            continue
        probe = evaluator()
        try:
            holds = bool(probe.text(test))
        except Unresolved:
            continue
        if holds != outcome:
            if not assume_guards:
                raise Unresolved(f"not run: {test} is {holds}")
            unmet.append((test, outcome))
            guard_options |= set(probe.used_options)
            guard_names |= _names_read(test)
    if unmet:
        ev.assumed = dict(site.guards)
    # An object passed whole (``Network(config)``, ``Net(args)``) is built from what the
    # parameter it is passed to reads of it (Evaluator.built).
    reads = dict(definition.param_attrs) if params is definition.params else {}
    positional_names = [p.name for p in params or () if p.kind == "positional"]

    def whole(text: str, name: Optional[str]) -> Any:
        try:
            value = ev.text(text)
        except Unresolved:
            if not text.isidentifier() or not reads.get(name or ""):
                raise
            # ``args = get_args()`` / ``opt = TrainOptions().parse()``: a name bnlint
            # cannot follow, passed to a parameter that is only read for attributes
            value = _NAMESPACE
        return ev.built(value, reads.get(name or "", ()))

    args: List[Any] = []
    for text in site.args:
        if text.startswith("*"):
            value = ev.text(text[1:])
            if not isinstance(value, (list, tuple)):
                raise Unresolved("*args")
            args.extend(value)
        else:
            args.append(whole(text, positional_names[len(args)] if len(args) < len(positional_names) else None))
    kwargs: Dict[str, Any] = {}
    for name, text in site.kwargs:
        if name is None:
            value = ev.text(text)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise Unresolved("**kwargs")
            kwargs.update(value)
        else:
            kwargs[name] = whole(text, name)
    if not all(_plain(v) for v in args) or not all(_plain(v) for v in kwargs.values()):
        raise Unresolved("value")
    if unmet:
        read = set().union(*(_names_read(t[1:] if t.startswith("*") else t)
                             for t in list(site.args) + [v for _, v in site.kwargs]))
        if guard_options & set(ev.used_options) or guard_names & read:
            raise Unresolved("the arguments read what the call's unmet if-tests read")
    if params is not None:
        positional = [p for p in params if p.kind == "positional"]
        has_varargs = any(p.kind == "varargs" for p in params)
        has_varkw = any(p.kind == "varkw" for p in params)
        if len(args) > len(positional) and not has_varargs:
            raise Unresolved("too many arguments")
        given = {p.name for p in positional[:len(args)]} | set(kwargs)
        known = {p.name for p in params if p.kind in ("positional", "keyword")}
        if not has_varkw and set(kwargs) - known:
            raise Unresolved("unknown keyword")
        missing = [p.name for p in params if p.required and p.name not in given]
        if missing:
            raise Unresolved("missing " + ", ".join(missing))
    return ResolvedCall(tuple(args), tuple(sorted(kwargs.items())), path, site.line,
                        tuple(sorted(ev.used_options.items())), tuple(unmet))


def _substituted(source: str, part: str, value: Any) -> str:
    """``source`` with every sub-expression written ``part`` replaced by the literal
    ``value``."""
    tree = ast.parse(source.strip(), mode="eval")

    class Swap(ast.NodeTransformer):
        def generic_visit(self, node):
            if isinstance(node, ast.expr) and ast.unparse(node) == part:
                return ast.Constant(value)
            return super().generic_visit(node)

    return ast.unparse(Swap().visit(tree))


def _names_read(source: str) -> set:
    """The names and dotted names an expression reads (``args.net_type``, ``args``)."""
    try:
        node = ast.parse(source.strip(), mode="eval")
    except SyntaxError:
        return set()
    out = set()
    stack: List[ast.AST] = [node]
    while stack:
        n = stack.pop()
        dotted = dotted_name(n) if isinstance(n, (ast.Name, ast.Attribute)) else None
        if dotted:  # the whole chain: ``args.depth`` does not read ``args.net_type``; and
            # ``args.arch.startswith`` reads ``args.arch``
            parts = dotted.split(".")
            out.update(".".join(parts[:i]) for i in range(min(2, len(parts)), len(parts) + 1))
        else:
            stack.extend(ast.iter_child_nodes(n))
    return out


def relative(project: Project, path: str) -> str:
    try:
        rel = os.path.relpath(path, project.root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
