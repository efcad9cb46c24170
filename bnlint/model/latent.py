"""Dropout that is off by default: build the model again with it switched on (BNL104).

Runs in the worker. Research models keep dropout behind a rate parameter that
defaults to 0 (``dropRate=0.0``, ``drop_rate=0.``, ``p_drop=None``) or a flag
(``use_dropout=False``), and users switch it on from the command line. For every such
parameter of the built model's own constructor or factory, and of the project's
classes inside the model (not installed libraries), the model is built once more with
that parameter at 0.1 (a flag: True): the root's by passing it, a nested class's by
changing its default for the duration of the build. Dropouts that are active in that
build and were not in the ordinary one are marked on its fact graph with the
parameter that turns them on (``latent_param``, ``latent_owner``); the BNL104 rule
reports what BNL101/102/103 find about exactly those dropouts.

A parameter the call site already sets to a rate above zero is not latent: the
ordinary rules report that dropout.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

__all__ = ["LatentParameter", "latent_parameters", "patched_default", "dropout_keys", "mark_latent",
           "LATENT_RATE", "MAX_LATENT_BUILDS"]

LATENT_RATE = 0.1
MAX_LATENT_BUILDS = 4
_RATE_NAME = re.compile(r"drop", re.IGNORECASE)
# Stochastic depth, DropConnect, DropBlock and friends are not dropout layers.
_NOT_RATE = re.compile(r"path|connect|block|last|edge|token|layer|depth|stoch|attn_drop_path", re.IGNORECASE)


@dataclass(frozen=True)
class LatentParameter:
    owner: Any  # the class or factory whose parameter it is
    owner_name: str
    name: str
    value: Any  # what the second build sets it to
    root: bool  # a parameter of the built target itself (passed) or of a nested class (default patched)

    @property
    def text(self) -> str:
        return f"{self.name} is True" if self.value is True else f"{self.name} > 0"


def _off_default(param: inspect.Parameter) -> Optional[Any]:
    """The value that switches an off-by-default dropout parameter on, else None."""
    if not _RATE_NAME.search(param.name) or _NOT_RATE.search(param.name):
        return None
    default = param.default
    if default is False:
        return True
    if default is None or (isinstance(default, (int, float)) and not isinstance(default, bool) and default == 0):
        return LATENT_RATE
    return None


def _signature(obj: Any) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def _in_project(obj: Any, root: Optional[str]) -> bool:
    from bnlint.model.sites import is_library_file

    try:
        file = inspect.getsourcefile(obj) or ""
    except TypeError:
        return False
    if not file or is_library_file(file):
        return False
    return root is None or os.path.abspath(file).startswith(os.path.abspath(root) + os.sep)


def latent_parameters(factory: Any, args: Sequence[Any], kwargs: Dict[str, Any], model: Any,
                      project_root: Optional[str]) -> List[LatentParameter]:
    """Off-by-default dropout parameters of the target and of the project's classes
    inside the built model, the target's first."""
    import torch.nn as nn

    out: List[LatentParameter] = []
    seen: Set[Tuple[int, str]] = set()
    sig = _signature(factory)
    if sig is not None and _in_project(factory, project_root):
        bound: Dict[str, Any] = {}
        try:
            bound = dict(sig.bind_partial(*args, **kwargs).arguments)
        except TypeError:
            pass
        for p in sig.parameters.values():
            value = _off_default(p)
            if value is None:
                continue
            given = bound.get(p.name, p.default)
            if _switched_on(given):
                continue  # the call site switches it on: the ordinary rules report it
            out.append(LatentParameter(factory, getattr(factory, "__qualname__", str(factory)), p.name, value, True))
            seen.add((id(factory), p.name))
    classes: List[type] = []
    for m in model.modules():
        for cls in type(m).__mro__:
            if cls in classes or cls is nn.Module or not _in_project(cls, project_root):
                continue
            classes.append(cls)
    root_names = {p.name for p in out}
    # passed on through the target's **kwargs (``def wrn16_4(**kwargs): return
    # WideResNet(16, 4, **kwargs)`` called with ``drop_rate=args.drop_rate``): set there
    passed_on = {}
    if sig is not None and any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        passed_on = {k: v for k, v in kwargs.items() if k not in sig.parameters}
    for cls in classes:
        init = cls.__dict__.get("__init__")
        sig = _signature(init) if init is not None else None
        if sig is None:
            continue
        for p in sig.parameters.values():
            value = _off_default(p)
            if value is None or (id(init), p.name) in seen or p.name in root_names:
                continue
            seen.add((id(init), p.name))
            if p.name in passed_on:
                given = passed_on[p.name]
                if _switched_on(given):
                    continue  # switched on by the call: the ordinary rules report it
                root_names.add(p.name)
                out.append(LatentParameter(factory, cls.__qualname__, p.name, value, True))
                continue
            out.append(LatentParameter(init, cls.__qualname__, p.name, value, False))
    return out


def _switched_on(given: Any) -> bool:
    """A value a call passes that turns the dropout on (the ordinary rules report it)."""
    return given not in (None, False, 0, 0.0) or isinstance(given, bool) and given


@contextlib.contextmanager
def patched_default(func: Callable, name: str, value: Any) -> Iterator[None]:
    """Change the default of ``func``'s parameter ``name`` while the block runs."""
    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    saved_defaults, saved_kw = func.__defaults__, func.__kwdefaults__
    try:
        if name in (func.__kwdefaults__ or {}):
            func.__kwdefaults__ = dict(func.__kwdefaults__, **{name: value})
        else:
            with_default = [p for p in params if p.default is not inspect.Parameter.empty]
            index = [p.name for p in with_default].index(name)
            defaults = list(func.__defaults__ or ())
            defaults[index] = value
            func.__defaults__ = tuple(defaults)
        yield
    finally:
        func.__defaults__, func.__kwdefaults__ = saved_defaults, saved_kw


def dropout_keys(graph) -> Set[Tuple]:
    """Active dropouts of a fact graph, by what stays the same across two builds: the
    module path, or the file and line of a functional call."""
    out = set()
    for _, d in graph.nodes(data=True):
        if d.get("kind") == "dropout" and d.get("active"):
            out.add(_key(d))
    return out


def _key(d: Dict[str, Any]) -> Tuple:
    if d.get("op") == "call_module":
        return ("module", d.get("module_path"))
    call = d.get("call") or {}
    return ("call", call.get("file"), call.get("line"), d.get("target"))


def mark_latent(graph, base_keys: Set[Tuple], param: LatentParameter) -> int:
    """Mark the dropouts the parameter switched on; returns how many."""
    count = 0
    for _, d in graph.nodes(data=True):
        if d.get("kind") == "dropout" and d.get("active") and _key(d) not in base_keys:
            d["latent_param"] = param.name
            d["latent_owner"] = param.owner_name
            d["latent_text"] = param.text
            d["p"] = None  # the rate is the user's to choose, not ours
            count += 1
    return count
