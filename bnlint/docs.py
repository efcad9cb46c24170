"""Rule pages generated from the rule files: ``docs/rules/<CODE>.md`` and
``docs/rules/index.md``.

Each page is the rule's docstring (what it does, why it is bad with the paper and
section, example, use instead, fix safety, references) plus a header table (kind,
default, severity, fixable) and an example taken from the rule's fixtures: the code
around a line that bnlint reports, and the fixture that must stay clean.

``python -m bnlint.docs`` rewrites the pages; ``python -m bnlint.docs --check`` exits 1
when they are stale (a test does the same).
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from bnlint.rule import Rule, RuleKind

__all__ = [
    "ROOT", "render_rule_page", "render_index", "rule_pages", "write_pages", "stale_pages",
    "rule_help_uri", "rule_plain_text", "rule_section", "main",
]

ROOT = Path(__file__).resolve().parent.parent
DOCS_RULES = ROOT / "docs" / "rules"
FIXTURES = ROOT / "fixtures"
_KIND_TEXT = {
    RuleKind.GRAPH: "graph rule (checks traced models)",
    RuleKind.SCRIPT: "script rule (checks training-script source, statically)",
    RuleKind.ANALYSIS: "analysis diagnostic",
    RuleKind.RUNTIME: "runtime rule (reported by `bnlint run`, which runs the training script)",
}
_MAX_SNIPPET = 28


def rule_plain_text(rule: Rule) -> str:
    """The rule's documentation without markdown heading marks and code fences."""
    lines = []
    for line in rule.doc.strip().splitlines():
        if line.startswith("```"):
            continue
        lines.append(line[3:] if line.startswith("## ") else line)
    return "\n".join(lines).strip()


def rule_section(rule: Rule, heading: str) -> str:
    """The text under ``## heading`` in the rule's documentation (empty if none)."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", rule.doc, re.M | re.S)
    return match.group(1).strip() if match else ""


def rule_help_uri(code: str) -> Optional[str]:
    """The rule page's URI: under the Documentation URL the installed distribution
    declares, else the page in this source checkout, else None."""
    try:
        from importlib.metadata import PackageNotFoundError, metadata

        for entry in metadata("bnlint").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() == "documentation" and url.strip():
                return f"{url.strip().rstrip('/')}/rules/{code}.md"
    except (ImportError, PackageNotFoundError):
        pass
    page = DOCS_RULES / f"{code}.md"
    return page.as_uri() if page.is_file() else None


# ---------------------------------------------------------------- fixture examples

@dataclass(frozen=True)
class FixtureExample:
    path: Path  # the fixture file
    line: int  # a line bnlint reports for the rule
    first: int  # first line of the snippet
    text: str  # the snippet, flagged line marked


def _expected(path: Path) -> List[Tuple[str, int]]:
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        parts = raw.split()
        if len(parts) == 2 and not raw.startswith("#") and parts[1].isdigit():
            out.append((parts[0], int(parts[1])))
    return out


def _enclosing(tree: ast.Module, line: int) -> Optional[Tuple[int, int]]:
    """Lines of the innermost function or class around ``line``."""
    best = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            end = getattr(node, "end_lineno", None) or node.lineno
            if start <= line <= end and (best is None or end - start < best[1] - best[0]):
                best = (start, end)
    return best


def _snippet(path: Path, line: int, code: str) -> FixtureExample:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    try:
        span = _enclosing(ast.parse(source), line)
    except SyntaxError:
        span = None
    if span is None or span[1] - span[0] + 1 > _MAX_SNIPPET:
        span = (max(1, line - 10), min(len(lines), line + 4))
        if span[1] - span[0] + 1 > _MAX_SNIPPET:
            span = (span[0], span[0] + _MAX_SNIPPET - 1)
    first, last = span
    out = []
    for number in range(first, last + 1):
        text = lines[number - 1] if number <= len(lines) else ""
        if number == line:
            text = f"{text}  # <- {code} reported here"
        out.append(text)
    while out and not out[-1].strip():
        out.pop()
    while out and not out[0].strip():
        out.pop(0)
        first += 1
    return FixtureExample(path=path, line=line, first=first, text=textwrap.dedent("\n".join(out)))


def fixture_examples(code: str, fixtures: Path = FIXTURES) -> Tuple[Optional[FixtureExample], List[Path]]:
    """(an example the rule reports, clean fixture files) from ``fixtures/<CODE>/``.

    The example is the shortest fixture file that lists the rule in its ``.expected``
    file; clean files are those of the folder whose ``.expected`` file is empty."""
    folder = fixtures / code
    bad: List[Tuple[int, str, Path, int]] = []
    clean: List[Path] = []
    for expected in sorted(folder.glob("*.expected")):
        source = expected.with_suffix(".py")
        if not source.is_file():
            continue
        entries = _expected(expected)
        lines = [n for c, n in entries if c == code]
        if lines:
            length = len(source.read_text(encoding="utf-8").splitlines())
            bad.append((length, source.name, source, lines[0]))
        elif not entries:
            clean.append(source)
    if not bad:
        return None, clean
    _, _, path, line = min(bad)
    return _snippet(path, line, code), clean


# ---------------------------------------------------------------- pages

def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def _module_summary(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except SyntaxError:
        match = re.match(r'\s*"""(.*?)(?:\n|""")', path.read_text(encoding="utf-8"))
        doc = match.group(1) if match else ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def render_rule_page(rule: Rule, fixtures: Path = FIXTURES) -> str:
    example, clean = fixture_examples(rule.code, fixtures)
    parts = [
        f"# {rule.code}: {rule.name}",
        "",
        "<!-- Generated by `python -m bnlint.docs` from "
        f"the rule file and fixtures/{rule.code}/; do not edit by hand. -->",
        "",
        rule.summary + ".",
        "",
        "| | |",
        "|---|---|",
        f"| Code | `{rule.code}` |",
        f"| Name | `{rule.name}` |",
        f"| Kind | {_KIND_TEXT[rule.kind]} |",
        f"| Default | {'on' if rule.default_enabled else 'off'} |",
        f"| Severity | {rule.severity.value} |",
        f"| Fixable | {'yes (`bnlint fix`)' if rule.fixable else 'no'} |",
        "",
        rule.doc.strip(),
        "",
    ]
    if example is not None:
        summary = _module_summary(example.path)
        parts += [
            "## Example from the fixtures",
            "",
            f"`{_rel(example.path)}`" + (f" ({summary.rstrip('.')})" if summary else "")
            + f": bnlint reports `{rule.code}` on line {example.line}.",
            "",
            "```python",
            example.text,
            "```",
            "",
        ]
        if clean:
            names = ", ".join(f"`{_rel(p)}`" for p in clean)
            parts += [f"Fixtures that must stay clean for this rule: {names}.", ""]
    if rule.kind is RuleKind.ANALYSIS:
        how = ("Analysis failures are reported whatever the selection, because hiding them would "
               "hide unchecked code. Fix the cause, or exclude the file (`exclude` under "
               "`[tool.bnlint]` in `pyproject.toml`, or a `# bnlint: skip-file` comment).")
    else:
        how = (f"Add `# noqa: {rule.code}` or `# bnlint: ignore[{rule.code}]` to the reported line"
               + (" (or to the line that defines the module)" if rule.kind is RuleKind.GRAPH else "")
               + f", or `ignore = [\"{rule.code}\"]` under `[tool.bnlint]` in `pyproject.toml`.")
    parts += ["## Suppressing", "", how, ""]
    return "\n".join(parts)


def render_index(rules: Sequence[Rule]) -> str:
    parts = [
        "# Rules",
        "",
        "<!-- Generated by `python -m bnlint.docs`; do not edit by hand. -->",
        "",
        "| code | name | default | fixable | summary |",
        "|---|---|---|---|---|",
    ]
    for r in rules:
        parts.append(
            f"| [{r.code}]({r.code}.md) | {r.name} | {'on' if r.default_enabled else 'off'} | "
            f"{'yes' if r.fixable else 'no'} | {r.summary} |"
        )
    return "\n".join(parts) + "\n"


def rule_pages(fixtures: Path = FIXTURES) -> Dict[str, str]:
    """File name -> content for every generated page."""
    from bnlint.registry import all_rules

    rules = all_rules()
    pages = {f"{r.code}.md": render_rule_page(r, fixtures) for r in rules}
    pages["index.md"] = render_index(rules)
    return pages


def stale_pages(out_dir: Path = DOCS_RULES, fixtures: Path = FIXTURES) -> List[str]:
    """Pages that are missing, differ from the generated text, or belong to no rule."""
    pages = rule_pages(fixtures)
    stale = []
    for name, text in pages.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    if out_dir.is_dir():
        stale += sorted(p.name for p in out_dir.glob("*.md") if p.name not in pages)
    return sorted(stale)


def write_pages(out_dir: Path = DOCS_RULES, fixtures: Path = FIXTURES) -> List[str]:
    """Write the pages (and delete pages of rules that no longer exist)."""
    pages = rule_pages(fixtures)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in pages.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(name)
    for path in out_dir.glob("*.md"):
        if path.name not in pages:
            path.unlink()
            written.append(path.name)
    return sorted(written)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnlint.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the pages are stale, write nothing")
    parser.add_argument("--out", type=Path, default=DOCS_RULES, help="output folder (default: docs/rules)")
    args = parser.parse_args(argv)
    if not FIXTURES.is_dir():
        print(f"bnlint.docs: error: {FIXTURES} not found; run this from a source checkout", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_pages(args.out)
        if stale:
            print(f"stale rule pages in {args.out}: {', '.join(stale)}; run 'python -m bnlint.docs'")
            return 1
        print("rule pages are up to date")
        return 0
    written = write_pages(args.out)
    print(f"wrote {len(written)} page(s) in {args.out}" + (f": {', '.join(written)}" if written else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
