"""The check pipeline: discover files, run script rules on their source, hand model
files to a worker subprocess, run graph rules on the returned graphs, apply
suppressions, and return sorted findings.

No user code runs in this process and torch is never imported here.
"""
from __future__ import annotations

import ast
import fnmatch
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from bnlint.config import Config
from bnlint.findings import Finding, Severity
from bnlint.notebook import is_notebook, read_notebook_source, to_cell_positions
from bnlint.rule import Rule, RuleKind
from bnlint.sources import SourceError, SourceFile, read_source
from bnlint.suppress import parse_suppressions
from bnlint.model.targets import (
    TargetSpec, TargetSpecError, may_define_factories, may_define_models, parse_target_spec, split_path_spec,
)

__all__ = ["CheckResult", "UsageError", "collect_files", "check_paths", "analysis_failure"]

SKIP_DIRS = {
    ".git", ".hg", ".svn", ".venv", "venv", "env", ".env", "__pycache__", ".tox", ".nox",
    "build", "dist", "node_modules", "site-packages", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".bnlint_cache", ".eggs", ".ipynb_checkpoints",
}


class UsageError(Exception):
    """A mistake in the command line (exit code 2, one clear line)."""


@dataclass
class CheckResult:
    findings: List[Finding] = field(default_factory=list)
    files_checked: int = 0
    # True when at least one file could not be analysed at all (exit code 2).
    fatal: bool = False
    # The bytes each finding's positions refer to (display path -> raw file content).
    raw: Dict[str, bytes] = field(default_factory=dict)


@dataclass
class FileJob:
    path: str  # as shown to the user
    abs_path: str
    targets: List[TargetSpec] = field(default_factory=list)  # explicit targets
    named: bool = False  # named on the command line (not found in a folder)


def analysis_failure(path: str, message: str, line: int = 1, column: int = 1,
                     severity: Severity = Severity.ERROR, **details) -> Finding:
    return Finding(
        code="BNL001", name="analysis-failed", severity=severity, path=path,
        line=line, column=column, message=message,
        details=tuple(sorted(details.items())),
    )


def _excluded(path: Path, patterns: Sequence[str], root: Optional[str]) -> bool:
    if not patterns:
        return False
    candidates = {path.as_posix(), path.name}
    if root:
        try:
            candidates.add(path.resolve().relative_to(Path(root).resolve()).as_posix())
        except ValueError:
            pass
    for pattern in patterns:
        pat = pattern.rstrip("/")
        for cand in candidates:
            if fnmatch.fnmatch(cand, pat) or fnmatch.fnmatch(cand, pat + "/*") or cand.startswith(pat + "/"):
                return True
    return False


def collect_files(paths: Sequence[str], config: Config) -> List[FileJob]:
    """Expand files and folders; ``path.py::Name(args)`` adds an explicit target."""
    jobs: Dict[str, FileJob] = {}
    order: List[str] = []

    def add(display: str, targets: Sequence[TargetSpec] = (), named: bool = False) -> None:
        abs_path = os.path.abspath(display)
        if abs_path not in jobs:
            jobs[abs_path] = FileJob(path=display, abs_path=abs_path)
            order.append(abs_path)
        jobs[abs_path].named = jobs[abs_path].named or named
        for t in targets:
            if t not in jobs[abs_path].targets:
                jobs[abs_path].targets.append(t)

    for raw in paths:
        path_text, spec_text = split_path_spec(raw)
        if spec_text is not None:
            try:
                spec = parse_target_spec(spec_text)
            except TargetSpecError as exc:
                raise UsageError(str(exc)) from None
            if not os.path.isfile(path_text):
                raise UsageError(f"{path_text}: no such file (in model spec {raw!r})")
            add(path_text, [spec], named=True)
            continue
        p = Path(path_text)
        if not os.path.lexists(path_text):
            raise UsageError(f"{path_text}: no such file or directory")
        if p.is_dir():
            seen_dirs = set()
            for dirpath, dirnames, filenames in os.walk(path_text, followlinks=False):
                real = os.path.realpath(dirpath)
                if real in seen_dirs:
                    dirnames[:] = []
                    continue
                seen_dirs.add(real)
                dirnames[:] = sorted(
                    d for d in dirnames
                    if d not in SKIP_DIRS and not d.startswith(".")
                    and not d.endswith(".egg-info")
                    and not _excluded(Path(dirpath) / d, config.exclude, config.root)
                )
                for name in sorted(filenames):
                    if not (name.endswith(".py") or name.endswith(".ipynb")):
                        continue
                    if name.startswith(("_bnlint_fix_", "_bnlint_verify_")):  # left by a killed 'bnlint fix'
                        continue
                    fp = Path(dirpath) / name
                    if _excluded(fp, config.exclude, config.root):
                        continue
                    display = os.path.normpath(str(fp))
                    add(display)
        else:
            # A file named explicitly is checked even if excluded, like ruff's --force-exclude off.
            add(os.path.normpath(path_text) if not path_text.startswith("./") else path_text[2:], named=True)

    # Models named in [tool.bnlint] models (path::Spec, relative to the config's folder).
    for entry in config.models:
        path_text, spec_text = split_path_spec(entry)
        if spec_text is None:
            raise UsageError(f"[tool.bnlint] models entry {entry!r} must look like path.py::Name")
        base = config.root or "."
        full = os.path.normpath(os.path.join(base, path_text))
        if os.path.abspath(full) in jobs:
            try:
                add(jobs[os.path.abspath(full)].path, [parse_target_spec(spec_text)])
            except TargetSpecError as exc:
                raise UsageError(f"[tool.bnlint] models: {exc}") from None
    return [jobs[k] for k in order]


def _per_file_ignored(path: str, code: str, config: Config) -> bool:
    codes = config.per_file_ignored_codes(path)
    return any(code.startswith(c.upper()) or c.upper() == "ALL" for c in codes)


def _apply_suppressions(findings: List[Finding], sources: Dict[str, SourceFile], config: Config) -> List[Finding]:
    cache = {}
    kept = []
    for f in findings:
        if _per_file_ignored(f.path, f.code, config):
            continue
        src = sources.get(f.path)
        if src is not None:
            if f.path not in cache:
                cache[f.path] = parse_suppressions(src.text)
            sup = cache[f.path]
            details = dict(f.details)
            lines = {f.line, details.get("definition_line")}
            if any(sup.suppresses(line, f.code) for line in lines if line):
                continue
        kept.append(f)
    return kept


@dataclass
class _Facts:
    """What the check needs of a file besides rules' input: cached by stat signature."""
    digest: str  # sha256 of the raw bytes
    skip: bool  # '# bnlint: skip-file'
    candidates: Optional[List[str]]  # names that may define models (None: not computed, no graph rule ran)
    imports: Optional[List[str]]  # local modules it imports itself (None: not computed)


class _Planners:
    """One project index and planner per project root seen in this run."""

    def __init__(self, config: Config, index):
        self.config = config
        self.index = index
        self.by_root: Dict[str, object] = {}

    def plan(self, path: str):
        """(project root, FilePlan) for a model file; None when planning fails."""
        from bnlint.model.plan import Planner
        from bnlint.model.project import Project, project_root_of

        root = project_root_of(path)
        if root not in self.by_root:
            exclude = (lambda p: _excluded(Path(p), self.config.exclude, self.config.root)) if self.config.exclude else None
            self.by_root[root] = Planner(Project.scan(root, self.index, exclude))
        planner = self.by_root[root]
        try:
            return root, planner.plan(path)  # type: ignore[attr-defined]
        except RecursionError:
            return None


def _read(job: FileJob, notebooks: Dict) -> SourceFile:
    if is_notebook(job.path):
        src, notebooks[job.path] = read_notebook_source(job.abs_path, job.path)
        return src
    return read_source(job.abs_path, job.path)


def check_paths(paths: Sequence[str], config: Config, rules: Sequence[Rule], *,
                progress=None, cache=None, jobs: Optional[int] = None, plan_fixes: bool = True) -> CheckResult:
    """``cache``: a ``bnlint.cache.ResultCache`` (``bnlint check`` passes one); ``jobs``:
    model files analysed at once (default: the number of CPUs); ``plan_fixes``: script
    findings' fixes get their edits (``bnlint fix``, SARIF); without it they say only
    that a fix exists and what it does, which is all the text and JSON reports show
    (``bnlint.script.analysis.ScriptContext``)."""
    from concurrent.futures import ThreadPoolExecutor

    from bnlint.model.modelcheck import ModelJob, check_model_files, start_workers_early

    files = collect_files(paths, config)
    enabled_codes = {r.code for r in rules}
    graph_rules = [r for r in rules if r.kind is RuleKind.GRAPH]
    script_rules = [r for r in rules if r.kind is RuleKind.SCRIPT]
    result = CheckResult(files_checked=len(files))
    findings: List[Finding] = []
    sources: Dict[str, SourceFile] = {}  # read so far (display path -> source)
    readable: List[FileJob] = []  # files the rules see, in order
    digests: Dict[str, str] = {}
    model_jobs: List[ModelJob] = []
    model_keys: Dict[str, str] = {}
    candidate_jobs: List[Tuple[ModelJob, _Facts]] = []
    index = cache.file_index() if cache is not None else None

    notebooks = {}  # display path -> NotebookPython: findings go back to cells
    unparsed: Dict[str, Tuple[FileJob, Optional[os.stat_result], _Facts]] = {}  # abs path -> syntax unchecked
    for job in files:
        try:
            st = os.stat(job.abs_path)
        except OSError:
            st = None  # read_source says why it cannot be read
        if st is not None and not stat.S_ISREG(st.st_mode):  # a named pipe would wait for a writer forever
            findings.append(analysis_failure(
                job.path, f"cannot analyse file: {job.path} is not a regular file (a pipe, socket or device); exclude it"))
            result.fatal = result.fatal or job.named
            continue
        facts = index.lookup(job.abs_path, st) if index is not None and not is_notebook(job.path) else None
        if facts is not None and graph_rules and facts.candidates is None:
            facts = None  # stored by a run without graph rules
        fresh = facts is None  # new or changed since the last run: its models are not cached
        if facts is None:
            try:
                src = _read(job, notebooks)
            except SourceError as exc:
                findings.append(analysis_failure(job.path, f"cannot analyse file: {exc}"))
                result.fatal = result.fatal or job.named
                continue
            sources[job.path] = src
            candidates: Optional[List[str]] = None  # only graph rules need them
            imports: Optional[List[str]] = None
            if graph_rules or job.path in notebooks:
                tree = _syntax_tree(job.path, src.text, findings)
                if tree is None:
                    continue
                if graph_rules:
                    candidates = may_define_models(tree)
                    candidates += [n for n in may_define_factories(tree) if n not in candidates]
                if cache is not None and (candidates or job.targets):
                    from bnlint.cache import direct_imports

                    imports = direct_imports(job.abs_path, tree)
            facts = _Facts(hashlib.sha256(src.raw).hexdigest(), parse_suppressions(src.text).skip_file,
                           candidates, imports)
            if candidates is None and job.path not in notebooks:
                # Script rules only: the script analysis parses most files anyway (with
                # libcst); the others are parsed for their syntax errors afterwards.
                unparsed[job.abs_path] = (job, st, facts)
            elif index is not None and st is not None and job.path not in notebooks:
                index.store(job.abs_path, st, facts)
        readable.append(job)
        digests[job.path] = facts.digest
        if facts.skip:
            continue
        if graph_rules and (facts.candidates or job.targets):
            candidate_jobs.append((ModelJob(path=job.path, abs_path=job.abs_path, explicit=list(job.targets),
                                            candidates=list(facts.candidates)), facts))
            if fresh and len(candidate_jobs) == 1:
                # Most likely a worker will analyse it: torch's import in the fork server
                # then overlaps the static work still to do (the rest of the files, the
                # project plans, the script rules).
                start_workers_early()

    # What to build for each model file, planned from its project (bnlint.model.plan).
    planners = _Planners(config, index)
    for model_job, facts in candidate_jobs:
        if not model_job.explicit and not is_notebook(model_job.path):
            planned = planners.plan(model_job.abs_path)
            if planned is not None:
                root, plan = planned
                if not plan.targets and not plan.models:
                    continue  # nothing here is a model after all
                model_job.plan, model_job.project_root = plan.to_request(), root
        if cache is not None:
            parts = [model_job.path.encode(), facts.digest.encode(), repr(model_job.targets_key()).encode()]
            direct = facts.imports if facts.imports is not None else index.dependency(model_job.abs_path)[1]
            for dep, digest in index.closure(model_job.abs_path, direct):
                parts += [dep.encode(), digest.encode()]
            for other in model_job.other_files():  # foreign targets and argument references
                parts.append(other.encode())
                for dep, digest in [(other, index.dependency(other)[0])] + index.closure(other, index.dependency(other)[1]):
                    parts += [dep.encode(), digest.encode()]
            model_keys[model_job.path] = cache.key("model", parts)
            cached = cache.get(model_keys[model_job.path])
            if cached is not None and not _dependency_installed_since(cached):
                findings.extend(cached)
                continue
        model_jobs.append(model_job)

    # Model files run in worker processes while the script rules run here.
    pool = ThreadPoolExecutor(max_workers=1) if model_jobs else None
    models = pool.submit(check_model_files, model_jobs, config, graph_rules, progress=progress,
                         workers=jobs, shown={j.abs_path: j.path for j in files}) if pool is not None else None
    try:
        parsed: set = set()
        if script_rules:
            findings.extend(_script_findings(readable, sources, digests, notebooks, script_rules, cache, findings, result,
                                             plan_fixes, parsed))
        for abs_path, (job, st, facts) in unparsed.items():
            if abs_path in parsed or _syntax_tree(job.path, sources[job.path].text, findings) is not None:
                if index is not None and st is not None:
                    index.store(abs_path, st, facts)
    finally:
        model_result = models.result() if models is not None else None
        if pool is not None:
            pool.shutdown()
    if model_result is not None:
        findings.extend(model_result.findings)
        result.fatal = result.fatal or model_result.fatal
        if cache is not None:
            for path, job_findings in model_result.by_job.items():
                # Failures are cached only when the file decides them (an import error);
                # a timeout, a crash or a failed build may go another way next time.
                errors = [f for f in job_findings if f.code == "BNL001" and f.severity is Severity.ERROR]
                if all(dict(f.details).get("stage") == "import" for f in errors):
                    cache.put(model_keys[path], job_findings)
    if index is not None:
        index.save()

    # Analysis failures (BNL001) are always shown: hiding them would hide unchecked code.
    findings = [f for f in findings if f.code in enabled_codes or f.code == "BNL001"]
    by_path = {j.path: j for j in readable}
    for path in {f.path for f in findings} - set(sources):  # suppressions need their text
        if path in by_path:
            try:
                sources[path] = _read(by_path[path], notebooks)
            except SourceError:
                pass
    findings = _apply_suppressions(findings, sources, config)
    for path, src in sources.items():
        result.raw[path] = src.raw
    unique = {f.sort_key(): f for f in _without_echoes(findings)}
    result.findings = [unique[k] for k in sorted(unique)]
    if notebooks:
        result.findings = to_cell_positions(result.findings, notebooks)
    return result


def _syntax_tree(path: str, text: str, findings: List[Finding]) -> Optional[ast.Module]:
    """The file's tree; None, with its BNL001, when it does not parse."""
    try:
        return ast.parse(text, filename=path)
    except SyntaxError as exc:
        findings.append(analysis_failure(
            path,
            f"syntax error: {exc.msg}; fix the syntax so bnlint can analyse this file",
            line=exc.lineno or 1, column=(exc.offset or 1),
        ))
    except (ValueError, RecursionError, MemoryError) as exc:
        findings.append(analysis_failure(path, f"cannot parse file: {type(exc).__name__}: {exc}"))
    return None


def _script_findings(readable: List[FileJob], sources: Dict[str, SourceFile], digests: Dict[str, str],
                     notebooks: Dict, script_rules: Sequence[Rule], cache, findings, result,
                     plan_fixes: bool = True, parsed: Optional[set] = None) -> List[Finding]:
    """Script rules on the checked files, each analysed with the project it lives in
    (``bnlint.script.scope``): findings only in these files, the same whatever else is
    named on the command line."""
    from bnlint.script.scope import CheckedFile, check_in_project

    def reader(job: FileJob):
        def read() -> SourceFile:
            if job.path not in sources:
                sources[job.path] = _read(job, notebooks)
            return sources[job.path]
        return read

    def failed(checked, exc) -> None:  # removed or changed since it was listed
        findings.append(analysis_failure(checked.path, f"cannot analyse file: {exc}"))
        result.fatal = True

    files = [CheckedFile(job.path, job.abs_path, reader(job), notebook=is_notebook(job.path)) for job in readable]
    index = cache.file_index() if cache is not None else None
    return check_in_project(files, script_rules, cache=cache, index=index, on_error=failed, plan_fixes=plan_fixes,
                            parsed=parsed)


def _without_echoes(findings: List[Finding]) -> List[Finding]:
    """A model of one file that uses a module of another reports that module's
    problems at their place in the other file ("via" the first): when the other file's
    own analysis reports the same place and rule, its finding is kept alone."""
    own = {(f.path, f.line, f.column, f.code) for f in findings if "via" not in dict(f.details)}
    kept, echoed = [], set()
    for f in findings:
        if "via" in dict(f.details):
            key = (f.path, f.line, f.column, f.code)
            if key in own or key in echoed:
                continue
            echoed.add(key)
        kept.append(f)
    return kept


def _dependency_installed_since(cached: List[Finding]) -> bool:
    """A cached 'missing dependency' is stale once the package can be found (looked up
    without importing it)."""
    import importlib.util

    for f in cached:
        details = dict(f.details)
        # missing_module: an import that failed or a model that needs it; stubbed: the
        # packages stand-ins replaced (bnlint.model.standins).
        for name in [details.get("missing_module"), *(details.get("stubbed") or ())]:
            if not name:
                continue
            try:
                if importlib.util.find_spec(str(name).split(".")[0]) is not None:
                    return True
            except (ImportError, ValueError):
                pass
    return False
