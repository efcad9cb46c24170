"""The worker subprocess: import one model file, build its models, trace them and
return their fact graphs as JSON. User code runs here, never in the CLI process.

Usage (internal): ``python -m bnlint.model.worker REQUEST.json RESULT.json``
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from dataclasses import field as dataclass_field
import os
import re
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


def _example_inputs(module, name: str, model, gm, input_shape, device, hint: Optional[int] = None) -> Tuple[Any, ...]:
    """The inputs the file or the config names, else the most likely inferred ones."""
    return next(iter(_input_candidates(module, name, model, gm, input_shape, device, hint)))[0]


def _input_candidates(module, name: str, model, gm, input_shape, device, hint: Optional[int] = None):
    """(inputs, given) pairs to try in turn: the file's ``example_inputs()`` or the
    configured ``input-shape`` (given, one try), else the ladder of inferred shapes
    (bnlint.model.inputs)."""
    import inspect

    import torch

    from bnlint.model.inputs import first_layer, input_ladder

    provider = getattr(module, "example_inputs", None)
    if callable(provider):
        try:
            n_params = len(inspect.signature(provider).parameters)
        except (TypeError, ValueError):
            n_params = 0
        value = provider(name) if n_params >= 1 else provider()
        inputs = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        yield tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs), True
        return
    if input_shape:
        yield tuple(torch.randn(*shape, device=device) for shape in input_shape), True
        return
    for inputs in input_ladder(first_layer(model, gm), device, hint):
        yield inputs, False


def _build(factory, args, kwargs, device: str, notes: Optional[List[str]] = None):
    import torch

    from bnlint.model.offline import build_without_downloads
    from bnlint.model.sites import recording_construction_sites
    from bnlint.model.standins import check_no_standins, standin_bases

    def construct():
        with recording_construction_sites():
            if device == "meta":
                from bnlint.model.metainit import initialisation_skipped_on_meta

                with torch.device("meta"), initialisation_skipped_on_meta():
                    return build_without_downloads(factory, args, kwargs)
            return build_without_downloads(factory, args, kwargs)

    moved = None
    try:
        model, note = construct()
    except FileNotFoundError as exc:
        # ``DetectionModel(cfg='yolov5s.yaml')`` opens a file that lies beside the
        # model's own file: its scripts run from there (or find it there). Build it
        # again with that folder as the working directory.
        moved = _folder_with(exc, factory)
        if moved is None:
            raise
        previous = os.getcwd()
        os.chdir(moved)
        try:
            model, note = construct()
        finally:
            os.chdir(previous)
    check_no_standins(model)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"returned {type(model).__name__}, not an nn.Module")
    if notes is not None:
        texts = [note] if note else []
        if moved is not None:
            texts.append(f"it opens a file by a relative path that is found in {moved}, not in the working "
                         f"directory: it was built with {moved} as the working directory")
        texts += [f"{cls} derives from a stand-in for {base} (not installed): it was analysed as a plain nn.Module"
                  for cls, base in standin_bases(model)]
        notes.extend(t for t in texts if t not in notes)
    model.train()
    return model


def _folder_with(exc: FileNotFoundError, factory) -> Optional[str]:
    """The folder of the file that defines ``factory`` when the missing file is a
    relative path found there."""
    import inspect

    missing = exc.filename
    if not isinstance(missing, str) or not missing or os.path.isabs(missing):
        return None
    try:
        folder = os.path.dirname(os.path.abspath(inspect.getfile(factory)))
    except (TypeError, OSError):
        return None
    if folder == os.path.abspath(os.getcwd()) or not os.path.exists(os.path.join(folder, missing)):
        return None
    return folder


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


# ``WideResNet.__init__() missing 2 required positional arguments: 'depth' and ...``: a
# factory that forwards **kwargs was built without the arguments its class needs.
_MISSING_ARGUMENT = re.compile(r"missing \d+ required (?:positional|keyword-only) arguments?")


@dataclass
class Settings:
    """How the models of one request are analysed."""

    input_shape: Any = None  # [tool.bnlint] input-shape / --input-shape
    input_size: Optional[int] = None  # the size the project's scripts imply
    latent: bool = False  # build again with off-by-default dropout switched on (BNL104)
    project_root: Optional[str] = None


@dataclass
class Target:
    """One model to build: a class or factory and its arguments."""

    name: str  # as reported
    factory: Any
    args: tuple = ()
    kwargs: dict = dataclass_field(default_factory=dict)
    module: Any = None  # the module that defines it (for example_inputs())
    file: str = ""  # that module's file
    kind: str = "class"  # "class" | "factory"
    plan: Dict[str, Any] = dataclass_field(default_factory=dict)  # origin, call, foreign (bnlint.model.plan)


def _analyse_model(target: Target, settings: Settings, progress: Progress, latent_done: Optional[set] = None,
                   keep_graph: bool = False) -> Dict[str, Any]:
    from bnlint.model.graphbuild import needs_shapes
    from bnlint.model.inputs import NoInputShape, describe_shapes
    from bnlint.model.trace import trace_model

    name, file = target.name, target.file
    out: Dict[str, Any] = {"name": name, "errors": [], "notes": [], "def_line": _definition_line(target.factory, file)}
    for key in ("origin", "call", "foreign", "path"):
        if target.plan.get(key):
            out[key] = target.plan[key]

    def build(device):
        model = _build(target.factory, target.args, target.kwargs, device, out["notes"])
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
            err = _error("build", exc, file)
            # (arguments of a call the default options do not run may not fit together)
            needs = bool((isinstance(exc, TypeError) and _MISSING_ARGUMENT.search(str(exc)))
                         or target.plan.get("placeholder_defaults") or target.plan.get("assumed"))
            if not err.get("reason") and target.plan.get("fallback"):
                return _analyse_fallback(target, settings, progress, latent_done, keep_graph, err, needs)
            if not err.get("reason"):  # the sandbox explains missing packages and downloads
                err["reason"] = "needs-arguments" if needs else "build-failed"
            out["errors"].append(err)
            return out
    # Untraceable forwards are recorded by running them (below): on meta tensors first,
    # which is as fast for a ViT-L as for a LeNet; a forward that needs values
    # (``if x.sum() > 0``, ``.item()``) fails there and runs again on real ones.
    out["model_type"] = f"{type(model).__module__}.{type(model).__qualname__}"
    out["submodule_types"] = sorted({f"{type(m).__module__}.{type(m).__qualname__}" for m in model.modules() if m is not model})
    out["covers"] = _classes_in(model)

    no_inputs = None
    if not (all(r.graph is not None for r in tr.walk()) and not needs_shapes(tr)):
        # Not fully traced, or a finding may depend on shapes: run it on inputs.
        progress.step(f"running {name} on example inputs")
        tried: List[str] = []
        error: Optional[BaseException] = None
        for attempt_device in (device, "cpu") if device == "meta" else (device,):
            if attempt_device != device:
                device = attempt_device
                model, tr = build(device)
                tried = []  # what failed on meta tensors says nothing of the shapes
            try:
                for inputs, given in _input_candidates(target.module, name, model, tr.graph_module,
                                                       settings.input_shape, device, settings.input_size):
                    shapes = describe_shapes(inputs)
                    error = _run_on_inputs(model, tr, inputs)
                    if error is None:
                        out["input_shape"] = shapes
                        if tried and not given:
                            out["notes"].append(f"model {name} was run on inputs of shape {shapes} "
                                                f"({', '.join(tried)} did not fit its forward)")
                        break
                    if shapes not in tried:
                        tried.append(shapes)
                    if device == "meta" and "meta" in str(error):
                        break  # the forward reads tensor values: real tensors next
            except NoInputShape as exc:
                no_inputs = str(exc)
                error = None
                break
            except Exception as exc:  # example_inputs() itself raised
                out["errors"].append(_error("inputs", exc, file))
                error = None
                break
            if error is None:
                break
        if error is not None:
            err = _error("forward", error, file, inputs=", ".join(tried))
            err.setdefault("reason", "forward-failed")
            out["errors"].append(err)

    graph = _finish(out, model, tr, device, progress, name, no_inputs)
    if settings.latent and "graph" in out:
        _latent_builds(target, settings, progress, model, graph, out, latent_done if latent_done is not None else set())
    if keep_graph:
        out["_graph"] = graph
    return out


def _analyse_fallback(target: Target, settings: Settings, progress: Progress, latent_done: Optional[set],
                      keep_graph: bool, failed: Dict[str, Any], needs: bool = True) -> Dict[str, Any]:
    """Its plain build failed: build it with the arguments of the project's call site
    instead (``Net.from_name('b0')`` for a class whose defaults are placeholders).
    ``needs``: the plain build failed for want of arguments; when it did not and the
    call site's arguments come from a call the defaults do not run, which fail too, the
    plain build's error is the one reported."""
    spec = target.plan["fallback"]
    try:
        fallback = planned_target(spec, target.module, target.file, progress)
    except Exception:
        fallback = None
    if fallback is None:
        out = {"name": target.name, "errors": [dict(failed, reason="build-failed")], "notes": []}
        return out
    out = _analyse_model(fallback, settings, progress, latent_done, keep_graph)
    if "graph" not in out and spec.get("assumed") and not needs:
        return {"name": target.name, "errors": [dict(failed, reason="build-failed")], "notes": []}
    if "graph" in out:  # said with the call it was built as (bnlint.model.modelcheck)
        out["raised"] = f"{target.plan.get('call') or target.name + '()'} raised {failed.get('message')}"
    elif not spec.get("assumed"):  # else its own failure names the call
        out["notes"].append(f"model {target.name}() raised {failed.get('message')}; it was built as "
                            f"{spec.get('call')} instead, with the arguments of {spec.get('origin')}")
    return out


def _classes_in(model) -> List[List[str]]:
    """[file, qualified name] of every class the model's modules are instances of
    (their bases included), torch's own left out: what the model covers."""
    from bnlint.model.sites import is_torch_file

    out = set()
    for m in model.modules():
        for cls in type(m).__mro__:
            mod = sys.modules.get(cls.__module__)
            path = getattr(mod, "__file__", None)
            if path and not is_torch_file(path):
                out.add((os.path.abspath(path), cls.__qualname__))
    return [list(x) for x in sorted(out)]


def _latent_builds(target: Target, settings: Settings, progress: Progress, model, graph, out, done: set) -> None:
    """BNL104: build again with each off-by-default dropout parameter switched on."""
    import inspect

    from bnlint.model.graphbuild import graph_to_json
    from bnlint.model.latent import MAX_LATENT_BUILDS, dropout_keys, latent_parameters, mark_latent, patched_default

    base = dropout_keys(graph)
    off = Settings(settings.input_shape, settings.input_size, False, settings.project_root)
    builds = 0
    for param in latent_parameters(target.factory, target.args, target.kwargs, model, settings.project_root):
        key = (param.owner_name, param.name)
        if key in done or builds >= MAX_LATENT_BUILDS:
            continue
        done.add(key)
        builds += 1
        if param.root and param.name in target.kwargs:  # given to the target by name
            variant = Target(target.name, target.factory, target.args, dict(target.kwargs, **{param.name: param.value}),
                             target.module, target.file, target.kind)
            result = _analyse_model(variant, off, progress, keep_graph=True)
        elif param.root:
            try:
                bound = inspect.signature(target.factory).bind_partial(*target.args, **target.kwargs)
                bound.arguments[param.name] = param.value
                args, kwargs = tuple(bound.args), dict(bound.kwargs)
            except (TypeError, ValueError):
                args, kwargs = target.args, dict(target.kwargs, **{param.name: param.value})
            variant = Target(target.name, target.factory, args, kwargs, target.module, target.file, target.kind)
            result = _analyse_model(variant, off, progress, keep_graph=True)
        else:
            variant = Target(target.name, target.factory, target.args, target.kwargs, target.module, target.file,
                             target.kind)
            try:
                with patched_default(param.owner, param.name, param.value):
                    result = _analyse_model(variant, off, progress, keep_graph=True)
            except (ValueError, TypeError):
                continue
        g = result.get("_graph")
        if g is None:
            continue
        if mark_latent(g, base, param):
            out.setdefault("latent", []).append(
                {"param": param.name, "owner": param.owner_name, "text": param.text, "graph": graph_to_json(g)})


def _finish(out, model, tr, device, progress, name, no_inputs):
    from bnlint.model.graphbuild import build_graph, graph_to_json

    progress.step(f"building the graph of {name}")
    graph, opaque, concrete = build_graph(model, tr)
    if no_inputs and any(d.get("kind") == "dropout" for _, d in graph.nodes(data=True)):
        # Without inputs global pooling is judged without shapes: say so. A model
        # with no dropout at all needs no inputs to be checked.
        out["notes"].append(f"model {name} was analysed without running it, so a finding that depends on "
                            f"tensor shapes (a dropout after a fixed-size pooling) may be missing: {no_inputs}")
    out["graph"] = graph_to_json(graph)
    out["opaque"] = opaque
    out["concrete"] = concrete
    out["device"] = device
    return graph


def analyse_file(request: Dict[str, Any]) -> Dict[str, Any]:
    file = os.path.abspath(request["file"])
    progress = Progress(request.get("progress"))
    result: Dict[str, Any] = {"file": file, "models": [], "error": None, "notes": []}
    progress.step("importing torch")
    import torch  # noqa: F401  (import cost is counted before user code)

    progress.step("importing the file's definitions")
    from bnlint.model.sandbox import CUDA_ON_CPU

    del CUDA_ON_CPU[:]  # what this file's models ran on the CPU instead of CUDA
    module, standins = _import_definitions(file, request, result)
    if module is None:
        return result

    plan = request.get("plan") or {}
    settings = Settings(request.get("input_shape"), plan.get("input_size"), bool(request.get("latent")),
                        request.get("project_root"))
    targets = _select_targets(request, module, file, result, progress)
    latent_done: set = set()
    analysed: List[Dict[str, Any]] = []
    held: set = set()  # classes of this file the models built so far hold
    with _quiet_stdout():
        for target in targets:
            if target.plan.get("variant") and set(target.plan.get("builds") or ()) <= held:
                continue  # a second build for classes a model already holds: not needed
            try:
                # a second build's dropout is switched on again: other classes hold it there
                model = _analyse_model(target, settings, progress, set() if target.plan.get("variant") else latent_done)
            except RecursionError as exc:
                model = {"name": target.name, "errors": [_error("trace", exc, file)], "notes": []}
            except Exception as exc:
                model = {"name": target.name, "errors": [_error("analyse", exc, file)], "notes": []}
            model["kind"] = target.kind
            if target.plan.get("foreign"):
                model["foreign"] = True
            if target.plan.get("variant"):
                model["variant"] = target.plan["variant"]
                model["keep"] = target.plan.get("keep") or []
            held.update(q for f, q in model.get("covers", []) if os.path.abspath(f) == file)
            analysed.append(model)
    _mark_covered(analysed, targets, file)
    result["models"].extend(analysed)
    _note_standins(result, standins, file)
    if CUDA_ON_CPU:
        result["notes"].append({
            "message": f"this torch has no CUDA: {', '.join(CUDA_ON_CPU)} ran on the CPU while the models were "
                       f"built and run (the graph is the same on either device)",
            "line": None,
            "cuda_on_cpu": list(CUDA_ON_CPU),
        })
    return result


def _select_targets(request: Dict[str, Any], module, file: str, result: Dict[str, Any], progress: Progress) -> List[Target]:
    """The models to build: the ones named explicitly, else the plan's (bnlint.model.plan),
    else the file's no-argument classes and annotated factories."""
    import inspect

    import torch.nn as nn

    targets: List[Target] = []
    if request.get("explicit"):
        for spec in request["explicit"]:
            obj = getattr(module, spec["name"], None)
            if obj is None or not callable(obj):
                result["models"].append({"name": spec["text"] or spec["name"], "errors": [{
                    "stage": "lookup", "line": None,
                    "message": f"{spec['name']!r} is not defined in this file (or is not a class or function)",
                }], "notes": []})
                continue
            targets.append(Target(spec["text"] or spec["name"], obj, tuple(spec["args"]), dict(spec["kwargs"]),
                                  module, file, "class" if inspect.isclass(obj) else "factory"))
        return targets
    plan = request.get("plan")
    if plan is None:
        from bnlint.model.loader import find_auto_targets

        for name, (kind, obj, required) in find_auto_targets(module, request.get("candidates") or []).items():
            if not required:
                targets.append(Target(name, obj, (), {}, module, file, kind))
        return targets
    for spec in plan.get("targets", []):
        try:
            target = planned_target(spec, module, file, progress)
        except Exception as exc:  # a foreign file that does not import, a reference that is gone
            if not spec.get("foreign"):
                result["models"].append({"name": spec["name"], "errors": [_error("build", exc, file)], "notes": []})
            continue
        if target is not None:
            targets.append(target)
    return targets


def planned_target(spec: Dict[str, Any], module, file: str, progress: Progress) -> Optional[Target]:
    """The Target a planned target (bnlint.model.plan.PlannedTarget.to_dict()) stands
    for; None when it is not a model after all (the static view over-approximates) or
    is defined under a condition that did not hold."""
    import inspect

    import torch.nn as nn

    from bnlint.model.loader import load_definitions

    path = os.path.abspath(spec["path"])
    if path == file:
        owner = module
    else:
        progress.step(f"importing {os.path.basename(path)} for {spec['name']}")
        owner = load_definitions(path)
    obj = getattr(owner, spec["name"], None)
    args = tuple(_decode(a) for a in spec.get("args", []))
    kwargs = {k: _decode(v) for k, v in (spec.get("kwargs") or {}).items()}
    if obj is None:
        return None
    if spec["kind"] == "class" and not (inspect.isclass(obj) and issubclass(obj, nn.Module)
                                        and not inspect.isabstract(obj)):
        return None
    if spec["kind"] == "factory" and not callable(obj):
        return None
    if spec.get("method"):  # an alternative constructor: Net.from_name('b0')
        obj = getattr(obj, spec["method"], None)
        if not callable(obj):
            return None
    return Target(spec["name"], obj, args, kwargs, owner, path, spec["kind"], spec)


class ConfigDefaults(dict):
    """A project's configuration object rebuilt from the defaults its module writes
    (``_C.MODEL.DEPTH = 50``): keys read as attributes or items, as with yacs' CfgNode,
    EasyDict or ml_collections' ConfigDict; a key the module does not write is missing."""

    @classmethod
    def of(cls, values: Any) -> Any:
        if isinstance(values, dict):
            return cls({k: cls.of(v) for k, v in values.items()})
        return values

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the project's configuration object has no {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def clone(self) -> "ConfigDefaults":
        import copy

        return copy.deepcopy(self)

    def freeze(self) -> None:
        pass

    def defrost(self) -> None:
        pass

    def is_frozen(self) -> bool:
        return False


def _decode(value: Any) -> Any:
    """A planned argument (bnlint.model.resolve.encode) as the object it stands for."""
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "__ref__" in value:
            from bnlint.model.loader import load_definitions

            path, name = value["__ref__"]
            return getattr(load_definitions(path), name)
        if "__ext__" in value:
            import importlib

            parts = value["__ext__"].split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                except ImportError:
                    continue
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
                return obj
            raise ImportError(f"cannot import {value['__ext__']}")
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        if "__built__" in value:
            built = value["__built__"]
            if built["kind"] == "options":
                import argparse

                return argparse.Namespace(**{k: _decode(v) for k, v in built["values"].items()})
            return ConfigDefaults.of(_decode(built["values"]))
        return {k: _decode(v) for k, v in value.items()}
    return value


def _mark_covered(models: List[Dict[str, Any]], targets: Sequence[Target], file: str) -> None:
    """A class of this file that is only a submodule of another analysed model is
    covered by it (its own build would repeat the parent's findings out of context)."""
    for m, target in zip(models, targets):
        if target.kind != "class" or target.file != file or m.get("foreign"):
            continue
        mine = [file, getattr(target.factory, "__qualname__", target.name)]
        for other in models:
            if other is m or other.get("covered_by_parent"):
                continue
            if mine in (other.get("covers") or []) and other.get("model_type") != m.get("model_type"):
                m["covered_by_parent"] = True
                break


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
    """One info note naming the packages that were replaced by stand-ins (and one for
    removed torch modules provided as they were)."""
    if standins is None:
        return
    if standins.former:
        from bnlint.model.standin_imports import REMOVED_TORCH_MODULES

        lines = [line for f, line in standins.former.values() if f and os.path.abspath(f) == file]
        names = sorted(standins.former)
        result["notes"].append({
            "message": f"{', '.join(map(repr, names))} (removed in {REMOVED_TORCH_MODULES[names[0]][0]}) was "
                       f"provided with its former contents while the models were built",
            "line": min(lines) if lines else None,
            "provided": names,
        })
    if not standins.stubbed:
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
    helpers = {package: sorted(names) for package, names in standins.provided.items() if names}
    if helpers:
        note["message"] += "; " + "; ".join(
            f"{package}'s {', '.join(names)} {'was' if len(names) == 1 else 'were'} provided with equivalent "
            f"definitions (they hold no dropout or normalisation)" for package, names in sorted(helpers.items()))
        note["provided_helpers"] = helpers
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
