"""Stand-ins for packages that are not installed, so that ``import wandb`` or ``from
apex import amp`` in a model file does not stop its models from being built (as
Sphinx's ``autodoc_mock_imports`` does for documentation builds).

Runs inside the worker subprocess only (it imports torch). A stand-in module returns
a stand-in for any public attribute; stand-ins can be called, subclassed, used as
decorators and context managers, iterated (nothing), indexed and compared for
identity. Called, a stand-in returns an ``nn.Module`` instance of itself, so a
stand-in layer placed in a model shows up as a submodule: ``find_standins`` reports
it, and a stand-in that meets a tensor (a torch function, a call with a tensor,
arithmetic) raises ``NeedsPackage`` naming the package. A user class that derives
from a stand-in (``class Net(pl.LightningModule)``) is an ordinary ``nn.Module``.

The import hooks that install them are in bnlint.model.standin_imports.
"""
from __future__ import annotations

import abc
import re
import inspect
import sys
import types
from typing import Any, Dict, Iterable, List, NoReturn, Optional, Sequence, Set, Tuple

import torch
from torch import nn

__all__ = [
    "NeedsPackage", "StandInModule", "make_standin", "find_standins", "check_no_standins", "is_standin", "standin_package", "standin_bases",
]

_MARKER = "StandIn["


class NeedsPackage(ImportError):
    """Building or running the model needs a package that is not installed."""

    stops_analysis = True  # bnlint.model.trace does not try its fallbacks on it

    def __init__(self, package: str, what: str, site: Optional[Tuple[str, int]] = None):
        super().__init__(f"needs package {package!r}, which is not installed ({what})", name=package)
        self.package = package
        self.what = what
        self.site = site  # (file, line) where the stand-in was built, when known


def _fail(obj: Any, what: str) -> NoReturn:
    cls = obj if isinstance(obj, type) else type(obj)
    raise NeedsPackage(cls._bnlint_package, f"{what} {cls._bnlint_dotted}")


def _has_tensor(values: Iterable[Any]) -> bool:
    from torch.fx import Proxy

    for v in values:
        if isinstance(v, (torch.Tensor, Proxy)):
            return True
        if isinstance(v, (list, tuple)) and any(isinstance(x, (torch.Tensor, Proxy)) for x in v):
            return True
    return False


def _is_decorated(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
    return len(args) == 1 and not kwargs and (inspect.isfunction(args[0]) or inspect.isclass(args[0])
                                              or inspect.ismethod(args[0]))


def _raiser(what: str):
    def method(self, *args, **kwargs):
        _fail(self, what)
    return method


_ARITHMETIC = (
    "add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv", "rfloordiv",
    "mod", "rmod", "pow", "rpow", "matmul", "rmatmul", "neg", "pos", "abs", "invert", "lt", "le",
    "gt", "ge", "index", "int", "float", "and", "rand", "or", "ror", "lshift", "rshift",
)


class StandInForMissingPackage(abc.ABCMeta):
    """Metaclass of stand-ins: class-level attribute access, calls and arithmetic."""

    def __new__(mcls, name, bases, namespace, **kwargs):
        if namespace.get("_bnlint_pure"):
            return super().__new__(mcls, name, bases, namespace, **kwargs)
        # A user's class derives from a stand-in: make it an ordinary class on
        # _StandInBase (an nn.Module that accepts any constructor arguments) when it
        # looks like a model, else on _PlainStandInBase (``class Cfg(yacs.CfgNode)``).
        standins = [b for b in bases if isinstance(b, StandInForMissingPackage)]
        replacement = _StandInBase if _looks_like_module(standins, namespace) else _PlainStandInBase
        new_bases: List[type] = []
        for b in bases:
            b = replacement if isinstance(b, StandInForMissingPackage) else b
            if b not in new_bases:
                new_bases.append(b)
        namespace = dict(namespace)
        namespace.setdefault("_bnlint_standin_of", tuple(s._bnlint_dotted for s in standins))
        namespace.setdefault("_bnlint_package", standins[0]._bnlint_package)
        return types.new_class(name, tuple(new_bases), kwargs, lambda ns: ns.update(namespace))

    def __getattr__(cls, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        child = make_standin(f"{cls._bnlint_dotted}.{name}", cls._bnlint_package)
        type.__setattr__(cls, name, child)
        return child

    def __call__(cls, *args, **kwargs):
        if _is_decorated(args, kwargs):
            return args[0]  # @numba.jit, @register_model: the function itself
        if _has_tensor(list(args) + list(kwargs.values())):
            _fail(cls, "a tensor was passed to")
        instance = super().__call__(*args, **kwargs)
        caller = sys._getframe(1)
        nn.Module.__setattr__(instance, "_bnlint_site", (caller.f_code.co_filename, caller.f_lineno))
        return instance

    @classmethod
    def __torch_function__(mcls, func, types, args=(), kwargs=None):
        # A stand-in class itself passed to torch (torch.empty((4, cfg.WIDTH))).
        values = list(args) + list((kwargs or {}).values())
        values += [v for x in list(values) if isinstance(x, (tuple, list)) for v in x]
        found = next((v for v in values if isinstance(v, StandInForMissingPackage)), None)
        name = getattr(func, "__name__", func)
        if found is None:
            raise NeedsPackage("?", f"{name}() was applied to a stand-in")
        raise NeedsPackage(found._bnlint_package, f"{name}() was applied to {found._bnlint_dotted}")

    def __getitem__(cls, item):
        return cls

    def __iter__(cls):
        return iter(())

    def __len__(cls) -> int:
        return 0

    def __bool__(cls) -> bool:
        return False

    def __repr__(cls) -> str:
        return f"<stand-in for {cls._bnlint_dotted} (package {cls._bnlint_package!r} is not installed)>"

    for _op in _ARITHMETIC:
        locals()[f"__{_op}__"] = _raiser(f"'{_op}' was applied to")
    del _op


_MODULE_NAMES = re.compile(r"(Module|Model|Net|Network|Layer|Block|Backbone|Head|Encoder|Decoder)$")
_MODULE_METHODS = ("forward", "training_step", "validation_step", "configure_optimizers")


def _looks_like_module(standins: Sequence[type], namespace: Dict[str, Any]) -> bool:
    """A user class derived from a stand-in is an nn.Module when it defines forward (or
    Lightning's hooks), or derives from a name such as LightningModule or PreTrainedModel."""
    return any(m in namespace for m in _MODULE_METHODS) or any(
        _MODULE_NAMES.search(s._bnlint_dotted.rsplit(".", 1)[-1]) for s in standins)


def _standin_attribute(owner: type, name: str):
    base = owner._bnlint_standin_of[0] if owner._bnlint_standin_of else owner.__name__
    return make_standin(f"{base}.{name}", owner._bnlint_package)


class _PlainStandInBase:
    """Base of a user class derived from a stand-in that is not a model (a config node,
    a logger): accepts any constructor arguments; unknown attributes are stand-ins."""

    _bnlint_package = "?"
    _bnlint_standin_of: Tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return _standin_attribute(type(self), name)


class _StandInBase(nn.Module):
    """Base of stand-in instances and of user classes derived from a stand-in."""

    _bnlint_package = "?"
    _bnlint_standin_of: Tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # parameters, buffers, submodules
        except AttributeError:
            if name.startswith("_"):
                raise
        return _standin_attribute(type(self), name)


class _Structural:
    """An nn.Module method that exposes structure (children, parameters, ...): on a
    stand-in, calling it means the model is built from the missing package."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type):
        def missing(*args: Any, **kwargs: Any) -> NoReturn:
            _fail(owner, f"{self.name}() was called on")
        return missing


class _PureStandIn(_StandInBase):
    """An instance of a stand-in (the result of calling one): an nn.Module that fails
    as soon as a tensor reaches it."""

    _bnlint_pure = True
    _bnlint_dotted = "?"

    def __getattr__(self, name: str):
        try:
            return nn.Module.__getattr__(self, name)
        except AttributeError:
            if name.startswith("_"):
                raise
        child = getattr(type(self), name)
        return child() if isinstance(child, StandInForMissingPackage) else child

    children, named_children, modules, named_modules = (_Structural() for _ in range(4))
    parameters, named_parameters, buffers, named_buffers = (_Structural() for _ in range(4))
    state_dict, load_state_dict, get_submodule, get_parameter = (_Structural() for _ in range(4))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if _is_decorated(args, kwargs) or (len(args) == 1 and not kwargs and callable(args[0])
                                           and not isinstance(args[0], torch.Tensor)):
            return args[0]  # @numba.jit(nopython=True) applied to a function
        if _has_tensor(list(args) + list(kwargs.values())):
            _fail(self, "a tensor reached")
        return type(self)()

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise NeedsPackage(cls._bnlint_package, f"{getattr(func, '__name__', func)}() was applied to {cls._bnlint_dotted}")

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return False

    def __getitem__(self, item):
        return self

    def __contains__(self, item) -> bool:
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<stand-in {self._bnlint_dotted}() (package {self._bnlint_package!r} is not installed)>"

    for _op in _ARITHMETIC:
        locals()[f"__{_op}__"] = _raiser(f"'{_op}' was applied to")
    del _op


def make_standin(dotted: str, package: str) -> type:
    """A stand-in class for ``dotted`` (a name inside the missing ``package``)."""
    return StandInForMissingPackage(f"{_MARKER}{dotted}]", (_PureStandIn,), {
        "_bnlint_pure": True, "_bnlint_dotted": dotted, "_bnlint_package": package,
        "__module__": dotted.rpartition(".")[0] or dotted, "__qualname__": f"{_MARKER}{dotted}]",
    })


class StandInModule(types.ModuleType):
    """A module that stands in for a package that is not installed."""

    def __init__(self, name: str, package: str):
        super().__init__(name)
        self.__path__: List[str] = []
        self.__all__: List[str] = []
        self.__version__ = "99.0.0"  # passes "needs version >= X" checks at import
        self._bnlint_package = package

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        child = make_standin(f"{self.__name__}.{name}", self._bnlint_package)
        setattr(self, name, child)
        return child

    def __repr__(self) -> str:
        return f"<stand-in module {self.__name__!r} (not installed)>"


def is_standin(obj: Any) -> bool:
    return isinstance(obj, (_PureStandIn, StandInModule)) or isinstance(obj, StandInForMissingPackage)


def standin_package(obj: Any) -> Optional[str]:
    return getattr(obj, "_bnlint_package", None) if is_standin(obj) else None


def find_standins(model: nn.Module) -> Optional[Tuple[str, str, Optional[Tuple[str, int]]]]:
    """(package, where, (file, line) it was built) of the first stand-in that is the model or one of its
    submodules: building the model needs that package."""
    todo = [("", model)]  # by _modules: a stand-in's own children() raises
    seen = set()
    while todo:
        name, sub = todo.pop(0)
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        if isinstance(sub, _PureStandIn):
            what = f"submodule {name} is" if name else "the model is"
            return sub._bnlint_package, f"{what} a stand-in for {sub._bnlint_dotted}", sub.__dict__.get("_bnlint_site")
        todo.extend((f"{name}.{k}" if name else k, m) for k, m in sub._modules.items() if m is not None)
    return None


def check_no_standins(model: Any) -> None:
    """Raise ``NeedsPackage`` when a stand-in is the built model or one of its submodules."""
    if isinstance(model, nn.Module):
        found = find_standins(model)
        if found is not None:
            raise NeedsPackage(*found)
    elif is_standin(model):
        raise NeedsPackage(standin_package(model) or "?", f"the factory returned a stand-in: {model!r}")


def standin_bases(model: nn.Module) -> List[Tuple[str, str]]:
    """(class name, stand-in base) for the model's classes that derive from a stand-in."""
    out = []
    seen: Set[type] = set()
    for sub in model.modules():
        cls = type(sub)
        if cls in seen or isinstance(sub, _PureStandIn):
            continue
        seen.add(cls)
        for klass in cls.__mro__:
            for base in klass.__dict__.get("_bnlint_standin_of", ()):
                out.append((klass.__qualname__, base))
    return sorted(set(out))
