"""BNL001 findings from the worker's answers: what could not be analysed, why, and the
notes for model classes no analysed model built (``not_analysed`` reasons, counted
by the summary line). No torch here."""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from bnlint.findings import Finding, Severity

if TYPE_CHECKING:
    from bnlint.model.modelcheck import ModelJob

__all__ = ["STAGE_REASONS", "failure", "model_failures", "model_names", "file_failure", "dependency_failure",
           "note_finding", "not_analysed_notes"]


# ``forward() missing 1 required positional argument: 'sigma'``: a forward of several inputs
_MORE_INPUTS = re.compile(r"forward\(\) missing \d+ required positional arguments?: (.+?)(?: on example|$)")


def failure(path: str, message: str, line: Optional[int] = None, severity: Severity = Severity.ERROR, **details) -> Finding:
    details = {k: v for k, v in details.items() if v is not None}
    return Finding(code="BNL001", name="analysis-failed", severity=severity, path=path,
                   line=line or 1, column=1, message=message, details=tuple(sorted(details.items())))


# The reason a model was not analysed, by the stage that failed (details ``not_analysed``).
STAGE_REASONS = {"build": "build-failed", "forward": "forward-failed", "inputs": "no-input-shape",
                  "lookup": "build-failed", "trace": "build-failed", "analyse": "build-failed"}


def model_failures(job: ModelJob, model: Dict[str, Any]) -> List[Finding]:
    out = []
    name = model.get("name", "?")
    def_line = model.get("def_line")
    for err in model.get("errors", []):
        dependency = dependency_failure(job, name, err, def_line)
        if dependency is not None:
            out.append(dependency)
            continue
        stage, msg, line = err.get("stage"), err.get("message", ""), err.get("line") or def_line
        more = _MORE_INPUTS.search(msg) if stage == "forward" else None  # inputs bnlint cannot make
        if stage == "build" and err.get("exc_type") == "MemoryError":
            text = (f"cannot build model {name}: constructor raised MemoryError (the analysis runs under a "
                    f"memory limit; raise it with BNLINT_MEMORY_LIMIT=16G, or name smaller arguments with "
                    f"'{job.path}::{name}(arg=value)')")
        elif stage == "build" and err.get("reason") == "needs-arguments" and model.get("call"):
            text = (f"model {name} was not analysed: built as {model['call']}, with the arguments of "
                    f"{model.get('origin')}, it raised {msg}; name working arguments with "
                    f"'{job.path}::{name}(arg=value)' or in [tool.bnlint] models")
        elif stage == "build" and err.get("reason") == "needs-arguments":
            text = (f"model {name} was not analysed: built without arguments it raised {msg}; no call in the "
                    f"project passes values bnlint can resolve; name them with '{job.path}::{name}(arg=value)' "
                    f"or in [tool.bnlint] models")
        elif stage == "build":
            text = (f"cannot build model {name}: constructor raised {msg}; fix it, or name working "
                    f"arguments with '{job.path}::{name}(arg=value)'")
        elif more is not None:
            text = (f"model {name}: its forward takes more than one input ({more.group(1)} besides the first), "
                    f"so bnlint cannot make example inputs for it; define example_inputs() in the file, "
                    f"returning a tuple of one tensor per input (its other findings may be incomplete)")
        elif stage == "forward":
            tried = err.get("inputs") or ""
            shapes = f" of shape {tried}" if tried.count("(") <= 1 else f" (tried shapes {tried})"
            text = (f"model {name}: its forward raised {msg} on example inputs{shapes}; fix the forward, "
                    f"or define example_inputs() in the file or set input-shape (its other findings may "
                    f"be incomplete)")
        elif stage == "inputs":
            text = f"model {name}: {msg}"
        elif stage == "lookup":
            text = f"model {name}: {msg}"
        else:
            text = f"model {name} could not be analysed: {msg}"
        reason = "no-input-shape" if more is not None else err.get("reason") or STAGE_REASONS.get(stage)
        severity = (Severity.INFO if reason == "needs-arguments"
                    else Severity.WARNING if reason in ("needs-package", "needs-download") else Severity.ERROR)
        extra = {"package": err.get("package")}
        out.append(failure(job.path, text, line, severity=severity, model=name, stage=stage,
                            not_analysed=reason, **extra))
    partial = (
        ("opaque", "could not be traced ({reason}); {their} submodules were analysed one by one and "
                   "connections between them were not checked"),
        ("concrete", "{verb} not trace symbolically ({reason}); {it} {was} analysed by running {it} on example "
                     "inputs{ran_on}, so only the branches taken for those inputs were checked"),
    )
    ran_on = (" (on meta tensors: its forward needs no tensor values)" if model.get("device") == "meta"
              else " (on real tensors: its forward needs tensor values)")
    for key, what in partial:
        # one note per reason: a Swin's 24 blocks fail alike
        by_reason: Dict[str, List[str]] = {}
        for rec in model.get(key, []):
            by_reason.setdefault(rec["reason"], []).append(rec["module"])
        for reason, modules in by_reason.items():
            subs = [m for m in modules if m != "<root>"]
            shown = ", ".join(subs[:3]) + (f" and {len(subs) - 3} more" if len(subs) > 3 else "")
            if len(modules) == 1:
                where = f"the forward of {name}" if not subs else f"submodule {subs[0]} of {name}"
            elif len(subs) < len(modules):
                where = f"the forward of {name} and {len(subs)} of its submodules ({shown})"
            else:
                where = f"{len(subs)} submodules of {name} ({shown})"
            one = len(modules) == 1
            text = f"{where} " + what.format(reason=reason, ran_on=ran_on, their="its" if one else "their",
                                             verb="does" if one else "do", it="it" if one else "they",
                                             was="was" if one else "were").replace("running they", "running them")
            out.append(failure(job.path, text, def_line, severity=Severity.INFO, model=name, modules=modules,
                               **({"device": model.get("device")} if key == "concrete" else {})))
    for note in model.get("notes", []):
        out.append(failure(job.path, note, def_line, severity=Severity.INFO, model=name))
    return out


def model_names(job: ModelJob) -> List[str]:
    if job.plan:
        names = [m[0] for m in job.plan.get("models", [])]
        names += [t["name"] for t in job.plan.get("targets", []) if t.get("kind") == "factory" and not t.get("foreign")]
        return sorted(set(names))
    return list(job.candidates)


def file_failure(job: ModelJob, err: Dict[str, Any]) -> Finding:
    """The BNL001 for a model file that did not import (the worker's error dict)."""
    msg, line = err.get("message", ""), err.get("line")
    reason = err.get("reason") or ("crashed" if err.get("stage") == "worker" else "import-failed")
    models = list(err.get("models") or model_names(job))
    details: Dict[str, Any] = {"stage": err.get("stage", "import"), "not_analysed": reason, "models": models}
    what = f" ({', '.join(models)} not analysed)" if models else ""
    severity = Severity.ERROR
    if reason == "needs-package":
        package = err.get("package", "?")
        details["package"] = package
        if not err.get("configured"):
            details["missing_module"] = package  # the cached finding is dropped once it is installed
        text = (f"cannot import {job.path}: it needs package '{package}', which is not installed "
                f"({err.get('what') or msg}); "
                f"install it in the environment bnlint runs in to analyse its models{what}")
        severity = Severity.WARNING
    elif reason == "needs-download":
        text = (f"cannot import {job.path}: importing it needs a download ({err.get('download', msg)}), and "
                f"bnlint never downloads{what}")
        severity = Severity.WARNING
    elif err.get("missing_module"):
        details["missing_module"] = err["missing_module"]
        text = (f"cannot import {job.path}: no module named '{err['missing_module']}'; it is part of the "
                f"project or was excluded from stand-ins (no-mock-imports): make it importable (is a file "
                f"missing, or does a script add a folder to sys.path?), or exclude this file{what}")
    elif err.get("exc_type") == "SystemExit":
        text = (f"importing {job.path} called sys.exit(); bnlint imports model files (definitions only) "
                f"to trace their models: move that call under `if __name__ == \"__main__\":`{what}")
    else:
        text = (f"importing {job.path} raised {msg}; bnlint imports model files (definitions only) to "
                f"trace their models: fix the error or exclude the file{what}")
    return failure(job.path, text, line, severity=severity, **details)


def dependency_failure(job: ModelJob, name: str, err: Dict[str, Any], def_line: Optional[int]) -> Optional[Finding]:
    """A model that needs a missing package or a download: a warning, or None for
    other errors."""
    reason = err.get("reason")
    line = err.get("line") or def_line
    if reason == "needs-package":
        package = err.get("package", "?")
        text = (f"model {name} needs package '{package}', which is not installed "
                f"({err.get('what') or err.get('message', '')}); "
                f"install it in the environment bnlint runs in to analyse this model")
        extra = {} if err.get("configured") else {"missing_module": package}  # cache: stale once installed
        return failure(job.path, text, line, severity=Severity.WARNING, model=name, stage=err.get("stage"),
                        not_analysed=reason, package=package, **extra)
    if reason == "needs-download":
        text = (f"model {name} cannot be built without a download ({err.get('download', '')}), and bnlint "
                f"never downloads; give its factory a pretrained=False / weights=None parameter, or name "
                f"arguments that avoid the download with '{job.path}::{name}(arg=value)'")
        return failure(job.path, text, line, severity=Severity.WARNING, model=name, stage=err.get("stage"),
                        not_analysed=reason)
    return None


def note_finding(job: ModelJob, note: Any) -> Finding:
    """An info note of the worker: a string, or a dict with ``message``, ``line`` and
    details."""
    if isinstance(note, str):
        return failure(job.path, note, None, severity=Severity.INFO)
    details = {k: v for k, v in note.items() if k not in ("message", "line")}
    return failure(job.path, note.get("message", ""), note.get("line"), severity=Severity.INFO, **details)


def not_analysed_notes(job: ModelJob, result: Optional[Dict[str, Any]]) -> List[Finding]:
    """An info note for every model class of the file that no analysed model built:
    it needs arguments no call site resolves, or nothing that was built contains it.
    (Models whose build failed already have their BNL001.)"""
    plan = job.plan
    if not plan:
        return []
    built, failed, reasons, packages = set(), {}, {}, {}
    foreign_built = set()  # models of other files analysed here (they may not build every class they name)
    in_variant: Dict[str, Dict[str, Any]] = {}  # class -> the second build that held it
    for m in (result or {}).get("models", []):
        if m.get("variant"):
            for file, qualname in m.get("covers", []) if "graph" in m else ():
                if os.path.abspath(file) == job.abs_path:
                    in_variant.setdefault(qualname, m)
            continue  # its failure is no model's: the class it was for stays unanalysed
        if "graph" not in m:
            errors = m.get("errors") or [{}]
            reasons[m.get("name")] = errors[0].get("reason") or STAGE_REASONS.get(errors[0].get("stage"), "build-failed")
            if errors[0].get("package"):
                packages[m.get("name")] = errors[0]["package"]
        if m.get("foreign"):
            if "graph" in m:
                foreign_built.add(m.get("name"))
        elif "graph" in m:
            built.add(m.get("name"))
        else:
            failed[m.get("name")] = reasons[m.get("name")]
        for file, qualname in m.get("covers", []) if "graph" in m else ():
            if os.path.abspath(file) == job.abs_path:
                built.add(qualname)
    needs = {name: params for name, params in plan.get("needs_arguments", [])}
    conditional = {name: (why, spec) for name, why, spec in plan.get("conditional", [])}
    expected = {}  # class -> the failed target that should have built it
    for t in plan.get("targets", []):
        if t.get("variant"):
            continue
        if t["name"] in failed or (t.get("foreign") and t["name"] not in foreign_built):
            for name in t.get("builds", []):
                expected.setdefault(name, t["name"])
    out = []
    for name, line in plan.get("models", []):
        if name in built or name in failed:
            continue
        if name in in_variant:
            m = in_variant[name]
            text = (f"model {name} was analysed in a second build, {m.get('call')} (the arguments of "
                    f"{m.get('origin')}): {m.get('name')} holds it only then")
            out.append(failure(job.path, text, line, severity=Severity.INFO, model=name, variant=m["variant"]))
            continue
        if name in expected:
            text = (f"model {name} was not analysed: {expected[name]}, which builds it, could not be "
                    f"analysed")
            reason = reasons.get(expected[name], "build-failed")
            if expected[name] in packages:  # what its builder needs, it needs
                out.append(failure(job.path, text, line, severity=Severity.INFO, model=name, not_analysed=reason,
                                   package=packages[expected[name]]))
                continue
        elif name in needs:
            params = list(needs[name])
            args = ", ".join(f"{p}=..." for p in params[:3])
            text = (f"model {name} was not analysed: it needs arguments ({', '.join(params)}) and no call in "
                    f"the project passes values bnlint can resolve; name them with "
                    f"'{job.path}::{name}({args})' or in [tool.bnlint] models")
            reason = "needs-arguments"
        elif name in conditional:
            why, spec = conditional[name]
            text = (f"model {name} was not analysed: {why}, and no model built from this project sets it; "
                    f"name it with '{job.path}::{spec or name + '(...)'}' or in [tool.bnlint] models")
            reason = "not-built"
        else:
            text = (f"model {name} was not analysed: no model built from this project contains it; name it "
                    f"with '{job.path}::{name}(...)' or in [tool.bnlint] models")
            reason = "not-built"
        out.append(failure(job.path, text, line, severity=Severity.INFO, model=name, not_analysed=reason))
    return out
