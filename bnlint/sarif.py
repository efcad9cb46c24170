"""SARIF 2.1.0 output (``bnlint check --format sarif``).

One run with bnlint as the tool driver. Every rule is described (id, name, short and
full description, help text and markdown from the rule's docstring, help URI of its
rule page, default level); every finding is a result pointing at its file, line and
column. A finding whose fix carries edits gets a SARIF ``fix`` object with one
``artifactChange`` per file and one ``replacement`` per edit.

Paths stay relative to the current folder (``uriBaseId`` ``%SRCROOT%``), as GitHub code
scanning expects; columns are counted in Unicode code points, like bnlint's own output.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import quote

from bnlint import __version__
from bnlint.findings import Edit, Finding, Fix, Severity
from bnlint.rule import Rule

__all__ = ["render_sarif", "sarif_log", "SARIF_SCHEMA_URI"]

SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SRCROOT = "%SRCROOT%"
_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _artifact_location(path: str) -> Dict[str, Any]:
    p = Path(path)
    if p.is_absolute():
        return {"uri": p.as_uri()}
    return {"uri": quote(p.as_posix()), "uriBaseId": SRCROOT}


def _rule_descriptor(rule: Rule) -> Dict[str, Any]:
    from bnlint.docs import rule_help_uri, rule_plain_text, rule_section

    descriptor: Dict[str, Any] = {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule_section(rule, "What it does") or rule.summary},
        "help": {"text": rule_plain_text(rule), "markdown": rule.doc.strip()},
        "defaultConfiguration": {"level": _LEVELS[rule.severity], "enabled": rule.default_enabled},
        "properties": {"kind": rule.kind.value, "fixable": rule.fixable, "tags": [rule.kind.value]},
    }
    uri = rule_help_uri(rule.code)
    if uri:
        descriptor["helpUri"] = uri
    return descriptor


def _replacement(edit: Edit) -> Dict[str, Any]:
    # Edit positions: 1-based lines, 0-based columns, exclusive end. SARIF regions use
    # 1-based columns with an exclusive end column, so both columns move by one.
    return {
        "deletedRegion": {
            "startLine": edit.start[0], "startColumn": edit.start[1] + 1,
            "endLine": edit.end[0], "endColumn": edit.end[1] + 1,
        },
        "insertedContent": {"text": edit.replacement},
    }


def _sarif_fix(fix: Fix) -> Optional[Dict[str, Any]]:
    if not fix.edits:
        return None
    by_file: Dict[str, List[Edit]] = {}
    for edit in fix.edits:
        by_file.setdefault(edit.path, []).append(edit)
    return {
        "description": {"text": f"{fix.description} ({fix.safety.value} fix)"},
        "artifactChanges": [
            {"artifactLocation": _artifact_location(path),
             "replacements": [_replacement(e) for e in sorted(edits, key=lambda e: (e.start, e.end))]}
            for path, edits in sorted(by_file.items())
        ],
    }


def _region(f: Finding) -> Dict[str, Any]:
    region: Dict[str, Any] = {"startLine": max(1, f.line), "startColumn": max(1, f.column)}
    if f.end_line and f.end_line >= region["startLine"]:
        region["endLine"] = f.end_line
        if f.end_column and (f.end_line > region["startLine"] or f.end_column > region["startColumn"]):
            region["endColumn"] = f.end_column
    return region


def _result(f: Finding, rule_index: Dict[str, int]) -> Dict[str, Any]:
    details = dict(f.details)
    physical: Dict[str, Any] = {"artifactLocation": _artifact_location(f.path), "region": _region(f)}
    result: Dict[str, Any] = {
        "ruleId": f.code,
        "level": _LEVELS[f.severity],
        "message": {"text": f.message},
        "locations": [{"physicalLocation": physical}],
    }
    if "cell" in details:
        # Notebook findings: the line is counted inside the code cell.
        result["locations"][0]["logicalLocations"] = [{"name": f"cell {details['cell']}", "kind": "module"}]
    if f.code in rule_index:
        result["ruleIndex"] = rule_index[f.code]
    if f.fix is not None:
        # Notebook edits are on the cells' joined Python, not on the .ipynb file.
        sarif_fix = _sarif_fix(f.fix) if "cell" not in details else None
        if sarif_fix is not None:
            result["fixes"] = [sarif_fix]
        details["fix"] = f.fix.to_dict()
    if details:
        result["properties"] = json.loads(json.dumps(details, default=str))
    return result


def sarif_log(findings: Sequence[Finding], rules: Sequence[Rule]) -> Dict[str, Any]:
    """The SARIF log object for ``findings``; ``rules`` are described in the driver
    (pass every rule: results refer to them by index)."""
    ordered = sorted(rules, key=lambda r: r.code)
    rule_index = {r.code: i for i, r in enumerate(ordered)}
    root = Path(os.getcwd()).as_uri().rstrip("/") + "/"
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "bnlint",
                "version": __version__,
                "semanticVersion": __version__,
                "rules": [_rule_descriptor(r) for r in ordered],
            }},
            "originalUriBaseIds": {SRCROOT: {"uri": root}},
            "columnKind": "unicodeCodePoints",
            "results": [_result(f, rule_index) for f in findings],
        }],
    }


def render_sarif(findings: Sequence[Finding], rules: Optional[Sequence[Rule]] = None) -> str:
    if rules is None:
        from bnlint.registry import all_rules

        rules = all_rules()
    return json.dumps(sarif_log(findings, rules), indent=2) + "\n"
