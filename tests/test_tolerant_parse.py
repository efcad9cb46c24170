"""The planner's tolerant parse (bnlint.model.tolerant): statements that do not parse
under the running Python are left out, line numbers kept, for the planner's facts
only (the file keeps its syntax error and nothing of it is built)."""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import textwrap

from conftest import FIXTURES, run_bnlint

from bnlint.model.facts import module_facts
from bnlint.model.tolerant import statement_lines, tolerant_parse

SCRIPT = textwrap.dedent('''\
    import argparse

    import nets

    parser = argparse.ArgumentParser()
    parser.add_argument("--width", default=4, type=int)


    def main():
        args = parser.parse_args()
        model = nets.Net(args.width,
                         10)
        for x, y in loader:
            y = y.cuda(async=True)
            loss = model(x.cuda(
                async=True), y)
        return model


    def to_device(x, async=True):
        return x.cuda(async=async)


    if __name__ == "__main__":
        main()
''')


def test_statements_that_do_not_parse_become_pass_with_the_line_numbers_kept():
    try:
        ast.parse(SCRIPT)
    except SyntaxError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the script should not parse")
    tree, left_out = tolerant_parse(SCRIPT.encode())
    # the one-line statement, the two lines of the multi-line one, the def header and its body
    assert left_out == (14, 15, 16, 20, 21)
    calls = {n.lineno: ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert calls[11] == "nets.Net" and calls[25] == "main"
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    loop = next(n for n in main.body if isinstance(n, ast.For))
    assert [type(s).__name__ for s in loop.body] == ["Pass", "Pass"]
    # the header became `if True:` at its indentation: its body is still a block
    header = next(n for n in tree.body if isinstance(n, ast.If) and n.lineno == 20)
    assert isinstance(header.test, ast.Constant) and header.test.value is True
    assert isinstance(header.body[0], ast.Pass) and header.body[0].lineno == 21


def test_statement_lines_are_the_logical_line_as_tokenized():
    assert statement_lines(SCRIPT, 16) == (15, 16, False)
    assert statement_lines(SCRIPT, 20) == (20, 20, True)
    assert statement_lines(SCRIPT, 3) == (3, 3, False)
    assert statement_lines(SCRIPT, 4) is None  # a blank line is no statement


def test_what_cannot_be_repaired_is_not_read():
    assert tolerant_parse(b"x = (1,\ny = 2\n") is None  # an unclosed bracket: tokenize fails
    assert tolerant_parse(b"def f():\nreturn 1\n") is None  # indentation
    many = "".join(f"x{i} = f(async=True)\n" for i in range(30)).encode()
    assert tolerant_parse(many) is None  # more statements than the bound
    assert tolerant_parse(many, limit=30)[1] == tuple(range(1, 31))
    assert tolerant_parse(b"x = 1\n")[1] == ()  # a file that parses loses nothing


def test_facts_of_a_file_read_tolerantly_keep_calls_and_options_but_no_definitions():
    facts = module_facts("/p/train.py", SCRIPT.encode(), lambda module, level: {"nets": "/p/nets.py"}.get(module))
    assert facts.syntax_error and facts.left_out == (14, 15, 16, 20, 21)
    assert facts.options["width"] == ("4", "int", None)
    assert [c.callee for c in facts.calls if c.callee.startswith("nets.")] == ["nets.Net"]
    assert facts.definitions == {}  # the file cannot be imported: nothing of it is built
    assert module_facts("/p/bad.py", b"x = (\n", lambda m, l: None).syntax_error


def test_the_note_names_the_call_and_the_lines_left_out(tmp_path):
    target = tmp_path / "repo"
    shutil.copytree(FIXTURES / "repos" / "models_py2_train_script", target)
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    proc = run_bnlint("check", "--no-cache", "--format", "json", "densenet.py", cwd=target)
    notes = [f["message"] for f in json.loads(proc.stdout) if f["code"] == "BNL001"]
    version = f"Python {sys.version_info[0]}.{sys.version_info[1]}"
    assert notes == [
        "model DenseNet3 was built as DenseNet3(depth=40, num_classes=10, growth_rate=12, dropRate=0.2), "
        f"with the arguments of train.py:38 (line 50, which does not parse under {version}, was left out)"
    ], notes
