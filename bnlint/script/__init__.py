"""Static analysis of training scripts for single-shuffle idioms (rules BNL2xx).

``run_script_rules`` parses the given files with libcst (never importing torch or
running user code), walks them once across files (``bnlint.script.walker``) into plain
facts (``bnlint.script.facts``), and hands those facts to each script rule's ``check``.
Files that cannot hold a finding (no loader, sampler, permutation or seed names) are
skipped before parsing.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

import libcst as cst

from bnlint.findings import Finding, Severity, SourceSpan
from bnlint.rule import Hit, Rule
from bnlint.script.facts import Loop, ScriptFacts, Value
from bnlint.script.known import SCRIPT_HINT
from bnlint.script.positions import locate_nodes
from bnlint.script.project import FileInfo, Project
from bnlint.script.walker import analyse_project

__all__ = ["run_script_rules", "analyse_sources", "ScriptContext"]

# Node types a finding may point at (positions are computed for these only).
_ANCHOR_TYPES = (cst.Call, cst.Subscript, cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.Name)


class ScriptContext:
    """What a script rule's ``check`` receives: the facts, plus source spans and
    severities computed on demand."""

    def __init__(self, facts: ScriptFacts) -> None:
        self.facts = facts
        self._positions: Dict[int, Dict] = {}

    def span(self, node: cst.CSTNode, file: FileInfo) -> SourceSpan:
        table = self._positions.get(id(file))
        if table is None:
            table = locate_nodes(file.module, _ANCHOR_TYPES + (type(node),))
            self._positions[id(file)] = table
        elif id(node) not in table:
            table.update(locate_nodes(file.module, (type(node),)))
        (line, col), (end_line, end_col) = table.get(id(node), ((1, 0), (1, 0)))
        return SourceSpan(file.path, line, col + 1, end_line, end_col + 1)

    def source_index(self, file: FileInfo):
        """Positions and parents of ``file``'s nodes, for planning fixes (cached)."""
        cache = self.__dict__.setdefault("_indexes", {})
        if id(file) not in cache:
            from bnlint.fix.cstindex import SourceIndex

            cache[id(file)] = SourceIndex.from_module(file.path, file.module)
        return cache[id(file)]

    def severity(self, loops: Iterable[Loop], file: Optional[FileInfo] = None) -> Severity:
        """Error when the model trained in these loops contains BatchNorm."""
        models = self.facts.trains_models(loops)
        if not models and file is not None:
            models = [m for m in self.facts.models if m.file is file]
        if any(m.get("has_bn") for m in models):
            return Severity.ERROR
        return Severity.WARNING


def _wanted(sources) -> List:
    """Files that may hold a finding, plus the files they import (helpers)."""
    hinted = [s for s in sources if SCRIPT_HINT.search(s.text)]
    if not hinted:
        return []
    keep = {id(s) for s in hinted}
    text = "\n".join(s.text for s in hinted)
    for s in sources:
        if id(s) not in keep:
            stem = s.path.replace("\\", "/").rsplit("/", 1)[-1][:-3]
            if stem and stem != "__init__" and stem in text:
                keep.add(id(s))
    return [s for s in sources if id(s) in keep]


def _parse(sources) -> Dict[str, cst.Module]:
    modules: Dict[str, cst.Module] = {}
    for src in _wanted(sources):
        try:
            modules[src.path] = cst.parse_module(src.text)
        except (cst.ParserSyntaxError, RecursionError, ValueError):
            continue  # the engine reports syntax errors (BNL001)
    return modules


def analyse_sources(sources) -> ScriptContext:
    """Parse and walk the files; the context the rules check."""
    modules = _parse(sources)
    texts = {s.path: s.text for s in sources}
    project = Project.from_modules(modules, texts)
    return ScriptContext(analyse_project(project))


def run_script_rules(sources, rules: Sequence[Rule]) -> List[Finding]:
    """Findings of the script rules for ``sources`` (``bnlint.sources.SourceFile``)."""
    rules = [r for r in rules if r.check is not None]
    if not rules:
        return []
    ctx = analyse_sources(sources)
    out: Dict[tuple, Finding] = {}
    for rule in rules:
        for hit in rule.check(ctx):
            span = hit.span
            finding = Finding(
                code=rule.code, name=rule.name, severity=hit.severity or rule.severity,
                path=span.path, line=span.line, column=span.column, message=hit.message,
                fix=hit.fix, end_line=span.end_line, end_column=span.end_column,
                details=hit.data,
            )
            key = (finding.path, finding.line, finding.column, finding.code)
            old = out.get(key)
            # The same place reached through two call paths: keep the more severe.
            if old is None or (old.severity is not Severity.ERROR and finding.severity is Severity.ERROR):
                out[key] = finding
    return sorted(out.values(), key=Finding.sort_key)
