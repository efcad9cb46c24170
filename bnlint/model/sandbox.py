"""What the worker sets up before it imports a user's file, and how it names the
failures that setup explains.

- ``sys.argv`` is just the file, and ``argparse`` parses an empty command line with
  every option optional, so a module-level ``opt = parser.parse_args()`` gives the
  defaults (``ngf = int(opt.ngf)`` gets its default value);
- no network (bnlint.model.offline);
- stand-ins for missing packages (bnlint.model.standins);
- on a torch without CUDA, the CUDA calls of older research code run on the CPU
  (``torch.cuda.FloatTensor(n, c, h, w).fill_(0)`` in a forward, ``x.cuda()``,
  ``model.cuda()``), so that such models are built and traced at all.

Runs inside the worker subprocess only.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Dict, Optional, Sequence

__all__ = ["prepare_import", "failure_reason", "defaults_only_argparse"]


def defaults_only_argparse() -> None:
    """``parse_args()`` / ``parse_known_args()`` with no explicit argument list parse
    an empty command line; required options and positionals default to None, or to
    their first choice when they have ``choices``."""
    parser_class = argparse.ArgumentParser
    if getattr(parser_class, "_bnlint_defaults_only", False):
        return
    original = parser_class.parse_known_args

    def parse_known_args(self, args=None, namespace=None):
        if args is None:
            args = []
        saved = [(action, action.required, action.default) for action in self._actions]
        for action, required, default in saved:
            action.required = False
            if required and default is None and action.choices:
                action.default = next(iter(action.choices))  # --dataset {cifar10,mnist}: the first
        try:
            return original(self, args, namespace)
        finally:
            for action, required, default in saved:
                action.required, action.default = required, default

    parser_class.parse_known_args = parse_known_args
    parser_class._bnlint_defaults_only = True


def prepare_import(file: str, project_root: Optional[str], mock_imports: Sequence[str] = (),
                   no_mock_imports: Sequence[str] = ()):
    """Set the worker up to import ``file``; returns its ``StandIns``."""
    from bnlint.model.offline import block_network
    from bnlint.model.standin_imports import StandIns, installed_standins

    sys.argv = [file]
    defaults_only_argparse()
    block_network()
    cuda_on_cpu()
    existing = installed_standins()
    if existing is not None:  # a second file in the same worker (bnlint fix's check)
        return existing
    return StandIns(project_root or os.path.dirname(file), mock_imports, no_mock_imports).install()


_CUDA_TYPES = ("FloatTensor", "DoubleTensor", "HalfTensor", "BFloat16Tensor", "LongTensor", "IntTensor",
               "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor")
CUDA_ON_CPU: list = []  # what ran on the CPU instead (for the worker's note)


def cuda_on_cpu() -> None:
    """Where torch has no CUDA: ``torch.cuda.<Type>Tensor`` are the CPU types, and
    ``Tensor.cuda()`` / ``Module.cuda()`` and ``.to('cuda')`` (any CUDA device) return
    what they are called on. The model's structure is the same on either device."""
    import torch

    if torch.cuda.is_available() or getattr(torch.cuda, "_bnlint_on_cpu", False):
        return

    def noted(what, value):
        if what not in CUDA_ON_CPU:
            CUDA_ON_CPU.append(what)
        return value

    for name in _CUDA_TYPES:
        cpu_type = getattr(torch, name, None)
        if cpu_type is not None:
            def constructor(*args, _type=cpu_type, _name=name, **kwargs):
                return noted(f"torch.cuda.{_name}", _type(*args, **kwargs))
            setattr(torch.cuda, name, constructor)
    torch.Tensor.cuda = lambda self, *args, **kwargs: noted("Tensor.cuda()", self)
    torch.nn.Module.cuda = lambda self, *args, **kwargs: noted("Module.cuda()", self)
    for owner in (torch.Tensor, torch.nn.Module):
        owner.to = _to_cpu_for_cuda(owner.to, f"{owner.__name__}.to('cuda')", noted)
    torch.cuda._bnlint_on_cpu = True


def _to_cpu_for_cuda(original, what: str, noted):
    """``.to(...)`` where a CUDA device means the CPU (a dtype given with it still
    applies)."""
    import torch

    def to(self, *args, **kwargs):
        try:
            device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        except Exception:
            return original(self, *args, **kwargs)
        if device is None or device.type != "cuda":
            return original(self, *args, **kwargs)
        noted(what, None)
        return original(self, dtype) if dtype is not None else self

    return to


_STANDIN_NAME = re.compile(r"StandIn\[([A-Za-z_][\w.]*)\]")


def failure_reason(exc: BaseException) -> Dict[str, Any]:
    """``reason`` (and ``package`` / ``download``) for an error the setup explains:
    a stand-in that was really needed, or a refused download. Empty otherwise."""
    from bnlint.model.offline import download_error, exception_chain
    from bnlint.model.standin_imports import installed_standins
    from bnlint.model.standins import NeedsPackage

    for e in exception_chain(exc):
        if isinstance(e, NeedsPackage):
            out = {"reason": "needs-package", "package": e.package, "what": e.what}
            standins = installed_standins()
            if standins is not None and e.package in standins.forced:
                out["configured"] = True  # mock-imports: installed, replaced on purpose
            if e.site:
                out["site"] = list(e.site)
            return out
    m = _STANDIN_NAME.search(str(exc))
    if m:
        return {"reason": "needs-package", "package": m.group(1).split(".")[0]}
    standins = installed_standins()
    if "StandInForMissingPackage" in str(exc) and standins is not None and standins.stubbed:
        return {"reason": "needs-package", "package": sorted(standins.stubbed)[0]}
    blocked = download_error(exc)
    if blocked is not None:
        return {"reason": "needs-download", "download": blocked.what}
    return {}
