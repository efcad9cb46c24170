"""Models from the user's files: definitions-only import (bnlint.model.loader), target
choice, construction and example inputs."""
from __future__ import annotations

import ast
import inspect
import traceback
import types
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from bnlint.verify.options import VerifyError

__all__ = ["ModelSource", "load_model_source", "model_sources_differ"]


def _user_frame(exc: BaseException, path: str) -> str:
    """``file:line`` of the innermost frame inside the user's file, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(path.split("/")[-1])]
    return f" (at {path}:{frames[-1].lineno})" if frames else ""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class ModelSource:
    """One version: the loaded module and how to build its target model (or none)."""

    path: str
    module: types.ModuleType
    name: Optional[str]
    factory: Optional[Callable[[], nn.Module]]

    @property
    def label(self) -> str:
        return f"{self.path}::{self.name}" if self.name else self.path

    def build(self) -> nn.Module:
        assert self.factory is not None
        try:
            model = self.factory()
        except Exception as exc:
            raise VerifyError(f"building {self.label} failed{_user_frame(exc, self.path)}: {_describe(exc)}") from None
        if not isinstance(model, nn.Module):
            raise VerifyError(f"{self.label} returned {type(model).__name__}, not an nn.Module")
        return model


def _load(path: str) -> types.ModuleType:
    from bnlint.model.loader import load_definitions

    try:
        return load_definitions(path)
    except FileNotFoundError:
        raise VerifyError(f"{path}: no such file") from None
    except SyntaxError as exc:
        raise VerifyError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise VerifyError(f"importing {path} failed{_user_frame(exc, path)}: {_describe(exc)}") from None


def _local_names(module: types.ModuleType) -> List[str]:
    return [n for n, obj in vars(module).items()
            if getattr(obj, "__module__", None) == module.__name__ and not n.startswith("_")]


def load_model_source(path: str, model: Optional[str]) -> ModelSource:
    """Import ``path`` (definitions only) and pick the model ``model`` (``Name`` or
    ``Name(arg=1)``), or the single model that builds without arguments."""
    from bnlint.model.loader import find_auto_targets
    from bnlint.model.targets import TargetSpecError, parse_target_spec

    module = _load(path)
    if model:
        try:
            spec = parse_target_spec(model)
        except TargetSpecError as exc:
            raise VerifyError(str(exc)) from None
        obj = getattr(module, spec.name, None)
        if obj is None or not callable(obj):
            raise VerifyError(f"{path} defines no class or function {spec.name!r}")
        args, kwargs = spec.args, dict(spec.kwargs)
        return ModelSource(path, module, spec.name, lambda: obj(*args, **kwargs))
    targets = find_auto_targets(module, _local_names(module))
    buildable = sorted(n for n, (_, _, required) in targets.items() if not required)
    if len(buildable) > 1:
        raise VerifyError(f"{path} defines several models ({', '.join(buildable)}); choose one with --model NAME")
    if not buildable:
        return ModelSource(path, module, None, None)
    name = buildable[0]
    return ModelSource(path, module, name, targets[name][1])


def _module_class_sources(source: ModelSource) -> Dict[str, str]:
    """AST dumps of the nn.Module classes and the factory defined in the file.

    Read from the file itself: ``inspect.getsource`` finds a class through
    ``sys.modules[cls.__module__]``, which a later load of another file under the same
    module name replaces (two versions of one file in one process)."""
    wanted = set()
    for name in _local_names(source.module):
        obj = getattr(source.module, name)
        if (inspect.isclass(obj) and issubclass(obj, nn.Module)) or name == source.name:
            wanted.add(name)
    try:
        with open(source.path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return {name: repr(getattr(source.module, name)) for name in wanted}
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in wanted:
            out[node.name] = ast.dump(node)
    return out


def model_sources_differ(before: ModelSource, after: ModelSource) -> bool:
    """Whether the change touches the model definitions (else it is in the script)."""
    return _module_class_sources(before) != _module_class_sources(after)


def example_inputs(source: ModelSource, model: nn.Module,
                   input_shape: Optional[Sequence[Sequence[int]]] = None) -> Tuple[torch.Tensor, ...]:
    """``example_inputs()`` from the file, else ``input_shape``, else the first layer."""
    provider = getattr(source.module, "example_inputs", None)
    if callable(provider):
        try:
            inputs = provider()
        except Exception as exc:
            raise VerifyError(f"{source.path}: example_inputs() failed: {_describe(exc)}") from None
        inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        inputs = tuple(inputs)
        if all(isinstance(t, torch.Tensor) for t in inputs) and inputs:
            if inputs[0].shape[0] < 2:
                raise VerifyError(f"{source.path}: example_inputs() must have a batch of at least 2")
            return inputs
        raise VerifyError(f"{source.path}: example_inputs() must return a tuple of tensors")
    if input_shape:
        return tuple(torch.randn(*shape) for shape in input_shape)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return (torch.randn(2, m.in_channels, 32, 32),)
        if isinstance(m, nn.Conv1d):
            return (torch.randn(2, m.in_channels, 64),)
        if isinstance(m, nn.Conv3d):
            return (torch.randn(2, m.in_channels, 8, 16, 16),)
        if isinstance(m, nn.Linear):
            return (torch.randn(2, m.in_features),)
    raise VerifyError(f"cannot infer the input shape of {source.label}: define example_inputs() in the file "
                      "or pass --input-shape")
