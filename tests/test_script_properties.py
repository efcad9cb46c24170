"""Property test for the script rules (issue #10): generated training projects against
an oracle that knows each generated program's truth.

Each example is a small project written to a temporary folder: a training script, and
(depending on the draw) a helper module or a package whose ``__init__`` re-exports the
loader factory, plus an optional decoy script that defines the same names (``main``,
``train``, ``make_loader``, ``new_epoch``) and has findings of its own. The draw decides:

- how the loader is spelled: ``shuffle=`` as a keyword or a position, a dict literal
  or ``dict(...)`` expanded with ``**``, a key set with ``kw["shuffle"] = ...`` or
  ``kw.update(...)``, a shuffle set only under ``if args.flag:``, or an argument bnlint
  cannot resolve (``shuffle=args.shuffle``);
- the sampler: none, a ``DistributedSampler`` in one arm of an ``if``/``else`` (the
  other a ``RandomSampler`` or ``None``), in a conditional expression, always, or a
  plain ``RandomSampler``;
- whether ``set_epoch`` is called each epoch: directly, through a helper (maybe in the
  other module), through ``loader.sampler``, or not at all;
- where the factory lives (inline, the same file, a helper module, a package) and how
  the script starts (``__main__`` block, ``mp.spawn``, a click command, a top-level call);
- whether the model has BatchNorm (errors) or not (warnings);
- how the model is evaluated after training (issue #14's BNL105): not at all, by an
  ``evaluate`` helper (in the script or beside the loader factory) that forgets
  ``model.eval()``, that calls it, that uses a ``with evaluating(model):`` context
  manager of the project, or after ``model.eval()`` in ``main``;
- how many rows the dataset has: 64, or 65 (a last batch of one with batches of 8,
  BNL107, when no sampler decides the order).

The oracle: a DistributedSampler on some path with no ``set_epoch`` is one BNL201 at its
constructor; without a sampler, a loader that never shuffles is one BNL203 at the
``DataLoader`` call (an error with BatchNorm), one that shuffles only under the
condition is a BNL203 warning there, and an unresolvable ``shuffle`` is silence. With
BatchNorm, the evaluation that forgets ``eval()`` is one BNL105 at its loop, and 65 rows
without a sampler one BNL107 at the ``DataLoader`` call (a BatchNorm1d over features
raises on the last batch). The
project's findings, and each generated file's findings when it is checked alone, must
equal the oracle's.

Profiles: 40 examples by default; ``pytest --slow`` (or BNLINT_PROPERTIES=slow) 400,
BNLINT_PROPERTIES=quick 10.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bnlint.config import Config  # noqa: E402
from bnlint.engine import check_paths  # noqa: E402
from bnlint.registry import all_rules  # noqa: E402
from bnlint.rule import RuleKind  # noqa: E402

PROFILE = os.environ.get("BNLINT_PROPERTIES", "")
EXAMPLES = {"quick": 10, "slow": 400}.get(PROFILE, 40)
SCRIPT_RULES = [r for r in all_rules() if r.kind is RuleKind.SCRIPT]

SPELLINGS = ["keyword", "positional", "dict_literal", "dict_call_setitem", "dict_update", "conditional",
             "unknown"]
SAMPLERS = ["none", "ds_if_else_random", "ds_if_else_none", "ds_ifexp_none", "ds_only", "random_only"]
SET_EPOCH = ["none", "direct", "helper", "loader_attr"]
FACTORY = ["inline", "same_file", "helper_module", "package"]
ENTRY = ["main_guard", "spawn", "click", "toplevel"]
EVALUATION = ["none", "missing", "helper_eval", "context", "caller_eval"]


@dataclass(frozen=True)
class Program:
    spelling: str
    shuffle: Optional[bool]  # the value spelled (None: not passed)
    sampler: str
    set_epoch: str
    factory: str
    entry: str
    batchnorm: bool
    decoy: bool
    evaluation: str = "none"
    rows: int = 64


@st.composite
def programs(draw):
    sampler = draw(st.sampled_from(SAMPLERS))
    set_epoch = draw(st.sampled_from(SET_EPOCH))
    if set_epoch == "loader_attr" and sampler != "ds_only":
        set_epoch = "direct"  # loader.sampler is only certain to have set_epoch then
    return Program(
        spelling=draw(st.sampled_from(SPELLINGS)),
        shuffle=draw(st.sampled_from([True, False, None])),
        sampler=sampler,
        set_epoch=set_epoch,
        factory=draw(st.sampled_from(FACTORY)),
        entry=draw(st.sampled_from(ENTRY)),
        batchnorm=draw(st.booleans()),
        decoy=draw(st.booleans()),
        evaluation=draw(st.sampled_from(EVALUATION)),
        rows=draw(st.sampled_from([64, 65])),
    )


class Writer:
    """Lines of one file, with the line numbers of marked lines."""

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.marks: Dict[str, int] = {}

    def add(self, text: str, indent: int = 0, mark: Optional[str] = None) -> None:
        for i, line in enumerate(text.split("\n")):
            self.lines.append(("    " * indent + line) if line else "")
            if mark is not None and i == 0:
                self.marks[mark] = len(self.lines)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass
class Truth:
    files: Dict[str, str] = field(default_factory=dict)  # relative path -> text
    findings: List[Tuple[str, str, int, str]] = field(default_factory=list)  # (path, code, line, severity)


def _shuffle_text(value: Optional[bool]) -> str:
    return repr(bool(value))


def _factory_body(p: Program, w: Writer, indent: int) -> Tuple[str, str]:
    """Write the sampler and loader lines; the marks name the lines findings point at."""
    if p.sampler == "ds_if_else_random":
        w.add("if args.distributed:", indent)
        w.add("sampler = DistributedSampler(ds)", indent + 1, mark="sampler")
        w.add("else:", indent)
        w.add("sampler = RandomSampler(ds)", indent + 1)
    elif p.sampler == "ds_if_else_none":
        w.add("if args.distributed:", indent)
        w.add("sampler = DistributedSampler(ds)", indent + 1, mark="sampler")
        w.add("else:", indent)
        w.add("sampler = None", indent + 1)
    elif p.sampler == "ds_ifexp_none":
        w.add("sampler = DistributedSampler(ds) if args.distributed else None", indent, mark="sampler")
    elif p.sampler == "ds_only":
        w.add("sampler = DistributedSampler(ds)", indent, mark="sampler")
    elif p.sampler == "random_only":
        w.add("sampler = RandomSampler(ds)", indent)
    else:
        w.add("sampler = None", indent)
    if p.sampler != "none":
        extra = ", shuffle=(sampler is None)" if p.sampler.endswith("_none") else ""
        if p.spelling in ("dict_literal", "dict_call_setitem", "dict_update", "conditional"):
            w.add(f'kw = {{"batch_size": 8, "sampler": sampler}}', indent)
            w.add(f"loader = DataLoader(ds{extra}, **kw)", indent, mark="loader")
        else:
            w.add(f"loader = DataLoader(ds, batch_size=8{extra}, sampler=sampler)", indent, mark="loader")
        return "sampler", "loader"
    s = p.shuffle
    if p.spelling == "keyword":
        arg = "" if s is None else f", shuffle={_shuffle_text(s)}"
        w.add(f"loader = DataLoader(ds, batch_size=8{arg})", indent, mark="loader")
    elif p.spelling == "positional":
        arg = "" if s is None else f", {_shuffle_text(s)}"
        w.add(f"loader = DataLoader(ds, 8{arg})", indent, mark="loader")
    elif p.spelling == "dict_literal":
        entry = "" if s is None else f', "shuffle": {_shuffle_text(s)}'
        w.add(f'kw = {{"batch_size": 8{entry}}}', indent)
        w.add("loader = DataLoader(ds, **kw)", indent, mark="loader")
    elif p.spelling == "dict_call_setitem":
        w.add("kw = dict(batch_size=8, num_workers=0)", indent)
        if s is not None:
            w.add(f'kw["shuffle"] = {_shuffle_text(s)}', indent)
        w.add("loader = DataLoader(ds, **kw)", indent, mark="loader")
    elif p.spelling == "dict_update":
        w.add('kw = {"batch_size": 8}', indent)
        if s is not None:
            w.add(f"kw.update(shuffle={_shuffle_text(s)}, pin_memory=True)", indent)
        w.add("loader = DataLoader(ds, **kw)", indent, mark="loader")
    elif p.spelling == "conditional":
        w.add('kw = {"batch_size": 8}', indent)
        w.add("if args.flag:", indent)
        w.add('kw["shuffle"] = True', indent + 1)
        w.add("loader = DataLoader(ds, **kw)", indent, mark="loader")
    else:
        w.add("loader = DataLoader(ds, batch_size=8, shuffle=args.shuffle)", indent, mark="loader")
    return "sampler", "loader"


IMPORTS = ("import torch\n"
           "from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, TensorDataset")

NEW_EPOCH = "def new_epoch(sampler, epoch):\n    sampler.set_epoch(epoch)"
EVALUATING = ("@contextlib.contextmanager\ndef evaluating(model):\n    was_training = model.training\n"
              "    model.eval()\n    yield model\n    model.train(was_training)\n\n")


def _evaluate_body(p: Program, w: Writer) -> None:
    """The evaluation helper; its loop is marked ``eval_loop``."""
    if p.evaluation == "context":
        w.add(EVALUATING)
    w.add("def evaluate(model, loader):")
    if p.evaluation == "helper_eval":
        w.add("model.eval()", 1)
    w.add("correct = 0", 1)
    if p.evaluation == "context":
        w.add("with evaluating(model), torch.no_grad():", 1)
    else:
        w.add("with torch.no_grad():", 1)
    w.add("for x, y in loader:", 2, mark="eval_loop")
    w.add("correct += (model(x).argmax(1) == y).sum().item()", 3)
    w.add("return correct", 1)
    w.add("\n")


def generate(p: Program) -> Truth:
    truth = Truth()
    main = Writer()
    main.add("import argparse\n")
    main.add("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F")
    if p.entry == "spawn":
        main.add("import torch.multiprocessing as mp")
    if p.entry == "click":
        main.add("import click")
    main.add("from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, TensorDataset")
    helper_names = ["make_loader"] + (["new_epoch"] if p.set_epoch == "helper" else [])
    if p.evaluation != "none" and p.factory in ("helper_module", "package"):
        helper_names.append("evaluate")  # beside the loader factory
    if p.evaluation == "context":
        main.add("import contextlib")
    if p.factory == "helper_module":
        main.add(f"from helpers import {', '.join(helper_names)}")
    elif p.factory == "package":
        main.add(f"from pkg import {', '.join(helper_names)}")
    main.add("\n")

    # The module that holds make_loader (and new_epoch), when it is not the script.
    factory_file, fw = "train.py", main
    if p.factory in ("helper_module", "package"):
        factory_file = "helpers.py" if p.factory == "helper_module" else "pkg/loaders.py"
        fw = Writer()
        fw.add(("import contextlib\n" if p.evaluation == "context" else "") + IMPORTS + "\n\n")
    if p.factory != "inline":
        fw.add("def make_loader(ds, args):")
        _factory_body(p, fw, 1)
        fw.add("    return loader, sampler\n\n")
    if p.set_epoch == "helper":
        fw.add(NEW_EPOCH + "\n\n")
    if p.evaluation != "none":
        _evaluate_body(p, fw)
    if fw is not main:
        truth.files[factory_file] = fw.text()
        if p.factory == "package":
            truth.files["pkg/__init__.py"] = f"from .loaders import {', '.join(helper_names)}\n"

    main.add("def parse_args():")
    main.add("    parser = argparse.ArgumentParser()")
    main.add('    parser.add_argument("--distributed", action="store_true")')
    main.add('    parser.add_argument("--flag", action="store_true")')
    main.add('    parser.add_argument("--shuffle", action="store_true")')
    main.add("    return parser.parse_args()\n\n")
    main.add("def train(model, loader, optimizer, epochs, sampler, args):")
    main.add("    for epoch in range(epochs):")
    guard = p.sampler != "ds_only"
    call = {"direct": "sampler.set_epoch(epoch)", "helper": "new_epoch(sampler, epoch)",
            "loader_attr": "loader.sampler.set_epoch(epoch)"}.get(p.set_epoch)
    if call is not None:
        if guard:
            main.add("if args.distributed:", 2)
            main.add(call, 3)
        else:
            main.add(call, 2)
    main.add("for x, y in loader:", 2)
    main.add("optimizer.zero_grad()", 3)
    main.add("F.cross_entropy(model(x), y).backward()", 3)
    main.add("optimizer.step()", 3)
    main.add("\n")
    if p.entry == "click":
        main.add("@click.command()")
    main.add("def main(rank=0):" if p.entry == "spawn" else "def main():")
    main.add("    args = parse_args()")
    main.add(f"    ds = TensorDataset(torch.randn({p.rows}, 4), torch.randint(0, 2, ({p.rows},)))")
    if p.factory == "inline":
        _factory_body(p, main, 1)
    else:
        main.add("    loader, sampler = make_loader(ds, args)")
    bn = "nn.BatchNorm1d(8), " if p.batchnorm else ""
    main.add(f"    model = nn.Sequential(nn.Linear(4, 8), {bn}nn.ReLU(), nn.Linear(8, 2))")
    main.add("    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)")
    main.add("    train(model, loader, optimizer, 3, sampler, args)")
    if p.evaluation != "none":
        main.add("    val_loader = DataLoader(ds, batch_size=16)")
        if p.evaluation == "caller_eval":
            main.add("    model.eval()")
        main.add("    print(evaluate(model, val_loader))")
    main.add("\n")
    if p.entry == "main_guard" or p.entry == "click":
        main.add('if __name__ == "__main__":\n    main()')
    elif p.entry == "spawn":
        main.add('if __name__ == "__main__":\n    mp.spawn(main, nprocs=2)')
    else:
        main.add("main()")
    truth.files["train.py"] = main.text()
    if p.decoy:
        truth.files["decoy.py"] = DECOY

    # The oracle.
    marks = fw.marks if p.factory != "inline" else main.marks
    severity = "error" if p.batchnorm else "warning"
    if p.sampler.startswith("ds_"):
        if p.set_epoch == "none":
            truth.findings.append((factory_file, "BNL201", marks["sampler"], severity))
    elif p.sampler == "none":
        if p.spelling == "conditional":
            truth.findings.append((factory_file, "BNL203", marks["loader"], "warning"))
        elif p.spelling != "unknown" and not p.shuffle:
            truth.findings.append((factory_file, "BNL203", marks["loader"], severity))
        if p.batchnorm and p.rows % 8 == 1:
            truth.findings.append((factory_file, "BNL107", marks["loader"], "error"))
    if p.batchnorm and p.evaluation == "missing":
        truth.findings.append((factory_file, "BNL105", marks["eval_loop"], "error"))
    return truth


DECOY = '''\
"""Another script in the same folder: the same names, other behaviour."""
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def make_loader(ds, args):
    return DataLoader(ds, batch_size=4, shuffle=True), None


def new_epoch(sampler, epoch):
    return epoch


def train(model, loader, optimizer, epochs, sampler, args):
    for epoch in range(epochs):
        for x, y in loader:
            model(x).sum().backward()
            optimizer.step()


def main():
    ds = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    sampler = DistributedSampler(ds)
    loader = DataLoader(ds, batch_size=4, sampler=sampler)
    model = torch.nn.Linear(4, 1)
    train(model, loader, torch.optim.SGD(model.parameters(), lr=0.1), 2, sampler, None)


if __name__ == "__main__":
    main()
'''


def _findings(paths, cwd) -> List[Tuple[str, str, int, str]]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = check_paths(paths, Config(), SCRIPT_RULES)
    finally:
        os.chdir(old)
    return sorted((f.path.replace(os.sep, "/"), f.code, f.line, f.severity.value) for f in result.findings)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_generated_projects_match_the_oracle(program):
    truth = generate(program)
    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in truth.files.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "w") as fh:
                fh.write(text)
        subprocess.run(["git", "init", "-q"], cwd=tmp, check=True)
        whole = [f for f in _findings(["."], tmp) if f[0] != "decoy.py"]
        assert whole == sorted(truth.findings), (program, truth.files)
        for rel in truth.files:
            if rel == "decoy.py":
                continue
            alone = _findings([rel], tmp)
            assert alone == [f for f in whole if f[0] == rel], (program, rel, truth.files)


def test_the_generator_covers_what_it_claims():
    """The oracle's cases all occur (a generator that never drew a case tests nothing)."""
    seen = set()
    for spelling in SPELLINGS:
        for sampler in SAMPLERS:
            for shuffle in (True, False, None):
                for evaluation in EVALUATION:
                    p = Program(spelling, shuffle, sampler, "none", "package", "spawn", True, True, evaluation, 65)
                    seen.update(code for _, code, _, _ in generate(p).findings)
                    compile(generate(p).files["train.py"], "train.py", "exec")
                    compile(generate(p).files["pkg/loaders.py"], "loaders.py", "exec")
    for evaluation in EVALUATION:
        p = Program("keyword", True, "none", "none", "inline", "toplevel", True, False, evaluation, 64)
        compile(generate(p).files["train.py"], "train.py", "exec")
    assert seen == {"BNL201", "BNL203", "BNL105", "BNL107"}
