"""The progress line of ``bnlint check``: on stderr, only on a terminal, erased before
the report; nothing at all when stderr is a pipe."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pytest

from bnlint.progress import ProgressLine
from test_config import ROOT, run_bnlint

NET = textwrap.dedent("""\
    import torch.nn as nn

    class Net{n}(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2, bias=False)
            self.bn = nn.BatchNorm1d(2)

        def forward(self, x):
            return self.bn(self.fc(x))
""")


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_draws_in_place_and_erases():
    stream = _Tty()
    line = ProgressLine(stream)
    line("a.py", 3)
    line("models/long_name.py", 3)
    line.close()
    out = stream.getvalue()
    assert out.startswith("\rbnlint: models 1/3 · a.py\rbnlint: models 2/3 · models/long_name.py")
    assert out.endswith("\r" + " " * len("bnlint: models 2/3 · models/long_name.py") + "\r")
    assert line.done == 2


def test_no_progress_for_one_file_or_without_a_terminal():
    tty = _Tty()
    one = ProgressLine(tty)
    one("a.py", 1)
    one.close()
    assert tty.getvalue() == ""
    pipe = io.StringIO()
    many = ProgressLine(pipe)
    many("a.py", 5)
    many.close()
    assert pipe.getvalue() == ""


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_cli_draws_progress_on_a_tty_only(tmp_path):
    for n in (1, 2):
        (tmp_path / f"net{n}.py").write_text(NET.format(n=n))
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "bnlint", "check", "net1.py", "net2.py"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO once the child side is closed
            break
        if not data:
            break
        chunks.append(data)
    stdout, _ = proc.communicate(timeout=300)
    os.close(master)
    err = b"".join(chunks).decode()
    assert proc.returncode == 0 and stdout == "All checks passed!\n", stdout + err
    assert "bnlint: models 1/2 · net" in err and "bnlint: models 2/2 · net" in err
    assert err.endswith("\r") and "Traceback" not in err
    # The same run with stderr on a pipe: not a byte of progress.
    piped = run_bnlint("check", "net1.py", "net2.py", cwd=tmp_path)
    assert piped.returncode == 0 and piped.stderr == ""
