"""``[tool.bnlint]`` configuration: where it is found, what each key does, how flags
override it, and that every mistake is one clear line naming the key (exit 2)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bnlint.config import Config, ConfigError, config_from_table, load_config, merge_flags

ROOT = Path(__file__).resolve().parent.parent


def run_bnlint(*args, cwd=None, timeout=300):
    """``python -m bnlint ARGS`` in a subprocess, as a user runs it (text mode)."""
    return subprocess.run([sys.executable, "-m", "bnlint", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)


# A training script with exactly one finding: BNL202 on line 9 (no torch import needed
# to check it: script rules are static).
CYCLED = textwrap.dedent("""\
    from itertools import cycle

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.randn(64, 4), torch.randn(64, 1)), batch_size=8, shuffle=True)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = cycle(loader)
    for step in range(100):
        x, y = next(batches)
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
""")


def _codes(proc):
    return [line.split()[1] for line in proc.stdout.splitlines() if ": BNL" in line]


def _project(tmp_path, config: str, name: str = "train.py"):
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(config))
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CYCLED)
    return path


def test_no_config_reports_the_finding(tmp_path):
    (tmp_path / "train.py").write_text(CYCLED)
    proc = run_bnlint("check", "train.py", cwd=tmp_path)
    assert proc.returncode == 1 and _codes(proc) == ["BNL202"], proc.stdout + proc.stderr


def test_ignore_in_nearest_pyproject_upward_from_the_checked_path(tmp_path):
    _project(tmp_path, """
        [tool.bnlint]
        ignore = ["BNL202"]
    """, name="pkg/scripts/train.py")
    # Run from elsewhere: the config is found from the checked path, not the cwd.
    elsewhere = tmp_path.parent
    proc = run_bnlint("check", tmp_path / "pkg/scripts/train.py", cwd=elsewhere)
    assert proc.returncode == 0 and _codes(proc) == [], proc.stdout + proc.stderr


def test_a_pyproject_without_tool_bnlint_is_skipped_on_the_way_up(tmp_path):
    _project(tmp_path, """
        [tool.bnlint]
        ignore = ["cycled-dataloader"]
    """, name="sub/train.py")
    (tmp_path / "sub" / "pyproject.toml").write_text("[project]\nname = 'sub'\n")
    proc = run_bnlint("check", "sub/train.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_select_and_extend_select(tmp_path):
    _project(tmp_path, """
        [tool.bnlint]
        select = ["BNL1"]
    """)
    assert _codes(run_bnlint("check", "train.py", cwd=tmp_path)) == []
    (tmp_path / "pyproject.toml").write_text('[tool.bnlint]\nselect = ["BNL1"]\nextend-select = ["BNL20"]\n')
    assert _codes(run_bnlint("check", "train.py", cwd=tmp_path)) == ["BNL202"]


def test_flags_override_the_file(tmp_path):
    _project(tmp_path, """
        [tool.bnlint]
        ignore = ["BNL202"]
    """)
    # --select starts a new selection: the file's ignore no longer applies.
    proc = run_bnlint("check", "--select", "BNL202", "train.py", cwd=tmp_path)
    assert _codes(proc) == ["BNL202"], proc.stdout + proc.stderr
    # --extend-select adds to the file's selection, but the file's ignore still wins.
    assert _codes(run_bnlint("check", "--extend-select", "BNL202", "train.py", cwd=tmp_path)) == []
    # --ignore adds to the file's ignore list.
    (tmp_path / "pyproject.toml").write_text('[tool.bnlint]\nselect = ["BNL2"]\n')
    assert _codes(run_bnlint("check", "train.py", cwd=tmp_path)) == ["BNL202"]
    assert _codes(run_bnlint("check", "--ignore", "BNL202", "train.py", cwd=tmp_path)) == []


def test_config_option_overrides_the_nearest_pyproject(tmp_path):
    _project(tmp_path, """
        [tool.bnlint]
        ignore = ["BNL202"]
    """)
    other = tmp_path / "strict.toml"
    other.write_text('select = ["ALL"]\n')  # a bnlint.toml-style file: keys at the top level
    proc = run_bnlint("check", "--config", other, "train.py", cwd=tmp_path)
    assert _codes(proc) == ["BNL202"], proc.stdout + proc.stderr
    pyproject = tmp_path / "other" / "pyproject.toml"
    pyproject.parent.mkdir()
    pyproject.write_text('[tool.bnlint]\nselect = ["BNL1"]\n')
    assert _codes(run_bnlint("check", "--config", pyproject, "train.py", cwd=tmp_path)) == []


def test_per_file_ignores_globs_are_relative_to_the_config_folder(tmp_path):
    _project(tmp_path, """
        [tool.bnlint.per-file-ignores]
        "scripts/*" = ["BNL2"]
    """, name="scripts/train.py")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "train.py").write_text(CYCLED)
    proc = run_bnlint("check", ".", cwd=tmp_path)
    assert proc.stdout.splitlines()[0].startswith("other/train.py:9:"), proc.stdout
    assert _codes(proc) == ["BNL202"]
    # Same result when bnlint runs from inside the folder.
    proc = run_bnlint("check", "train.py", cwd=tmp_path / "scripts")
    assert _codes(proc) == [], proc.stdout + proc.stderr


def test_exclude_skips_files_in_folders(tmp_path):
    _project(tmp_path, """
        [tool.bnlint]
        exclude = ["experiments/old"]
    """, name="experiments/old/train.py")
    (tmp_path / "experiments" / "new.py").write_text(CYCLED)
    proc = run_bnlint("check", ".", cwd=tmp_path)
    assert [line.split(":")[0] for line in proc.stdout.splitlines() if ": BNL" in line] == ["experiments/new.py"]


def test_timeout_from_the_file_and_the_flag_that_overrides_it(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.bnlint]\ntimeout = 0.5\n")
    (tmp_path / "net.py").write_text(textwrap.dedent("""\
        import time

        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                time.sleep(3)  # a slow constructor: user code that outlasts the file's timeout
                self.fc = nn.Linear(4, 2)

            def forward(self, x):
                return self.fc(x)
    """))
    proc = run_bnlint("check", "net.py", cwd=tmp_path)
    assert proc.returncode == 1 and "timed out after 0.5 s" in proc.stdout, proc.stdout + proc.stderr
    proc = run_bnlint("check", "--timeout", "120", "net.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("body, named", [
    ("selct = ['BNL1']", "'selct'"),
    ("select = ['BNL999']", "select"),
    ("select = 'BNL1'\nignore = [1]", "ignore"),
    ("extend-select = ['nope']", "extend-select"),
    ("per-file-ignores = ['tests/*']", "per-file-ignores"),
    ("[tool.bnlint.per-file-ignores]\n'tests/*' = ['BNL7']", "per-file-ignores"),
    ("exclude = 3", "exclude"),
    ("models = ['net.py']", "models"),
    ("input-shape = [2, 'x']", "input-shape"),
    ("input-shape = []", "input-shape"),
    ("timeout = -1", "timeout"),
    ("timeout = true", "timeout"),
    ("unsafe-fixes = 'yes'", "unsafe-fixes"),
])
def test_bad_keys_and_values_are_one_line_naming_the_key(tmp_path, body, named):
    header = "" if body.startswith("[tool.bnlint.") else "[tool.bnlint]\n"
    (tmp_path / "pyproject.toml").write_text(header + body + "\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    proc = run_bnlint("check", "a.py", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnlint: error: "), proc.stderr
    assert named in lines[0] and "pyproject.toml" in lines[0], lines[0]


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'per-file-ignores'"):
        config_from_table({"per_file_ignores": {}})


def test_invalid_toml_and_missing_config_file_are_usage_errors(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.bnlint\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    proc = run_bnlint("check", "a.py", cwd=tmp_path)
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_bnlint("check", "--config", "missing.toml", "a.py", cwd=tmp_path)
    assert proc.returncode == 2 and "missing.toml does not exist" in proc.stderr
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    proc = run_bnlint("check", "--config", "sub/pyproject.toml", "a.py", cwd=tmp_path)
    assert proc.returncode == 2 and "no [tool.bnlint] table" in proc.stderr


def test_every_key_is_parsed(tmp_path):
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""\
        [tool.bnlint]
        select = ["BNL1", "BNL2"]
        ignore = ["BNL103"]
        extend-select = ["BNL001"]
        exclude = ["old/*"]
        models = ["net.py::Net(depth=2)"]
        input-shape = [[2, 3, 32, 32], [2, 10]]
        timeout = 12
        unsafe-fixes = true

        [tool.bnlint.per-file-ignores]
        "tests/*" = ["BNL2", "dropout-before-batchnorm"]
    """))
    config = load_config([str(tmp_path)])
    assert config.select == ("BNL1", "BNL2") and config.ignore == ("BNL103",)
    assert config.extend_select == ("BNL001",) and config.exclude == ("old/*",)
    assert config.models == ("net.py::Net(depth=2)",)
    assert config.input_shape == ((2, 3, 32, 32), (2, 10))
    assert config.timeout == 12.0 and config.unsafe_fixes is True
    # Names and prefixes in per-file-ignores become rule codes.
    from bnlint.registry import all_rules

    script_codes = tuple(r.code for r in all_rules() if r.code.startswith("BNL2"))
    assert "BNL201" in script_codes and "BNL205" in script_codes
    assert dict(config.per_file_ignores)["tests/*"] == script_codes + ("BNL101",)
    assert set(config.per_file_ignored_codes(str(tmp_path / "tests" / "test_x.py"))) >= {"BNL101", "BNL202"}
    assert config.per_file_ignored_codes(str(tmp_path / "src" / "x.py")) == ()


def test_merge_flags_layers_like_ruff():
    base = Config(select=("BNL1",), ignore=("BNL103",), extend_select=("BNL202",))
    assert merge_flags(base) == base
    new = merge_flags(base, select=("BNL2",))
    assert (new.select, new.ignore, new.extend_select) == (("BNL2",), (), ())
    new = merge_flags(base, ignore=("BNL101",), extend_select=("BNL201",))
    assert new.select == ("BNL1",) and new.ignore == ("BNL103", "BNL101")
    assert new.extend_select == ("BNL202", "BNL201")
