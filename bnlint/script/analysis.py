"""Parse, walk and check: the script rules run on an analysed project.

Files are parsed with libcst (never importing torch or running user code), walked once
across files (``bnlint.script.walker``) into plain facts (``bnlint.script.facts``), and
those facts go to each script rule's ``check``. Only files that may hold a finding or
start training code (``hinted``) are parsed up front; the others are parsed when a call
or a class lookup reaches them.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Dict, Iterable, List, Optional, Sequence

import libcst as cst

from bnlint.findings import Finding, Severity, SourceSpan
from bnlint.rule import Hit, Rule
from bnlint.script.facts import Loop, ScriptFacts, Value
from bnlint.script.known import SCRIPT_HINT, may_matter
from bnlint.script.positions import locate_all_with_syntactic_positions, locate_nodes, locate_unique
from bnlint.script.project import FileInfo, Project, index_file
from bnlint.script.walker import analyse_project

__all__ = ["run_script_rules", "analyse_sources", "analyse", "ScriptContext", "parse_file", "findings_of",
           "hinted"]

# Node types a finding may point at (positions are computed for these only).
_ANCHOR_TYPES = (cst.Call, cst.Subscript, cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.Name)


class ScriptContext:
    """What a script rule's ``check`` receives: the facts, plus source spans and
    severities computed on demand.

    ``plan_fixes``: whether fixes get their edits (``bnlint fix``, ``--format sarif``,
    the Python API). Without it a rule still says whether a fix exists and what it does
    (the ``[*]`` marker, JSON's ``fix`` object), decided on the tree and its parents;
    only the edits need source positions of the whole file. With it, a file's spans
    and the positions the edits need come from one code generation pass."""

    def __init__(self, facts: ScriptFacts, plan_fixes: bool = True) -> None:
        self.facts = facts
        self.plan_fixes = plan_fixes
        self._positions: Dict[int, Dict] = {}
        self._syntactic: Dict[int, object] = {}  # id(file) -> PositionProvider positions
        self._indexes: Dict[int, object] = {}

    def _locate_all(self, file: FileInfo) -> None:
        spans, positions = locate_all_with_syntactic_positions(file.module)
        self._positions[id(file)] = spans
        self._syntactic[id(file)] = positions

    def span(self, node: cst.CSTNode, file: FileInfo) -> SourceSpan:
        table = self._positions.get(id(file))
        if table is None and not self.plan_fixes and file.text is not None:
            # Most findings sit on one line whose text occurs once in the file: found
            # by a search, without generating the file's code (positions.locate_unique).
            found = locate_unique(file.module, file.text, node)
            if found is not None:
                (line, col), (end_line, end_col) = found
                return SourceSpan(file.path, line, col + 1, end_line, end_col + 1)
        if table is None and self.plan_fixes:
            self._locate_all(file)
            table = self._positions[id(file)]
        elif table is None:
            table = locate_nodes(file.module, _ANCHOR_TYPES + (type(node),))
            self._positions[id(file)] = table
        elif id(node) not in table:
            table.update(locate_nodes(file.module, (type(node),)))
        (line, col), (end_line, end_col) = table.get(id(node), ((1, 0), (1, 0)))
        return SourceSpan(file.path, line, col + 1, end_line, end_col + 1)

    def source_index(self, file: FileInfo):
        """Parents of ``file``'s nodes, and their positions when fixes are planned, for
        the fix planners (``bnlint.fix.scriptfix``; cached per file)."""
        if id(file) not in self._indexes:
            from bnlint.fix.cstindex import SourceIndex

            if self.plan_fixes and id(file) not in self._syntactic:
                self._locate_all(file)
            self._indexes[id(file)] = SourceIndex.from_module(file.path, file.module,
                                                              self._syntactic.get(id(file)))
        return self._indexes[id(file)]

    def severity(self, loops: Iterable[Loop], file: Optional[FileInfo] = None) -> Severity:
        """Error when the model trained in these loops contains BatchNorm."""
        models = self.facts.trains_models(loops)
        if not models and file is not None:
            models = [m for m in self.facts.models if m.file is file]
        if any(m.get("has_bn") for m in models):
            return Severity.ERROR
        return Severity.WARNING


def _unchecked_init(self) -> None:
    pass


@contextlib.contextmanager
def _parser_nodes_unvalidated():
    """libcst validates every node it constructs (``CSTNode.__post_init__`` calls
    ``_validate``), also the nodes its parser makes from source, which are valid by
    construction (libcst's own comment there says so): about a seventh of a parse.
    Meanwhile that check is left out; nodes built while it lasts, in any thread, are
    not validated either. A libcst without that hook is left as it is."""
    base = cst.CSTNode
    saved = base.__dict__.get("__post_init__")
    if saved is None:
        yield
        return
    with _VALIDATION:
        base.__post_init__ = _unchecked_init
        try:
            yield
        finally:
            base.__post_init__ = saved


_VALIDATION = threading.Lock()


def parse_file(path: str, text: str, module_name: str, abs_path: str, scanned: bool) -> Optional[FileInfo]:
    """Parse and index one file; None when it does not parse (the engine reports
    syntax errors as BNL001)."""
    try:
        with _parser_nodes_unvalidated():
            module = cst.parse_module(text)
    except (cst.ParserSyntaxError, RecursionError, ValueError, MemoryError):
        return None
    info = index_file(path, module, module_name, abs_path, scanned)
    info.text = text
    return info


def analyse(project: Project, plan_fixes: bool = True) -> ScriptContext:
    """Walk the project; the context the rules check (``plan_fixes``: see
    ``ScriptContext``)."""
    return ScriptContext(analyse_project(project), plan_fixes)


def analyse_sources(sources) -> ScriptContext:
    """The files in ``sources`` (``bnlint.sources.SourceFile``) as one project of their
    own: imports between them resolve by their paths; nothing is read from disk."""
    return analyse(_memory_project(sources))


def _memory_project(sources) -> Project:
    from bnlint.script.layout import Layout

    texts = {s.path: s.text for s in sources}
    layout = Layout.virtual(texts)
    layout.hint = hinted
    by_abs = {layout.abs(s.path): s for s in sources}

    def load(abs_path: str) -> Optional[FileInfo]:
        src = by_abs.get(abs_path)
        if src is None:
            return None
        return parse_file(src.path, src.text, layout.module_name(abs_path), abs_path, False)

    files = []
    for abs_path, src in by_abs.items():
        if hinted(src.text):
            info = parse_file(src.path, src.text, layout.module_name(abs_path), abs_path, True)
            if info is not None:
                files.append(info)
    return Project(files, layout, load)


hinted = may_matter


def findings_of(ctx: ScriptContext, rules: Sequence[Rule], wanted=None) -> List[Finding]:
    """Run the rules on an analysed project; ``wanted(path)`` keeps a finding's file."""
    out: Dict[tuple, Finding] = {}
    for rule in rules:
        for hit in rule.check(ctx):
            span = hit.span
            if wanted is not None and not wanted(span.path):
                continue
            finding = Finding(
                code=rule.code, name=rule.name, severity=hit.severity or rule.severity,
                path=span.path, line=span.line, column=span.column, message=hit.message,
                fix=hit.fix, end_line=span.end_line, end_column=span.end_column,
                details=hit.data,
            )
            key = (finding.path, finding.line, finding.column, finding.code)
            old = out.get(key)
            # The same place reached through two call paths: keep the more severe.
            if old is None or _rank(finding) > _rank(old):
                out[key] = finding
    return sorted(out.values(), key=Finding.sort_key)


def _rank(finding: Finding) -> tuple:
    """Which of two findings at one place wins: the more severe, then the message
    (a fixed order, whatever order the call paths were walked in)."""
    return (finding.severity is Severity.ERROR, finding.fix is not None, finding.message, repr(finding.fix))


def run_script_rules(sources, rules: Sequence[Rule]) -> List[Finding]:
    """Findings of the script rules for ``sources`` taken as one project of their own
    (``bnlint.sources.SourceFile``; findings only in files that name a loader, sampler,
    permutation or seed)."""
    rules = [r for r in rules if r.check is not None]
    if not rules:
        return []
    keep = {s.path for s in sources if SCRIPT_HINT.search(s.text)}
    if not keep:
        return []
    return findings_of(analyse_sources(sources), rules, keep.__contains__)
