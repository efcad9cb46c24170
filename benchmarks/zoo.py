"""Zoo run: ``bnlint check`` over every torchvision classifier and a timm sample, stock
and with dropout switched on. Not part of CI: it needs torchvision and timm, which do
not import beside the CPU torch of the test environment. Run it in its own environment:

    python3 -m venv /tmp/zoo-venv
    /tmp/zoo-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    /tmp/zoo-venv/bin/pip install --no-deps -e .
    /tmp/zoo-venv/bin/python benchmarks/zoo.py --timm-sample 40
    /tmp/zoo-venv/bin/python benchmarks/zoo.py --timm-sample 0 --only 'mnasnet|densenet'   # a slice

One generated model file per model (so each gets its own worker and timeout); the
factories are annotated ``-> nn.Module`` so bnlint finds them. Every torchvision model is
checked twice: with an ``example_inputs()`` of its real input size (``tv__NAME``) and
without one (``tvx__NAME``, bnlint infers the input), and the two must agree; the
densenets are also built with ``drop_rate=0.2`` (``tvd__NAME``). Every finding must sit
on the user's line that builds the model (line 7 of the generated file), whatever
library code it comes from. Prints a summary, one line per model with findings, and
writes every finding as JSON to ``--out``.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HEADER = '''import torch
import torch.nn as nn
{import_line}


def build() -> nn.Module:
    return {call}
'''
BUILD_LINE = 7  # the `return ...` line above: where every finding must be reported
INPUTS = '''

def example_inputs():
    return (torch.randn(2, 3, {size}, {size}),)
'''

# Stock torchvision models whose head applies dropout right after global pooling.
EXPECTED_TV_BNL102 = {
    *(f"efficientnet_b{i}" for i in range(8)), "efficientnet_v2_s", "efficientnet_v2_m",
    "efficientnet_v2_l", "googlenet", "inception_v3", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0",
    "mnasnet1_3", "mobilenet_v2",
}


def write_models(folder, timm_sample, only):
    import torchvision

    files = {}
    for name in torchvision.models.list_models(module=torchvision.models):
        size = 299 if name == "inception_v3" else 224
        head = HEADER.format(import_line="import torchvision.models as tvm", call=f"tvm.{name}()")
        files[f"tv__{name}"] = head + INPUTS.format(size=size)
        files[f"tvx__{name}"] = head
        if name.startswith("densenet"):
            files[f"tvd__{name}"] = HEADER.format(import_line="import torchvision.models as tvm",
                                                  call=f"tvm.{name}(drop_rate=0.2)") + INPUTS.format(size=size)
    if timm_sample:
        import timm

        names = timm.list_models()
        step = max(1, len(names) // timm_sample)
        for name in names[::step][:timm_sample]:
            cfg = timm.get_pretrained_cfg(name)
            size = cfg.input_size[-1] if cfg is not None and cfg.input_size else 224
            for tag, extra in (("stock", ""), ("drop", ", drop_rate=0.2")):
                call = f"timm.create_model({name!r}, pretrained=False{extra})"
                files[f"timm_{tag}__{name.replace('.', '_')}"] = (
                    HEADER.format(import_line="import timm", call=call) + INPUTS.format(size=size))
    if only:
        files = {stem: text for stem, text in files.items() if re.search(only, stem.split("__", 1)[1])}
    for stem, text in files.items():
        with open(os.path.join(folder, f"{stem}.py"), "w") as fh:
            fh.write(text)
    return sorted(files)


def _kind(stem):
    return stem.split("__", 1)[0]


def _model(stem):
    return stem.split("__", 1)[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--timm-sample", type=int, default=40, help="every Nth timm model, N models (0: none)")
    parser.add_argument("--only", default="", help="regular expression on model names: check a slice")
    parser.add_argument("--out", default="zoo-findings.json")
    parser.add_argument("--timeout", default="300")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bnlint-zoo-")
    stems = write_models(folder, args.timm_sample, args.only)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bnlint", "check", "--no-cache", "--format", "json",
                           "--timeout", args.timeout, "."], cwd=folder, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if "Traceback" in proc.stderr or not proc.stdout.strip():
        sys.exit(f"bnlint failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    findings = json.loads(proc.stdout)
    with open(args.out, "w") as fh:
        json.dump(findings, fh, indent=1)

    by_model = collections.defaultdict(list)
    for f in findings:
        by_model[os.path.splitext(os.path.basename(f["path"]))[0]].append(f)
    real = {stem: [f for f in by_model.get(stem, []) if f["severity"] != "info"] for stem in stems}
    failed = sorted(s for s, fs in real.items() if any(f["code"] == "BNL001" for f in fs))
    partial = sorted(s for s, fs in by_model.items() if any(f["code"] == "BNL001" and f["severity"] == "info" for f in fs))
    rules = {s: [f for f in fs if f["code"] != "BNL001"] for s, fs in real.items()}
    counts = collections.Counter(f["code"] for fs in real.values() for f in fs)

    def has(stem, code):
        return any(f["code"] == code for f in rules.get(stem, []))

    print(f"models: {len(stems)} files, wall {elapsed:.0f} s, {elapsed / max(1, len(stems)):.2f} s per file")
    print(f"BNL001 (not analysed or analysed with an error): {len(failed)} {failed}")
    for stem in failed:
        for f in real[stem]:
            if f["code"] == "BNL001":
                print(f"    {stem}: {f['message'][:200]}")
    print(f"analysed in part (info): {len(partial)} {partial[:10]}")
    print(f"findings per rule: {dict(sorted(counts.items()))}")
    misplaced = sorted(f"{s}: {f['code']}@{f['line']}:{f['column']}" for s, fs in rules.items() for f in fs
                       if f["line"] != BUILD_LINE or os.path.basename(f["path"]) != f"{s}.py")
    print(f"findings not on the user's construction line ({BUILD_LINE}): {len(misplaced)} {misplaced[:20]}")
    for kind in ("tv", "tvx"):
        stems_k = [s for s in stems if _kind(s) == kind]
        if not stems_k:
            continue
        hit = {_model(s) for s in stems_k if has(s, "BNL102")}
        expected = EXPECTED_TV_BNL102 & {_model(s) for s in stems_k}
        other = sorted(_model(s) for s in stems_k if any(f["code"] != "BNL102" for f in rules[s]))
        label = "with example_inputs()" if kind == "tv" else "inputs inferred"
        print(f"torchvision {label}: {len(stems_k)} models, BNL102 on {len(hit)}; "
              f"missing {sorted(expected - hit)}; unexpected {sorted(hit - expected)}; other findings {other}")
    differ = []
    for s in stems:
        if _kind(s) == "tvx" and f"tv__{_model(s)}" in real:
            key = lambda fs: sorted((f["code"], f["line"], f["column"], f["message"]) for f in fs)
            if key(real[s]) != key(real[f"tv__{_model(s)}"]):
                differ.append(_model(s))
    print(f"torchvision models whose findings differ with and without example_inputs(): {len(differ)} {differ}")
    drop = [s for s in stems if _kind(s) == "tvd"]
    if drop:
        ok = [s for s in drop if has(s, "BNL101") and all(f["line"] == BUILD_LINE for f in rules[s])]
        print(f"torchvision densenet, drop_rate=0.2: BNL101 at the user's line on {len(ok)} of {len(drop)}")
    for tag in ("stock", "drop"):
        stems_t = [s for s in stems if _kind(s) == f"timm_{tag}"]
        if stems_t:
            hits = collections.Counter(f["code"] for s in stems_t for f in real[s])
            print(f"timm {tag}: {len(stems_t)} models, {dict(sorted(hits.items()))}")
    print("per model (code@line:col, library module):")
    for s in stems:
        if rules[s]:
            parts = sorted({f"{f['code']}@{f['line']}:{f['column']} {f['details'].get('library', '')}".strip()
                            for f in rules[s]})
            print(f"    {s}: {'; '.join(parts)}")


if __name__ == "__main__":
    main()
