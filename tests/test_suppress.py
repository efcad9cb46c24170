"""Suppressions: ``# noqa: CODE``, ``# bnlint: ignore[CODE]``, bare ``# noqa``,
``# bnlint: skip-file``; graph findings also on the module's definition line."""
from __future__ import annotations

import json
import textwrap

import pytest

from bnlint.suppress import parse_suppressions
from test_config import CYCLED, run_bnlint  # CYCLED: one BNL202 finding, on line 9

CYCLE_LINE = "batches = cycle(loader)"


def test_parse_codes_forms_and_lines():
    sup = parse_suppressions(textwrap.dedent("""\
        a = 1  # noqa: BNL101
        b = 2  # noqa:BNL101,BNL202
        c = 3  # bnlint: ignore[BNL203, BNL204]
        d = 4  # noqa
        e = 5  # bnlint: ignore
        f = "# noqa"
        g = 6  # NOQA: bnl2
        h = 7  # noqa: E501
    """))
    assert sup.suppresses(1, "BNL101") and not sup.suppresses(1, "BNL102")
    assert sup.suppresses(2, "BNL101") and sup.suppresses(2, "BNL202") and not sup.suppresses(2, "BNL203")
    assert sup.suppresses(3, "BNL203") and sup.suppresses(3, "BNL204") and not sup.suppresses(3, "BNL101")
    assert sup.suppresses(4, "BNL101") and sup.suppresses(4, "BNL205")  # bare noqa: all
    assert sup.suppresses(5, "BNL102")
    assert not sup.suppresses(6, "BNL101")  # inside a string, not a comment
    assert sup.suppresses(7, "BNL205") and not sup.suppresses(7, "BNL101")  # prefix, any case
    assert not sup.suppresses(8, "BNL101")  # another linter's code
    assert not sup.suppresses(9, "BNL101") and not sup.skip_file


def test_skip_file_anywhere_in_a_comment():
    assert parse_suppressions("import torch\n# bnlint: skip-file\n").skip_file
    assert not parse_suppressions("x = '# bnlint: skip-file'\n").skip_file
    # A file that does not tokenize still honours its comments.
    assert parse_suppressions("def f(:\n    pass  # noqa: BNL202\n").suppresses(2, "BNL202")


@pytest.mark.parametrize("comment, suppressed", [
    ("# noqa: BNL202", True),
    ("# noqa:BNL202", True),
    ("# bnlint: ignore[BNL202]", True),
    ("# bnlint: ignore[cycled-dataloader-typo, BNL202]", True),
    ("# noqa", True),
    ("# noqa: BNL201", False),
    ("# bnlint: ignore[BNL203]", False),
    ("# a comment", False),
])
def test_script_finding_suppressed_on_its_line(tmp_path, comment, suppressed):
    (tmp_path / "train.py").write_text(CYCLED.replace(CYCLE_LINE, f"{CYCLE_LINE}  {comment}"))
    proc = run_bnlint("check", "train.py", cwd=tmp_path)
    assert "Traceback" not in proc.stderr
    assert (proc.returncode == 0) is suppressed, proc.stdout
    assert ("BNL202" in proc.stdout) is not suppressed


def test_suppression_on_another_line_does_not_count(tmp_path):
    (tmp_path / "train.py").write_text(CYCLED.replace("for step in", "# noqa: BNL202\nfor step in"))
    proc = run_bnlint("check", "train.py", cwd=tmp_path)
    assert proc.returncode == 1 and "train.py:9:" in proc.stdout


def test_skip_file(tmp_path):
    (tmp_path / "train.py").write_text("# bnlint: skip-file\n" + CYCLED)
    (tmp_path / "other.py").write_text(CYCLED)
    proc = run_bnlint("check", ".", cwd=tmp_path)
    assert proc.returncode == 1
    assert [l.split(":")[0] for l in proc.stdout.splitlines() if ": BNL" in l] == ["other.py"]


NET = textwrap.dedent("""\
    import torch.nn as nn
    import torch.nn.functional as F


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.drop = nn.Dropout(0.3){defn}
            self.bn = nn.BatchNorm2d(8)

        def forward(self, x):
            x = self.drop(F.relu(self.conv(x))){call}
            return self.bn(x)


    class SeqNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(8, 16),
                nn.Dropout(0.2),{seq}
                nn.BatchNorm1d(16),
            )

        def forward(self, x):
            return self.body(x)
""")


def _net(tmp_path, name, defn="", call="", seq=""):
    (tmp_path / name).write_text(NET.format(defn=defn, call=call, seq=seq))
    return name


def test_graph_findings_suppressed_on_the_call_or_the_definition_line(tmp_path):
    files = {
        "plain.py": _net(tmp_path, "plain.py"),
        "on_call.py": _net(tmp_path, "on_call.py", call="  # noqa: BNL101", seq="  # noqa"),
        "on_defn.py": _net(tmp_path, "on_defn.py", defn="  # bnlint: ignore[BNL101]"),
        "other_code.py": _net(tmp_path, "other_code.py", defn="  # noqa: BNL102", seq="  # noqa: BNL103"),
    }
    proc = run_bnlint("check", "--format", "json", *files, cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    found = sorted((f["path"], f["code"], f["line"]) for f in json.loads(proc.stdout))
    assert found == [
        ("on_defn.py", "BNL101", 22),  # the Sequential's dropout is still reported
        ("other_code.py", "BNL101", 13),
        ("other_code.py", "BNL101", 22),
        ("plain.py", "BNL101", 13),
        ("plain.py", "BNL101", 22),
    ], proc.stdout
    plain = [f for f in json.loads(proc.stdout) if f["path"] == "plain.py" and f["line"] == 13][0]
    assert plain["details"]["definition_line"] == 9
