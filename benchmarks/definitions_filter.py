"""Cost of the definitions-only view (bnlint.model.definitions) against compiling the
same files as Python would import them (``ast.parse`` + ``compile``), in the same run.

    .venv/bin/python benchmarks/definitions_filter.py [FOLDER ...] [--repeat 3]

Default corpus: every .py file under fixtures/. Each file is parsed, filtered and
compiled as the worker's import hook does; the baseline parses and compiles the whole
file. Prints both times, the ratio, and how many top-level statements were kept.
The exit code is 1 when the ratio exceeds 3.0.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bnlint.model.definitions import filter_definitions  # noqa: E402

BUDGET = 3.0


def _sources(folders):
    out = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    try:
                        text = Path(path).read_bytes()
                        ast.parse(text)
                    except (OSError, SyntaxError, ValueError):
                        continue
                    out.append((path, text))
    return out


def _baseline(sources):
    for path, text in sources:
        compile(ast.parse(text, filename=path), path, "exec", dont_inherit=True)


def _filtered(sources):
    kept = total = 0
    for path, text in sources:
        tree = ast.parse(text, filename=path)
        total += len(tree.body)
        result = filter_definitions(tree)
        kept += len(result.module.body)
        compile(result.module, path, "exec", dont_inherit=True)
    return kept, total


def _best(fn, sources, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(sources)
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=[str(Path(__file__).resolve().parent.parent / "fixtures")])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    sources = _sources(args.folders)
    lines = sum(t.count(b"\n") for _, t in sources)
    base, _ = _best(_baseline, sources, args.repeat)
    filt, (kept, total) = _best(_filtered, sources, args.repeat)
    ratio = filt / base
    print(f"{len(sources)} files, {lines} lines; parse+compile {base:.3f} s, "
          f"parse+filter+compile {filt:.3f} s: ratio {ratio:.2f} (budget {BUDGET}); "
          f"top-level statements kept {kept} of {total}")
    return 0 if ratio <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
