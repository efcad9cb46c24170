"""Output formats: SARIF 2.1.0 (validated against the vendored OASIS schema), GitHub
Actions annotations, JUnit XML, and ``--output-file``."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from bnlint.findings import Edit, Finding, Fix, FixSafety, Severity
from bnlint.registry import all_rules
from bnlint.report import render_github, render_junit
from bnlint.sarif import sarif_log
from test_config import CYCLED, ROOT, run_bnlint  # CYCLED: one BNL202 warning on line 9, columns 11-24
from test_suppress import NET  # two BNL101 errors: lines 13 and 22

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())


def _validate(log):
    validator = jsonschema.Draft4Validator(SCHEMA)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def test_the_vendored_schema_is_sarif_2_1_0_and_rejects_a_broken_log():
    assert SCHEMA["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    broken = sarif_log([], all_rules())
    broken["runs"][0]["results"] = [{"ruleId": "BNL101", "level": "fatal", "message": {"text": "x"}}]
    with pytest.raises(AssertionError, match="level"):
        _validate(broken)
    del broken["version"]
    assert list(jsonschema.Draft4Validator(SCHEMA).iter_errors(broken))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    (root / "train.py").write_text(CYCLED)
    (root / "nets.py").write_text(NET.format(defn="", call="", seq=""))
    return root


@pytest.fixture(scope="module")
def cli_sarif(project):
    proc = run_bnlint("check", "--format", "sarif", "train.py", "nets.py", cwd=project)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def test_cli_sarif_is_valid_and_describes_every_rule(cli_sarif, project):
    _validate(cli_sarif)
    run = cli_sarif["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "bnlint" and cli_sarif["version"] == "2.1.0"
    codes = [r["id"] for r in driver["rules"]]
    assert codes == [r.code for r in all_rules()]
    for descriptor, rule in zip(driver["rules"], all_rules()):
        assert descriptor["name"] == rule.name
        assert descriptor["shortDescription"]["text"] == rule.summary
        assert "## Why is this bad?" in descriptor["help"]["markdown"]
        assert "Why is this bad?" in descriptor["help"]["text"]
        # The help URI is the rule page, which exists in this checkout.
        assert descriptor["helpUri"].endswith(f"docs/rules/{rule.code}.md")
        assert (ROOT / "docs" / "rules" / f"{rule.code}.md").is_file()
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == project.resolve().as_uri() + "/"


def test_cli_sarif_results_point_at_the_findings(cli_sarif):
    run = cli_sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    got = []
    for result in run["results"]:
        loc = result["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        got.append((result["ruleId"], result["level"], loc["artifactLocation"]["uri"], loc["region"]["startLine"]))
    assert sorted(got) == [
        ("BNL101", "error", "nets.py", 13),
        ("BNL101", "error", "nets.py", 22),
        ("BNL202", "warning", "train.py", 9),
    ]
    cycle = [r for r in run["results"] if r["ruleId"] == "BNL202"][0]
    region = cycle["locations"][0]["physicalLocation"]["region"]
    assert (region["startColumn"], region["endLine"], region["endColumn"]) == (11, 9, 24)
    assert "itertools.cycle" in cycle["message"]["text"]


def test_fix_edits_become_sarif_fix_objects():
    edits = (
        Edit("pkg/net.py", (13, 8), (13, 44), "x = F.relu(self.conv(x))"),
        Edit("pkg/net.py", (14, 15), (14, 25), "self.drop(self.bn(x))"),
    )
    findings = [
        Finding("BNL101", "dropout-before-batchnorm", Severity.ERROR, "pkg/net.py", 13, 13, "moved",
                fix=Fix(FixSafety.SAFE, "move the dropout after the BN", edits)),
        Finding("BNL102", "dropout-after-global-pool", Severity.ERROR, "pkg/net.py", 30, 9, "no edits",
                fix=Fix(FixSafety.UNSAFE, "computed by the fixer")),
        Finding("BNL202", "cycled-dataloader", Severity.WARNING, "nb.ipynb", 4, 1, "in a notebook",
                details=(("cell", 3),)),
        Finding("BNL001", "analysis-failed", Severity.INFO, "/abs/path/x y.py", 1, 1, "note"),
    ]
    log = sarif_log(findings, all_rules())
    _validate(log)
    results = log["runs"][0]["results"]
    fix = results[0]["fixes"][0]
    assert fix["description"]["text"] == "move the dropout after the BN (safe fix)"
    change = fix["artifactChanges"][0]
    assert change["artifactLocation"]["uri"] == "pkg/net.py"
    assert change["replacements"][0] == {
        "deletedRegion": {"startLine": 13, "startColumn": 9, "endLine": 13, "endColumn": 45},
        "insertedContent": {"text": "x = F.relu(self.conv(x))"},
    }
    assert len(change["replacements"]) == 2
    assert "fixes" not in results[1] and results[1]["properties"]["fix"]["safety"] == "unsafe"
    assert results[2]["locations"][0]["logicalLocations"][0]["name"] == "cell 3"
    assert results[3]["level"] == "note"
    assert results[3]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "file:///abs/path/x%20y.py"


def test_github_annotations(project):
    proc = run_bnlint("check", "--format", "github", "train.py", cwd=project)
    assert proc.returncode == 1
    (line,) = proc.stdout.splitlines()
    fixable = json.loads(run_bnlint("check", "--format", "json", "train.py", cwd=project).stdout)[0]["fix"]
    assert line == (
        "::warning file=train.py,line=9,col=11,endLine=9,endColumn=24,"
        "title=BNL202 (cycled-dataloader)::`itertools.cycle` replays the batches of the first pass, "
        "so the data order (and augmentation) repeats every epoch; use a generator that re-iterates "
        "the loader (`while True: yield from loader`)" + (" [*]" if fixable else "")
    )


def test_github_escapes_properties_and_message():
    finding = Finding("BNL101", "dropout-before-batchnorm", Severity.ERROR, "dir,a:b/x.py", 3, 5,
                      "100% bad\nsecond line")
    info = Finding("BNL001", "analysis-failed", Severity.INFO, "x.py", 1, 1, "partly analysed")
    out = render_github([finding, info])
    assert out == ("::error file=dir%2Ca%3Ab/x.py,line=3,col=5,title=BNL101 (dropout-before-batchnorm)"
                   "::100%25 bad%0Asecond line\n")
    assert "::notice file=x.py" in render_github([finding, info], verbose=True)


def test_junit_xml(project):
    proc = run_bnlint("check", "--format", "junit", "train.py", cwd=project)
    assert proc.returncode == 1
    root = ET.fromstring(proc.stdout)
    assert root.tag == "testsuites" and root.get("failures") == "1"
    suite = root.find("testsuite")
    assert suite.get("name") == "train.py"
    case = suite.find("testcase")
    assert case.get("name") == "BNL202 at 9:11" and case.get("line") == "9"
    failure = case.find("failure")
    assert failure.get("type") == "BNL202" and failure.text.startswith("train.py:9:11: BNL202 ")


def test_junit_clean_run_is_one_passing_case():
    root = ET.fromstring(render_junit([], files_checked=3))
    assert root.get("failures") == "0"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 1 and cases[0].find("failure") is None
    assert cases[0].get("name") == "no problems in 3 file(s)"


def test_output_file_with_sarif_and_clean_sarif(tmp_path):
    (tmp_path / "ok.py").write_text("x = 1\n")
    out = tmp_path / "report.sarif"
    proc = run_bnlint("check", "--format", "sarif", "--output-file", out, "ok.py", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr
    log = json.loads(out.read_text())
    _validate(log)
    assert log["runs"][0]["results"] == []


def test_unknown_format_is_a_usage_error():
    proc = run_bnlint("check", "--format", "xml", "fixtures/BNL202")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'xml' is not one of" in proc.stderr
