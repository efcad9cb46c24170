"""Throughput of the script rules (BNL2xx) against bare ``libcst.parse_module``.

Generates a corpus of training scripts (default 600) from the script fixtures: each
script is a fixture with its identifiers renamed, its hyper-parameters changed, and
extra helper code (logging, checkpointing, metrics) added, plus a share of model-only
files that name no loader, sampler or permutation (these are skipped before parsing).
Then it times, in the same process, ``run_script_rules`` over the corpus and
``libcst.parse_module`` over the same files.

    python benchmarks/script_rules.py [--files 600] [--repeat 3] [--seed 0]
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

import libcst

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bnlint.registry import all_rules  # noqa: E402
from bnlint.rule import RuleKind  # noqa: E402
from bnlint.script import run_script_rules  # noqa: E402
from bnlint.sources import SourceFile  # noqa: E402

RENAMES = {
    "train_loader": ["trainloader", "dl_train", "train_dl", "tr_loader"],
    "val_loader": ["valloader", "dl_val", "eval_loader"],
    "model": ["net", "network", "clf"],
    "optimizer": ["optim", "opt_sgd", "optimiser"],
    "epoch": ["ep", "e", "epoch_idx"],
}

EXTRA_HELPERS = [
    '''
def save_checkpoint(state, path="checkpoint.pt"):
    """Save a training checkpoint."""
    import torch
    torch.save(state, path)
''',
    '''
class AverageMeter:
    """Computes and stores the average and current value."""

    def __init__(self, name, fmt=":f"):
        self.name = name
        self.fmt = fmt
        self.reset()

    def reset(self):
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count
''',
    '''
def accuracy(output, target, topk=(1,)):
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    pred = pred.t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    res = []
    for k in topk:
        correct_k = correct[:k].reshape(-1).float().sum(0, keepdim=True)
        res.append(correct_k.mul_(100.0 / batch_size))
    return res
''',
    '''
def adjust_learning_rate(optimizer, epoch, base_lr, schedule=(30, 60, 90)):
    lr = base_lr
    for milestone in schedule:
        if epoch >= milestone:
            lr *= 0.1
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
''',
]

MODEL_FILE = '''"""Model zoo {n}: building blocks for the training scripts."""
import torch.nn as nn
import torch.nn.functional as F


class Block{n}(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class Net{n}(nn.Module):
    def __init__(self, widths=(16, 32, 64), classes=10):
        super().__init__()
        layers, cin = [], 3
        for w in widths:
            layers.append(Block{n}(cin, w, 2 if cin != w else 1))
            cin = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, classes)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))
'''


def make_corpus(n_files: int, seed: int):
    rng = random.Random(seed)
    templates = sorted(p for p in (ROOT / "fixtures").glob("BNL2*/*.py"))
    templates += sorted((ROOT / "fixtures" / "scripts_clean").glob("*.py"))
    texts = [p.read_text() for p in templates]
    corpus = []
    for i in range(n_files):
        if i % 6 == 5:
            corpus.append((f"corpus/models_{i}.py", MODEL_FILE.format(n=i)))
            continue
        text = texts[i % len(texts)]
        for old, news in RENAMES.items():
            if rng.random() < 0.5:
                text = re.sub(rf"\b{old}\b", rng.choice(news), text)
        text = re.sub(r"default=(\d+)", lambda m: f"default={int(m.group(1)) + rng.randint(0, 9)}", text)
        extras = rng.sample(EXTRA_HELPERS, rng.randint(1, len(EXTRA_HELPERS)))
        head, sep, tail = text.partition("\n\n\n")
        text = head + sep + "\n\n".join(e.strip("\n") for e in extras) + "\n\n\n" + tail
        corpus.append((f"corpus/train_{i}.py", text))
    return corpus


def _source(path, text):
    return SourceFile(path=path, text=text, encoding="utf-8", bom=False, newline="\n", raw=b"")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    corpus = make_corpus(args.files, args.seed)
    sources = [_source(p, t) for p, t in corpus]
    rules = [r for r in all_rules() if r.kind is RuleKind.SCRIPT]
    for path, text in corpus:  # every generated file must parse
        libcst.parse_module(text)

    parse_times, rule_times, findings = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for _, text in corpus:
            libcst.parse_module(text)
        parse_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        # Each file is its own script (as `bnlint check file.py` would see it).
        findings = [f for src in sources for f in run_script_rules([src], rules)]
        rule_times.append(time.perf_counter() - t0)

    parse_s, rule_s = min(parse_times), min(rule_times)
    lines = sum(t.count("\n") + 1 for _, t in corpus)
    print(f"corpus: {len(corpus)} files, {lines} lines, {len(findings)} findings")
    print(f"libcst.parse_module: {parse_s:.2f} s ({len(corpus) / parse_s:.0f} files/s)")
    print(f"script rules:        {rule_s:.2f} s ({len(corpus) / rule_s:.0f} files/s)")
    ratio = rule_s / parse_s
    print(f"ratio script rules / parse: {ratio:.2f} (budget 2.00)")
    return 0 if ratio <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
