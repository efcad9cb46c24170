"""Zoo run: ``bnlint check`` over every torchvision classifier and a timm sample, stock
and with ``drop_rate=0.2``. Not part of CI: it needs torchvision and timm, which do not
import beside the CPU torch of the test environment. Run it in its own environment:

    python3 -m venv /tmp/zoo-venv
    /tmp/zoo-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    /tmp/zoo-venv/bin/pip install --no-deps -e .
    /tmp/zoo-venv/bin/python benchmarks/zoo.py --timm-sample 40

One generated model file per model (so each gets its own worker and timeout); the
factories are annotated ``-> nn.Module`` so bnlint finds them. Prints a summary and
writes every finding as JSON to ``--out``.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

TEMPLATE = '''import torch
import torch.nn as nn
{import_line}


def build() -> nn.Module:
    return {call}


def example_inputs():
    return (torch.randn(2, 3, {size}, {size}),)
'''

# Stock torchvision models whose head applies dropout right after global pooling.
EXPECTED_TV_BNL102 = {
    *(f"efficientnet_b{i}" for i in range(8)), "efficientnet_v2_s", "efficientnet_v2_m",
    "efficientnet_v2_l", "googlenet", "inception_v3", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0",
    "mnasnet1_3", "mobilenet_v2",
}


def write_models(folder, timm_sample):
    import timm
    import torchvision

    files = {}
    for name in torchvision.models.list_models(module=torchvision.models):
        size = 299 if name == "inception_v3" else 224
        files[f"tv__{name}"] = TEMPLATE.format(import_line="import torchvision.models as tvm",
                                               call=f"tvm.{name}()", size=size)
    names = timm.list_models()
    step = max(1, len(names) // timm_sample) if timm_sample else len(names) + 1
    for name in names[::step][:timm_sample]:
        cfg = timm.get_pretrained_cfg(name)
        size = cfg.input_size[-1] if cfg is not None and cfg.input_size else 224
        for tag, extra in (("stock", ""), ("drop", ", drop_rate=0.2")):
            files[f"timm_{tag}__{name.replace('.', '_')}"] = TEMPLATE.format(
                import_line="import timm", call=f"timm.create_model({name!r}, pretrained=False{extra})", size=size)
    for stem, text in files.items():
        with open(os.path.join(folder, f"{stem}.py"), "w") as fh:
            fh.write(text)
    return sorted(files)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--timm-sample", type=int, default=40)
    parser.add_argument("--out", default="zoo-findings.json")
    parser.add_argument("--timeout", default="300")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bnlint-zoo-")
    stems = write_models(folder, args.timm_sample)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bnlint", "check", "--format", "json", "--timeout", args.timeout, "."],
                          cwd=folder, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    findings = json.loads(proc.stdout)
    with open(args.out, "w") as fh:
        json.dump(findings, fh, indent=1)
    by_model = collections.defaultdict(list)
    for f in findings:
        by_model[os.path.splitext(os.path.basename(f["path"]))[0]].append(f)
    counts = collections.Counter(f["code"] for f in findings if f["severity"] != "info")
    failed = sorted(m for m, fs in by_model.items() if any(f["code"] == "BNL001" and f["severity"] == "error" for f in fs))
    partial = sorted(m for m, fs in by_model.items() if any(f["code"] == "BNL001" and f["severity"] == "info" for f in fs))
    print(f"models: {len(stems)} ({sum(s.startswith('tv__') for s in stems)} torchvision), wall {elapsed:.0f} s, "
          f"{elapsed / len(stems):.2f} s per model (2 workers)")
    print(f"BNL001 errors: {len(failed)} {failed[:10]}")
    print(f"analysed in part (info): {len(partial)} {partial[:10]}")
    print(f"findings per rule: {dict(sorted(counts.items()))}")
    tv102 = {m[4:] for m, fs in by_model.items() if m.startswith("tv__") and any(f["code"] == "BNL102" for f in fs)}
    tv_other = sorted(m for m, fs in by_model.items() if m.startswith("tv__") and any(f["code"] not in ("BNL102",) and f["severity"] != "info" for f in fs))
    print(f"torchvision BNL102: {len(tv102)}; missing {sorted(EXPECTED_TV_BNL102 - tv102)}; unexpected {sorted(tv102 - EXPECTED_TV_BNL102)}")
    print(f"torchvision models with other findings: {tv_other}")
    for tag in ("stock", "drop"):
        hits = collections.Counter(f["code"] for m, fs in by_model.items() if m.startswith(f"timm_{tag}__") for f in fs if f["severity"] != "info")
        print(f"timm {tag}: {dict(sorted(hits.items()))}")


if __name__ == "__main__":
    main()
