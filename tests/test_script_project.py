"""The project layer of the script rules: layout (imports between files, the context a
file is analysed with), name resolution by qualified name, entry points, and the
results cache of a pre-commit-sized run."""
from __future__ import annotations

import os
import subprocess
import textwrap

import pytest

from bnlint.cache import ResultCache
from bnlint.config import Config
from bnlint.engine import check_paths
from bnlint.registry import all_rules
from bnlint.rule import RuleKind
from bnlint.script import run_script_rules
from bnlint.script.layout import Layout, scan_imports
from bnlint.sources import SourceFile

SCRIPT_RULES = [r for r in all_rules() if r.kind is RuleKind.SCRIPT]


def _src(path, text):
    text = textwrap.dedent(text)
    return SourceFile(path=path, text=text, encoding="utf-8", bom=False, newline="\n", raw=text.encode())


def _run(files):
    return [(f.path, f.code, f.line) for f in run_script_rules([_src(p, t) for p, t in files], SCRIPT_RULES)]


# ---------------------------------------------------------------- layout

def test_scan_imports_reads_every_spelling():
    refs = scan_imports(textwrap.dedent("""\
        import os, torch.nn as nn
        from . import loaders
        from ..utils.data import (make_loader,
                                  seed_all as seed)  # comment
        from models import *
        def f():
            import helpers
        x = 1; from x import y
        """))
    got = {(r.level, r.module, r.names) for r in refs}
    assert (0, "os", ()) in got and (0, "torch.nn", ()) in got
    assert (1, "", ("loaders",)) in got
    assert (2, "utils.data", ("make_loader", "seed_all")) in got
    assert (0, "models", ("*",)) in got
    assert (0, "helpers", ()) in got


def test_context_is_importers_and_what_they_import():
    layout = Layout.virtual({
        "train.py": "from data import build_loaders\nimport engine\n",
        "eval.py": "import engine\n",
        "engine.py": "from utils.meters import Meter\n",
        "data/__init__.py": "from .loaders import build_loaders\n",
        "data/loaders.py": "from .transforms import flip\n",
        "data/transforms.py": "",
        "utils/meters.py": "",
        "other.py": "import os\n",
    })
    ctx = [layout.rel(p) for p in layout.context([layout.abs("data/transforms.py")])]
    assert ctx == ["data/__init__.py", "data/loaders.py", "data/transforms.py", "engine.py", "train.py",
                   "utils/meters.py"]
    # eval.py imports engine, which train.py also imports: it cannot reach data/.
    assert "eval.py" not in ctx and "other.py" not in ctx
    assert [layout.rel(p) for p in layout.context([layout.abs("other.py")])] == ["other.py"]


def test_imports_resolve_as_python_runs_scripts():
    layout = Layout.virtual({
        "tools/train.py": "from utils import seed\nfrom mypkg.data import make\n",
        "tools/utils.py": "",
        "utils/__init__.py": "",
        "src/mypkg/__init__.py": "",
        "src/mypkg/data.py": "",
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/a.py": "from ..b import x\nfrom . import c\n",
        "pkg/b.py": "",
        "pkg/sub/c.py": "",
        "nsdir/mod.py": "",
        "run.py": "import nsdir.mod\nimport pkg.sub.a\n",
    })
    rel = lambda path: sorted(layout.rel(p) for p in layout.imports_of(layout.abs(path)))  # noqa: E731
    # the script's own folder first (sys.path[0]), then the project root, then src/
    assert rel("tools/train.py") == ["src/mypkg/__init__.py", "src/mypkg/data.py", "tools/utils.py"]
    assert rel("pkg/sub/a.py") == ["pkg/b.py", "pkg/sub/__init__.py", "pkg/sub/c.py"]
    # a namespace folder (no __init__.py) still holds modules; packages run on the way
    assert rel("run.py") == ["nsdir/mod.py", "pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/a.py"]
    assert layout.module_name(layout.abs("pkg/sub/a.py")) == "pkg.sub.a"
    assert layout.module_name(layout.abs("tools/train.py")) == "train"


# ---------------------------------------------------------------- resolution

LOADERS = """\
    from torch.utils.data import DataLoader, DistributedSampler


    def build(ds):
        return DataLoader(ds, batch_size=8, sampler=DistributedSampler(ds))
    """

TRAIN = """\
    import torch
    {imp}


    def main():
        ds = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
        loader = {call}
        model = torch.nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for epoch in range(3):
            for x, y in loader:
                model(x).sum().backward()
                opt.step()


    main()
    """


@pytest.mark.parametrize("files, imp, call", [
    ({"data/loaders.py": LOADERS, "data/__init__.py": "from .loaders import build\n"},
     "from data import build", "build(ds)"),
    ({"data/loaders.py": LOADERS, "data/__init__.py": "from .loaders import *\n"},
     "import data", "data.build(ds)"),
    ({"data/loaders.py": LOADERS}, "import data.loaders as dl", "dl.build(ds)"),
    ({"data/loaders.py": LOADERS}, "import data.loaders", "data.loaders.build(ds)"),
    ({"data/loaders.py": LOADERS + "make_loader = build\n", "data/__init__.py": "from .loaders import make_loader as mk\n"},
     "from data import mk", "mk(ds)"),
])
def test_helpers_resolve_through_packages_and_aliases(files, imp, call):
    train = TRAIN.format(imp=imp, call=call)
    got = _run([("train.py", train)] + list(files.items()))
    assert got == [("data/loaders.py", "BNL201", 5)]


def test_a_same_named_function_elsewhere_is_a_different_function():
    """The issue's first report: train() started by mp.spawn, beside a script whose own
    train() is called directly with other arguments."""
    ddp = """\
        import torch
        import torch.multiprocessing as mp
        from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


        def train(rank, epochs):
            ds = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
            loader = DataLoader(ds, sampler=DistributedSampler(ds))
            model = torch.nn.Linear(2, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for epoch in range(epochs):
                for x, y in loader:
                    model(x).sum().backward()
                    opt.step()


        if __name__ == "__main__":
            mp.spawn(train, args=(10,), nprocs=2)
        """
    sibling = """\
        def train(loader, epochs):
            for x in loader:
                pass


        def main():
            train([], 0)


        main()
        """
    alone = _run([("ddp.py", ddp)])
    assert alone == [("ddp.py", "BNL201", 8)]
    assert _run([("ddp.py", ddp), ("single.py", sibling)]) == alone


@pytest.mark.parametrize("entry", [
    "import typer\napp = typer.Typer()\n\n\n@app.command()\ndef run(epochs: int = 3):\n    work(epochs)\n",
    "import fire\n\n\ndef run(epochs=3):\n    work(epochs)\n\n\nif __name__ == '__main__':\n    fire.Fire(run)\n",
    "import threading\n\n\ndef run():\n    work(3)\n\n\nthreading.Thread(target=run).start()\n",
    "from concurrent.futures import ProcessPoolExecutor\n\n\ndef run(epochs):\n    work(epochs)\n\n\n"
    "with ProcessPoolExecutor() as pool:\n    pool.submit(run, 3)\n",
    "import torch.multiprocessing as mp\n\n\ndef main():\n    def worker(rank):\n        work(3)\n"
    "    mp.spawn(worker, nprocs=2)\n\n\nmain()\n",
])
def test_entry_points_are_walked(entry):
    work = textwrap.dedent("""\
        import torch
        from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


        def work(epochs):
            ds = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
            sampler = DistributedSampler(ds)
            loader = DataLoader(ds, sampler=sampler)
            model = torch.nn.Linear(2, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for epoch in range(epochs):
                for x, y in loader:
                    model(x).sum().backward()
                    opt.step()


        """)
    text = work + entry
    assert _run([("launch.py", text)]) == [("launch.py", "BNL201", 7)]
    told = text.replace("        for x, y in loader:", "        sampler.set_epoch(epoch)\n        for x, y in loader:")
    assert _run([("launch.py", told)]) == []


def test_a_helper_called_with_context_is_not_also_walked_without_it():
    """A default (shuffle=False) the only caller overrides is not a finding."""
    text = textwrap.dedent("""\
        import torch
        from torch.utils.data import DataLoader, TensorDataset


        def make(ds, shuffle=False):
            return DataLoader(ds, batch_size=4, shuffle=shuffle)


        def main():
            ds = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
            loader = make(ds, shuffle=True)
            model = torch.nn.Linear(2, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for epoch in range(3):
                for x, y in loader:
                    model(x).sum().backward()
                    opt.step()


        main()
        """)
    assert _run([("t.py", text)]) == []
    assert _run([("t.py", text.replace("shuffle=True)", "shuffle=False)"))]) == [("t.py", "BNL203", 6)]


def test_sampler_class_chosen_by_a_condition_and_fixes_only_where_guardable():
    text = textwrap.dedent("""\
        import torch
        from torch.utils.data import DataLoader, RandomSampler, TensorDataset
        from torch.utils.data.distributed import DistributedSampler


        def main(args):
            ds = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
            cls = RandomSampler if args.local_rank == -1 else DistributedSampler
            loader = DataLoader(ds, sampler=cls(ds), batch_size=8)
            sampler = DistributedSampler(ds) if args.distributed else RandomSampler(ds)
            loader2 = DataLoader(ds, sampler=sampler, batch_size=8)
            sampler3 = DistributedSampler(ds) if args.distributed else None
            loader3 = DataLoader(ds, sampler=sampler3, batch_size=8, shuffle=sampler3 is None)
            model = torch.nn.Linear(4, 2)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for epoch in range(args.epochs):
                for batches in (loader, loader2, loader3):
                    pass
                for x, y in loader:
                    model(x).sum().backward()
                    opt.step()
                for x, y in loader2:
                    model(x).sum().backward()
                    opt.step()
                for x, y in loader3:
                    model(x).sum().backward()
                    opt.step()
        """)
    found = run_script_rules([_src("fm.py", text)], SCRIPT_RULES)
    assert [(f.code, f.line, f.fix is not None) for f in found] == [
        ("BNL201", 9, False), ("BNL201", 10, False), ("BNL201", 12, True)]


# ---------------------------------------------------------------- the cache

PROJECT = {
    "train.py": TRAIN.format(imp="from data import build", call="build(ds)"),
    "data/__init__.py": "from .loaders import build\n",
    "data/loaders.py": LOADERS,
    "other.py": "from torch.utils.data import DataLoader\n\n\ndef make(ds):\n    return DataLoader(ds)\n",
}


def _write(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(textwrap.dedent(text))


def test_precommit_run_on_one_file_parses_only_its_context(tmp_path, monkeypatch):
    import bnlint.script.analysis as analysis

    _write(tmp_path, PROJECT)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    parsed = []
    real = analysis.parse_file
    monkeypatch.setattr(analysis, "parse_file", lambda path, *a: parsed.append(os.path.basename(path)) or real(path, *a))
    cache = lambda: ResultCache.for_run(str(tmp_path / ".bnlint_cache"), "cfg", [r.code for r in SCRIPT_RULES])  # noqa: E731

    def check(*paths, use_cache=True):
        parsed.clear()
        result = check_paths(list(paths), Config(), SCRIPT_RULES, cache=cache() if use_cache else None)
        return [(f.path, f.code, f.line) for f in result.findings]

    full = check(".")
    assert full == [("data/loaders.py", "BNL201", 5)]
    assert check("data/loaders.py") == full and parsed == []  # from the entries the full run stored
    # Another file changes: the checked file's context did not, nothing is parsed.
    (tmp_path / "other.py").write_text("from torch.utils.data import DataLoader\n")
    assert check("data/loaders.py") == full and parsed == []
    # A file of its context changes: only that context is parsed again.
    (tmp_path / "train.py").write_text((tmp_path / "train.py").read_text() + "\n# touched\n")
    assert check("data/loaders.py") == full
    assert sorted(parsed) == ["__init__.py", "loaders.py", "train.py"]  # not other.py
    assert check("data/loaders.py", use_cache=False) == full


def test_a_new_version_of_a_file_is_checked_in_place_with_its_project(tmp_path):
    """What a fixer needs: the fixed text of data/loaders.py, before it is written,
    checked with the scripts that import it."""
    from bnlint.script.scope import CheckedFile, check_in_project

    _write(tmp_path, PROJECT)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    target = str(tmp_path / "data" / "loaders.py")
    old = (tmp_path / "data" / "loaders.py").read_text()

    def checked(text):
        return CheckedFile("data/loaders.py", target, lambda: _src("data/loaders.py", text), in_memory=True)

    assert [(f.code, f.line) for f in check_in_project([checked(old)], SCRIPT_RULES)] == [("BNL201", 5)]
    fixed = old.replace("sampler=DistributedSampler(ds))", "shuffle=True)")
    assert check_in_project([checked(fixed)], SCRIPT_RULES) == []
    assert (tmp_path / "data" / "loaders.py").read_text() == old


def test_a_loop_run_with_train_false_does_not_train():
    """minGPT-DDP's trainer: one _run_epoch for both loaders, set_epoch and backward
    under `if train:`; the evaluation pass (train=False) trains nothing."""
    text = textwrap.dedent("""\
        import torch
        from torch.utils.data import DataLoader, DistributedSampler


        class Trainer:
            def __init__(self, model, train_set, test_set, optimizer):
                self.model = model
                self.optimizer = optimizer
                self.train_loader = self._prepare_dataloader(train_set)
                self.test_loader = self._prepare_dataloader(test_set)

            def _prepare_dataloader(self, dataset):
                return DataLoader(dataset, batch_size=32, shuffle=False, sampler=DistributedSampler(dataset))

            def _run_batch(self, source, targets, train=True):
                with torch.set_grad_enabled(train):
                    loss = self.model(source, targets)
                if train:
                    self.optimizer.zero_grad()
                    loss.backward()
                    self.optimizer.step()
                return loss.item()

            def _run_epoch(self, epoch, dataloader, train=True):
                if train:
                    dataloader.sampler.set_epoch(epoch)
                for source, targets in dataloader:
                    self._run_batch(source, targets, train)

            def train(self, max_epochs):
                for epoch in range(max_epochs):
                    self._run_epoch(epoch, self.train_loader, train=True)
                    self._run_epoch(epoch, self.test_loader, train=False)
        """)
    assert _run([("trainer.py", text)]) == []
    forgot = text.replace("dataloader.sampler.set_epoch(epoch)", "pass")
    assert forgot != text
    assert _run([("trainer.py", forgot)]) == [("trainer.py", "BNL201", 13)]
