"""Notebooks: code cells are checked in order as one script (script rules across
cells, models defined in cells), IPython syntax is skipped, and findings read
``nb.ipynb:cell N:LINE:COL``."""
from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from bnlint.notebook import NotebookError, notebook_python
from test_config import run_bnlint

IMPORTS = """\
%matplotlib inline
!pip install -q something
from itertools import cycle

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset"""

MODEL = """\
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.drop = nn.Dropout(0.3)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        x = self.drop(F.relu(self.conv(x)))
        return self.bn(x)"""

DATA = """\
loader = DataLoader(TensorDataset(torch.randn(64, 3, 8, 8), torch.randn(64, 1)), batch_size=8, shuffle=True)
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
batches = cycle(loader)
Net?"""

TRAIN = """\
%%time
for step in range(100):
    x, y = next(batches)
    loss = model(x).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()"""


def _notebook(path, model=MODEL, data=DATA):
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# Training"),
        new_code_cell(IMPORTS),
        new_code_cell(model),
        new_markdown_cell("## Data"),
        new_code_cell(data),
        new_code_cell("%%bash\necho hi\nfor x in 1 2; do echo $x; done"),
        new_code_cell(TRAIN),
    ]
    nb.cells[1].outputs = [new_output("stream", text="hello\n")]
    nb.cells[1].execution_count = 1
    nbformat.write(nb, str(path))
    return path


def test_python_of_the_code_cells_keeps_lines_and_skips_ipython(tmp_path):
    nbpy = notebook_python(_notebook(tmp_path / "nb.ipynb").read_bytes())
    lines = nbpy.text.splitlines()
    assert nbpy.cells == 5 and len(lines) == len(nbpy.lines)
    assert lines[0] == "pass  # bnlint: IPython line skipped"  # %matplotlib
    assert lines[1] == "pass  # bnlint: IPython line skipped"  # !pip
    assert lines[2] == "from itertools import cycle"
    assert nbpy.position(3) == (1, 3)
    first_model_line = len(IMPORTS.splitlines()) + 1
    assert nbpy.position(first_model_line) == (2, 1) and lines[first_model_line - 1] == "class Net(nn.Module):"
    assert "Net?" not in nbpy.text and "echo" not in nbpy.text and "%%time" not in nbpy.text
    assert "    x, y = next(batches)" in lines  # %%time keeps its Python body
    compile(nbpy.text, "nb", "exec")


@pytest.mark.parametrize("cell, expected", [
    ("x = !ls\nif x:\n    %time f()\n    y = 1", ["pass  # bnlint: IPython line skipped", "if x:",
                                                  "    pass  # bnlint: IPython line skipped", "    y = 1"]),
    ("!echo a \\\n  b\nz = 2", ["pass  # bnlint: IPython line skipped", "", "z = 2"]),
    ("%%writefile x.py\nprint(1)", ["", ""]),
    ("?len\nlen??", ["pass  # bnlint: IPython line skipped"] * 2),
    ("a = {'k': 1}  # 100% python\nb = a['k']", ["a = {'k': 1}  # 100% python", "b = a['k']"]),
])
def test_ipython_lines(cell, expected):
    raw = json.dumps({"cells": [{"cell_type": "code", "source": cell.splitlines(True)}],
                      "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()
    assert notebook_python(raw).text.splitlines() == expected


def test_non_python_and_broken_notebooks():
    r_nb = {"cells": [{"cell_type": "code", "source": "x <- 1"}],
            "metadata": {"kernelspec": {"language": "R"}}, "nbformat": 4, "nbformat_minor": 5}
    assert notebook_python(json.dumps(r_nb).encode()).text == ""
    with pytest.raises(NotebookError, match="not a valid notebook"):
        notebook_python(b"{not json")
    with pytest.raises(NotebookError, match="no 'cells' list"):
        notebook_python(b'{"metadata": {}}')


def test_check_reports_cell_positions_for_script_and_model_rules(tmp_path):
    path = _notebook(tmp_path / "nb.ipynb")
    before = path.read_bytes()
    proc = run_bnlint("check", "nb.ipynb", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("nb.ipynb:cell 2:9:13: BNL101 Dropout(p=0.3) 'drop' feeds BatchNorm2d 'bn'")
    assert lines[1].startswith("nb.ipynb:cell 3:4:11: BNL202 `itertools.cycle`")
    assert lines[-1].startswith("Found 2 problems")
    assert path.read_bytes() == before  # checking never touches the notebook

    proc = run_bnlint("check", "--format", "json", "--select", "BNL2", "nb.ipynb", cwd=tmp_path)
    (finding,) = json.loads(proc.stdout)
    assert (finding["path"], finding["line"], finding["details"]["cell"]) == ("nb.ipynb", 4, 3)


def test_suppressions_in_cells_and_folder_discovery(tmp_path):
    _notebook(tmp_path / "quiet.ipynb",
              model=MODEL.replace("nn.Dropout(0.3)", "nn.Dropout(0.3)  # noqa: BNL101"),
              data=DATA.replace("cycle(loader)", "cycle(loader)  # bnlint: ignore[BNL202]"))
    checkpoints = tmp_path / ".ipynb_checkpoints"
    checkpoints.mkdir()
    _notebook(checkpoints / "quiet-checkpoint.ipynb")
    (tmp_path / "broken.ipynb").write_text("{ not a notebook")
    proc = run_bnlint("check", ".", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert [l.split(": ", 1)[0] for l in proc.stdout.splitlines() if ": BNL" in l] == ["broken.ipynb:1:1"]
    assert "broken.ipynb is not a valid notebook" in proc.stdout


# ---------------------------------------------------------------- fix

def test_notebook_with_python_rewrites_only_the_changed_cells(tmp_path):
    from bnlint.notebook import notebook_with_python

    raw = _notebook(tmp_path / "nb.ipynb").read_bytes()
    py = notebook_python(raw).text
    assert notebook_with_python(raw, py) == raw
    new = py.replace("batches = cycle(loader)", "batches = forever(loader)").replace(
        "from itertools import cycle\n", "from itertools import cycle\n\n\ndef forever(x):\n    while True:\n        yield from x\n")
    out = notebook_with_python(raw, new)
    nb = nbformat.reads(out.decode(), as_version=4)
    nbformat.validate(nb)
    old = nbformat.reads(raw.decode(), as_version=4)
    assert notebook_python(out).text == new
    assert nb.cells[1].source.startswith("%matplotlib inline\n!pip install -q something\nfrom itertools import cycle\n\n\ndef forever(x):")
    assert nb.cells[4].source == DATA.replace("cycle(loader)", "forever(loader)")
    for i in (0, 2, 3, 5, 6):
        assert nb.cells[i] == old.cells[i]
    assert nb.cells[1].outputs == old.cells[1].outputs and nb.metadata == old.metadata
    assert nb.cells[1].execution_count == 1


def test_notebook_with_python_refuses_unmappable_changes(tmp_path):
    from bnlint.notebook import notebook_with_python

    raw = _notebook(tmp_path / "nb.ipynb").read_bytes()
    lines = notebook_python(raw).text.splitlines(True)
    with pytest.raises(NotebookError, match="touches an IPython line in cell 1"):
        notebook_with_python(raw, "import os\n" + "".join(lines[1:]))
    boundary = len(IMPORTS.splitlines())  # last line of cell 1, first of cell 2
    joined = lines[: boundary - 1] + ["merged = 1\n"] + lines[boundary + 1:]
    with pytest.raises(NotebookError, match="spans cells 1-2"):
        notebook_with_python(raw, "".join(joined))


def test_fix_rewrites_cells_and_keeps_the_notebook_valid(tmp_path):
    path = _notebook(tmp_path / "nb.ipynb")
    old = nbformat.read(str(path), as_version=4)
    proc = run_bnlint("check", "nb.ipynb", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout.count(" [*]") == 2, proc.stdout + proc.stderr
    proc = run_bnlint("fix", "nb.ipynb", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    new = nbformat.read(str(path), as_version=4)
    nbformat.validate(new)
    assert [c.cell_type for c in new.cells] == [c.cell_type for c in old.cells]
    assert new.metadata == old.metadata
    assert [c.get("outputs") for c in new.cells] == [c.get("outputs") for c in old.cells]
    assert new.cells[0] == old.cells[0] and new.cells[3] == old.cells[3] and new.cells[5] == old.cells[5]
    assert "return self.drop(self.bn(x))" in new.cells[2].source  # the model, fixed in its cell
    assert "cycle(loader)" not in new.cells[4].source
    proc = run_bnlint("check", "nb.ipynb", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    before = path.read_bytes()
    proc = run_bnlint("fix", "nb.ipynb", cwd=tmp_path)
    assert proc.returncode == 0 and path.read_bytes() == before  # a second run changes nothing
