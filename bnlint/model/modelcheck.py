"""CLI side of model analysis: run a worker per model file (with a timeout), turn its
answer into fact graphs, run the graph rules and place the findings on source lines.

torch is never imported here; the worker does that.
"""
from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from bnlint.config import Config
from bnlint.findings import Finding, Severity
from bnlint.model.failures import (
    failure, file_failure, model_failures, model_names, not_analysed_notes, note_finding,
)
from bnlint.model.locations import Location, _display_path, _group_key, _is_library, locate
from bnlint.model.process import run_worker, start_workers_early
from bnlint.model.targets import TargetSpec
from bnlint.rule import Hit, Rule

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["ModelJob", "ModelCheckResult", "check_model_files", "graph_from_json", "run_worker", "file_failure",
           "start_workers_early"]


@dataclass
class ModelJob:
    path: str  # as shown to the user
    abs_path: str
    explicit: List[TargetSpec] = field(default_factory=list)
    candidates: List[str] = field(default_factory=list)
    # What to build, planned from the project (bnlint.model.plan.FilePlan.to_request()).
    plan: Optional[Dict[str, Any]] = None
    project_root: Optional[str] = None
    plan_fixes: bool = True  # bnlint fix's re-check of a fixed copy needs no fix plans

    def targets_key(self) -> Tuple[Any, ...]:
        """What decides the worker's answer besides the files' bytes (results cache)."""
        return (tuple(self.explicit), json.dumps(self.plan, sort_keys=True) if self.plan else None)

    def other_files(self) -> List[str]:
        """Project files the plan builds from besides this one: foreign targets and the
        classes passed as arguments."""
        out = set()
        for t in (self.plan or {}).get("targets", []):
            out.add(os.path.abspath(t["path"]))
            stack = list(t.get("args", [])) + list((t.get("kwargs") or {}).values())
            while stack:
                v = stack.pop()
                if isinstance(v, dict):
                    if "__ref__" in v:
                        out.add(os.path.abspath(v["__ref__"][0]))
                    else:
                        stack.extend(v.values())
                elif isinstance(v, list):
                    stack.extend(v)
        out.discard(self.abs_path)
        return sorted(out)


@dataclass
class ModelCheckResult:
    findings: List[Finding] = field(default_factory=list)
    fatal: bool = False
    # Findings of each job that was analysed (worker answered, file imported): cacheable.
    by_job: Dict[str, List[Finding]] = field(default_factory=dict)


def graph_from_json(data: Dict[str, Any]) -> nx.DiGraph:
    import networkx as nx

    g = nx.DiGraph()
    for node in data.get("nodes", []):
        attrs = dict(node)
        nid = attrs.pop("id")
        g.add_node(nid, **attrs)
    g.add_edges_from((u, v) for u, v in data.get("edges", []))
    return g


# ---------------------------------------------------------------- results -> findings

def _with_fix(rule: Rule, g: nx.DiGraph, hit: Hit, job: ModelJob, fix_sources: Dict[str, Any]) -> Hit:
    """Attach the planned fix of a graph-rule hit, or say in the message why there is none."""
    if hit.fix is not None or not rule.fixable or hit.node not in g or not job.plan_fixes:
        return hit
    from dataclasses import replace

    from bnlint.fix.modelfix import plan_model_fix

    fix, why = plan_model_fix(rule.code, g, hit.node, job.abs_path, fix_sources, hit.related)
    if fix is not None:
        return replace(hit, fix=fix)
    if why:
        return replace(hit, message=f"{hit.message} (no automatic fix: {why})")
    return hit


def _in_library(hit: Hit, loc: Location) -> Hit:
    """A hit inside installed code, reported at the user's line that builds it."""
    from dataclasses import replace

    return replace(hit, fix=None, data=hit.data + (("library", loc.library), ("library_site", loc.library_site)),
                   message=(f"{hit.message} (in {loc.library}, {_HOW[loc.library_how]}; installed code is "
                            f"not fixed automatically)"))


_HOW = {"built": "built on this line", "called": "called on this line", "used": "which this model uses"}


def _graph_findings(job: ModelJob, model: Dict[str, Any], rules: Sequence[Rule],
                    fix_sources: Optional[Dict[str, Any]] = None) -> List[Tuple[Location, Rule, Hit]]:
    g = graph_from_json(model["graph"])
    fix_sources = {} if fix_sources is None else fix_sources
    # The model's own definition: where a finding goes when no better line is known.
    default = {"file": job.abs_path, "line": model.get("def_line") or 1, "col": 0}
    out = []
    for rule in rules:
        try:
            hits = list(rule.check(g))
        except Exception as exc:  # a crashing rule is a diagnostic, never a crashed run
            hits = []
            out.append((Location(job.abs_path, 1, 1), None, Hit(
                message=f"rule {rule.code} crashed on model {model.get('name')}: {type(exc).__name__}: {exc}")))
        for hit in hits:
            loc = locate(g.nodes[hit.node], default) if hit.node in g else None
            if loc is None:
                loc = Location(default["file"], default["line"], 1)
            if loc.library:
                hit = _in_library(hit, loc)
            else:
                hit = _with_fix(rule, g, hit, job, fix_sources)
            out.append((loc, rule, hit))
    return out


def _belongs_elsewhere(file: str, job: ModelJob) -> bool:
    """A planned model's finding located in another file of the project: that file's
    own check reports it (its plan builds the same model), so this one does not."""
    full = os.path.abspath(file)
    if full == job.abs_path or job.plan is None or not job.project_root or _is_library(full):
        return False
    return full.startswith(os.path.abspath(job.project_root) + os.sep)


def _findings_for_job(job: ModelJob, result: Dict[str, Any], rules: Sequence[Rule],
                     shown: Optional[Dict[str, str]] = None,
                     fix_sources: Optional[Dict[str, Any]] = None) -> List[Finding]:
    """``fix_sources``: path -> ``SourceIndex`` the fixes are planned on (default: the
    files as they are on disk)."""
    findings: List[Finding] = []
    for note in result.get("notes", []):
        findings.append(note_finding(job, note))
    grouped: Dict[Tuple[Any, ...], List[Tuple[Location, Rule, Hit, str, Dict[str, Any]]]] = {}
    fix_sources = {} if fix_sources is None else fix_sources
    latent_rules = [r for r in rules if r.code == LATENT_RULE]
    graph_rules = [r for r in rules if r.code != LATENT_RULE]
    for model in result.get("models", []):
        if model.get("covered_by_parent"):
            continue
        foreign = bool(model.get("foreign"))
        if not foreign:
            findings.extend(model_failures(job, model))
        if "graph" not in model:
            continue
        how = {k: model[k] for k in ("origin", "call", "input_shape", "variant") if model.get(k)}
        graphs = [(model, graph_rules)] + [
            (dict(latent, name=model.get("name")), latent_rules) for latent in model.get("latent", [])]
        for graph_model, graph_rule_set in graphs:
            if not graph_rule_set:
                continue
            for loc, rule, hit in _graph_findings(job, graph_model, graph_rule_set, fix_sources):
                if rule is None:
                    if not foreign:
                        findings.append(failure(job.path, hit.message))
                    continue
                if (foreign and os.path.abspath(loc.file) != job.abs_path) or _belongs_elsewhere(loc.file, job):
                    continue
                if model.get("variant") and not any(a <= loc.line <= b for a, b in model.get("keep", [])):
                    continue  # a second build: only what it shows of the classes it was made for
                key = _group_key(loc, rule.code)
                grouped.setdefault(key, []).append((loc, rule, hit, model.get("name", "?"), how))
        if how.get("call") and not foreign:
            said = (f"model {model['raised']}; it was built as {how['call']} instead" if model.get("raised")
                    else f"model {model.get('name')} was built as {how['call']}")
            findings.append(failure(
                job.path, f"{said}, with the arguments of {how['origin']}", model.get("def_line"), severity=Severity.INFO,
                model=model.get("name"), origin=how["origin"]))
    # A dropout the ordinary rules already report where it is written (another use of
    # the same code enables it) needs no BNL104 there: that finding and its fix cover it.
    reported = {(loc.file, loc.line, loc.column) for items in grouped.values()
                for loc, rule, *_ in items if rule.code != LATENT_RULE}
    for items in grouped.values():
        loc, rule, hit, model_name, how = items[0]
        if rule.code == LATENT_RULE and (loc.file, loc.line, loc.column) in reported:
            continue
        file, line, column = loc.file, loc.line, loc.column
        models = sorted({item[3] for item in items})
        per_model: Dict[str, int] = {}
        for item in items:  # a block used N times in one model; other models repeat it
            per_model[item[3]] = per_model.get(item[3], 0) + 1
        count = max(per_model.values())
        message = hit.message
        if all(item[4].get("variant") for item in items):
            # only a second build holds this code (bnlint.model.variants): say which
            message += f" (in {model_name} built with {how['variant']}, the setting that uses this code)"
        if count > 1:
            message += f" [applied {count} times]"
        details = {"model": model_name, "node": hit.node}
        details.update(how)
        if os.path.abspath(file) != job.abs_path:
            details["via"] = job.path  # found through a model of another file
        if len(models) > 1:
            details["models"] = models
        if loc.definition_line:
            details["definition_line"] = loc.definition_line
        details.update(dict(hit.data))
        findings.append(Finding(
            code=rule.code, name=rule.name, severity=hit.severity or rule.severity,
            path=_display_path(file, job, shown), line=line, column=column, message=message,
            fix=hit.fix, details=tuple(sorted(details.items(), key=lambda kv: kv[0])),
        ))
    findings.extend(not_analysed_notes(job, result))
    return findings


def _import_for_findings() -> None:
    try:
        import networkx  # noqa: F401  (graph_from_json, the graph rules)

        import bnlint.fix.modelfix  # noqa: F401  (fix planning: libcst)
    except ImportError:
        pass  # reported where it is used


LATENT_RULE = "BNL104"


def check_model_files(jobs: Sequence[ModelJob], config: Config, rules: Sequence[Rule], progress=None,
                      workers: Optional[int] = None, shown: Optional[Dict[str, str]] = None) -> ModelCheckResult:
    """Analyse model files, ``workers`` at a time (default: the number of CPUs).
    ``shown``: display paths of every file being checked, by absolute path."""
    result = ModelCheckResult()

    latent = any(r.code == LATENT_RULE for r in rules)

    def run(job: ModelJob):
        request = {
            "file": job.abs_path,
            "explicit": [t.to_dict() for t in job.explicit],
            "candidates": job.candidates,
            "input_shape": [list(s) for s in config.input_shape] if config.input_shape else None,
            "plan": job.plan if not job.explicit else None,
            "project_root": job.project_root,
            "latent": latent and not job.explicit,
            "mock_imports": list(config.mock_imports),
            "no_mock_imports": list(config.no_mock_imports),
        }
        outcome = job, run_worker(request, config.timeout)
        if progress is not None:  # e.g. bnlint.progress.ProgressLine
            progress(job.path, len(jobs))
        return outcome

    # A plan with nothing to build needs no worker: only its notes.
    idle = [j for j in jobs if j.plan is not None and not j.explicit and not j.plan.get("targets")]
    busy = [j for j in jobs if j not in idle]
    for job in idle:
        notes = not_analysed_notes(job, None)
        result.by_job[job.path] = notes
        result.findings.extend(notes)
    workers = max(1, min(len(busy), workers or os.cpu_count() or 1))
    # What turning answers into findings imports (networkx, libcst for fixes: about a
    # second) is imported while the workers run, not after them.
    imports = threading.Thread(target=_import_for_findings, name="bnlint-imports", daemon=True)
    imports.start()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(run, busy))
    imports.join()
    for job, (answer, why) in outcomes:
        if answer is None:
            reason = "timeout" if why and why.startswith("timed out") else "crashed"
            result.findings.append(failure(job.path, f"cannot analyse the models of {job.path}: {why}",
                                            stage="worker", not_analysed=reason, models=model_names(job)))
            continue
        if answer.get("error"):
            failed = file_failure(job, answer["error"])
            result.findings.append(failed)
            if answer["error"].get("stage") == "worker":
                result.fatal = True  # bnlint's own failure, not the user's code
            if answer["error"].get("stage", "import") == "import":
                # The file's own content decides this one: cacheable (bnlint.cache).
                result.by_job[job.path] = [failed]
            continue
        job_findings = _findings_for_job(job, answer, rules, shown=shown)
        result.by_job[job.path] = job_findings
        result.findings.extend(job_findings)
    return result
