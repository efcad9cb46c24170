"""Model targets: ``path.py::Name`` / ``path.py::Name(arg=1)`` specs and the static
pre-filter that decides whether a file may define models (without importing it)."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

__all__ = ["TargetSpec", "TargetSpecError", "parse_target_spec", "split_path_spec", "may_define_models",
           "may_define_factories"]


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
    "torch.utils.data", "torch.optim", "torch.autograd", "torch.distributed", "torch.multiprocessing",
    "enum", "typing", "typing_extensions", "abc", "collections", "dataclasses", "json", "argparse",
    "logging", "threading", "multiprocessing", "pathlib", "io", "os", "sys", "numbers", "unittest",
    "contextlib", "string", "datetime", "queue", "pydantic", "numpy", "pandas",
    # data sets of the domain libraries (their transforms may be modules; these never are)
    "torchvision.datasets", "torchaudio.datasets", "torchtext.datasets", "torchtext.data",
    "torch_geometric.datasets",
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
    """Local name -> the dotted name it stands for (``nn`` -> ``torch.nn``)."""
    out: Dict[str, str] = {}
    for node in _import_statements(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
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
    last = dotted.rsplit(".", 1)[-1]
    if last in _NOT_MODULE_NAMES or last.endswith(("Error", "Exception", "Warning")):
        return False
    full = imports.get(head, head) + ("." + rest if rest else "")
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


def may_define_models(tree: ast.Module) -> List[str]:
    """Names of top-level classes and annotated factories that might be nn.Modules.

    Static and cheap: in a file that imports torch (directly or through a relative
    import), a class with a base that may be an nn.Module (not ``object``, a
    ``Dataset``, an ``Enum``, an exception, ...) or a function whose return annotation
    may name one. The worker makes the real decision by importing the definitions.
    """
    has_torch = _imports_torch(tree)
    has_relative = any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in tree.body)
    if not (has_torch or has_relative):
        return []
    imports = _import_sources(tree)
    local: Dict[str, bool] = {}
    names: List[str] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            local[node.name] = any(_may_be_module(b, imports, local) for b in node.bases)
            if local[node.name]:
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
