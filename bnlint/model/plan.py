"""What to build for one model file, decided statically from the project it lives in.

For a file ``F`` the plan lists:

- **targets**: every top-level ``nn.Module`` class and factory of ``F`` that can be
  built. A class or factory with no required parameter is built as it is; one that
  needs arguments is built with those of the first call site in the project that
  resolves fully (``bnlint.model.resolve``): same file first, then the other files in
  path order. A factory is a module-level function with no required parameters that
  is annotated to return a module or returns a call of a model class, of another
  factory, of ``torch.nn`` or of a model library (``return ResNet(BasicBlock, [2, 2,
  2, 2])``, ``model = Net(cfg); ...; return model``).
- **foreign targets**: models of other project files that use ``F``'s classes (a
  block defined in ``F`` and only ever built inside a network of ``G``). They are
  built too, and only their findings located in ``F`` are kept, so ``F``'s findings
  are the same whether ``G`` is on the command line or not.
- the names of ``F``'s model classes (to account for the ones not analysed), those
  that need arguments no call site resolves, and the input size the project's
  scripts imply for ``F``'s models.
"""
from __future__ import annotations

import ast
import os
import sys
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from bnlint.model.commands import CommandLine, parse_options
from bnlint.model.project import Binding, CallSite, Definition, Project
from bnlint.model.resolve import (Evaluator, ResolvedCall, Unresolved, callee_binding, encode, parameters_of, registry_call,
                                  relative, resolve_call, show)
from bnlint.model.targets import LAYER, LAYER_IF_BASE, TORCH_CONTAINERS, dotted_may_be_module
from bnlint.model.variants import class_span, guarded_references, hold, selecting_values

__all__ = ["PlannedTarget", "FilePlan", "Planner"]

# Installed packages whose callables return models (a factory returning one is a target).
MODEL_LIBRARIES = (
    "torchvision.models", "timm", "efficientnet_pytorch", "segmentation_models_pytorch",
    "pretrainedmodels", "torchvision", "transformers",
)
# parts of those libraries that make no models (``return transforms.Compose([...])``)
NOT_MODEL_PARTS = ("torchvision.transforms", "torchvision.datasets", "torchvision.io", "torchvision.utils")
MAX_FOREIGN_TARGETS = 6
MAX_USER_DEPTH = 3
# documented command lines tried after the first arguments that resolve
MAX_COMMAND_FALLBACKS = 2
# second builds of a file's models for the classes they hold only in other settings
MAX_VARIANTS = 3


@dataclass(frozen=True)
class PlannedTarget:
    name: str  # the definition's name in its file
    path: str  # the file that defines it
    kind: str  # "class" | "factory"
    args: Tuple[Any, ...] = ()  # encoded for JSON (bnlint.model.resolve.encode)
    kwargs: Tuple[Tuple[str, Any], ...] = ()
    call: Optional[str] = None  # "WideResNet(depth=28, widen_factor=10, dropRate=0.3)"
    origin: Optional[str] = None  # "train.py:45", the call site the arguments come from
    foreign: bool = False  # defined in another file; built for this file's classes
    builds: Tuple[str, ...] = ()  # classes of the planned file it should contain (statically)
    method: Optional[str] = None  # built through this alternative constructor (``from_name``)
    fallback: Optional["PlannedTarget"] = None  # tried when building it as it is fails
    # its arguments come from a call the default options do not run: a build that fails
    # with them means "needs arguments", not a broken model
    assumed: bool = False
    placeholder_defaults: bool = False  # all its defaults are None: built bare it may not work
    # a second build of a model with other constructor values, for classes of the planned
    # file it holds only then (bnlint.model.variants): those values ("bottleneck=False"),
    # and the line spans of those classes, where alone its findings are kept
    variant: Optional[str] = None
    keep: Tuple[Tuple[int, int], ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name, "path": self.path, "kind": self.kind, "args": list(self.args),
            "kwargs": dict(self.kwargs), "call": self.call, "origin": self.origin, "foreign": self.foreign,
            "builds": list(self.builds), "method": self.method, "placeholder_defaults": self.placeholder_defaults,
            "fallback": self.fallback.to_dict() if self.fallback is not None else None,
            "assumed": self.assumed, "variant": self.variant, "keep": [list(k) for k in self.keep],
        }


@dataclass(frozen=True)
class FilePlan:
    targets: Tuple[PlannedTarget, ...]
    models: Tuple[Tuple[str, int], ...]  # the file's model classes: (name, line)
    needs_arguments: Tuple[Tuple[str, Tuple[str, ...]], ...]  # classes no call site resolves
    input_size: Optional[int]
    # classes another class builds only under a flag that is off by default: (name,
    # "GoogLeNet builds it only when aux_logits is true (the default is False)", the spec
    # that builds it, "GoogLeNet(aux_logits=True)", when that class is of the same file
    # and needs no other argument, else None)
    conditional: Tuple[Tuple[str, str, Optional[str]], ...] = ()

    def to_request(self) -> Dict[str, Any]:
        return {
            "targets": [t.to_dict() for t in self.targets],
            "models": [list(m) for m in self.models],
            "needs_arguments": [[n, list(p)] for n, p in self.needs_arguments],
            "input_size": self.input_size,
            "conditional": [list(c) for c in self.conditional],
        }


class Planner:
    """Plans for the files of one project; memoises what several files share."""

    def __init__(self, project: Project):
        self.project = project
        self._factory: Dict[Binding, bool] = {}
        self._target: Dict[Binding, Optional[PlannedTarget]] = {}
        self._refs: Dict[Binding, Set[Binding]] = {}
        self._users: Dict[Binding, List[Binding]] = {}
        self._never: Dict[Binding, bool] = {}
        self._commands: Dict[str, List[Tuple[CommandLine, Dict[str, Any]]]] = {}
        self._trees: Dict[str, Optional[ast.Module]] = {}

    # -- what a definition is

    def definition(self, binding: Binding) -> Optional[Definition]:
        return self.project.definition(binding)

    def is_model_class(self, binding: Binding) -> bool:
        """A class that may be an nn.Module: its file says it may (a base it cannot
        resolve may be one), and the project does not show that none of its bases is
        (``class ModelPlain(ModelBase)`` with ``class ModelBase():`` in another file,
        ``class Masks(LoadImages)`` with ``class LoadImages(Dataset)``)."""
        d = self.definition(binding)
        return d is not None and d.kind == "class" and d.may_be_model and not self.is_layer(binding) \
            and not self._never_module(binding)

    def _never_module(self, binding: Binding, _depth: int = 0) -> bool:
        """Every base of the class resolves to something that is not an nn.Module:
        ``object``, a class of a library that makes none (``Dataset``, ``Enum``), or a
        project class that is never one itself."""
        if binding in self._never:
            return self._never[binding]
        self._never[binding] = False  # cycles: may be
        d = self.definition(binding)
        result = d is not None and d.kind == "class" and _depth < 8
        for base in d.bases if result else ():
            base = base.split("[", 1)[0]
            if base == "object":
                continue
            target = self.project.lookup_dotted(str(binding.path), base)
            if target is None:
                result = not dotted_may_be_module(base)  # a builtin (Exception), or unknown
            elif target.kind == "external":
                result = not dotted_may_be_module(str(target.name))
            elif target.kind == "def":
                result = self._never_module(target, _depth + 1)
            else:
                result = False
            if not result:
                break
        self._never[binding] = result
        return result

    def is_layer(self, binding: Binding, _depth: int = 0) -> bool:
        """A subclass of one torch.nn layer that adds no dropout or normalisation
        (bnlint.model.targets.layer_classes), its base looked up across the project
        when it is in another file: analysed inside the models that use it, not a
        model of its own."""
        d = self.definition(binding)
        if d is None or d.layer is None or _depth > 8:
            return False
        if d.layer == LAYER:
            return True
        base = self.project.lookup_dotted(str(binding.path), d.bases[0]) if d.layer == LAYER_IF_BASE else None
        return base is not None and base != binding and self.is_layer(base, _depth + 1)

    def is_factory(self, binding: Binding, _depth: int = 0) -> bool:
        if binding in self._factory:
            return self._factory[binding]
        self._factory[binding] = False  # cycles: not a factory
        d = self.definition(binding)
        result = False
        if d is not None and d.kind == "function" and not d.name.startswith("test"):
            if d.annotated_model:
                result = True
            elif _depth < 6:
                for callee in d.returns:
                    target = self.project.lookup_dotted(str(binding.path), callee)
                    if target is None:
                        continue
                    if target.kind == "external":
                        dotted = str(target.name)
                        if dotted.startswith("torch.nn."):
                            # A container is a model; a single layer (conv3x3 helpers) is not.
                            result = dotted.rsplit(".", 1)[-1] in TORCH_CONTAINERS
                        elif any(dotted == lib or dotted.startswith(lib + ".") for lib in MODEL_LIBRARIES) \
                                and not any(dotted.startswith(part + ".") for part in NOT_MODEL_PARTS):
                            result = True
                    elif target.kind == "def" and (self.is_model_class(target) or self.is_factory(target, _depth + 1)):
                        result = True
                    if result:
                        break
        self._factory[binding] = result
        return result

    # -- building

    def target_for(self, binding: Binding) -> Optional[PlannedTarget]:
        """How to build a class or factory: as it is, or with the arguments of the first
        call site that resolves (a call of it, or of one of its alternative
        constructors such as ``Net.from_name('b0')``); None when neither works. A class
        that builds as it is keeps that call site as its fallback (its defaults may be
        placeholders: ``blocks_args=None``)."""
        if binding in self._target:
            return self._target[binding]
        self._target[binding] = None  # a call site inside its own construction: no
        d = self.definition(binding)
        if d is None:
            return None
        kind = "class" if d.kind == "class" else "factory"
        params = parameters_of(self.project, binding)
        required = [p.name for p in params or () if p.required]
        from_site = self._from_call_site(d, binding, kind, params)
        if from_site is None and required:
            from_site = self._from_config(d, binding, kind, params)
        target: Optional[PlannedTarget] = None
        if from_site is not None and params and all(p.kind in ("varargs", "varkw") for p in params):
            # ``def resnet(**kwargs): return ResNet(**kwargs)``: a bare build passes
            # nothing the class needs; the project's call is the build
            target = from_site
        elif not required:
            # Every parameter defaulting to None (``blocks_args=None, global_params=None``):
            # the defaults are placeholders, and a failed plain build means "needs arguments".
            placeholders = bool(params) and all(p.default == "None" for p in params or ()
                                                if p.kind in ("positional", "keyword"))
            target = PlannedTarget(name=d.name, path=str(binding.path), kind=kind,
                                   fallback=from_site,
                                   placeholder_defaults=placeholders)
        else:
            target = from_site
        self._target[binding] = target
        return target

    def _from_call_site(self, d: Definition, binding: Binding, kind: str, params) -> Optional[PlannedTarget]:
        """The first call site that resolves, in this order: one the default options run;
        one a command line the project documents runs, with its options
        (bnlint.model.commands); one the defaults do not run, with its if-tests assumed.
        A target from the defaults keeps the first documented command line that resolves
        to other arguments as its fallback (``--depth 29`` by default fails the ResNet's
        depth check, ``-a resnet --depth 110`` in TRAINING.md builds it)."""
        constructors = dict(d.constructors)
        found: List[PlannedTarget] = []
        seen: Set[str] = set()
        for resolved, method, command in self._resolved_calls(d, binding, params, constructors):
            key = repr((method, [encode(a) for a in resolved.args], [(k, encode(v)) for k, v in resolved.kwargs]))
            if key in seen:
                continue
            seen.add(key)
            target = self._with_arguments(d, binding, kind, resolved, params if method is None
                                          else constructors[method], method, command)
            if found and command is None:
                break  # the fallbacks are documented command lines only
            found.append(target)
            if len(found) > MAX_COMMAND_FALLBACKS or resolved.assumed:
                break
        if not found:
            return None
        target = found[-1]
        for earlier in reversed(found[:-1]):
            target = replace(earlier, fallback=target)
        return target

    def _resolved_calls(self, d: Definition, binding: Binding, params, constructors
                        ) -> Iterator[Tuple[ResolvedCall, Optional[str], Optional[CommandLine]]]:
        sites = list(self.call_sites(binding, tuple(constructors)))
        # Constructors that load weights come last: a plain build shows the same graph.
        sites.sort(key=lambda s: bool(s[2]) and "pretrained" in s[2])

        def resolve(path, site, method, key, assume_guards=False, overrides=None):
            try:
                return resolve_call(self.project, path, site, d, params if method is None else constructors[method],
                                    assume_guards, key, overrides)
            except Unresolved:
                return None

        # A call the defaults run
        for path, site, method, key in sites:
            if key is None and (resolved := resolve(path, site, method, key)) is not None:
                yield resolved, method, None
        # A call a documented command line runs, with its options
        for path, site, method, key in sites:
            for command, overrides in self.commands_for(path):
                resolved = resolve(path, site, method, key, overrides=overrides)
                if resolved is not None and not resolved.assumed:
                    yield resolved, method, command
        # A call the defaults do not run (``if args.net_type == 'lenet':
        # LeNet(num_classes)``, ``if args.arch.startswith('resnext'):
        # models.__dict__[args.arch](...)``), its arguments read under its if-tests.
        for path, site, method, key in sites:
            if site.guards and (resolved := resolve(path, site, method, key, assume_guards=True)) is not None:
                yield resolved, method, None

    def commands_for(self, path: str) -> List[Tuple[CommandLine, Dict[str, Any]]]:
        """The documented command lines whose options a call in ``path`` may read: those
        of ``path`` itself and of the scripts that import it, each with the option values
        it sets (command lines with a flag the script does not declare are left out)."""
        if path in self._commands:
            return self._commands[path]
        out: List[Tuple[CommandLine, Dict[str, Any]]] = []
        for command in self.project.command_lines():
            ev = Evaluator(self.project, command.script, None)
            near = ev.near_files()
            if command.script != path and path not in near:
                continue
            flags: Dict[str, Tuple[str, str]] = {}
            options: Dict[str, Any] = {}
            for p in reversed(near):
                flags.update(self.project.facts(p).option_flags)
                options.update(self.project.facts(p).options)
            values = parse_options(command.argv, flags, options)
            if values:
                out.append((command, values))
        self._commands[path] = out
        return out

    def _from_config(self, d: Definition, binding: Binding, kind: str, params) -> Optional[PlannedTarget]:
        """No call resolves (``getattr(module, 'Network')(config)``): a definition whose
        required parameters are all read as a configuration object (``config.model``,
        ``config.dataset``) gets the project's configuration object that has those
        sections, with the defaults its module writes."""
        reads = dict(d.param_attrs)
        required = [p for p in params or () if p.required]
        if not required:
            return None
        ev = Evaluator(self.project, str(binding.path), None)
        kwargs, configs = [], []
        for p in required:
            found = ev.config_for(reads[p.name]) if reads.get(p.name) else None
            if found is None:
                return None
            try:
                kwargs.append((p.name, ev.built(found, ())))
            except Unresolved:
                return None
            configs.append(found)
        resolved = ResolvedCall((), tuple(kwargs), str(binding.path), d.line, ())
        target = self._with_arguments(d, binding, kind, resolved, params)
        where = ev.config_where(configs[0])
        # Its defaults may not fit this model (an ImageNet model under a CIFAR data set's
        # defaults): a build that fails with them means "needs arguments".
        return replace(target, assumed=True,
                       origin=f"the project's configuration object ({where}): no call of {d.name} "
                              f"passes values bnlint can resolve")

    def _with_arguments(self, d: Definition, binding: Binding, kind: str, resolved: ResolvedCall,
                        params, method: Optional[str] = None, command: Optional[CommandLine] = None) -> PlannedTarget:
        shown = f"{d.name}.{method}" if method else d.name
        documented = ""
        if command is not None:
            text = command.text if len(command.text) <= 80 else command.text[:77] + "..."
            documented = f" as run by the command line at {command.where(self.project.root)} (`{text}`)"
        return PlannedTarget(
            name=d.name, path=str(binding.path), kind=kind,
            args=tuple(encode(a) for a in resolved.args),
            kwargs=tuple((k, encode(v)) for k, v in resolved.kwargs),
            call=resolved.shown(shown, params),
            origin=f"{relative(self.project, resolved.path)}:{resolved.line}" + documented + _assumed_note(resolved.assumed)
            + _left_out_note(self.project.facts(resolved.path).left_out),
            # values from a document may be out of date: a build that fails with them, as
            # with a call the defaults do not run, means "needs arguments"
            method=method, assumed=bool(resolved.assumed) or command is not None,
        )

    def call_sites(self, binding: Binding, constructors: Sequence[str] = ()
                   ) -> Iterator[Tuple[str, CallSite, Optional[str], Optional[Tuple[str, str]]]]:
        """Calls of the definition anywhere in the project, its own file first: (file,
        call, None, None) for a call of it, (file, call, method, None) for a call of one
        of its alternative constructors (``Net.from_name(...)``), and (file, call, None,
        (key source, name)) for a registry call of the module that holds it whose key
        names another member or none (``models.__dict__[args.arch](...)``): a call of
        it when an if-test selects that name (bnlint.model.resolve.resolve_call)."""
        name = str(binding.name)
        files = [str(binding.path)] + [p for p in self.project.files_mentioning(name) if p != binding.path]
        # a script a documented command line runs with the name as a value (``python
        # cifar.py -a preresnet``): its registry call may build it
        files += sorted({c.script for c in self.project.command_lines() if name in c.argv} - set(files))
        for path in files:
            for site in self.project.facts(path).calls:
                head, _, last = site.callee.rpartition(".")
                if head and last in constructors:
                    owner = callee_binding(self.project, path, CallSite(head, site.line, site.col, (), (), site.scope))
                    if owner == binding:
                        yield path, site, last, None
                        continue
                if callee_binding(self.project, path, site) == binding:
                    yield path, site, None, None
                    continue
                registry = registry_call(self.project, path, site) if site.guards else None
                if registry is not None and self.project.lookup(str(registry[0].path), name) == binding:
                    yield path, site, None, (registry[1], name)

    # -- what a model contains, and who uses a class

    def references(self, binding: Binding) -> Set[Binding]:
        """Project definitions a definition reads (its bases included), transitively."""
        if binding in self._refs:
            return self._refs[binding]
        out: Set[Binding] = set()
        stack = [(binding, 0)]
        while stack:
            current, depth = stack.pop()
            d = self.definition(current)
            if d is None or depth > 8:
                continue
            for ref in sorted(d.refs):
                target = self.project.lookup_dotted(str(current.path), ref)
                if target is not None and target.kind == "def" and target not in out and target != binding:
                    out.add(target)
                    stack.append((target, depth + 1))
        self._refs[binding] = out
        return out

    def covered_by(self, target: PlannedTarget) -> Set[Binding]:
        binding = Binding("def", target.path, target.name)
        out = {binding} | self.references(binding)
        for value in list(target.args) + [v for _, v in target.kwargs]:
            for ref in _refs_in(value):
                out.add(ref)
                out |= self.references(ref)
        return out

    def users(self, binding: Binding) -> List[Binding]:
        """Definitions of the project that read this one (directly), its own file's too."""
        if binding in self._users:
            return self._users[binding]
        out: List[Binding] = []
        for path in self.project.files_mentioning(str(binding.name)):
            facts = self.project.facts(path)
            for d in sorted(facts.definitions.values(), key=lambda d: d.line):
                if path == binding.path and d.name == binding.name:
                    continue
                if any(self.project.lookup_dotted(path, ref) == binding for ref in sorted(d.refs)):
                    out.append(Binding("def", path, d.name))
        self._users[binding] = out
        return out

    def _foreign_builder(self, binding: Binding) -> Optional[PlannedTarget]:
        """A buildable model of another file that contains ``binding`` (a user, or a
        user of a user ...), breadth first."""
        frontier, seen = [binding], {binding}
        for _ in range(MAX_USER_DEPTH):
            nxt: List[Binding] = []
            for b in frontier:
                for user in self.users(b):
                    if user in seen:
                        continue
                    seen.add(user)
                    if user.path != binding.path and (self.is_model_class(user) or self.is_factory(user)):
                        target = self.target_for(user)
                        if target is not None:
                            return target
                    nxt.append(user)
            frontier = nxt
        return None

    # -- the plan

    def plan(self, path: str) -> "FilePlan":
        path = os.path.abspath(path)
        facts = self.project.facts(path)
        defs = sorted(facts.definitions.values(), key=lambda d: d.line)
        classes = [d for d in defs if self.is_model_class(Binding("def", path, d.name))]
        factories = [d for d in defs if d.kind == "function" and self.is_factory(Binding("def", path, d.name))]
        # First what builds as it is; then, for what that leaves uncovered, arguments
        # from the project's call sites (a ResNet built by ResNet18() needs no other).
        targets: List[PlannedTarget] = []
        covered: Set[Binding] = set()
        later: List[Definition] = []
        for d in sorted(classes + factories, key=lambda d: d.line):
            binding = Binding("def", path, d.name)
            if any(p.required for p in parameters_of(self.project, binding) or ()):
                later.append(d)
                continue
            target = self.target_for(binding)
            if target is not None:
                targets.append(target)
                covered |= self.covered_by(target)
        needs: Dict[str, Tuple[str, ...]] = {}
        for d in sorted(later, key=lambda d: (d.kind != "class", d.line)):  # classes cover helpers
            binding = Binding("def", path, d.name)
            if binding in covered:
                continue  # built inside a model this file already builds
            target = self.target_for(binding)
            if target is not None:
                targets.append(target)
                covered |= self.covered_by(target)
            elif d.kind == "class":
                needs[d.name] = tuple(p.name for p in parameters_of(self.project, binding) or () if p.required)
        # What no target of this file builds: a model of another file that uses it. Then
        # what models of other files also use: seen in one such context too (a dropout
        # at the end of a block feeding the next block's BN).
        foreign: List[PlannedTarget] = []
        seen_outside: Set[Binding] = set()
        for skip in (covered, seen_outside):
            for d in classes + factories:
                binding = Binding("def", path, d.name)
                if binding in skip or len(foreign) >= MAX_FOREIGN_TARGETS:
                    continue
                builder = self._foreign_builder(binding)
                if builder is not None and builder not in foreign:
                    foreign.append(builder)
                    covered |= self.covered_by(builder)
                    seen_outside |= self.covered_by(builder)

        def builds(t: PlannedTarget) -> Tuple[str, ...]:
            return tuple(sorted(str(b.name) for b in self.covered_by(t) if b.path == path and b.name != t.name))

        planned = [replace(t, builds=builds(t)) for t in targets]
        planned += [replace(t, foreign=True, builds=builds(t)) for t in foreign]
        planned += self.variants(path, classes, targets + foreign)
        return FilePlan(
            targets=tuple(planned),
            models=tuple((d.name, d.line) for d in classes),
            needs_arguments=tuple((n, p) for n, p in needs.items()
                                  if Binding("def", path, n) not in covered),
            input_size=self.project.size_hint(self.importers(path)),
            conditional=tuple((d.name,) + why for d in classes
                              if (why := self.built_only_when(Binding("def", path, d.name))) is not None),
        )

    def variants(self, path: str, classes: Sequence[Definition], targets: Sequence[PlannedTarget]
                 ) -> List[PlannedTarget]:
        """Second builds of planned models, with other constructor values, for the classes
        of ``path`` that those models hold only under values they are not built with
        (``DenseNet3(..., bottleneck=False)`` for a ``BasicBlock`` that the default
        ``bottleneck=True`` leaves out; bnlint.model.variants). A variant's findings are
        kept only inside those classes: the rest of the model is the planned build's."""
        tree = self._tree(path)
        if tree is None:
            return []
        found: Dict[str, PlannedTarget] = {}
        for d in classes:
            span = class_span(tree, d.name)
            if span is None or any(t.name == d.name and os.path.abspath(t.path) == path for t in targets):
                continue  # built as a model of its own
            variant = None
            for user in self.users(Binding("def", path, d.name)):
                built, variant = self._variant_for(d.name, user, targets)
                if built:
                    variant = None
                    break  # a planned model holds it as it is built
                if variant is not None:
                    break
            if variant is not None:
                key = variant.call or ""
                if key in found:
                    found[key] = replace(found[key], keep=found[key].keep + (span,),
                                         builds=found[key].builds + (d.name,))
                elif len(found) < MAX_VARIANTS:
                    found[key] = replace(variant, keep=(span,), builds=(d.name,))
        return list(found.values())

    def _variant_for(self, name: str, user: Binding, targets: Sequence[PlannedTarget]
                     ) -> Tuple[bool, Optional[PlannedTarget]]:
        """(whether a planned build of ``user`` holds class ``name`` as it is, the variant
        of one that would)."""
        d = self.definition(user)
        tree = self._tree(str(user.path))
        if d is None or d.kind != "class" or tree is None:
            return False, None
        params = list(parameters_of(self.project, user) or ())
        chains = guarded_references(tree, d.name, name)
        if not chains:
            return False, None
        if any(not chain for chain in chains):
            return True, None  # built whatever the arguments
        names = {p.name for p in params if p.kind in ("positional", "keyword")}
        defaults = {}
        for p in params:
            if p.default is not None:
                try:
                    defaults[p.name] = ast.literal_eval(p.default)
                except (ValueError, SyntaxError):
                    pass
        own = [t for t in targets if t.kind == "class" and t.name == d.name]  # the class itself first
        if not own and any(user in self.covered_by(t) for t in targets):
            # built inside a factory that passes it no more (``def DenseNet190(): return
            # DenseNet3(190, 10, growth_rate=40)``): that call's arguments, and the value
            found = self.target_for(user)
            if found is not None and found.kind == "class" and found.name == d.name:
                own = [found]
        for t in own + [t for t in targets if t not in own]:
            if t.variant or (user not in self.covered_by(t) and t not in own):
                continue
            if t.kind == "class" and t.name == d.name and os.path.abspath(t.path) == os.path.abspath(str(user.path)):
                positional = [p.name for p in params if p.kind == "positional"]
                if len(t.args) > len(positional):
                    continue
                given = dict(zip(positional, t.args))
                given.update(t.kwargs)
            elif t.kind == "factory" and any(
                    p.kind == "varkw" for p in parameters_of(self.project, Binding("def", t.path, t.name)) or ()):
                # ``def resnet(**kwargs): return ResNet(**kwargs)``: the first build that
                # passes every argument the class requires (built bare, it raises)
                required = {p.name for p in params if p.required}
                while t is not None and (t.args or not required <= dict(t.kwargs).keys()):
                    t = t.fallback
                if t is None:
                    continue
                given = dict(t.kwargs)
            else:
                continue
            values = dict(defaults, **given)
            if any(hold(chain, values) for chain in chains):
                return True, None  # built with these values already
            for chain in chains:
                wanted = selecting_values(chain, names)
                if not wanted or not hold(chain, dict(values, **wanted)):
                    continue
                kwargs = dict(given, **{k: encode(v) for k, v in wanted.items()})
                shown = ", ".join(f"{k}={show(v)}" for k, v in kwargs.items())
                setting = ", ".join(f"{k}={v!r}" for k, v in wanted.items())
                return False, replace(t, args=(), kwargs=tuple(kwargs.items()), call=f"{t.name}({shown})",
                                      origin=f"{t.origin or 'its defaults'}; {setting} set", foreign=True,
                                      fallback=None, assumed=True, variant=setting, placeholder_defaults=False)
            return False, None
        return False, None

    def _tree(self, path: str) -> Optional[ast.Module]:
        if path not in self._trees:
            try:
                self._trees[path] = ast.parse(self.project.raw(path) or b"")
            except (SyntaxError, ValueError):
                self._trees[path] = None
        return self._trees[path]

    def built_only_when(self, binding: Binding) -> Optional[Tuple[str, Optional[str]]]:
        """Why models that contain a class may not build it: every project class that
        calls it does so in its ``__init__`` under an if-test on one of its parameters
        that the parameter's default makes false (``if aux_logits: self.aux1 =
        InceptionAux(512, num_classes)`` with ``aux_logits=False``); then the first such
        reason and the spec that builds it when there is a simple one; None otherwise."""
        found: Optional[Tuple[str, Optional[str]]] = None
        for user in self.users(binding):
            d = self.definition(user)
            sites = [site for site in self.project.facts(str(user.path)).calls
                     if callee_binding(self.project, str(user.path), site) == binding
                     and (site.scope == d.name or str(site.scope).startswith(d.name + "."))] if d else []
            if not sites:
                continue  # reads it without calling it here (a base class, a value passed on)
            if d is None or d.kind != "class":
                return None
            defaults = {p.name: p.default for p in d.params or () if p.default is not None}
            for site in sites:
                reason = None
                for test, outcome in site.guards if site.scope == f"{d.name}.__init__" else ():
                    try:
                        default = ast.literal_eval(defaults[test]) if test in defaults else None
                    except (ValueError, SyntaxError):
                        continue
                    if test in defaults and isinstance(default, (bool, int, float, str, type(None))) \
                            and bool(default) != outcome:
                        reason = (test, outcome, default)
                        break
                if reason is None:
                    return None  # built unconditionally, or as it runs
                if found is None:
                    test, outcome, default = reason
                    why = (f"{d.name} builds it only when {test} is {'true' if outcome else 'false'} "
                           f"(the default is {defaults[test]})")
                    spec = None
                    if user.path == binding.path and isinstance(default, bool) \
                            and not any(p.required for p in d.params or ()):
                        spec = f"{d.name}({test}={outcome})"
                    found = (why, spec)
        return found

    def importers(self, path: str, depth: int = 3) -> List[str]:
        """The file and the project files that import it, up to ``depth`` steps away."""
        out = [path]
        frontier = [path]
        for _ in range(depth):
            nxt = []
            for target in frontier:
                stem = os.path.splitext(os.path.basename(target))[0]
                word = os.path.basename(os.path.dirname(target)) if stem == "__init__" else stem
                for p in self.project.files_mentioning(word):
                    if p in out:
                        continue
                    facts = self.project.facts(p)
                    linked = target in facts.star_imports or any(
                        (kind == "module" and value == target) or (kind == "from" and value[0] == target)  # type: ignore[index]
                        for kind, value in facts.imports.values()
                    )
                    if linked:
                        out.append(p)
                        nxt.append(p)
            frontier = nxt
        return out


def _assumed_note(assumed: Sequence[Tuple[str, bool]]) -> str:
    """What an origin says of a call the default options do not run."""
    if not assumed:
        return ""
    tests = " and ".join(test if outcome else f"not ({test})" for test, outcome in assumed)
    return f" (a call made only when {tests})"


def _left_out_note(lines: Sequence[int]) -> str:
    """What an origin in a file read with statements left out says about them."""
    if not lines:
        return ""
    version = f"Python {sys.version_info[0]}.{sys.version_info[1]}"
    if len(lines) == 1:
        return f" (line {lines[0]}, which does not parse under {version}, was left out)"
    shown = ", ".join(str(n) for n in lines[:5]) + (", ..." if len(lines) > 5 else "")
    return f" ({len(lines)} lines that do not parse under {version} were left out: {shown})"


def _refs_in(value: Any) -> Iterator[Binding]:
    if isinstance(value, dict):
        if "__ref__" in value and isinstance(value["__ref__"], list):
            path, name = value["__ref__"]
            yield Binding("def", path, name)
            return
        for v in value.values():
            yield from _refs_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _refs_in(v)
