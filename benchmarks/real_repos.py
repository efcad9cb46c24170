"""How much of a repository `bnlint check .` analyses with no configuration (issue #12).

For each repository: the model classes it defines (top-level classes with a base that
may be an nn.Module and that are not layers, found statically), how many of them were analysed (all but the
ones a BNL001 names as not analysed), the findings by rule, and the wall time of
`bnlint check --no-cache .` run in the repository as a user would.

    .venv/bin/python benchmarks/real_repos.py                 # the fixture repositories
    .venv/bin/python benchmarks/real_repos.py ~/src/some-repo # any checkouts, in place

Fixture repositories are copied to a temporary folder and made git checkouts first
(as tests/test_repos.py does); other paths are checked where they are. The exit code
is 1 when less than 95% of the model classes were analysed.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bnlint.model.plan import Planner  # noqa: E402
from bnlint.model.project import SKIP_DIRS, Binding, Project  # noqa: E402
from bnlint.model.targets import layer_classes, may_define_models  # noqa: E402

TARGET = 0.95


def model_classes(repo: Path) -> Set[Tuple[str, str]]:
    """(relative path, class name) of every top-level class that may be an nn.Module:
    its file says it may, it is not a layer, and the project does not show that none of
    its bases is one (as bnlint decides: bnlint.model.plan.Planner.is_model_class)."""
    out = set()
    planner = Planner(Project.scan(str(repo)))
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in filenames:
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            try:
                tree = ast.parse(path.read_bytes())
            except (SyntaxError, ValueError):
                continue
            classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
            for found in may_define_models(tree, layer_classes(tree)):
                if found in classes and planner.is_model_class(Binding("def", os.path.abspath(path), found)):
                    out.add((path.relative_to(repo).as_posix(), found))
    return out


def check(repo: Path) -> Tuple[List[Dict], float, int]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bnlint", "check", "--no-cache", "--format", "json", "."],
                          cwd=repo, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    try:
        findings = json.loads(proc.stdout)
    except ValueError:
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
        raise
    return findings, elapsed, proc.returncode


def not_analysed(findings: List[Dict]) -> Set[Tuple[str, str]]:
    out = set()
    for f in findings:
        details = f.get("details") or {}
        if not details.get("not_analysed"):
            continue
        names = [details["model"]] if details.get("model") else list(details.get("models") or [])
        for name in names:
            out.add((Path(f["path"]).as_posix(), str(name)))
    return out


def measure(repo: Path) -> Dict:
    classes = model_classes(repo)
    findings, elapsed, code = check(repo)
    missing = not_analysed(findings) & classes
    counted = Counter(f["code"] for f in findings if f["severity"] != "info")
    return {
        "repo": repo.name, "files": sum(1 for _ in repo.rglob("*.py")), "classes": len(classes),
        "analysed": len(classes) - len(missing), "missing": sorted(missing), "findings": dict(sorted(counted.items())),
        "seconds": round(elapsed, 1), "exit": code,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="*", help="repository folders (default: fixtures/repos/*)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = []
    if args.repos:
        for path in args.repos:
            rows.append(measure(Path(path).resolve()))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for source in sorted(p for p in (ROOT / "fixtures" / "repos").iterdir() if p.is_dir()):
                target = Path(tmp) / source.name
                shutil.copytree(source, target)
                subprocess.run(["git", "init", "-q"], cwd=target, check=True)
                rows.append(measure(target))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'repository':32} {'.py':>4} {'classes':>7} {'analysed':>8} {'%':>5} {'time s':>6}  findings")
        for r in rows:
            share = 100.0 * r["analysed"] / r["classes"] if r["classes"] else 100.0
            found = ", ".join(f"{k} {v}" for k, v in r["findings"].items()) or "-"
            print(f"{r['repo']:32} {r['files']:>4} {r['classes']:>7} {r['analysed']:>8} {share:>5.1f} {r['seconds']:>6}  {found}")
            for path, name in r["missing"]:
                print(f"{'':32}   not analysed: {path}::{name}")
    total = sum(r["classes"] for r in rows)
    analysed = sum(r["analysed"] for r in rows)
    share = analysed / total if total else 1.0
    print(f"total: {analysed}/{total} model classes analysed ({100 * share:.1f}%)")
    return 0 if share >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
