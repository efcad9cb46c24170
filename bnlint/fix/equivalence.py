"""Worker side of a model fix check: build the original and the fixed file's models,
compare state_dict keys (exactly, or through the promised renames) and eval-mode
outputs with the original weights loaded (relative tolerance 1e-6).

Runs in a subprocess (user code never runs in the CLI process):
``python -m bnlint.fix.equivalence REQUEST.json RESULT.json``.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["rename_key", "compare_files", "main"]

RTOL = 1e-6


def rename_key(key: str, renames: Sequence[Tuple[str, str]]) -> str:
    """Apply the first rename whose old prefix starts the key. Prefixes are full module
    paths from the model's root (``layer1.0.net.3.``): a prefix matched further inside
    a key would rename another container's child (``3.`` in ``0.3.weight``)."""
    for old, new in renames:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def _strip(renames: Sequence[Tuple[str, str]], level: int) -> List[Tuple[str, str]]:
    """The renames with their first ``level`` path segments left out (a prefix keeps
    at least its last segment, the child's index)."""
    out = []
    for old, new in renames:
        a, b = old.split("."), new.split(".")
        if len(a) - 1 > level and a[:level] == b[:level]:
            out.append((".".join(a[level:]), ".".join(b[level:])))
    return out


def _flatten(value) -> List[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flatten(v)]
    if isinstance(value, dict):
        return [t for k in sorted(value, key=str) for t in _flatten(value[k])]
    return []


def _compare_model(mod_a, mod_b, name: str, renames, input_shape) -> Dict[str, Any]:
    """``renames``: (the renames promised for this model, those promised for the others)."""
    import torch

    from bnlint.model.worker import _build, _example_inputs

    out: Dict[str, Any] = {"name": name, "ok": False}
    factory_a, factory_b = getattr(mod_a, name, None), getattr(mod_b, name, None)
    if factory_b is None:
        out["reason"] = f"model {name} is missing from the fixed source"
        return out
    try:
        torch.manual_seed(0)
        a = _build(factory_a, (), {}, "cpu")
        torch.manual_seed(0)
        b = _build(factory_b, (), {}, "cpu")
    except Exception as exc:  # user code may raise anything
        out["reason"] = f"model {name} does not build after the fix: {type(exc).__name__}: {exc}"
        return out
    try:
        from bnlint.model.trace import trace_model

        trace_model(b)
    except Exception as exc:
        out["reason"] = f"model {name} does not trace after the fix: {type(exc).__name__}: {exc}"
        return out
    keys_a = list(a.state_dict().keys())
    keys_b = list(b.state_dict().keys())
    own, others = renames
    mapped = [rename_key(k, own) for k in keys_a]
    if sorted(mapped) != sorted(keys_b) and not own and others:
        # A model the fixed findings were not reported on (a block class that is also a
        # model of its own): the renames promised for the containers it holds, with the
        # path above it left out. The output comparison below checks the result.
        for level in range(0, max(old.count(".") for old, _ in others)):
            trial = _strip(others, level)
            attempt = [rename_key(k, trial) for k in keys_a]
            if sorted(attempt) == sorted(keys_b):
                own, mapped = trial, attempt
                break
    renames = own
    if sorted(mapped) != sorted(keys_b):
        missing = sorted(set(mapped) - set(keys_b))[:3]
        extra = sorted(set(keys_b) - set(mapped))[:3]
        out["reason"] = (f"model {name}: state_dict keys differ from the promise "
                         f"(missing {missing}, unexpected {extra})")
        return out
    out["renamed"] = [[k, m] for k, m in zip(keys_a, mapped) if k != m]
    state = a.state_dict()
    b.load_state_dict({rename_key(k, renames): v for k, v in state.items()})
    a.eval()
    b.eval()
    for trial in range(2):
        torch.manual_seed(1234 + trial)
        try:
            inputs = _example_inputs(mod_a, name, a, None, input_shape, "cpu")
        except Exception as exc:
            out["reason"] = f"model {name}: no example inputs ({exc})"
            return out
        with torch.no_grad():
            try:
                ya = _flatten(a(*inputs))
                yb = _flatten(b(*inputs))
            except Exception as exc:
                out["reason"] = f"model {name}: forward raised {type(exc).__name__}: {exc} after the fix"
                return out
        if len(ya) != len(yb) or any(x.shape != y.shape or not torch.allclose(x, y, rtol=RTOL, atol=1e-7)
                                     for x, y in zip(ya, yb)):
            out["reason"] = f"model {name}: eval-mode outputs changed (rtol {RTOL:g})"
            return out
    out["ok"] = True
    return out


def compare_files(request: Dict[str, Any]) -> Dict[str, Any]:
    import torch  # noqa: F401

    from bnlint.model.loader import find_auto_targets, load_definitions, project_root
    from bnlint.model.sandbox import prepare_import

    result: Dict[str, Any] = {"models": [], "error": None}
    # The same stand-ins, argparse defaults and network block as the check's worker.
    prepare_import(request["original"], project_root(os.path.dirname(request["original"])),
                   request.get("mock_imports") or (), request.get("no_mock_imports") or ())
    try:
        mod_a = load_definitions(request["original"])
        mod_b = load_definitions(request["fixed"])
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        result["error"] = f"cannot import the fixed source: {type(exc).__name__}: {exc}"
        return result
    names = request.get("models") or []
    if not names:
        candidates = request.get("candidates")
        if candidates is None:
            import ast

            from bnlint.model.targets import may_define_models

            with open(request["original"], "rb") as fh:
                candidates = may_define_models(ast.parse(fh.read()))
        found = find_auto_targets(mod_a, candidates)
        names = [n for n, (_kind, _obj, required) in found.items() if not required]
    promised = request.get("renames", [])
    if isinstance(promised, dict):  # per model: the findings' model names
        by_model = {m: [tuple(r) for r in rs] for m, rs in promised.items()}
        union = sorted({r for rs in by_model.values() for r in rs})
    else:
        by_model, union = {}, [tuple(r) for r in promised]
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        for name in names:
            try:
                renames = (by_model.get(name, []), union) if by_model else (union, [])
                result["models"].append(_compare_model(mod_a, mod_b, name, renames, request.get("input_shape")))
            except Exception as exc:
                result["models"].append({"name": name, "ok": False,
                                         "reason": f"model {name}: {type(exc).__name__}: {exc}"})
    finally:
        sys.stdout = saved
    if request.get("analyse"):
        # The fixed file's fact graphs, as a check worker would return them: the CLI
        # re-runs the graph rules on them without starting a second process.
        from bnlint.model.worker import analyse_file

        result["analysis"] = analyse_file(dict(request["analyse"], file=request["fixed"]))
    return result


def main(argv: Sequence[str]) -> None:
    from bnlint.model.worker import _limit_memory

    _limit_memory()  # user code runs here too: same memory limit as the analysis worker
    with open(argv[0], encoding="utf-8") as fh:
        request = json.load(fh)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    try:
        result = compare_files(request)
    except BaseException as exc:
        result = {"models": [], "error": f"{type(exc).__name__}: {exc}"}
    tmp = argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, default=str)
    os.replace(tmp, argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
