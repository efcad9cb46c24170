"""Rule docs: ``bnlint rules`` and ``bnlint explain`` print from the rule files, and
``docs/rules/<CODE>.md`` are generated from them (this test fails when they are stale:
run ``python -m bnlint.docs``)."""
from __future__ import annotations

import re

from bnlint.docs import DOCS_RULES, main, render_rule_page, rule_pages, stale_pages, write_pages
from bnlint.registry import all_rules
from bnlint.rule import DOC_HEADINGS, RuleKind
from test_config import ROOT, run_bnlint

PAPER = re.compile(r"arXiv \d{4}\.\d{4,5}")  # the paper, in References
AUTHORS = re.compile(r"\b(Li|Kim|Wu|Ioffe)\b.*?(20\d\d)", re.S)  # ... and in "Why is this bad?"


def test_rule_pages_are_up_to_date():
    stale = stale_pages()
    assert not stale, f"stale pages in docs/rules: {stale}; run 'python -m bnlint.docs'"


def test_each_page_has_the_doc_sections_and_a_fixture_example():
    for rule in all_rules():
        page = (DOCS_RULES / f"{rule.code}.md").read_text()
        assert page.startswith(f"# {rule.code}: {rule.name}\n")
        positions = [page.index(h) for h in DOC_HEADINGS]
        assert positions == sorted(positions), rule.code
        assert "## Example from the fixtures" in page, rule.code
        example = page.split("## Example from the fixtures", 1)[1]
        fixture = re.search(r"`(fixtures/[^`]+\.py)`", example).group(1)
        line = int(re.search(r"on line (\d+)", example).group(1))
        # The shown line is the fixture's line, and the fixture expects the finding there.
        flagged = [l for l in example.splitlines() if l.endswith(f"# <- {rule.code} reported here")]
        assert len(flagged) == 1
        source_line = (ROOT / fixture).read_text().splitlines()[line - 1]
        assert flagged[0].split("  # <- ")[0].strip() == source_line.strip()
        assert f"{rule.code} {line}" in (ROOT / fixture).with_suffix(".expected").read_text()
        fixable = "| Fixable | yes" in page
        assert fixable == rule.fixable
        if rule.kind is not RuleKind.ANALYSIS:
            why = page.split("## Why is this bad?", 1)[1].split("\n## ", 1)[0]
            refs = page.split("## References", 1)[1]
            assert AUTHORS.search(why) and PAPER.search(refs), rule.code
            assert re.search(r"(section|§)\s*\d", refs), f"{rule.code}: no paper section cited"


def test_index_lists_every_rule():
    index = (DOCS_RULES / "index.md").read_text()
    for rule in all_rules():
        assert f"[{rule.code}]({rule.code}.md) | {rule.name} |" in index


def test_staleness_is_detected_and_fixed_by_the_generator(tmp_path):
    out = tmp_path / "rules"
    assert set(write_pages(out)) == set(rule_pages())
    assert stale_pages(out) == [] and write_pages(out) == []
    page = out / "BNL202.md"
    page.write_text(page.read_text().replace("itertools.cycle", "cycle", 1))
    (out / "BNL999.md").write_text("# a rule that no longer exists\n")
    assert stale_pages(out) == ["BNL202.md", "BNL999.md"]
    assert main(["--check", "--out", str(out)]) == 1
    assert main(["--out", str(out)]) == 0
    assert stale_pages(out) == [] and not (out / "BNL999.md").exists()
    assert main(["--check", "--out", str(out)]) == 0


def test_a_page_follows_its_rule_file():
    rule = all_rules()[1]
    from dataclasses import replace

    changed = replace(rule, doc=rule.doc.replace("## Fix safety", "## Fix safety\nNew sentence."))
    assert "New sentence." in render_rule_page(changed)
    assert "New sentence." not in render_rule_page(rule)


def test_rules_command_table():
    proc = run_bnlint("rules")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["code", "name", "default", "fixable"]
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    for rule in all_rules():
        row = rows[rule.code]
        assert row[1] == rule.name
        assert row[2] == ("on" if rule.default_enabled else "off")
        assert row[3] == ("yes" if rule.fixable else "no")


def test_explain_prints_the_rule_file_doc():
    for rule in all_rules()[:3]:
        proc = run_bnlint("explain", rule.code)
        assert proc.returncode == 0
        assert rule.doc.strip() in proc.stdout
    proc = run_bnlint("explain", "cycled-dataloader")
    assert proc.returncode == 0 and "# BNL202 cycled-dataloader" in proc.stdout
    proc = run_bnlint("explain", "BNL999")
    assert proc.returncode == 2 and "unknown rule" in proc.stderr and "Traceback" not in proc.stderr
