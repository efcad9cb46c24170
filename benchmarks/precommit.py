"""Latency of the pre-commit path (issue #16): whole ``bnlint check`` processes against
the plain work they cannot avoid, measured in the same run, interleaved, best of N.

    python benchmarks/precommit.py [--repeats 3] [--only wrn,scripts,deep] [--json out.json]

Rows (each a ratio to its baseline; targets from the issue):

- ``wrn``: ``bnlint check --no-cache`` of one Wide-ResNet model file
  (``fixtures/BNL101/wide_resnet_dropout_before_bn2.py``) vs ``python -c "import
  torch"``; target <= 1.2x.
- ``scripts``: ``bnlint check --select BNL2 --no-cache`` of 400 training scripts that
  all have findings (generated from the script fixtures, ``script_rules.py``) vs one
  process that imports libcst and runs ``libcst.parse_module`` on every file; target
  <= 1.5x.
- ``deep``: ``bnlint check --no-cache`` of a model file with a 200-block residual
  network vs a process that imports torch, builds the model and runs
  ``torch.fx.symbolic_trace``; target <= 1.2x.
- ``warm``: the same ``bnlint check`` run again on its results cache (nothing
  changed); target < 0.3 s.

bnlint's own modules are compiled to bytecode first (``compileall``), as a pip install
does: run from a checkout with ``PYTHONDONTWRITEBYTECODE=1`` (as on these machines),
every bnlint process would otherwise compile them again, while the baselines' libraries
come compiled.

Wall time is what a commit waits for; CPU time (user + system of the whole process
tree, from ``wait4``) is less sensitive to other jobs on the machine. Peak memory: the
summed VmRSS of the process tree, polled every 20 ms. The load average is printed with
the results: on a shared machine, read the ratios, not the seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from large_repo import TreeMemory  # noqa: E402  (peak memory of a process tree)

BNLINT = [sys.executable, "-m", "bnlint"]
WRN = ROOT / "fixtures" / "BNL101" / "wide_resnet_dropout_before_bn2.py"

DEEP_MODEL = '''"""A deep pre-activation residual network (200 blocks), dropout inside each block
at Kim et al.'s position (after bn2 and its ReLU, before conv2): nothing to report."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, width, p=0.1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(p)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(self.drop(F.relu(self.bn2(out))))
        return x + out


class DeepResNet(nn.Module):
    def __init__(self, blocks=200, width=16):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.Sequential(*[Block(width) for _ in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(x, 1))
'''

DEEP_BASELINE = '''import sys
sys.path.insert(0, sys.argv[1])
import torch
import torch.fx
from deep_model import DeepResNet

torch.fx.symbolic_trace(DeepResNet())
'''

PARSE_BASELINE = '''import os, sys
import libcst
folder = sys.argv[1]
for name in sorted(os.listdir(folder)):
    if name.endswith(".py"):
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            libcst.parse_module(fh.read())
'''


def timed(cmd: Sequence[str], cwd: Path) -> Dict[str, float]:
    """Wall seconds, CPU seconds of the tree, peak MB, exit code of one process."""
    with open(os.devnull, "wb") as null, tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=null, stderr=errors)
        memory = TreeMemory(proc.pid)
        memory.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        memory.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        err = errors.read().decode(errors="replace")
    if "Traceback" in err:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "mb": memory.peak_total_kb / 1024, "rc": proc.returncode}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_scripts(folder: Path, count: int, seed: int) -> int:
    """``count`` generated training scripts that all have script findings."""
    from script_rules import _source, make_corpus

    from bnlint.registry import all_rules
    from bnlint.rule import RuleKind
    from bnlint.script import run_script_rules

    rules = [r for r in all_rules() if r.kind is RuleKind.SCRIPT]
    folder.mkdir(parents=True)
    written = findings = 0
    for path, text in make_corpus(count * 4, seed):
        if written == count:
            break
        found = run_script_rules([_source(path, text)], rules)
        if found:
            (folder / f"train_{written:03d}.py").write_text(text, encoding="utf-8")
            written += 1
            findings += len(found)
    if written < count:
        raise SystemExit(f"only {written} generated scripts have findings")
    return findings


def compare(name: str, baseline: Sequence[str], ours: Sequence[str], cwd: Path, repeats: int,
            target: float, warm: Optional[Sequence[str]] = None) -> Dict:
    """Interleaved runs of baseline and bnlint; best of ``repeats`` of each."""
    runs: Dict[str, List[Dict[str, float]]] = {"baseline": [], "bnlint": [], "warm": []}
    loads = [load()]
    for _ in range(repeats):
        runs["baseline"].append(timed(baseline, cwd))
        runs["bnlint"].append(timed(ours, cwd))
    if warm is not None:
        timed(warm, cwd)  # fills the cache
        for _ in range(repeats):
            runs["warm"].append(timed(warm, cwd))
    loads.append(load())
    best = {k: {m: min(r[m] for r in v) for m in ("wall", "cpu", "mb")} for k, v in runs.items() if v}
    out = {
        "name": name, "target": target, "load": loads, "best": best,
        "ratio_wall": best["bnlint"]["wall"] / best["baseline"]["wall"],
        "ratio_cpu": best["bnlint"]["cpu"] / best["baseline"]["cpu"],
        "ratio_mb": best["bnlint"]["mb"] / best["baseline"]["mb"],
        "exit_codes": sorted({r["rc"] for r in runs["bnlint"]}),
    }
    return out


def compiled_as_installed() -> None:
    """bnlint's bytecode, as pip writes it at install (see the module docstring)."""
    import compileall

    for folder in ("bnlint", "rules"):
        compileall.compile_dir(str(ROOT / folder), quiet=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="wrn,scripts,deep")
    parser.add_argument("--scripts", type=int, default=400)
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    wanted = set(args.only.split(","))

    compiled_as_installed()
    results = []
    with tempfile.TemporaryDirectory(prefix="bnlint-precommit-") as tmp:
        tmp = Path(tmp)
        (tmp / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
        if "wrn" in wanted:
            folder = tmp / "wrn"
            folder.mkdir()
            shutil.copy(WRN, folder / WRN.name)
            results.append(compare(
                "one WRN model file vs `python -c \"import torch\"`",
                [sys.executable, "-c", "import torch"],
                BNLINT + ["check", "--no-cache", f"wrn/{WRN.name}"], tmp, args.repeats, 1.2,
                warm=BNLINT + ["check", "--cache-dir", str(tmp / "cache-wrn"), f"wrn/{WRN.name}"]))
        if "scripts" in wanted:
            findings = write_scripts(tmp / "scripts", args.scripts, args.seed)
            (tmp / "parse.py").write_text(PARSE_BASELINE)
            row = compare(
                f"script rules, {args.scripts} scripts with findings vs `libcst.parse_module` of each",
                [sys.executable, "parse.py", "scripts"],
                BNLINT + ["check", "--select", "BNL2", "--no-cache", "scripts"], tmp, args.repeats, 1.5,
                warm=BNLINT + ["check", "--select", "BNL2", "--cache-dir", str(tmp / "cache-scripts"), "scripts"])
            row["findings_in_process"] = findings
            results.append(row)
        if "deep" in wanted:
            folder = tmp / "deep"
            folder.mkdir()
            (folder / "deep_model.py").write_text(DEEP_MODEL.replace("blocks=200", f"blocks={args.blocks}"))
            (tmp / "fx_baseline.py").write_text(DEEP_BASELINE)
            results.append(compare(
                f"{args.blocks}-block residual model file vs import torch + build + fx.symbolic_trace",
                [sys.executable, "fx_baseline.py", "deep"],
                BNLINT + ["check", "--no-cache", "deep/deep_model.py"], tmp, args.repeats, 1.2,
                warm=BNLINT + ["check", "--cache-dir", str(tmp / "cache-deep"), "deep/deep_model.py"]))

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"best of {args.repeats}, interleaved")
    print()
    print("| what | baseline wall / CPU s | bnlint wall / CPU s | ratio wall (CPU) | target | warm s | "
          "peak MB bnlint / baseline | load average before -> after |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        b, o = r["best"]["baseline"], r["best"]["bnlint"]
        warm = f"{r['best']['warm']['wall']:.2f}" if "warm" in r["best"] else "-"
        print(f"| {r['name']} | {b['wall']:.2f} / {b['cpu']:.2f} | {o['wall']:.2f} / {o['cpu']:.2f} | "
              f"**{r['ratio_wall']:.2f}x** ({r['ratio_cpu']:.2f}x) | <= {r['target']}x | {warm} | "
              f"{o['mb']:.0f} / {b['mb']:.0f} | {r['load'][0]} -> {r['load'][1]} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
