"""Model targets: ``path.py::Name`` / ``path.py::Name(arg=1)`` specs and the static
pre-filter that decides whether a file may define models (without importing it)."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["TargetSpec", "TargetSpecError", "parse_target_spec", "split_path_spec", "may_define_models"]


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


def _imports_torch(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "torch" or a.name.startswith("torch.") for a in node.names):
                return True
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 0 and (mod == "torch" or mod.startswith("torch.")):
                return True
    return False


def may_define_models(tree: ast.Module) -> List[str]:
    """Names of top-level classes and annotated factories that might be nn.Modules.

    Static and cheap: a class with at least one base, in a file that imports torch
    (directly or through a relative import), or a function annotated to return
    something. The worker makes the real decision by importing the definitions.
    """
    has_torch = _imports_torch(tree)
    has_relative = any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in tree.body)
    if not (has_torch or has_relative):
        return []
    names: List[str] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.bases:
            names.append(node.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            names.append(node.name)
    return names
