"""What keeps the pre-commit path short (issue #16) without changing any result:
weight initialisation skipped on the meta device, torch._dynamo imported only where a
model needs it, the fork server started while the static work runs."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from bnlint.config import Config
from bnlint.engine import check_paths
from bnlint.model import forkserver
from bnlint.registry import select_rules

torch = pytest.importorskip("torch")

from bnlint.model.metainit import SKIPPED_ON_META, initialisation_skipped_on_meta  # noqa: E402

needs_fork = pytest.mark.skipif(not forkserver.available(), reason="the fork server needs Linux")


def _meta(*shape, requires_grad=False):
    return torch.empty(*shape, device="meta", requires_grad=requires_grad)


@pytest.mark.parametrize("call", [
    lambda t: t.normal_(0, 0.02),
    lambda t: t.normal_(),
    lambda t: t.log_normal_(1, 2),
    lambda t: t.exponential_(1.5),
    lambda t: t.cauchy_(),
    lambda t: t.geometric_(0.5),
    lambda t: t.erfinv_(),
    lambda t: t.clamp_(min=-2.0, max=2.0),
    lambda t: t.clamp_(max=1),
    lambda t: torch.nn.init.normal_(t, 0, 0.01),
    lambda t: torch.nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"),
    lambda t: torch.nn.init.xavier_normal_(t),
    lambda t: torch.nn.init.trunc_normal_(t, std=0.02),
])
def test_fills_of_meta_tensors_return_the_tensor(call):
    t = _meta(4, 3)
    with initialisation_skipped_on_meta():
        out = call(t)
    assert out is t and t.shape == (4, 3) and t.device.type == "meta"


@pytest.mark.parametrize("call, error", [
    (lambda t: t.normal_(0, -1.0), RuntimeError),  # torch checks std >= 0 on meta too
    (lambda t: t.clamp_(), ValueError),  # neither min nor max
])
def test_arguments_torch_rejects_are_still_rejected(call, error):
    t = _meta(4, 3)
    with pytest.raises(error):
        call(t)
    with initialisation_skipped_on_meta(), pytest.raises(error):
        call(t)


def test_only_plain_floating_meta_tensors_writable_in_place_are_skipped():
    with initialisation_skipped_on_meta():
        cpu = torch.zeros(3)
        cpu.normal_(5.0, 0.0)  # a real tensor gets real values
        assert torch.equal(cpu, torch.full((3,), 5.0))
        leaf = _meta(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="leaf"):
            leaf.normal_()  # what torch does, skipped or not
        with torch.no_grad():
            assert leaf.normal_() is leaf
        with pytest.raises(RuntimeError):
            torch.empty(3, dtype=torch.long, device="meta").normal_()


def test_methods_are_restored():
    before = {name: getattr(torch.Tensor, name) for name in SKIPPED_ON_META}
    with initialisation_skipped_on_meta():
        assert torch.Tensor.normal_ is not before["normal_"]
    assert {name: getattr(torch.Tensor, name) for name in SKIPPED_ON_META} == before
    with pytest.raises(ValueError):
        with initialisation_skipped_on_meta():
            raise ValueError
    assert {name: getattr(torch.Tensor, name) for name in SKIPPED_ON_META} == before


def test_building_a_normally_initialised_model_on_meta_does_not_import_dynamo():
    code = textwrap.dedent("""
        import sys, torch, torch.nn as nn
        from bnlint.model.metainit import initialisation_skipped_on_meta

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3)
                self.bn = nn.BatchNorm2d(8)
                self.fc = nn.Linear(8, 10)
                for m in self.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    elif isinstance(m, nn.Linear):
                        m.weight.data.normal_(0, 0.01)
                        nn.init.trunc_normal_(m.weight, std=0.02)

        with torch.device("meta"), initialisation_skipped_on_meta():
            Net()
        print("torch._dynamo" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


PROBE = textwrap.dedent("""
    import os
    import sys

    import torch.nn as nn
    {extra}


    class {name}(nn.Module):
        def __init__(self):
            super().__init__()
            with open(os.path.join(os.path.dirname(__file__), "DYNAMO.log"), "a") as fh:
                fh.write(f"{{os.path.basename(__file__)}} {{'torch._dynamo' in sys.modules}}\\n")
            self.fc = nn.Linear(8, 8)
            nn.init.kaiming_normal_(self.fc.weight)
            self.drop = nn.Dropout(0.2)
            self.bn = nn.BatchNorm1d(8)

        def forward(self, x):
            return self.bn(self.drop(self.fc(x)))
""")


@needs_fork
def test_dynamo_is_imported_by_the_server_only_after_a_model_needed_it(tmp_path):
    (tmp_path / "a_plain.py").write_text(PROBE.format(name="A", extra=""))
    (tmp_path / "b_needs_dynamo.py").write_text(PROBE.format(name="B", extra="import torch._dynamo"))
    (tmp_path / "c_plain.py").write_text(PROBE.format(name="C", extra=""))
    forkserver.POOL.close_all()
    result = check_paths([str(tmp_path)], Config(timeout=60.0), select_rules(["BNL1"]), jobs=1)
    assert sorted((f.code, os.path.basename(f.path)) for f in result.findings) == [
        ("BNL101", "a_plain.py"), ("BNL101", "b_needs_dynamo.py"), ("BNL101", "c_plain.py")]
    seen = dict(line.split() for line in (tmp_path / "DYNAMO.log").read_text().splitlines())
    # a: started without it; b: imports it itself (the log line comes after its import);
    # c: the server imported it once b had needed it.
    assert seen == {"a_plain.py": "False", "b_needs_dynamo.py": "True", "c_plain.py": "True"}


@needs_fork
def test_the_server_starts_while_files_are_still_read(tmp_path, monkeypatch):
    import bnlint.engine

    (tmp_path / "a_net.py").write_text(PROBE.format(name="A", extra=""))
    (tmp_path / "b_train.py").write_text("import torch\nfrom torch.utils.data import DataLoader\n")
    forkserver.POOL.close_all()
    before = forkserver.POOL.started
    started = {}
    real = bnlint.engine._read

    def read(job, notebooks):
        started[os.path.basename(job.path)] = forkserver.POOL.started - before
        return real(job, notebooks)

    monkeypatch.setattr(bnlint.engine, "_read", read)
    result = check_paths([str(tmp_path)], Config(timeout=60.0), select_rules(None), jobs=1)
    assert [f.code for f in result.findings] == ["BNL101"]
    # Started as soon as a model file was found, before the next file was read.
    assert started == {"a_net.py": 0, "b_train.py": 1}


# ---------------------------------------------------------------- project input sizes

def _hints_of(raw: bytes):
    import ast

    from bnlint.model.project import size_hints

    try:
        return size_hints(ast.parse(raw))
    except (SyntaxError, ValueError):
        return ()


@pytest.mark.parametrize("text, hints", [
    ('x = "CIF" "AR10"\n', (32,)),
    ('x = ("CIF"\n  # a comment\n  "AR10")\n', (32,)),
    ('x = "CIF""AR10"\n', (32,)),
    ("x = 'SV' f'HN'\n", (32,)),
    ('x = "CIF" \\\n    "AR10"\n', (32,)),
    ('x = """CIF""""""AR10"""\n', (32,)),
    ('x = "\\x43IFAR10"\n', (32,)),
    ('x = "CIF\\\nAR10"\n', (32,)),
    ('x = f"\\x43IFAR10{y}"\n', (32,)),
    ("x = \uff23ifar10\n", (32,)),  # an identifier, normalised (NFKC)
    ("# -*- coding: utf-7 -*-\nx = '+AEM-IFAR10'\n", (32,)),
    ('t = T.CenterCrop(224)\n', (224,)),
    ('x = "a\\nb"  # no size here\n', ()),
    ('x = b"\\x43IFAR10"\n', ()),
    ('x = r"\\d+"\nopen(p, encoding="utf-8")\n', ()),
    ('"""Docstring."""\nx = ""\n', ()),
])
def test_a_file_is_read_for_its_input_size_exactly_when_it_may_imply_one(text, hints):
    from bnlint.model.project import may_imply_size

    raw = text.encode("utf-8")
    assert _hints_of(raw) == hints
    if hints:
        assert may_imply_size(raw)


def test_files_skipped_for_input_sizes_imply_none():
    from bnlint.model.project import may_imply_size

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    skipped = 0
    for folder, _, names in os.walk(root):
        if any(part in folder for part in (".venv", ".git", "__pycache__", ".bnlint_cache")):
            continue
        for name in names:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as fh:
                    raw = fh.read()
                if not may_imply_size(raw):
                    skipped += 1
                    assert _hints_of(raw) == (), name
    assert skipped > 50


def test_project_input_size_is_the_one_the_facts_give(tmp_path):
    from collections import Counter

    from bnlint.model.project import Project

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "net.py").write_text("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    pass\n")
    (tmp_path / "train.py").write_text("from torchvision.datasets import CIFAR10\nds = CIFAR10('.')\n")
    (tmp_path / "eval.py").write_text("import torchvision.transforms as T\nt = T.CenterCrop(224)\nu = T.Resize(224)\n")
    (tmp_path / "util.py").write_text('"""Helpers."""\n\n\ndef f(x=""):\n    return x + "a\\n"\n')
    project = Project.scan(str(tmp_path))
    counts = Counter()
    for p in project.files:
        counts.update(Project.scan(str(tmp_path)).facts(p).size_hints)
    assert counts == Counter({224: 2, 32: 1})
    assert project.size_hint([str(tmp_path / "net.py")]) == 224  # no hint in the file: the project's
    assert project.size_hint([str(tmp_path / "train.py")]) == 32


def _script_fixture_texts():
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
    for folder in sorted(os.listdir(root)):
        if folder.startswith("BNL2") or folder == "scripts_clean":
            for name in sorted(os.listdir(os.path.join(root, folder))):
                if name.endswith(".py"):
                    with open(os.path.join(root, folder, name), encoding="utf-8") as fh:
                        yield f"{folder}/{name}", fh.read()


def test_positions_found_by_search_are_the_generated_ones():
    """``locate_unique`` (check's way to a finding's position without generating the
    file's code) answers only where it is certain, and then as ``locate_nodes`` does:
    every node of every script fixture, nested and repeated ones included."""
    import libcst as cst

    from bnlint.script.positions import locate_nodes, locate_unique

    class Every(cst.CSTVisitor):
        def __init__(self):
            self.nodes = []

        def on_visit(self, node):
            self.nodes.append(node)
            return True

    answered = declined = 0
    for name, text in _script_fixture_texts():
        module = cst.parse_module(text)
        every = Every()
        module.visit(every)
        truth = locate_nodes(module, {type(n) for n in every.nodes})
        for node in every.nodes:
            quick = locate_unique(module, text, node)
            if quick is None:
                declined += 1
                continue
            answered += 1
            assert quick == truth[id(node)], (name, type(node).__name__, module.code_for_node(node))
    assert answered > 1000 and declined > 100, (answered, declined)
    # Repeated text is never placed: the same call twice, at two places.
    text = "import torch\n\ndef f():\n    return torch.randperm(10)\n\nidx = torch.randperm(10)\n"
    module = cst.parse_module(text)
    call = module.body[-1].body[0].value
    assert locate_unique(module, text, call) is None
    assert locate_unique(module, text, module.body[-1].body[0]) == ((6, 0), (6, 24))


_SHUFFLED_ONCE = textwrap.dedent("""\
    import numpy as np
    import torch

    def train(model, opt, x, y, epochs=3, batch=64):
        order = np.random.permutation(len(x))
        for epoch in range(epochs):
            for start in range(0, len(x), batch):
                idx = order[start:start + batch]
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    """)


@pytest.mark.parametrize("cached", [False, True])
def test_script_rules_alone_parse_each_file_once_and_still_report_syntax_errors(tmp_path, monkeypatch, cached):
    """With only script rules selected, a file the script analysis parses (libcst) is
    not parsed again for its syntax; every other file still is, so a syntax error is
    reported whether or not the file looks like a training script, run after run."""
    import ast

    from bnlint import cache as cache_module
    from bnlint import engine
    from bnlint.cache import ResultCache

    (tmp_path / "train.py").write_text(_SHUFFLED_ONCE)
    (tmp_path / "broken_train.py").write_text(_SHUFFLED_ONCE.replace("for epoch in range(epochs):", "for epoch in"))
    (tmp_path / "utils.py").write_text("def accuracy(out, y):\n    return (out.argmax(1) == y).float().mean(\n")
    (tmp_path / "meters.py").write_text("class Meter:\n    def reset(self):\n        self.total = 0\n")
    parsed = []
    real_parse = ast.parse

    def counting_parse(text, filename="<unknown>", *args, **kwargs):
        parsed.append(os.path.basename(filename))
        return real_parse(text, filename, *args, **kwargs)

    monkeypatch.setattr(engine.ast, "parse", counting_parse)
    monkeypatch.setattr(cache_module, "RACY_NS", 0)  # the files were just written
    rules = select_rules(["BNL2"])
    config = Config(timeout=60.0)
    for run in range(2):
        parsed.clear()
        cache = ResultCache.for_run(str(tmp_path / ".cache"), repr(config), (r.code for r in rules)) if cached else None
        result = check_paths([str(tmp_path)], config, rules, cache=cache, jobs=1)
        got = sorted((os.path.basename(f.path), f.code, f.line) for f in result.findings)
        assert got == [("broken_train.py", "BNL001", 6), ("train.py", "BNL203", 5), ("utils.py", "BNL001", 2)], got
        assert all("syntax error" in f.message for f in result.findings if f.code == "BNL001")
        if cached and run == 1:  # files unchanged since the first run: only the broken ones are parsed
            assert sorted(parsed) == ["broken_train.py", "utils.py"], parsed
        else:
            assert sorted(parsed) == ["broken_train.py", "meters.py", "utils.py"], parsed


def test_scripts_parsed_without_node_validation_are_the_validated_trees():
    """The script analysis parses without libcst's per-node validation: every script
    fixture gives the same tree (same code, same node types in the same order) as a
    validated parse, a syntax error still fails, and validation is back afterwards."""
    import libcst as cst

    from bnlint.script.analysis import parse_file

    def shape(module):
        out = []

        class Every(cst.CSTVisitor):
            def on_visit(self, node):
                out.append(type(node).__name__)
                return True

        module.visit(Every())
        return out

    count = 0
    for name, text in _script_fixture_texts():
        info = parse_file(name, text, "m", "/x/" + name, True)
        validated = cst.parse_module(text)
        assert info.module.code == text and shape(info.module) == shape(validated), name
        count += 1
    assert count > 20
    assert parse_file("bad.py", "for epoch in\n    pass\n", "bad", "/x/bad.py", True) is None
    with pytest.raises(cst.CSTValidationError):
        cst.Name("not a name")
