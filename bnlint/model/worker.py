"""The worker subprocess: import one model file, build its models, trace them and
return their fact graphs as JSON. User code runs here, never in the CLI process.

Usage (internal): ``python -m bnlint.model.worker REQUEST.json RESULT.json``
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["analyse_file", "main"]


class Progress:
    def __init__(self, path: Optional[str]):
        self.path = path

    def step(self, text: str) -> None:
        if not self.path:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


def _user_line(exc: BaseException, file: str) -> Optional[int]:
    """The deepest traceback line inside ``file``."""
    line = None
    tb = exc.__traceback__
    for frame, lineno in traceback.walk_tb(tb):
        if os.path.abspath(frame.f_code.co_filename) == file:
            line = lineno
    if line is None and isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == file:
        line = exc.lineno
    return line


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:400] if first else type(exc).__name__


def _error(stage: str, exc: BaseException, file: str, **extra: Any) -> Dict[str, Any]:
    out = {"stage": stage, "message": _describe(exc), "line": _user_line(exc, file), "exc_type": type(exc).__name__}
    if isinstance(exc, ModuleNotFoundError):
        out["missing_module"] = exc.name
    if "torch" in sys.modules:  # only a worker that set up its imports can explain more
        from bnlint.model.sandbox import failure_reason

        out.update(failure_reason(exc))
        site = out.pop("site", None)
        if site and os.path.abspath(site[0]) == file:
            out["line"] = site[1]  # where the stand-in was built
    out.update(extra)
    return out


@contextlib.contextmanager
def _quiet_stdout():
    """User code may print; keep it out of our way (stdout goes to stderr)."""
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved


def _example_inputs(module, name: str, model, gm, input_shape, device) -> Tuple[Any, ...]:
    import inspect

    import torch
    import torch.nn as nn

    provider = getattr(module, "example_inputs", None)
    if callable(provider):
        try:
            n_params = len(inspect.signature(provider).parameters)
        except (TypeError, ValueError):
            n_params = 0
        value = provider(name) if n_params >= 1 else provider()
        inputs = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        return tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs)
    if input_shape:
        return tuple(torch.randn(*shape, device=device) for shape in input_shape)
    first = None
    if gm is not None:
        for node in gm.graph.nodes:
            if node.op == "call_module":
                sub = gm.get_submodule(node.target)
                if isinstance(sub, (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding, nn.EmbeddingBag, nn.Bilinear)):
                    first = sub
                    break
    if first is None:
        for sub in model.modules():
            if isinstance(sub, (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding, nn.EmbeddingBag)):
                first = sub
                break
    if isinstance(first, (nn.Embedding, nn.EmbeddingBag)):
        return (torch.randint(0, first.num_embeddings, (2, 16), device=device),)
    if isinstance(first, nn.modules.conv._ConvNd):
        spatial = {1: (64,), 2: (32, 32), 3: (16, 32, 32)}[len(first.kernel_size)]
        return (torch.randn(2, first.in_channels, *spatial, device=device),)
    if isinstance(first, (nn.Linear, nn.Bilinear)):
        features = first.in_features if isinstance(first, nn.Linear) else first.in1_features
        return (torch.randn(2, features, device=device),)
    raise LookupError(
        "cannot infer the input shape: define a module-level example_inputs() returning a tuple "
        "of tensors, or set input-shape in [tool.bnlint] (or --input-shape)"
    )


def _build(factory, args, kwargs, device: str, notes: Optional[List[str]] = None):
    import torch

    from bnlint.model.offline import build_without_downloads
    from bnlint.model.sites import recording_construction_sites
    from bnlint.model.standins import check_no_standins, standin_bases

    with recording_construction_sites():
        if device == "meta":
            from bnlint.model.metainit import initialisation_skipped_on_meta

            with torch.device("meta"), initialisation_skipped_on_meta():
                model, note = build_without_downloads(factory, args, kwargs)
        else:
            model, note = build_without_downloads(factory, args, kwargs)
    check_no_standins(model)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"returned {type(model).__name__}, not an nn.Module")
    if notes is not None:
        texts = [note] if note else []
        texts += [f"{cls} derives from a stand-in for {base} (not installed): it was analysed as a plain nn.Module"
                  for cls, base in standin_bases(model)]
        notes.extend(t for t in texts if t not in notes)
    model.train()
    return model


def _capture_inputs(model, paths: Sequence[str]):
    """Forward pre-hooks that record the inputs of the given submodules."""
    captured: Dict[str, Tuple[Any, ...]] = {}
    handles = []
    for path in paths:
        try:
            sub = model.get_submodule(path)
        except AttributeError:
            continue

        def hook(mod, args, path=path):
            captured.setdefault(path, args)

        handles.append(sub.register_forward_pre_hook(hook))
    return captured, handles


def _unwrap(exc: BaseException) -> BaseException:
    """ShapeProp wraps the user's error; report the original."""
    while exc.__cause__ is not None and "ShapeProp error" in str(exc):
        exc = exc.__cause__
    return exc


def _run_on_inputs(model, tr, inputs) -> Optional[BaseException]:
    """Shape propagation over every traced graph; modules fx could not trace are
    recorded by running them (bnlint.model.concrete). Returns the first error."""
    from torch.fx.passes.shape_prop import ShapeProp

    from bnlint.model.concrete import record_graph

    nested = [r for r in tr.walk() if r is not tr]
    captured, handles = _capture_inputs(model, [r.path for r in nested])
    try:
        if tr.graph_module is not None:
            ShapeProp(tr.graph_module).propagate(*inputs)
        else:
            tr.graph, tr.root, tr.concrete = record_graph(model, inputs), model, True
            tr.children.clear()
    except Exception as exc:  # the user's forward may raise anything
        return _unwrap(exc)
    finally:
        for h in handles:
            h.remove()
    for r in list(tr.walk()):
        if r is tr or r.path not in captured:
            continue
        try:
            if r.graph_module is not None:
                ShapeProp(r.graph_module).propagate(*captured[r.path])
            elif r.graph is None:
                sub = model.get_submodule(r.path)
                r.graph, r.root, r.concrete = record_graph(sub, captured[r.path]), sub, True
                r.children.clear()
        except Exception as exc:
            return _unwrap(exc)
    return None


def _definition_line(obj, file: str) -> Optional[int]:
    import inspect

    try:
        if os.path.abspath(inspect.getsourcefile(obj) or "") != file:
            return None
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return None


def _analyse_model(module, name: str, factory, args, kwargs, input_shape, progress: Progress, file: str) -> Dict[str, Any]:
    import torch

    from bnlint.model.graphbuild import needs_shapes
    from bnlint.model.trace import trace_model

    out: Dict[str, Any] = {"name": name, "errors": [], "notes": [], "def_line": _definition_line(factory, file)}

    def build(device):
        model = _build(factory, args, kwargs, device, out["notes"])
        return model, trace_model(model)

    progress.step(f"building and tracing {name}")
    try:
        device = "meta"
        model, tr = build(device)
    except Exception:
        try:
            device = "cpu"
            model, tr = build(device)
        except Exception as exc:
            out["errors"].append(_error("build", exc, file))
            return out
    if device == "meta" and any(r.graph is None for r in tr.walk()):
        # Untraceable forwards are recorded by running them: that needs real tensors.
        device = "cpu"
        model, tr = build(device)
    out["model_type"] = f"{type(model).__module__}.{type(model).__qualname__}"
    out["submodule_types"] = sorted({f"{type(m).__module__}.{type(m).__qualname__}" for m in model.modules() if m is not model})

    no_inputs = None
    if all(r.graph is not None for r in tr.walk()) and not needs_shapes(tr):
        # Fully traced and no finding can depend on shapes: no need to run it.
        return _finish(out, model, tr, device, progress, name, no_inputs)
    progress.step(f"running {name} on example inputs")
    try:
        inputs = _example_inputs(module, name, model, tr.graph_module, input_shape, device)
    except LookupError as exc:
        no_inputs = str(exc)
        inputs = None
    except Exception as exc:
        out["errors"].append(_error("inputs", exc, file))
        inputs = None
    if inputs is not None:
        error = _run_on_inputs(model, tr, inputs)
        if error is not None and device == "meta":
            device = "cpu"
            model, tr = build(device)
            inputs = _example_inputs(module, name, model, tr.graph_module, input_shape, device)
            error = _run_on_inputs(model, tr, inputs)
        if error is not None:
            shapes = ", ".join(str(tuple(t.shape)) for t in inputs if isinstance(t, torch.Tensor))
            out["errors"].append(_error("forward", error, file, inputs=shapes))

    return _finish(out, model, tr, device, progress, name, no_inputs)


def _finish(out, model, tr, device, progress, name, no_inputs) -> Dict[str, Any]:
    from bnlint.model.graphbuild import build_graph, graph_to_json

    progress.step(f"building the graph of {name}")
    graph, opaque, concrete = build_graph(model, tr)
    if no_inputs and any(d.get("kind") == "dropout" for _, d in graph.nodes(data=True)):
        # Without inputs global pooling is judged without shapes: say so. A model
        # with no dropout at all needs no inputs to be checked.
        out["errors"].append({"stage": "inputs", "message": no_inputs, "line": None})
    out["graph"] = graph_to_json(graph)
    out["opaque"] = opaque
    out["concrete"] = concrete
    out["device"] = device
    return out


def analyse_file(request: Dict[str, Any]) -> Dict[str, Any]:
    file = os.path.abspath(request["file"])
    progress = Progress(request.get("progress"))
    result: Dict[str, Any] = {"file": file, "models": [], "error": None, "notes": []}
    progress.step("importing torch")
    import torch  # noqa: F401  (import cost is counted before user code)

    from bnlint.model.loader import find_auto_targets

    progress.step("importing the file's definitions")
    module, standins = _import_definitions(file, request, result)
    if module is None:
        return result

    input_shape = request.get("input_shape")
    jobs: List[Tuple[str, Any, tuple, dict]] = []
    kinds: Dict[str, str] = {}  # auto target name -> "class" | "factory"
    if request.get("explicit"):
        for spec in request["explicit"]:
            obj = getattr(module, spec["name"], None)
            if obj is None or not callable(obj):
                result["models"].append({"name": spec["text"] or spec["name"], "errors": [{
                    "stage": "lookup", "line": None,
                    "message": f"{spec['name']!r} is not defined in this file (or is not a class or function)",
                }], "notes": []})
                continue
            jobs.append((spec["text"] or spec["name"], obj, tuple(spec["args"]), dict(spec["kwargs"])))
    else:
        found = find_auto_targets(module, request.get("candidates") or [])
        needs_args = []
        for name, (kind, obj, required) in found.items():
            if required:
                needs_args.append((name, required))
                continue
            jobs.append((name, obj, (), {}))
            kinds[name] = kind
        if needs_args and not jobs:
            name, required = needs_args[0]
            result["notes"].append(
                f"no model here can be built without arguments (e.g. {name} needs {', '.join(required)}); "
                f"name one with '{os.path.basename(file)}::{name}({required[0]}=...)' to check it"
            )

    with _quiet_stdout():
        for name, factory, args, kwargs in jobs:
            try:
                result["models"].append(_analyse_model(module, name, factory, args, kwargs, input_shape, progress, file))
            except RecursionError as exc:
                result["models"].append({"name": name, "errors": [_error("trace", exc, file)], "notes": []})
            except Exception as exc:
                result["models"].append({"name": name, "errors": [_error("analyse", exc, file)], "notes": []})

    # A class that is only a submodule of another analysed model is covered by it.
    inside = set()
    for m in result["models"]:
        inside.update(m.get("submodule_types", []))
    for m in result["models"]:
        # Only classes: a factory may build the same class with other arguments.
        if kinds.get(m["name"]) == "class" and m.get("model_type") in inside:
            m["covered_by_parent"] = True
    _note_standins(result, standins, file)
    return result


def _import_definitions(file: str, request: Dict[str, Any], result: Dict[str, Any]):
    """Import the file's definitions with stand-ins for missing packages, no network and
    argparse defaults (bnlint.model.sandbox). Returns (module, standins); the module is
    None when the import failed, and ``result["error"]`` says why."""
    from bnlint.model.loader import is_definitions_file, load_definitions, project_root
    from bnlint.model.nowrites import no_top_level_writes
    from bnlint.model.sandbox import prepare_import

    standins = prepare_import(file, project_root(os.path.dirname(file)), request.get("mock_imports") or (),
                              request.get("no_mock_imports") or ())
    notes: List[Any] = []
    try:
        with no_top_level_writes(is_definitions_file):
            module = load_definitions(file, notes)
    except BaseException as exc:  # SystemExit and friends from user code, too
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = _error("import", exc, file)
        error.setdefault("reason", "import-failed")
        error["models"] = list(request.get("candidates") or [s["name"] for s in request.get("explicit") or []])
        result["error"] = error
        module = None
    for note in notes:
        shown = os.path.relpath(note.path, os.path.dirname(file))
        result["notes"].append({
            "message": f"the statement at {shown}:{note.line} was left out of the import: it raised {note.message} "
                       f"(and so was everything that reads what it binds)",
            "line": note.line if note.path == file else None,
        })
    if module is None:
        _note_standins(result, standins, file)
    return module, standins


def _note_standins(result: Dict[str, Any], standins, file: str) -> None:
    """One info note naming the packages that were replaced by stand-ins."""
    if standins is None or not standins.stubbed:
        return
    missing = standins.missing()
    configured = sorted(set(standins.stubbed) - set(missing))
    lines = [line for f, line in standins.stubbed.values() if f and os.path.abspath(f) == file]
    what = []
    if missing:
        what.append(f"{', '.join(map(repr, missing))} (not installed)")
    if configured:
        what.append(f"{', '.join(map(repr, configured))} (mock-imports)")
    note: Dict[str, Any] = {
        "message": f"stand-ins replaced {' and '.join(what)} while the models were built; a model that "
                   f"really needs one is reported as not analysed",
        "line": min(lines) if lines else None,
        "stubbed": missing,
    }
    if configured:
        note["mocked"] = configured
    result["notes"].append(note)


MEMORY_ENV = "BNLINT_MEMORY_LIMIT"


def memory_limit() -> Optional[int]:
    """Bytes the worker's heap may use: $BNLINT_MEMORY_LIMIT (e.g. ``2G``, ``512M``,
    ``0`` = none), else 75% of RAM but at least 16 GiB."""
    text = os.environ.get(MEMORY_ENV, "").strip().upper()
    if text:
        units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        scale = units.get(text[-1:], 1)
        try:
            value = int(float(text.rstrip("KMGTB") if scale > 1 else text) * scale)
        except ValueError:
            value = 0
        return value or None
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 0
    return max(16 * 2**30, int(ram * 0.75))


def _limit_memory() -> None:
    """A model that allocates far too much fails with MemoryError in this process
    instead of taking the machine down (RLIMIT_DATA: heap and private mappings, not
    the address space CUDA reserves)."""
    limit = memory_limit()
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if limit is not None and (hard == resource.RLIM_INFINITY or limit < hard):
            resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv: Sequence[str]) -> int:
    request_path, result_path = argv[0], argv[1]
    _limit_memory()
    with open(request_path, encoding="utf-8") as fh:
        request = json.load(fh)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    try:
        result = analyse_file(request)
    except BaseException as exc:
        result = {"file": request.get("file"), "models": [], "notes": [],
                  "error": {"stage": "worker", "message": _describe(exc), "line": None}}
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, default=str)
    os.replace(tmp, result_path)
    # User code may have started threads or registered atexit handlers: leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
