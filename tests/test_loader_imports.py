"""load_definitions across a project's modules (bnlint.model.loader): names one module
imports from another are kept there, a statement that raises is left out and the
import starts again. Each case runs in a fresh Python process, as in the worker."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

LOAD = textwrap.dedent("""
    import json, sys
    from bnlint.model.loader import load_definitions
    from bnlint.model.sandbox import defaults_only_argparse
    defaults_only_argparse()
    notes = []
    module = load_definitions(sys.argv[1], notes)
    print(json.dumps({"value": repr(getattr(module, "RESULT", None)),
                      "notes": [[n.path.rsplit("/", 1)[-1], n.line, n.message] for n in notes]}))
""")


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _load(root, target):
    proc = subprocess.run([sys.executable, "-c", LOAD, str(root / target)], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_name_imported_from_a_module_loaded_earlier_without_it(tmp_path):
    # models/a.py imports settings first (needing only WIDTH); models/b.py then needs
    # settings.cfg, which the first view of settings.py left out: kept on the retry.
    _write(tmp_path, {
        ".git/HEAD": "",
        "settings.py": """
            class Node(dict):
                pass

            WIDTH = 8
            cfg = Node(depth=3)
            log = open("BNLINT_TRAP_settings.log", "w")
        """,
        "models/__init__.py": "from .a import A\n",
        "models/a.py": """
            import settings

            class A:
                width = settings.WIDTH
        """,
        "models/b.py": """
            from settings import cfg

            RESULT = cfg["depth"]
        """,
    })
    out = _load(tmp_path, "models/b.py")
    assert out["value"] == "3" and out["notes"] == []
    assert not (tmp_path / "BNLINT_TRAP_settings.log").exists()


def test_statements_that_raise_are_left_out_in_every_module(tmp_path):
    _write(tmp_path, {
        ".git/HEAD": "",
        "dist_utils.py": """
            import os
            RANK = int(os.environ["RANK_FOR_BNLINT_TEST"])
            IS_MAIN = RANK == 0
            SCALE = 2
        """,
        "net.py": """
            import argparse
            import os
            from dist_utils import SCALE

            choose = argparse.ArgumentParser()
            choose.add_argument("arch", choices=["wrn", "resnet"])
            parser = argparse.ArgumentParser()
            parser.add_argument("--data", required=True)
            parser.add_argument("--width", type=int, default=16)
            opt = parser.parse_args()
            width = int(opt.width)
            LOCAL = os.environ["LOCAL_RANK_FOR_BNLINT_TEST"]
            RESULT = (width * SCALE, opt.data, choose.parse_args().arch)

            def result():  # a definition reads it: an assignment from a call is kept
                return RESULT
        """,
    })
    out = _load(tmp_path, "net.py")
    assert out["value"] == "(32, None, 'wrn')"  # argparse defaults: required is None, or its first choice
    assert [n[:2] for n in out["notes"]] == [["dist_utils.py", 3], ["net.py", 13]]
    assert "KeyError" in out["notes"][0][2]


def test_a_definition_that_raises_is_the_users_error(tmp_path):
    _write(tmp_path, {
        ".git/HEAD": "",
        "net.py": """
            import os

            class Config:
                rank = int(os.environ["RANK_FOR_BNLINT_TEST"])
        """,
    })
    proc = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / "net.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "KeyError: 'RANK_FOR_BNLINT_TEST'" in proc.stderr


WRITES = textwrap.dedent("""
    import json, sys
    from bnlint.model.loader import is_definitions_file, load_definitions
    from bnlint.model.nowrites import no_top_level_writes
    sys.path.append(sys.argv[2])
    notes = []
    with no_top_level_writes(is_definitions_file):
        module = load_definitions(sys.argv[1], notes)
    with open(sys.argv[1] + ".after", "w") as fh:  # writes work again afterwards
        fh.write("ok")
    print(json.dumps({"value": repr(getattr(module, "RESULT", None)),
                      "notes": [[n.path.rsplit("/", 1)[-1], n.line, n.message] for n in notes]}))
""")


def test_top_level_code_of_the_project_cannot_write_files(tmp_path):
    project, installed = tmp_path / "project", tmp_path / "installed"
    _write(project, {
        ".git/HEAD": "",
        "utils/__init__.py": "",
        "utils/log.py": """
            import logging
            import os

            def get_logger(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                logger = logging.getLogger("train")
                logger.addHandler(logging.FileHandler(path))
                return logger

            def open_results(path):
                return open(path, "a")
        """,
        "net.py": """
            import cache_at_import
            from utils.log import get_logger, open_results

            logger = get_logger("logs/BNLINT_TRAP_train.log")
            results = open_results("BNLINT_TRAP_results.csv")
            RESULT = (cache_at_import.READY, 7)

            def log(msg):
                results.write(msg)
        """,
    })
    # An installed package may write at its own import (a cache folder): allowed.
    _write(installed, {"cache_at_import.py": """
        import os
        os.makedirs(os.path.join(os.path.dirname(__file__), "cache"), exist_ok=True)
        READY = True
    """})
    proc = subprocess.run([sys.executable, "-c", WRITES, str(project / "net.py"), str(installed)], cwd=project,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["value"] == "(True, 7)"
    assert [n[:2] for n in out["notes"]] == [["net.py", 5], ["net.py", 6]]
    assert "os.makedirs('logs')" in out["notes"][0][2] and "open('BNLINT_TRAP_results.csv', 'a')" in out["notes"][1][2]
    assert not list(project.rglob("BNLINT_TRAP*")) and not (project / "logs").exists()
    assert (installed / "cache").is_dir() and (project / "net.py.after").exists()


def test_relative_imports_in_a_folder_without_init(tmp_path):
    # models/ has no __init__.py: the project imports it as the namespace package `models`.
    _write(tmp_path, {
        ".git/HEAD": "",
        "models/op/__init__.py": "",
        "models/op/blocks.py": "WIDTH = 4\n",
        "models/helpers.py": "SCALE = 3\n",
        "models/net.py": """
            from .op.blocks import WIDTH
            from helpers import SCALE  # a sibling, as a script in models/ would import it

            RESULT = WIDTH * SCALE
        """,
    })
    assert _load(tmp_path, "models/net.py")["value"] == "12"


def test_a_submodule_read_without_being_imported_is_imported(tmp_path):
    """``import xml`` then ``xml.dom.Node``: it works wherever another package imported
    ``xml.dom`` first (in the worker the stand-ins of missing packages do not)."""
    _write(tmp_path, {
        ".git/HEAD": "",
        "utils.py": """
            import xml

            ELEMENT = xml.dom.Node.ELEMENT_NODE


            def element_kind(default=xml.dom.Node.TEXT_NODE):
                return default
        """,
        "net.py": """
            from utils import ELEMENT, element_kind

            RESULT = (ELEMENT, element_kind())


            def result():  # a definition reads it: an assignment from a call is kept
                return RESULT
        """,
    })
    out = _load(tmp_path, "net.py")
    assert out["value"] == "(1, 3)"
    assert out["notes"] == []  # nothing was left out


def test_a_missing_attribute_of_a_project_package_is_the_users_error(tmp_path):
    _write(tmp_path, {
        ".git/HEAD": "",
        "pkg/__init__.py": "",
        "pkg/helpers.py": "VALUE = 2\n",
        "net.py": """
            import pkg

            SCALE = pkg.helpers.VALUE
            RESULT = 1
        """,
    })
    out = _load(tmp_path, "net.py")
    assert out["value"] == "1"
    assert [n[:2] for n in out["notes"]] == [["net.py", 4]]  # left out, said so: not imported for it
