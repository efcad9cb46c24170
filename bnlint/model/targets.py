"""Model targets: ``path.py::Name`` / ``path.py::Name(arg=1)`` specs and the static
pre-filter that decides whether a file may define models (without importing it)."""
from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

__all__ = ["TargetSpec", "TargetSpecError", "parse_target_spec", "split_path_spec", "may_define_models",
           "may_define_factories", "dotted_may_be_module", "layer_classes", "TORCH_CONTAINERS", "LAYER",
           "LAYER_IF_BASE"]


class TargetSpecError(ValueError):
    pass


@dataclass(frozen=True)
class TargetSpec:
    """A model named explicitly: a class or factory plus constructor arguments."""

    name: str
    args: Tuple[Any, ...] = ()
    kwargs: Tuple[Tuple[str, Any], ...] = ()
    text: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "args": list(self.args), "kwargs": dict(self.kwargs), "text": self.text}


def split_path_spec(arg: str) -> Tuple[str, Optional[str]]:
    """``models/net.py::ResNet(depth=18)`` -> (``models/net.py``, ``ResNet(depth=18)``)."""
    if "::" in arg:
        path, spec = arg.split("::", 1)
        return path, spec.strip()
    return arg, None


def parse_target_spec(spec: str) -> TargetSpec:
    try:
        tree = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        raise TargetSpecError(
            f"cannot parse model spec {spec!r}; write Name or Name(arg=value, ...) with literal values"
        ) from None
    if isinstance(tree, ast.Name):
        return TargetSpec(name=tree.id, text=spec.strip())
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name):
        try:
            args = tuple(ast.literal_eval(a) for a in tree.args)
            kwargs = tuple((k.arg, ast.literal_eval(k.value)) for k in tree.keywords if k.arg)
        except ValueError:
            raise TargetSpecError(
                f"model spec {spec!r}: arguments must be Python literals (numbers, strings, lists, ...)"
            ) from None
        if any(k.arg is None for k in tree.keywords):
            raise TargetSpecError(f"model spec {spec!r}: **kwargs is not supported")
        return TargetSpec(name=tree.func.id, args=args, kwargs=kwargs, text=spec.strip())
    raise TargetSpecError(
        f"model spec {spec!r} must be a class or function name, optionally called with literal arguments"
    )


def _import_statements(tree: ast.Module) -> Iterator[ast.AST]:
    """Every import statement of the file, nested ones included (in functions, classes,
    if/try/with blocks): statements are walked, expressions are not (an import is
    always a statement)."""
    stack: List[ast.AST] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        nested: List[ast.AST] = []
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            value = getattr(node, name, None)
            if isinstance(value, list):
                nested.extend(value)
        stack.extend(reversed(nested))


def _imports_torch(tree: ast.Module) -> bool:
    for node in _import_statements(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "torch" or a.name.startswith("torch.") for a in node.names):
                return True
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 0 and (mod == "torch" or mod.startswith("torch.")):
                return True
    return False


# Where a base class or a return annotation certainly is not an nn.Module: classes from
# these modules (and the builtins below) are never models, so files whose classes all
# derive from them need no worker. Anything else (torch.nn, local modules, unknown
# libraries) may be a module and is left to the worker, which imports and checks.
_NOT_MODULE_SOURCES = (
    "torch.utils.data", "torch.utils.tensorboard", "torch.optim", "torch.autograd", "torch.distributed", "torch.multiprocessing",
    # torch.fx's tracers and interpreters (fx's GraphModule is a module; these are not)
    "torch.fx.Tracer", "torch.fx.Interpreter", "torch.fx.Transformer", "torch.fx.Graph", "torch.fx.Proxy",
    "torch.fx.proxy", "torch.fx.interpreter", "torch.fx.graph",
    # learning-rate schedulers and optimizers of the model libraries
    "timm.scheduler", "timm.optim",
    "enum", "typing", "typing_extensions", "abc", "collections", "dataclasses", "json", "argparse",
    "logging", "threading", "multiprocessing", "pathlib", "io", "os", "sys", "numbers", "unittest",
    "contextlib", "string", "datetime", "queue", "pydantic", "numpy", "pandas",
    # data sets of the domain libraries (their transforms may be modules; these never are)
    "torchvision.datasets", "torchaudio.datasets", "torchtext.datasets", "torchtext.data",
    "torch_geometric.datasets",
    # other frameworks' layers and models (a TensorFlow port kept beside the PyTorch model)
    "tensorflow", "keras", "tf_keras", "jax", "flax", "haiku", "sklearn", "paddle", "mxnet",
)
_NOT_MODULE_NAMES = frozenset({
    "object", "type", "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "bool",
    "complex", "Exception", "BaseException", "None", "Any", "NoReturn", "Optional", "Union", "Dict", "List",
    "Tuple", "Set", "FrozenSet", "Iterator", "Iterable", "Generator", "Callable", "Sequence", "Mapping",
    "MutableMapping", "Type", "Tensor", "ndarray", "DataLoader", "Dataset", "IterableDataset", "Sampler",
    "Optimizer", "Path", "NamedTuple", "TypedDict", "Protocol", "Generic", "Enum", "IntEnum", "ABC",
    "Namespace", "Logger", "Thread", "TestCase", "Function", "DataFrame", "Series",
    "LightningDataModule", "DataModule", "Callback", "VisionDataset", "ImageFolder", "DatasetFolder",
    "BatchSampler", "DistributedSampler", "RandomSampler", "SequentialSampler", "ArgumentParser",
})


def dotted_name(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted_name(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _import_sources(tree: ast.Module) -> Dict[str, str]:
    """Local name -> the dotted name it stands for (``nn`` -> ``torch.nn``); a relative
    import's keeps its dots (``from .utils import pad`` -> ``.utils.pad``)."""
    out: Dict[str, str] = {}
    for node in _import_statements(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and (node.module or node.level):
            module = "." * node.level + (node.module or "")
            for a in node.names:
                if a.name != "*":
                    out[a.asname or a.name] = f"{module}.{a.name}" if node.module else f"{module}{a.name}"
    return out


def _may_be_module(expr: ast.AST, imports: Dict[str, str], local: Dict[str, bool]) -> bool:
    """Whether a base-class expression may name an nn.Module subclass."""
    if isinstance(expr, ast.Subscript):  # Generic[T], SomeBase[Config]
        expr = expr.value
    dotted = dotted_name(expr)
    if dotted is None:
        return True  # a call or other expression: cannot tell
    head, _, rest = dotted.partition(".")
    if not rest and head in local:
        return local[head]
    return dotted_may_be_module(imports.get(head, head) + ("." + rest if rest else ""))


def dotted_may_be_module(full: str) -> bool:
    """Whether the class a dotted name names (``torch.utils.data.Dataset``) may be an
    nn.Module subclass."""
    last = full.rsplit(".", 1)[-1]
    if last in _NOT_MODULE_NAMES or last.endswith(("Error", "Exception", "Warning")):
        return False
    return not any(full == src or full.startswith(src + ".") for src in _NOT_MODULE_SOURCES)


def _returns_may_be_module(annotation: ast.AST) -> bool:
    """Whether a return annotation may name an nn.Module (``-> nn.Module``, ``-> "ResNet"``,
    ``-> Optional[nn.Sequential]``); ``-> None``, ``-> torch.Tensor``, ``-> Dict[str, float]``
    cannot."""
    names: List[str] = []
    for node in ast.walk(annotation):
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
        elif isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                inner = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return True
            if _returns_may_be_module(inner):
                return True
    roots = {n.value.id for n in ast.walk(annotation) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    return any(n not in _NOT_MODULE_NAMES and n not in roots for n in names)


def may_define_models(tree: ast.Module, layers: Optional[Dict[str, str]] = None) -> List[str]:
    """Names of top-level classes and annotated factories that might be nn.Modules.

    Static and cheap: in a file that imports torch (directly or through a relative
    import), a class with a base that may be an nn.Module (not ``object``, a
    ``Dataset``, an ``Enum``, an exception, ...) and that is not a layer of its own
    file (``layer_classes``, or ``layers`` when given), or a function whose return
    annotation may name one. The worker makes the real decision by importing the
    definitions.
    """
    has_torch = _imports_torch(tree)
    has_relative = any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in tree.body)
    if not (has_torch or has_relative):
        return []
    imports = _import_sources(tree)
    if layers is None:
        layers = _Layers(tree, imports).classes()
    local: Dict[str, bool] = {}
    names: List[str] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            local[node.name] = any(_may_be_module(b, imports, local) for b in node.bases)
            if local[node.name] and layers.get(node.name) != LAYER:
                names.append(node.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            if _returns_may_be_module(node.returns):
                names.append(node.name)
    return names


def may_define_factories(tree: ast.Module) -> List[str]:
    """Module-level functions that return a call or a name (``return ResNet(BasicBlock,
    [2, 2, 2, 2])``, ``model = Net(); return model``, ``def head(width): return
    nn.Sequential(...)``): they may be model factories without an annotation. The
    project plan (bnlint.model.plan) decides from what the call builds and, for one
    with required parameters, from the project's calls of it."""
    if not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body):
        return []
    names: List[str] = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if any(isinstance(sub, ast.Return) and isinstance(sub.value, (ast.Call, ast.Name))
               for sub in function_body_nodes(node)):
            names.append(node.name)
    return names


def function_body_nodes(func: ast.AST) -> Iterator[ast.AST]:
    """Nodes of a function body, not entering nested functions, classes or lambdas
    (their ``return`` and their names are not the function's)."""
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
    stack = [n for n in getattr(func, "body", []) if not isinstance(n, nested)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, nested))


# -- layers: subclasses of one torch.nn layer that add no dropout or normalisation

# torch.nn classes that hold, wrap or stand for other modules: a class derived from one
# may be a model. A class derived from any other torch.nn class is a layer (a Conv2d
# with "same" padding, a BatchNorm2d with another forward) when it builds nothing more
# that bnlint's rules look at (``layer_classes``).
TORCH_CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})
_TORCH_GENERIC = TORCH_CONTAINERS | {"Module", "ParameterList", "ParameterDict", "DataParallel"}
# torch's dropouts and normalisations, classes and functions (nn.Dropout2d, F.dropout,
# nn.BatchNorm2d, nn.GroupNorm, F.batch_norm, torch.layer_norm, ...), by family.
_DROPOUT = re.compile(r"(?i)dropout")
_NORM = re.compile(r"(?i)batchnorm|instancenorm|groupnorm|layernorm|rmsnorm|localresponsenorm|crossmaplrn"
                   r"|^_?normbase$|^(?:batch|instance|layer|group|rms|local_response)_norm$")
# Modules whose functions compute values and never build or apply a module.
_VALUE_SOURCES = _NOT_MODULE_SOURCES + ("math", "cmath", "itertools", "functools", "operator", "copy", "random",
                                        "warnings", "re", "einops")
_BUILTINS = frozenset(dir(builtins)) - {"eval", "exec", "compile", "__import__", "globals", "locals", "vars"}

LAYER = "layer"  # a layer of torch.nn, as its own file shows
LAYER_IF_BASE = "if-base"  # a layer when its one base, a class of another project file, is one


def _family(torch_name: str) -> Optional[str]:
    last = torch_name.rsplit(".", 1)[-1]
    return "dropout" if _DROPOUT.search(last) else "norm" if _NORM.search(last) else None


def _is_function(torch_name: str) -> bool:
    return torch_name.rsplit(".", 1)[-1].lstrip("_")[:1].islower()


def layer_classes(tree: ast.Module) -> Dict[str, str]:
    """Top-level classes that are layers rather than models: ``LAYER`` for a class
    whose one base is a torch.nn layer class (anything in torch.nn but Module, the
    containers and DataParallel), directly or through layer classes of the file, and
    whose body builds and applies no dropout or normalisation beyond its base's own
    (``F.batch_norm`` in a BatchNorm2d's forward is its own) and calls nothing that
    may: a padding or identity helper is fine; ``self.bn = nn.BatchNorm2d(c)``,
    ``F.dropout(x)``, a class it is given (``norm_layer(c)``), a definition of the
    file that does one of these or a function of another project file are not.
    ``LAYER_IF_BASE`` for such a class whose one base may be a class of another
    project file: bnlint.model.plan looks it up. Other classes are left out.

    A layer is not a model target of its own: it is analysed as part of the models
    that use it. Static, and each definition of the file is read at most once."""
    return _Layers(tree, _import_sources(tree)).classes()


class _Layers:
    """What one file's top-level definitions build and apply, each read once."""

    def __init__(self, tree: ast.Module, imports: Dict[str, str]):
        self.tree = tree
        self.imports = imports
        self.defs: Dict[str, ast.AST] = {}
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                self.defs[node.name] = node
        self._quiet: Dict[str, bool] = {}  # definition -> applies no dropout or normalisation
        self._layer: Dict[str, Optional[Tuple[str, Optional[str]]]] = {}

    def classes(self) -> Dict[str, str]:
        out: Dict[str, str] = {}
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef):
                found = self.layer(node.name)
                if found is not None:
                    out[node.name] = found[0]
        return out

    def torch_name(self, expr: ast.AST) -> Optional[str]:
        """``torch.nn.Conv2d`` for ``nn.Conv2d`` when ``nn`` is torch's; None otherwise."""
        dotted = dotted_name(expr)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        if head not in self.imports:
            return None
        full = self.imports[head] + ("." + rest if rest else "")
        return full if full == "torch" or full.startswith("torch.") else None

    def layer(self, name: str) -> Optional[Tuple[str, Optional[str]]]:
        """(``LAYER`` or ``LAYER_IF_BASE``, the torch.nn class it derives from when
        known), or None for a class that is not a layer."""
        if name in self._layer:
            return self._layer[name]
        self._layer[name] = None  # a cycle of bases: not a layer
        node = self.defs.get(name)
        found: Optional[Tuple[str, Optional[str]]] = None
        if isinstance(node, ast.ClassDef) and len(node.bases) == 1:
            base = node.bases[0]
            full = self.torch_name(base)
            dotted = dotted_name(base)
            if full is not None:
                parts = full.split(".")
                in_nn = len(parts) == 3 or (len(parts) > 3 and parts[2] == "modules")
                if parts[:2] == ["torch", "nn"] and in_nn and parts[-1] not in _TORCH_GENERIC:
                    found = (LAYER, full)
            elif isinstance(base, ast.Name) and base.id in self.defs:
                found = self.layer(base.id)
            elif dotted is not None and _may_be_module(base, self.imports, {}) \
                    and not self.source_is_quiet(self.imports.get(dotted.split(".")[0], "")):
                found = (LAYER_IF_BASE, None)  # may be a class of another project file
            if found is not None:
                family = _family(found[1]) if found[1] else None
                if not self.body_is_quiet(node, family):
                    found = None
        self._layer[name] = found
        return found

    def quiet(self, name: str) -> bool:
        """Whether a top-level definition builds and applies no dropout or normalisation:
        a function whose body does not; a class whose bases are torch.nn classes other
        than those (or such classes of the file) and whose body does not."""
        if name in self._quiet:
            return self._quiet[name]
        self._quiet[name] = False  # a cycle: cannot tell
        node = self.defs[name]
        result = self.body_is_quiet(node, None)
        if result and isinstance(node, ast.ClassDef):
            for base in node.bases:
                full = self.torch_name(base)
                if full is not None:
                    result = _family(full) is None
                else:
                    result = isinstance(base, ast.Name) and (base.id == "object" or
                                                             (base.id in self.defs and self.quiet(base.id)))
                if not result:
                    break
        self._quiet[name] = result
        return result

    def body_is_quiet(self, node: ast.AST, family: Optional[str]) -> bool:
        """No name in the definition's body stands for a dropout or normalisation of
        torch (but functions of ``family``, the base layer's own) or for a definition
        of the file that is not quiet, and every call in it is of a builtin, of torch,
        of a value library (math, numpy, ...), of a definition of the file, or a
        method of the instance or of a value."""
        own = getattr(node, "name", None)
        body = list(getattr(node, "body", []))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body += node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
        for stmt in body:
            for sub in ast.walk(stmt):
                if isinstance(sub, (ast.Name, ast.Attribute)) and isinstance(sub.ctx, ast.Load):
                    full = self.torch_name(sub)
                    if full is not None and _family(full) is not None \
                            and not (_family(full) == family and _is_function(full)):
                        return False
                    if isinstance(sub, ast.Name) and sub.id in self.defs and sub.id != own \
                            and not self.quiet(sub.id):
                        return False
                if isinstance(sub, ast.Call) and not self.call_is_quiet(sub.func):
                    return False
        return True

    def call_is_quiet(self, func: ast.AST) -> bool:
        """Whether a call of ``func`` builds and applies no dropout or normalisation
        beyond the names it reads (which ``body_is_quiet`` checks on their own)."""
        if isinstance(func, ast.Name):
            if func.id in self.defs:
                return True  # the name is checked as a reference
            if func.id in self.imports:
                return self.source_is_quiet(self.imports[func.id])
            return func.id in _BUILTINS  # else a class it is given (norm_layer(c)) or a value: cannot tell
        if isinstance(func, ast.Attribute):
            dotted = dotted_name(func)
            if dotted is None:
                return True  # a method of a computed value: super().forward(x), F.pad(x).view(n, -1)
            head = dotted.split(".")[0]
            if head in self.imports:
                return self.source_is_quiet(self.imports[head])
            return True  # a method of the instance, of a value (x.view(...)) or of a checked definition
        root = func  # a computed callee: self.blocks[i](x), getattr(nn, name)(c), LAYERS[key](c)
        while isinstance(root, (ast.Attribute, ast.Subscript, ast.Call)):
            root = root.func if isinstance(root, ast.Call) else root.value
        return isinstance(root, ast.Name) and root.id in ("self", "cls")

    @staticmethod
    def source_is_quiet(full: str) -> bool:
        if full == "torch" or full.startswith("torch."):
            return True  # its dropouts and normalisations are names, checked as such
        return any(full == src or full.startswith(src + ".") for src in _VALUE_SOURCES)
