"""bnlint on a large generated repository (issue #8): time, memory, start-up, vs torchfix.

Generates, deterministically from ``--seed``, a repository of ``--files`` Python files
(default 1,000) laid out like a research code base: ``models/`` (ResNet, Wide-ResNet,
DenseNet, VGG, MLP, EfficientNet/MobileNet-like modules built from shared blocks,
most clean, some with a dropout before a BatchNorm or after global pooling),
``data/``, ``utils/``, ``engine/``, ``configs/``, ``scripts/``, ``tools/``,
``experiments/<name>/`` and ``tests/``: training scripts (argparse, DataLoader, epoch
loops, some with single-shuffle bugs), datasets and transforms, config parsing,
logging and metrics helpers, plain non-torch utilities, tests and ``__init__.py``
files, 30 to ~600 lines each. Then, on the same files and in the same run, it times:

- bare ``libcst.parse_module`` of every file (in-process, one core): baseline 1;
- bare ``ast.parse`` of every file (reference);
- ``torchfix <folder>`` (installed into a separate venv, ``--bench-venv``);
- ``bnlint check <folder> --no-cache`` cold (``-j 1`` and ``-j 2`` when the CLI has
  ``-j/--jobs``), with the peak summed RSS of its process tree, and warm (a second
  ``bnlint check`` with the same fresh ``--cache-dir``);
- CLI start-up: ``python -X importtime -m bnlint --version`` and ``bnlint check`` on an
  empty folder.

    .venv/bin/python benchmarks/large_repo.py [--files 1000] [--repeats 3] [--seed 0]
        [--model-fraction 0.05] [--keep DIR] [--json out.json] [--skip-torchfix]

Prints a Markdown table. Exit code 0 unless a measured command failed to run.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------

WORDS = [
    "cifar", "imagenet", "tiny", "svhn", "stl", "mnist", "places", "coco", "voc", "cub",
    "flowers", "pets", "food", "cars", "aircraft", "dtd", "inat", "celeba", "kinetics",
    "audio", "speech", "text", "tabular", "graph", "point", "depth", "seg", "det", "cls",
    "ssl", "simclr", "byol", "moco", "mixup", "cutmix", "distill", "prune", "quant",
    "robust", "adv", "fewshot", "meta", "continual", "domain", "label", "noisy", "semi",
]
VERBS = ["build", "make", "create", "get", "load", "prepare", "setup", "init", "compute", "parse"]
NOUNS = ["loader", "dataset", "model", "optimizer", "scheduler", "logger", "metrics", "config",
         "transform", "sampler", "checkpoint", "meter", "table", "report", "summary", "stats"]


def ident(rng: random.Random, *parts: Sequence[str]) -> str:
    return "_".join(rng.choice(p) for p in parts)


def camel(name: str) -> str:
    return "".join(w.capitalize() for w in name.split("_"))


class Ctx:
    """Per-file generation context: the rng and the file's style choices."""

    def __init__(self, rng: random.Random, typed: bool):
        self.rng = rng
        self.typed = typed  # this file annotates its functions

    def ann(self, text: str) -> str:
        return f": {text}" if self.typed else ""

    def ret(self, text: str) -> str:
        return f" -> {text}" if self.typed else ""

    def docstring(self, text: str, indent: str = "    ") -> str:
        if self.rng.random() < 0.55:
            return f'{indent}"""{text}"""\n'
        return ""


# ---- small helper functions (filler that real modules are made of) -------------------

def h_string(c: Ctx) -> str:
    r = c.rng
    kind = r.randrange(8)
    n = r.choice(["", "_text", "_str", "_name"])
    if kind == 0:
        return f'''
def slugify{n}(value{c.ann("str")}, sep{c.ann("str")} = "{r.choice(["-", "_"])}"){c.ret("str")}:
{c.docstring("Lower-case, strip, and replace runs of non-alphanumerics by ``sep``.")}    value = value.strip().lower()
    out = []
    prev_sep = False
    for ch in value:
        if ch.isalnum():
            out.append(ch)
            prev_sep = False
        elif not prev_sep:
            out.append(sep)
            prev_sep = True
    return "".join(out).strip(sep)
'''
    if kind == 1:
        return f'''
def camel_to_snake{n}(name{c.ann("str")}){c.ret("str")}:
    chars = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0 and not name[i - 1].isupper():
            chars.append("_")
        chars.append(ch.lower())
    return "".join(chars)


def snake_to_camel{n}(name{c.ann("str")}){c.ret("str")}:
    return "".join(part.capitalize() for part in name.split("_") if part)
'''
    if kind == 2:
        w = r.choice([60, 72, 79, 88, 100])
        return f'''
def wrap_lines{n}(text{c.ann("str")}, width{c.ann("int")} = {w}){c.ret("list")}:
    words = text.split()
    lines, line = [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{{line}} {{word}}" if line else word
    if line:
        lines.append(line)
    return lines
'''
    if kind == 3:
        return f'''
def parse_key_values{n}(items{c.ann("list")}){c.ret("dict")}:
{c.docstring("Parse ``key=value`` strings; values are converted to int/float/bool when possible.")}    result = {{}}
    for item in items:
        if "=" not in item:
            raise ValueError(f"expected key=value, got {{item!r}}")
        key, raw = item.split("=", 1)
        result[key.strip()] = _convert_value{n}(raw.strip())
    return result


def _convert_value{n}(raw{c.ann("str")}):
    lowered = raw.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw
'''
    if kind == 4:
        return f'''
def human_size{n}(num_bytes{c.ann("float")}){c.ret("str")}:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(num_bytes) < 1024.0:
            return f"{{num_bytes:.1f}}{{unit}}"
        num_bytes /= 1024.0
    return f"{{num_bytes:.1f}}PB"


def human_time{n}(seconds{c.ann("float")}){c.ret("str")}:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{{hours}}h{{minutes:02d}}m{{sec:02d}}s"
    if minutes:
        return f"{{minutes}}m{{sec:02d}}s"
    return f"{{seconds:.{r.choice([1, 2])}f}}s"
'''
    if kind == 5:
        return f'''
def strip_prefix{n}(text{c.ann("str")}, prefix{c.ann("str")}){c.ret("str")}:
    return text[len(prefix):] if text.startswith(prefix) else text


def strip_suffix{n}(text{c.ann("str")}, suffix{c.ann("str")}){c.ret("str")}:
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text
'''
    if kind == 6:
        return f'''
def format_table{n}(rows, headers=None, pad={r.choice([1, 2])}):
    rows = [list(map(str, row)) for row in rows]
    if headers:
        rows.insert(0, list(map(str, headers)))
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        lines.append((" " * pad).join(cell.ljust(w) for cell, w in zip(row, widths)))
        if headers and j == 0:
            lines.append((" " * pad).join("-" * w for w in widths))
    return "\\n".join(lines)
'''
    return f'''
def count_tokens{n}(text{c.ann("str")}, lower{c.ann("bool")} = True){c.ret("dict")}:
    counts = {{}}
    for tok in text.split():
        tok = tok.strip(".,;:!?()[]{{}}\\"'")
        if lower:
            tok = tok.lower()
        if tok:
            counts[tok] = counts.get(tok, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
'''


def h_fileio(c: Ctx) -> str:
    r = c.rng
    kind = r.randrange(7)
    n = r.choice(["", "_file", "_path"])
    if kind == 0:
        return f'''
def read_jsonl{n}(path{c.ann("str")}){c.ret("list")}:
    records = []
    with open(path, "r", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{{path}}:{{line_no}}: {{exc}}") from exc
    return records


def write_jsonl{n}(path{c.ann("str")}, records{c.ann("list")}){c.ret("None")}:
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys={r.choice([True, False])}) + "\\n")
'''
    if kind == 1:
        return f'''
def atomic_write{n}(path{c.ann("str")}, data{c.ann("str")}){c.ret("None")}:
{c.docstring("Write ``data`` to ``path`` through a temporary file in the same folder.")}    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{{os.path.basename(path)}}.tmp{{os.getpid()}}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
'''
    if kind == 2:
        exts = r.choice(['(".jpg", ".jpeg", ".png")', '(".wav", ".flac")', '(".txt",)', '(".npy", ".npz")'])
        return f'''
def list_files{n}(root{c.ann("str")}, exts={exts}, recursive{c.ann("bool")} = True){c.ret("list")}:
    found = []
    if recursive:
        for dirpath, _dirnames, filenames in os.walk(root):
            for fname in filenames:
                if fname.lower().endswith(exts):
                    found.append(os.path.join(dirpath, fname))
    else:
        for fname in os.listdir(root):
            if fname.lower().endswith(exts):
                found.append(os.path.join(root, fname))
    return sorted(found)
'''
    if kind == 3:
        delim = r.choice([",", ";", "\\t"])
        return f'''
def read_csv_rows{n}(path{c.ann("str")}, delimiter{c.ann("str")} = "{delim}"){c.ret("list")}:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        return [dict(row) for row in reader]


def write_csv_rows{n}(path{c.ann("str")}, rows{c.ann("list")}, fieldnames=None){c.ret("None")}:
    import csv

    if not rows:
        return
    fieldnames = fieldnames or list(rows[0].keys())
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
'''
    if kind == 4:
        return f'''
def ensure_dir{n}(path{c.ann("str")}){c.ret("str")}:
    if path and not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
    return path


def latest_file{n}(folder{c.ann("str")}, pattern{c.ann("str")} = "{r.choice(["*.pth", "*.pt", "checkpoint_*.tar", "*.ckpt"])}"):
    import glob

    candidates = glob.glob(os.path.join(folder, pattern))
    if not candidates:
        return None
    return max(candidates, key=os.path.getmtime)
'''
    if kind == 5:
        return f'''
def file_md5{n}(path{c.ann("str")}, chunk_size{c.ann("int")} = {r.choice([1 << 16, 1 << 20, 8192])}){c.ret("str")}:
    import hashlib

    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_integrity{n}(path{c.ann("str")}, md5=None){c.ret("bool")}:
    if not os.path.isfile(path):
        return False
    if md5 is None:
        return True
    return file_md5{n}(path) == md5
'''
    return f'''
def read_lines{n}(path{c.ann("str")}, skip_comments{c.ann("bool")} = True){c.ret("list")}:
    lines = []
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.rstrip("\\n")
            if skip_comments and line.lstrip().startswith("#"):
                continue
            if line.strip():
                lines.append(line)
    return lines
'''


def h_torch(c: Ctx) -> str:
    r = c.rng
    kind = r.randrange(9)
    if kind == 0:
        return f'''
def set_seed(seed{c.ann("int")} = {r.choice([0, 1, 42, 1234, 2021])}, deterministic{c.ann("bool")} = {r.choice([True, False])}){c.ret("None")}:
{c.docstring("Seed python, numpy and torch (all devices).")}    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
'''
    if kind == 1:
        return f'''
def count_parameters(model{c.ann("nn.Module")}, trainable_only{c.ann("bool")} = True){c.ret("int")}:
    params = model.parameters()
    if trainable_only:
        params = (p for p in params if p.requires_grad)
    return sum(p.numel() for p in params)
'''
    if kind == 2:
        return f'''
def save_checkpoint(state{c.ann("dict")}, is_best{c.ann("bool")}, folder{c.ann("str")} = "{r.choice(["checkpoints", "runs", "output", "ckpt"])}", filename{c.ann("str")} = "checkpoint.pth"){c.ret("None")}:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, filename)
    torch.save(state, path)
    if is_best:
        shutil.copyfile(path, os.path.join(folder, "model_best.pth"))


def load_checkpoint(path{c.ann("str")}, model{c.ann("nn.Module")}, optimizer=None, map_location="cpu"){c.ret("int")}:
    ckpt = torch.load(path, map_location=map_location)
    state = ckpt.get("state_dict", ckpt)
    state = {{k[7:] if k.startswith("module.") else k: v for k, v in state.items()}}
    model.load_state_dict(state)
    if optimizer is not None and "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt.get("epoch", 0)
'''
    if kind == 3:
        return f'''
def to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking={r.choice([True, False])})
    if isinstance(batch, dict):
        return {{k: to_device(v, device) for k, v in batch.items()}}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
'''
    if kind == 4:
        return f'''
def accuracy(output{c.ann("torch.Tensor")}, target{c.ann("torch.Tensor")}, topk=(1,{r.choice([" 5", ""])})){c.ret("list")}:
{c.docstring("Computes the precision@k for the specified values of k.")}    with torch.no_grad():
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
'''
    if kind == 5:
        warm = r.choice([0, 5, 10])
        return f'''
def cosine_lr(step{c.ann("int")}, total_steps{c.ann("int")}, base_lr{c.ann("float")}, warmup_steps{c.ann("int")} = {warm * 100}, min_lr{c.ann("float")} = {r.choice(["0.0", "1e-6", "1e-5"])}){c.ret("float")}:
    if step < warmup_steps:
        return base_lr * (step + 1) / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def adjust_learning_rate(optimizer, lr{c.ann("float")}){c.ret("None")}:
    for group in optimizer.param_groups:
        group["lr"] = lr
'''
    if kind == 6:
        return f'''
def confusion_matrix(preds{c.ann("torch.Tensor")}, targets{c.ann("torch.Tensor")}, num_classes{c.ann("int")}){c.ret("torch.Tensor")}:
    idx = targets.long() * num_classes + preds.long()
    cm = torch.bincount(idx, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes)


def mean_iou(cm{c.ann("torch.Tensor")}){c.ret("float")}:
    inter = cm.diag().float()
    union = cm.sum(0).float() + cm.sum(1).float() - inter
    iou = inter / union.clamp(min=1)
    return iou.mean().item()
'''
    if kind == 7:
        return f'''
def get_grad_norm(parameters, norm_type{c.ann("float")} = 2.0){c.ret("float")}:
    parameters = [p for p in parameters if p.grad is not None]
    if not parameters:
        return 0.0
    norms = torch.stack([p.grad.detach().norm(norm_type) for p in parameters])
    return norms.norm(norm_type).item()
'''
    return f'''
def build_param_groups(model{c.ann("nn.Module")}, weight_decay{c.ann("float")} = {r.choice(["5e-4", "1e-4", "0.05", "0.01"])}){c.ret("list")}:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(".bias"){r.choice([' or "bn" in name', ' or "norm" in name', ""])}:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {{"params": decay, "weight_decay": weight_decay}},
        {{"params": no_decay, "weight_decay": 0.0}},
    ]
'''


def h_meter(c: Ctx, kind: Optional[int] = None) -> str:
    r = c.rng
    kind = r.randrange(4) if kind is None else kind
    base = r.choice(["(object)", "", "()"])
    if kind == 0:
        return f'''
class AverageMeter{base}:
{c.docstring("Computes and stores the average and current value.")}
    def __init__(self, name{c.ann("str")} = "", fmt{c.ann("str")} = ":{r.choice(["f", ".3f", ".4f"])}"){c.ret("None")}:
        self.name = name
        self.fmt = fmt
        self.reset()

    def reset(self){c.ret("None")}:
        self.val = 0.0
        self.avg = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, val, n{c.ann("int")} = 1){c.ret("None")}:
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / max(1, self.count)

    def __str__(self){c.ret("str")}:
        fmtstr = "{{name}} {{val" + self.fmt + "}} ({{avg" + self.fmt + "}})"
        return fmtstr.format(**self.__dict__)
'''
    if kind == 1:
        return f'''
class ProgressMeter{base}:
    def __init__(self, num_batches{c.ann("int")}, meters, prefix{c.ann("str")} = ""):
        self.batch_fmtstr = self._get_batch_fmtstr(num_batches)
        self.meters = meters
        self.prefix = prefix

    def display(self, batch{c.ann("int")}){c.ret("None")}:
        entries = [self.prefix + self.batch_fmtstr.format(batch)]
        entries += [str(meter) for meter in self.meters]
        print("\\t".join(entries))

    def _get_batch_fmtstr(self, num_batches{c.ann("int")}){c.ret("str")}:
        num_digits = len(str(num_batches // 1))
        fmt = "{{:" + str(num_digits) + "d}}"
        return "[" + fmt + "/" + fmt.format(num_batches) + "]"
'''
    if kind == 2:
        w = r.choice([10, 20, 50, 100])
        return f'''
class SmoothedValue{base}:
{c.docstring("Track a series of values and provide access to smoothed values over a window.")}
    def __init__(self, window_size{c.ann("int")} = {w}){c.ret("None")}:
        self.deque = collections.deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0

    def update(self, value{c.ann("float")}, n{c.ann("int")} = 1){c.ret("None")}:
        self.deque.append(value)
        self.count += n
        self.total += value * n

    @property
    def median(self){c.ret("float")}:
        values = sorted(self.deque)
        if not values:
            return 0.0
        return values[len(values) // 2]

    @property
    def avg(self){c.ret("float")}:
        return sum(self.deque) / max(1, len(self.deque))

    @property
    def global_avg(self){c.ret("float")}:
        return self.total / max(1, self.count)
'''
    return f'''
class Timer{base}:
    def __init__(self){c.ret("None")}:
        self.start = time.time()
        self.laps = []

    def lap(self){c.ret("float")}:
        now = time.time()
        self.laps.append(now - self.start)
        self.start = now
        return self.laps[-1]

    def __enter__(self):
        self.start = time.time()
        return self

    def __exit__(self, *exc){c.ret("None")}:
        self.lap()
'''


def h_config(c: Ctx) -> str:
    r = c.rng
    kind = r.randrange(5)
    if kind == 0:
        return f'''
def merge_dicts(base{c.ann("dict")}, override{c.ann("dict")}){c.ret("dict")}:
{c.docstring("Recursively merge ``override`` into a copy of ``base``.")}    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out
'''
    if kind == 1:
        return f'''
def load_config(path{c.ann("str")}){c.ret("dict")}:
    with open(path, encoding="utf-8") as fh:
        if path.endswith((".yaml", ".yml")):
            import yaml

            cfg = yaml.safe_load(fh) or {{}}
        else:
            cfg = json.load(fh)
    base = cfg.pop("{r.choice(["_base_", "base", "inherit", "defaults"])}", None)
    if base:
        base_path = os.path.join(os.path.dirname(path), base)
        cfg = merge_dicts(load_config(base_path), cfg)
    return cfg


def merge_dicts(base{c.ann("dict")}, override{c.ann("dict")}){c.ret("dict")}:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out
'''
    if kind == 2:
        return f'''
def apply_overrides(cfg{c.ann("dict")}, overrides{c.ann("list")}){c.ret("dict")}:
    for item in overrides:
        key, _, value = item.partition("=")
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {{}})
        try:
            node[parts[-1]] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            node[parts[-1]] = value
    return cfg
'''
    if kind == 3:
        return f'''
class AttrDict(dict):
    def __getattr__(self, name):
        try:
            value = self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc
        if isinstance(value, dict) and not isinstance(value, AttrDict):
            value = AttrDict(value)
            self[name] = value
        return value

    def __setattr__(self, name, value):
        self[name] = value
'''
    return f'''
def flatten_config(cfg{c.ann("dict")}, prefix{c.ann("str")} = "", sep{c.ann("str")} = "{r.choice([".", "/"])}"){c.ret("dict")}:
    flat = {{}}
    for key, value in cfg.items():
        name = f"{{prefix}}{{sep}}{{key}}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten_config(value, name, sep))
        else:
            flat[name] = value
    return flat
'''


def h_logging(c: Ctx) -> str:
    r = c.rng
    kind = r.randrange(4)
    if kind == 0:
        return f'''
def setup_logger(name{c.ann("str")} = "{r.choice(["train", "main", "exp", "root"])}", log_dir=None, level=logging.{r.choice(["INFO", "DEBUG"])}):
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    fmt = logging.Formatter("[%(asctime)s %(name)s] %(levelname)s: %(message)s", datefmt="%m/%d %H:%M:%S")
    if not logger.handlers:
        handler = logging.StreamHandler(stream=sys.stdout)
        handler.setFormatter(fmt)
        logger.addHandler(handler)
        if log_dir is not None:
            os.makedirs(log_dir, exist_ok=True)
            fh = logging.FileHandler(os.path.join(log_dir, "log.txt"))
            fh.setFormatter(fmt)
            logger.addHandler(fh)
    return logger
'''
    if kind == 1:
        return f'''
class CSVLogger{r.choice(["(object)", ""])}:
    def __init__(self, path{c.ann("str")}, fieldnames{c.ann("list")}):
        self.path = path
        self.fieldnames = fieldnames
        self._fh = open(path, "w", newline="")
        self._fh.write(",".join(fieldnames) + "\\n")

    def log(self, row{c.ann("dict")}){c.ret("None")}:
        values = [str(row.get(k, "")) for k in self.fieldnames]
        self._fh.write(",".join(values) + "\\n")
        self._fh.flush()

    def close(self){c.ret("None")}:
        self._fh.close()
'''
    if kind == 2:
        return f'''
def log_metrics(writer, metrics{c.ann("dict")}, step{c.ann("int")}, prefix{c.ann("str")} = "{r.choice(["train", "val", ""])}"){c.ret("None")}:
    for key, value in metrics.items():
        tag = f"{{prefix}}/{{key}}" if prefix else key
        if hasattr(value, "item"):
            value = value.item()
        if writer is not None:
            writer.add_scalar(tag, value, step)
    line = " ".join(f"{{k}}={{v:.4f}}" for k, v in metrics.items() if isinstance(v, float))
    logging.getLogger(__name__).info("step %d %s", step, line)
'''
    return f'''
def dump_json(obj, path{c.ann("str")}, indent{c.ann("int")} = {r.choice([2, 4])}){c.ret("None")}:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=indent, sort_keys=True, default=str)


def timestamp(fmt{c.ann("str")} = "{r.choice(["%Y%m%d-%H%M%S", "%Y-%m-%d_%H-%M", "%m%d_%H%M"])}"){c.ret("str")}:
    return datetime.datetime.now().strftime(fmt)
'''


def h_data(c: Ctx) -> str:
    r = c.rng
    kind = r.randrange(5)
    if kind == 0:
        return f'''
def default_collate_fn(batch):
    images, labels = zip(*batch)
    images = torch.stack(images, 0)
    labels = torch.as_tensor(labels, dtype=torch.long)
    return images, labels
'''
    if kind == 1:
        return f'''
def compute_mean_std(dataset, max_samples{c.ann("int")} = {r.choice([1000, 5000, 10000])}):
    n = min(len(dataset), max_samples)
    total = torch.zeros(3)
    total_sq = torch.zeros(3)
    pixels = 0
    for i in range(n):
        img = dataset[i][0]
        total += img.sum(dim=(1, 2))
        total_sq += (img ** 2).sum(dim=(1, 2))
        pixels += img.shape[1] * img.shape[2]
    mean = total / pixels
    std = (total_sq / pixels - mean ** 2).sqrt()
    return mean, std
'''
    if kind == 2:
        return f'''
def split_indices(n{c.ann("int")}, val_fraction{c.ann("float")} = {r.choice(["0.1", "0.2", "0.05"])}, seed{c.ann("int")} = {r.choice([0, 42, 1])}):
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g).tolist()
    n_val = int(round(n * val_fraction))
    return order[n_val:], order[:n_val]
'''
    if kind == 3:
        return f'''
def mixup_batch(x, y, alpha{c.ann("float")} = {r.choice(["0.2", "0.4", "1.0"])}):
    lam = np.random.beta(alpha, alpha) if alpha > 0 else 1.0
    index = torch.randperm(x.size(0), device=x.device)
    mixed = lam * x + (1 - lam) * x[index]
    return mixed, y, y[index], lam


def mixup_criterion(criterion, pred, y_a, y_b, lam{c.ann("float")}):
    return lam * criterion(pred, y_a) + (1 - lam) * criterion(pred, y_b)
'''
    return f'''
def class_weights(labels, num_classes{c.ann("int")}, smoothing{c.ann("float")} = {r.choice(["0.0", "1.0"])}):
    counts = torch.bincount(torch.as_tensor(labels), minlength=num_classes).float() + smoothing
    weights = counts.sum() / (num_classes * counts.clamp(min=1))
    return weights
'''


HELPERS = {
    "string": h_string, "fileio": h_fileio, "torch": h_torch, "meter": h_meter,
    "config": h_config, "logging": h_logging, "data": h_data,
}


def std_imports(c: Ctx, torch_: bool, extra: Sequence[str] = ()) -> str:
    """A realistic import block (always imports what the helpers may use)."""
    mods = ["os", "sys", "json", "math", "time", "random", "shutil", "logging", "copy",
            "collections", "datetime", "ast"] + list(extra)
    c.rng.shuffle(mods)
    lines = []
    if c.typed and c.rng.random() < 0.6:
        lines.append("from __future__ import annotations\n")
    lines += [f"import {m}" for m in sorted(set(mods))]
    if c.typed and c.rng.random() < 0.5:
        lines.append("from typing import Any, Dict, List, Optional, Tuple")
    if torch_:
        lines += ["", "import numpy as np", "import torch", "import torch.nn as nn",
                  "import torch.nn.functional as F"]
    return "\n".join(lines) + "\n"


def fill_helpers(c: Ctx, kinds: Sequence[str], target_lines: int, current: int) -> str:
    out = []
    guard = 0
    seen = set()
    while current < target_lines and guard < 60:
        guard += 1
        text = HELPERS[c.rng.choice(kinds)](c)
        first = text.strip().splitlines()[0]
        if first in seen:  # avoid redefining the very same name twice in one file
            continue
        seen.add(first)
        out.append(text)
        current += text.count("\n")
    return "\n".join(out)


def file_length(rng: random.Random, lo: int = 30, hi: int = 600, mode: int = 150) -> int:
    """Long-tailed length distribution: many 60-250 line files, some up to ~600."""
    v = int(rng.lognormvariate(5.0, 0.65))
    return max(lo, min(hi, v))


def header(c: Ctx, what: str) -> str:
    r = c.rng
    if r.random() < 0.5:
        return f'"""{what}"""\n'
    if r.random() < 0.3:
        return f"# {what}\n# Copyright (c) {r.choice(['2019', '2020', '2021', '2022', '2023'])} the authors.\n"
    return ""


# ---- model files ---------------------------------------------------------------------

BLOCKS_MODULE = '''"""Building blocks shared by the model definitions."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    """3x3 convolution with padding."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride,
                     padding=dilation, groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduction=4):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        s = self.pool(x)
        s = F.relu(self.fc1(s), inplace=True)
        s = torch.sigmoid(self.fc2(s))
        return x * s


class ConvBNAct(nn.Sequential):
    def __init__(self, in_ch, out_ch, kernel_size=3, stride=1, groups=1, act=True):
        padding = (kernel_size - 1) // 2
        layers = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if act:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)
'''


def model_resnet(c: Ctx, name: str, blocks_mod: str) -> str:
    r = c.rng
    layers = r.choice([[2, 2, 2, 2], [3, 4, 6, 3], [1, 1, 1, 1], [2, 3, 4, 2], [3, 4, 23, 3]])
    block = r.choice(["BasicBlock", "Bottleneck"])
    width = r.choice([16, 32, 64])
    drop_head = r.random() < 0.25  # dropout after global pooling: BNL102
    cifar = r.random() < 0.6
    stem = ("self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)\n"
            "        self.maxpool = nn.Identity()") if cifar else (
            "self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)\n"
            "        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)")
    drop_init = f"\n        self.dropout = nn.Dropout(p={r.choice(['0.2', '0.3', '0.5'])})" if drop_head else ""
    drop_fwd = "\n        x = self.dropout(x)" if drop_head else ""
    nc = r.choice([10, 100, 200, 1000])
    return f'''{header(c, f"{name}: ResNet variant.")}import torch
import torch.nn as nn

from {blocks_mod} import BasicBlock, Bottleneck, conv1x1


class {name}(nn.Module):
    def __init__(self, block={block}, layers={layers}, num_classes={nc}, zero_init_residual={r.choice([True, False])}):
        super().__init__()
        self.inplanes = {width}
        {stem}
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, {width}, layers[0])
        self.layer2 = self._make_layer(block, {width * 2}, layers[1], stride=2)
        self.layer3 = self._make_layer(block, {width * 4}, layers[2], stride=2)
        self.layer4 = self._make_layer(block, {width * 8}, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1)){drop_init}
        self.fc = nn.Linear({width * 8} * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1){drop_fwd}
        x = self.fc(x)
        return x


def {name.lower()}_small(**kwargs):
    return {name}(layers=[1, 1, 1, 1], **kwargs)
'''


def model_wrn(c: Ctx, name: str, blocks_mod: str) -> str:
    r = c.rng
    depth = r.choice([10, 16, 22, 28, 40])
    widen = r.choice([1, 2, 4, 8, 10])
    # The original WRN puts dropout between conv1 and bn2 (BNL101); many copies keep
    # dropout_rate=0.0 as the default, which is clean.
    rate = r.choice(["0.0", "0.0", "0.0", "0.3", "0.3"])
    functional = r.random() < 0.5
    if functional:
        drop_fwd = "        if self.droprate > 0:\n            out = F.dropout(out, p=self.droprate, training=self.training)\n"
        drop_init = "        self.droprate = dropout_rate\n"
    else:
        drop_fwd = "        out = self.dropout(out)\n"
        drop_init = "        self.dropout = nn.Dropout(p=dropout_rate)\n"
    return f'''{header(c, "Wide Residual Networks (Zagoruyko & Komodakis, 2016).")}import torch
import torch.nn as nn
import torch.nn.functional as F


class WideBasic(nn.Module):
    def __init__(self, in_planes, planes, dropout_rate, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=False)
{drop_init}        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False))

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
{drop_fwd}        out = self.conv2(F.relu(self.bn2(out)))
        out += self.shortcut(x)
        return out


class {name}(nn.Module):
    def __init__(self, depth={depth}, widen_factor={widen}, dropout_rate={rate}, num_classes={r.choice([10, 100])}):
        super().__init__()
        assert (depth - 4) % 6 == 0, "depth should be 6n+4"
        n = (depth - 4) // 6
        k = widen_factor
        stages = [16, 16 * k, 32 * k, 64 * k]
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, stages[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = self._wide_layer(WideBasic, stages[1], n, dropout_rate, stride=1)
        self.layer2 = self._wide_layer(WideBasic, stages[2], n, dropout_rate, stride=2)
        self.layer3 = self._wide_layer(WideBasic, stages[3], n, dropout_rate, stride=2)
        self.bn1 = nn.BatchNorm2d(stages[3], momentum={r.choice(["0.1", "0.9", "0.01"])})
        self.linear = nn.Linear(stages[3], num_classes)

    def _wide_layer(self, block, planes, num_blocks, dropout_rate, stride):
        strides = [stride] + [1] * (int(num_blocks) - 1)
        layers = []
        for s in strides:
            layers.append(block(self.in_planes, planes, dropout_rate, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(x)
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.relu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1)
        out = out.view(out.size(0), -1)
        return self.linear(out)
'''


def model_densenet(c: Ctx, name: str, blocks_mod: str) -> str:
    r = c.rng
    growth = r.choice([12, 24, 32])
    config = r.choice([(6, 12, 24, 16), (6, 12, 32, 32), (4, 4, 4, 4), (3, 6, 12, 8)])
    drop = r.choice(["0", "0", "0", "0.2"])
    return f'''{header(c, "DenseNet-BC.")}import torch
import torch.nn as nn
import torch.nn.functional as F


class _DenseLayer(nn.Module):
    def __init__(self, num_input_features, growth_rate, bn_size, drop_rate):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = float(drop_rate)

    def forward(self, x):
        new_features = self.conv1(self.relu1(self.norm1(x)))
        new_features = self.conv2(self.relu2(self.norm2(new_features)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return torch.cat([x, new_features], 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(num_input_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class {name}(nn.Module):
    def __init__(self, growth_rate={growth}, block_config={config}, num_init_features={2 * growth},
                 bn_size=4, drop_rate={drop}, num_classes={r.choice([10, 100, 1000])}):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, kernel_size=3, stride=1, padding=1, bias=False))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            for j in range(num_layers):
                layer = _DenseLayer(num_features + j * growth_rate, growth_rate, bn_size, drop_rate)
                self.features.add_module("denselayer%d_%d" % (i + 1, j + 1), layer)
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module("transition%d" % (i + 1), _Transition(num_features, num_features // 2))
                num_features = num_features // 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)

    def forward(self, x):
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        return self.classifier(out)
'''


def model_vgg(c: Ctx, name: str, blocks_mod: str) -> str:
    r = c.rng
    cfg = r.choice([
        [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        [32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M"],
    ])
    last = [v for v in cfg if v != "M"][-1]
    hidden = r.choice([512, 1024, 4096])
    return f'''{header(c, "VGG with batch norm for 32x32 inputs.")}import torch
import torch.nn as nn

CFG = {cfg}


def make_layers(cfg, batch_norm=True):
    layers = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class {name}(nn.Module):
    def __init__(self, num_classes={r.choice([10, 100])}, dropout={r.choice(["0.5", "0.3"])}):
        super().__init__()
        self.features = make_layers(CFG)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear({last}, {hidden}),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear({hidden}, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.classifier(x)
'''


def model_mlp(c: Ctx, name: str, blocks_mod: str) -> str:
    r = c.rng
    dims = r.choice([[784, 512, 256], [128, 256, 256, 128], [64, 128], [1024, 1024, 512, 256]])
    order = r.choice(["clean", "clean", "clean", "drop_bn", "drop_lin_bn"])
    if order == "clean":
        body = "nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True), nn.Dropout(dropout)"
    elif order == "drop_bn":
        body = "nn.Linear(d_in, d_out), nn.Dropout(dropout), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)"
    else:
        body = "nn.Dropout(dropout), nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)"
    return f'''{header(c, "MLP for tabular / flattened inputs.")}import torch
import torch.nn as nn


class {name}(nn.Module):
    def __init__(self, dims={dims}, num_classes={r.choice([2, 10, 5])}, dropout={r.choice(["0.1", "0.2", "0.5"])}):
        super().__init__()
        layers = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [{body}]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = x.flatten(1)
        return self.head(self.body(x))
'''


def model_effnet(c: Ctx, name: str, blocks_mod: str) -> str:
    r = c.rng
    settings = r.choice([
        [(1, 16, 1, 1), (6, 24, 2, 2), (6, 40, 2, 2), (6, 80, 3, 2), (6, 112, 3, 1), (6, 192, 4, 2), (6, 320, 1, 1)],
        [(1, 16, 1, 1), (4, 24, 2, 2), (4, 48, 2, 2), (4, 96, 2, 2)],
        [(1, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 128, 3, 2)],
    ])
    head_drop = r.random() < 0.7  # torchvision's design: BNL102
    cls = ("nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last, num_classes))" if head_drop
           else "nn.Linear(last, num_classes)")
    return f'''{header(c, "EfficientNet / MobileNetV2-style network with MBConv blocks.")}import torch
import torch.nn as nn

from {blocks_mod} import ConvBNAct, SqueezeExcite


class MBConv(nn.Module):
    def __init__(self, in_ch, out_ch, expand_ratio, stride, se=True):
        super().__init__()
        hidden = in_ch * expand_ratio
        self.use_res = stride == 1 and in_ch == out_ch
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_ch, hidden, kernel_size=1))
        layers.append(ConvBNAct(hidden, hidden, kernel_size=3, stride=stride, groups=hidden))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(ConvBNAct(hidden, out_ch, kernel_size=1, act=False))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        out = self.block(x)
        if self.use_res:
            out = out + x
        return out


class {name}(nn.Module):
    SETTINGS = {settings}

    def __init__(self, num_classes={r.choice([10, 100, 1000])}, width_mult={r.choice(["1.0", "0.5", "0.75"])}, dropout={r.choice(["0.2", "0.3"])}):
        super().__init__()
        ch = int(32 * width_mult)
        features = [ConvBNAct(3, ch, stride=2)]
        for t, c, n, s in self.SETTINGS:
            out_ch = int(c * width_mult)
            for i in range(n):
                features.append(MBConv(ch, out_ch, t, s if i == 0 else 1))
                ch = out_ch
        last = {r.choice([1280, 1024, 512])}
        features.append(ConvBNAct(ch, last, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = {cls}

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)
'''


MODEL_KINDS = {
    "resnet": model_resnet, "wrn": model_wrn, "densenet": model_densenet,
    "vgg": model_vgg, "mlp": model_mlp, "efficientnet": model_effnet,
}


# ---- scripts -------------------------------------------------------------------------

def train_script(c: Ctx, model_imports: List[Tuple[str, str]], data_mod: str, utils_mod: str, target: int) -> str:
    r = c.rng
    mod, cls = r.choice(model_imports)
    loader = r.choice(["train_loader", "trainloader", "train_dl", "loader"])
    epochs_var = r.choice(["args.epochs", "cfg.epochs", "num_epochs"])
    ep = r.choice(["epoch", "ep", "e"])
    bug = r.choices(["none", "perm", "dist", "cycle", "reseed", "cache", "noshuffle"],
                    weights=[70, 8, 7, 3, 3, 3, 6])[0]
    distributed = bug == "dist" or r.random() < 0.15
    shuffle = "False" if bug == "noshuffle" else "True"
    amp = r.random() < 0.4
    lines = [header(c, "Train a classifier."), std_imports(c, True, ["argparse"]),
             f"from torch.utils.data import DataLoader, TensorDataset{', DistributedSampler' if distributed else ''}",
             f"from {mod} import {cls}"]
    if r.random() < 0.7:
        lines.append(f"from {utils_mod} import AverageMeter, accuracy")
    else:
        lines.append(h_meter(c, kind=0))
        lines.append(h_torch_accuracy(c))
    lines.append("")
    # argparse
    arg_block = ["", "def parse_args():",
                 f'    parser = argparse.ArgumentParser(description="{r.choice(WORDS)} training")']
    opts = [("--lr", "float", r.choice(["0.1", "0.05", "1e-3", "3e-4"])),
            ("--epochs", "int", str(r.choice([90, 100, 200, 300]))),
            ("--batch-size", "int", str(r.choice([32, 64, 128, 256]))),
            ("--momentum", "float", "0.9"), ("--wd", "float", r.choice(["5e-4", "1e-4"])),
            ("--workers", "int", str(r.choice([2, 4, 8]))), ("--seed", "int", str(r.choice([0, 1, 42]))),
            ("--print-freq", "int", str(r.choice([10, 50, 100]))),
            ("--save-dir", "str", f'"{r.choice(["checkpoints", "runs/exp", "output"])}"')]
    extra_opts = r.randint(0, 25)
    for i in range(extra_opts):
        opts.append((f"--{r.choice(WORDS)}-{r.choice(NOUNS)}-{i}", r.choice(["int", "float"]), str(r.randint(0, 9))))
    for flag, typ, default in opts:
        arg_block.append(f'    parser.add_argument("{flag}", type={typ}, default={default})')
    arg_block += ['    parser.add_argument("--resume", default="", type=str)',
                  '    parser.add_argument("--evaluate", action="store_true")',
                  "    return parser.parse_args()", ""]
    lines += arg_block
    # data
    n = r.choice([50000, 10000, 60000, 1281167 // 100])
    lines += ["", f"def build_data(args){c.ret('tuple')}:",
              f"    x = torch.randn({n // 100}, 3, 32, 32)",
              f"    y = torch.randint(0, 10, ({n // 100},))",
              "    dataset = TensorDataset(x, y)"]
    if distributed:
        lines += ["    sampler = DistributedSampler(dataset)",
                  f"    {loader} = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers)",
                  f"    return {loader}, sampler, dataset"]
    else:
        lines += [f"    {loader} = DataLoader(dataset, batch_size=args.batch_size, shuffle={shuffle}, num_workers=args.workers, pin_memory=True)",
                  f"    return {loader}, None, dataset"]
    # train one epoch
    lines += ["", "", f"def train_one_epoch(model, {loader}, criterion, optimizer, {ep}, args{', scaler=None' if amp else ''}):",
              "    losses = AverageMeter(\"Loss\", \":.4e\")", "    top1 = AverageMeter(\"Acc@1\", \":6.2f\")",
              "    model.train()", f"    for i, (images, target) in enumerate({loader}):"]
    if amp:
        lines += ["        with torch.autocast(device_type=\"cuda\", enabled=scaler is not None):",
                  "            output = model(images)", "            loss = criterion(output, target)",
                  "        optimizer.zero_grad(set_to_none=True)",
                  "        if scaler is not None:",
                  "            scaler.scale(loss).backward()", "            scaler.step(optimizer)", "            scaler.update()",
                  "        else:", "            loss.backward()", "            optimizer.step()"]
    else:
        lines += ["        output = model(images)", "        loss = criterion(output, target)",
                  "        optimizer.zero_grad()", "        loss.backward()", "        optimizer.step()"]
    lines += ["        acc1 = accuracy(output, target, topk=(1,))[0]",
              "        losses.update(loss.item(), images.size(0))", "        top1.update(acc1.item(), images.size(0))",
              "        if i % args.print_freq == 0:",
              f"            print(f\"Epoch [{{{ep}}}][{{i}}/{{len({loader})}}] {{losses}} {{top1}}\")",
              "    return losses.avg, top1.avg", ""]
    # validate
    lines += ["", "def validate(model, loader, criterion):", "    model.eval()", "    correct = total = 0",
              "    loss_sum = 0.0", "    with torch.no_grad():", "        for images, target in loader:",
              "            output = model(images)", "            loss_sum += criterion(output, target).item() * images.size(0)",
              "            correct += (output.argmax(1) == target).sum().item()", "            total += images.size(0)",
              "    return loss_sum / max(1, total), 100.0 * correct / max(1, total)", ""]
    # main
    lines += ["", f"def main(){c.ret('None')}:", "    args = parse_args()", "    torch.manual_seed(args.seed)",
              f"    {loader}, sampler, dataset = build_data(args)",
              f"    model = {cls}()", "    criterion = nn.CrossEntropyLoss()",
              f"    optimizer = torch.optim.{r.choice(['SGD', 'SGD', 'AdamW', 'Adam'])}(model.parameters(), lr=args.lr)",
              f"    scheduler = torch.optim.lr_scheduler.{r.choice(['CosineAnnealingLR(optimizer, T_max=args.epochs)', 'MultiStepLR(optimizer, milestones=[60, 120, 160], gamma=0.2)', 'StepLR(optimizer, step_size=30, gamma=0.1)'])}"]
    if epochs_var == "num_epochs":
        lines.append("    num_epochs = args.epochs")
    elif epochs_var == "cfg.epochs":
        lines.append("    cfg = args")
    if amp:
        lines.append("    scaler = torch.cuda.amp.GradScaler() if torch.cuda.is_available() else None")
    lines.append("    best_acc = 0.0")
    if bug == "perm":
        lines += ["    n = len(dataset)", "    perm = torch.randperm(n)",
                  "    batches = [perm[i:i + args.batch_size] for i in range(0, n, args.batch_size)]",
                  f"    for {ep} in range({epochs_var}):", "        model.train()",
                  "        for idx in batches:", "            images, target = dataset.tensors[0][idx], dataset.tensors[1][idx]",
                  "            loss = criterion(model(images), target)", "            optimizer.zero_grad()",
                  "            loss.backward()", "            optimizer.step()", "        scheduler.step()"]
    elif bug == "cycle":
        lines += ["    import itertools", "", f"    batches = itertools.cycle({loader})",
                  f"    steps_per_epoch = len({loader})",
                  f"    for {ep} in range({epochs_var}):", "        model.train()",
                  "        for _ in range(steps_per_epoch):", "            images, target = next(batches)",
                  "            loss = criterion(model(images), target)", "            optimizer.zero_grad()",
                  "            loss.backward()", "            optimizer.step()", "        scheduler.step()"]
    elif bug == "cache":
        lines += [f"    cached = [(x, y) for x, y in {loader}]",
                  f"    for {ep} in range({epochs_var}):", "        model.train()",
                  "        for images, target in cached:", "            loss = criterion(model(images), target)",
                  "            optimizer.zero_grad()", "            loss.backward()", "            optimizer.step()",
                  "        scheduler.step()"]
    else:
        lines.append(f"    for {ep} in range({epochs_var}):")
        if bug == "reseed":
            lines.append("        torch.manual_seed(0)")
        if distributed and bug != "dist":
            lines.append(f"        sampler.set_epoch({ep})" if sampler_ok(r) else f"        if sampler is not None:\n            sampler.set_epoch({ep})")
        call = f"train_one_epoch(model, {loader}, criterion, optimizer, {ep}, args{', scaler' if amp else ''})"
        lines += [f"        train_loss, train_acc = {call}", "        scheduler.step()",
                  f"        val_loss, val_acc = validate(model, {loader}, criterion)",
                  "        is_best = val_acc > best_acc", "        best_acc = max(best_acc, val_acc)",
                  f"        print(f\"epoch {{{ep}}}: train {{train_loss:.3f}}/{{train_acc:.2f}} val {{val_loss:.3f}}/{{val_acc:.2f}}\")",
                  "        if is_best:", "            os.makedirs(args.save_dir, exist_ok=True)",
                  f"            torch.save({{\"epoch\": {ep}, \"state_dict\": model.state_dict(), \"best_acc\": best_acc}}, os.path.join(args.save_dir, \"best.pth\"))"]
    lines += ["", ""]
    text = "\n".join(lines)
    cur = text.count("\n")
    text += fill_helpers(c, ["torch", "logging", "config", "fileio"], target - 6, cur)
    text += '\n\nif __name__ == "__main__":\n    main()\n'
    return text


def sampler_ok(r: random.Random) -> bool:
    return r.random() < 0.5


def h_torch_accuracy(c: Ctx) -> str:
    return f'''
def accuracy(output, target, topk=(1,)):
    with torch.no_grad():
        maxk = max(topk)
        batch_size = target.size(0)
        _, pred = output.topk(maxk, 1, True, True)
        pred = pred.t()
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return [correct[:k].reshape(-1).float().sum(0) * (100.0 / batch_size) for k in topk]
'''


def dataset_module(c: Ctx, target: int) -> str:
    r = c.rng
    names = set()
    parts = [header(c, "Datasets and loaders."), std_imports(c, True),
             "from torch.utils.data import DataLoader, Dataset", ""]
    for _ in range(r.randint(1, 3)):
        base = camel(r.choice(WORDS)) + r.choice(["Dataset", "Folder", "Data", "Set"])
        if base in names:
            continue
        names.add(base)
        split_list = r.choice(['"train", "val", "test"', '"train", "test"'])
        parts.append(f'''
class {base}(Dataset):
{c.docstring(f"{base}: samples listed in an index file, one ``path label`` per line.")}
    SPLITS = ({split_list})

    def __init__(self, root{c.ann("str")}, split{c.ann("str")} = "train", transform=None, target_transform=None){c.ret("None")}:
        if split not in self.SPLITS:
            raise ValueError(f"unknown split {{split!r}}")
        self.root = root
        self.split = split
        self.transform = transform
        self.target_transform = target_transform
        self.samples = self._load_index(os.path.join(root, f"{{split}}.txt"))

    def _load_index(self, path{c.ann("str")}){c.ret("list")}:
        samples = []
        if not os.path.exists(path):
            return samples
        with open(path) as fh:
            for line in fh:
                rel, label = line.rsplit(" ", 1)
                samples.append((os.path.join(self.root, rel), int(label)))
        return samples

    def __len__(self){c.ret("int")}:
        return len(self.samples)

    def __getitem__(self, index{c.ann("int")}):
        path, label = self.samples[index]
        img = np.load(path) if path.endswith(".npy") else np.zeros(({r.choice([32, 64, 224])}, {r.choice([32, 64, 224])}, 3), dtype=np.uint8)
        img = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return img, label
''')
        shuffle_val = r.choice(["True", "True", "True", "is_train"])
        parts.append(f'''
def build_{base.lower()}_loader(root{c.ann("str")}, split{c.ann("str")}, batch_size{c.ann("int")} = {r.choice([64, 128, 256])}, workers{c.ann("int")} = {r.choice([2, 4, 8])}):
    is_train = split == "train"
    dataset = {base}(root, split)
    return DataLoader(dataset, batch_size=batch_size, shuffle={shuffle_val} if is_train else False,
                      num_workers=workers, pin_memory=True, drop_last=is_train)
''')
    text = "\n".join(parts)
    return text + fill_helpers(c, ["data", "fileio", "torch"], target, text.count("\n"))


def transforms_module(c: Ctx, target: int) -> str:
    r = c.rng
    text = header(c, "Tensor transforms.") + std_imports(c, True) + f'''

class Compose{r.choice(["(object)", ""])}:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class RandomCrop{r.choice(["(object)", ""])}:
    def __init__(self, size{c.ann("int")} = {r.choice([32, 64, 224])}, padding{c.ann("int")} = {r.choice([0, 4])}):
        self.size = size
        self.padding = padding

    def __call__(self, img):
        if self.padding:
            img = F.pad(img, [self.padding] * 4)
        _, h, w = img.shape
        top = random.randint(0, h - self.size)
        left = random.randint(0, w - self.size)
        return img[:, top:top + self.size, left:left + self.size]


class Normalize{r.choice(["(object)", ""])}:
    def __init__(self, mean=({r.choice(["0.4914, 0.4822, 0.4465", "0.485, 0.456, 0.406"])}), std=({r.choice(["0.2470, 0.2435, 0.2616", "0.229, 0.224, 0.225"])})):
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, img):
        return (img - self.mean) / self.std


class RandomHorizontalFlip{r.choice(["(object)", ""])}:
    def __init__(self, p{c.ann("float")} = 0.5):
        self.p = p

    def __call__(self, img):
        if random.random() < self.p:
            return img.flip(-1)
        return img
'''
    return text + fill_helpers(c, ["data", "torch"], target, text.count("\n"))


def plain_module(c: Ctx, kinds: Sequence[str], what: str, target: int) -> str:
    text = header(c, what) + std_imports(c, False)
    return text + fill_helpers(c, kinds, target, text.count("\n"))


def torch_util_module(c: Ctx, kinds: Sequence[str], what: str, target: int) -> str:
    text = header(c, what) + std_imports(c, True)
    return text + fill_helpers(c, kinds, target, text.count("\n"))


def config_module(c: Ctx, target: int) -> str:
    r = c.rng
    style = r.choice(["dict", "dataclass", "argparse"])
    text = header(c, "Experiment configuration.")
    if style == "dict":
        text += "\n".join(f"{k.upper()} = {v}" for k, v in [
            ("dataset", f'"{r.choice(WORDS)}"'), ("batch_size", r.choice([64, 128, 256])),
            ("lr", r.choice(["0.1", "0.05", "3e-4"])), ("epochs", r.choice([100, 200, 300])),
            ("weight_decay", r.choice(["5e-4", "1e-4"])), ("arch", f'"{r.choice(["resnet18", "wrn28_10", "densenet121"])}"')])
        text += "\n\nCONFIG = dict(\n" + "".join(
            f"    {w}_{nn_}={r.randint(0, 999)},\n" for w, nn_ in
            {(r.choice(WORDS), r.choice(NOUNS)) for _ in range(r.randint(5, 40))}) + ")\n"
        text += std_imports(c, False)
    elif style == "dataclass":
        text += "import dataclasses\nfrom dataclasses import dataclass, field\n" + std_imports(c, False)
        text += "\n\n@dataclass\nclass TrainConfig:\n"
        fields = {f"{r.choice(WORDS)}_{r.choice(NOUNS)}" for _ in range(r.randint(6, 40))}
        for f_ in sorted(fields):
            text += f"    {f_}: {r.choice(['int', 'float'])} = {r.randint(0, 100)}\n"
        text += "    tags: list = field(default_factory=list)\n"
        text += '''
    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self):
        return dataclasses.asdict(self)
'''
    else:
        text += std_imports(c, False, ["argparse"])
        text += "\n\ndef get_parser():\n    parser = argparse.ArgumentParser()\n"
        for i in range(r.randint(8, 60)):
            text += f'    parser.add_argument("--{r.choice(WORDS)}-{r.choice(NOUNS)}-{i}", type={r.choice(["int", "float", "str"])}, default=None, help="{r.choice(WORDS)} {r.choice(NOUNS)}")\n'
        text += "    return parser\n"
    return text + fill_helpers(c, ["config", "string", "fileio"], target, text.count("\n"))


def test_module(c: Ctx, target: int, model_imports: List[Tuple[str, str]], util_imports: List[Tuple[str, str]]) -> str:
    r = c.rng
    text = header(c, "Tests.") + std_imports(c, True) + "\nimport pytest\n"
    if model_imports and r.random() < 0.5:
        mod, cls = r.choice(model_imports)
        text += f"\nfrom {mod} import {cls}\n"
        text += f'''

@pytest.mark.parametrize("batch", [1, 2, {r.choice([4, 8])}])
def test_{cls.lower()}_forward(batch){c.ret("None")}:
    model = {cls}().eval()
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
    assert out.shape[0] == batch
    assert torch.isfinite(out).all()


def test_{cls.lower()}_backward(){c.ret("None")}:
    model = {cls}()
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
'''
    if r.random() < 0.4:
        text += f'''

class Test{camel(r.choice(WORDS))}{r.choice(["Utils", "Helpers", "Metrics"])}(unittest.TestCase):
    def setUp(self){c.ret("None")}:
        torch.manual_seed({r.randint(0, 99)})

    def test_shapes(self){c.ret("None")}:
        x = torch.randn(4, {r.choice([3, 8, 16])})
        self.assertEqual(x.shape[0], 4)

    def test_values(self){c.ret("None")}:
        x = torch.arange(10.0)
        self.assertAlmostEqual(x.mean().item(), 4.5)
'''
        text = text.replace("import pytest\n", "import pytest\nimport unittest\n", 1)
    i = 0
    while text.count("\n") < target and i < 40:
        i += 1
        a, b = r.randint(1, 50), r.randint(1, 50)
        text += f'''

def test_{r.choice(WORDS)}_{r.choice(NOUNS)}_{i}(){c.ret("None")}:
    values = [random.random() for _ in range({a})]
    total = sum(values)
    assert total >= 0
    t = torch.tensor(values)
    assert t.numel() == {a}
    assert abs(t.sum().item() - total) < 1e-{r.choice([3, 4])}
    assert {a} + {b} == {a + b}
'''
    return text


def init_module(c: Ctx, pkg_mods: List[str], exported: List[Tuple[str, str]]) -> str:
    r = c.rng
    style = r.random()
    if style < 0.45 or not pkg_mods:
        return "" if r.random() < 0.7 else f'"""{r.choice(WORDS)} package."""\n'
    lines = []
    for mod, name in exported:
        lines.append(f"from .{mod} import {name}")
    for mod in pkg_mods:
        if r.random() < 0.3:
            lines.append(f"from . import {mod}")
    if exported and r.random() < 0.5:
        lines.append("\n__all__ = [" + ", ".join(f'"{n}"' for _, n in exported) + "]")
    return "\n".join(lines) + "\n"


# ---- the repository ------------------------------------------------------------------

@dataclass
class RepoStats:
    files: int = 0
    lines: int = 0
    model_files: int = 0
    by_kind: Dict[str, int] = field(default_factory=dict)


def generate_repo(dest: Path, n_files: int, seed: int, model_fraction: float) -> RepoStats:
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    stats = RepoStats()
    written: Dict[str, str] = {}
    kinds_of: Dict[str, str] = {}

    def put(rel: str, text: str, kind: str) -> None:
        try:
            ast.parse(text, filename=rel)
        except SyntaxError as exc:  # a generator bug: fail loudly
            raise RuntimeError(f"generator produced invalid Python in {rel}: {exc}") from exc
        if rel in written:
            return
        written[rel] = text
        kinds_of[rel] = kind
        stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1

    def ctx() -> Ctx:
        return Ctx(random.Random(rng.random()), rng.random() < 0.45)

    # pytest puts the folder of a root conftest.py on sys.path, so tests/ (no __init__.py)
    # can import models.*, data.*, projects.* as the scripts do
    put("conftest.py", '''import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
''', "test")
    n_models = max(2, int(round(n_files * model_fraction)))
    # model files: models/blocks.py + kinds spread over models/, models/backbones/,
    # projects/<p>/models/ and experiments/<e>/ (experiment-specific copies)
    put("models/blocks.py", BLOCKS_MODULE, "model")
    model_imports: List[Tuple[str, str]] = []
    model_pkgs: Dict[str, List[Tuple[str, str]]] = {}
    places = ["models", "models/backbones", "models/cifar"] + [
        f"projects/{w}/models" for w in rng.sample(WORDS, 3)]
    kinds = list(MODEL_KINDS)
    used_names = set()
    for i in range(n_models - 1):
        kind = kinds[i % len(kinds)] if i < len(kinds) else rng.choice(kinds)
        place = places[i % len(places)] if i < len(places) * 2 else rng.choice(places)
        base = {"resnet": "ResNet", "wrn": "WideResNet", "densenet": "DenseNet", "vgg": "VGG",
                "mlp": "MLP", "efficientnet": "EfficientNet"}[kind]
        suffix = "" if (base not in used_names) else camel(rng.choice(WORDS)) + str(rng.randint(2, 99))
        name = base + suffix
        used_names.add(name)
        modname = {"resnet": "resnet", "wrn": "wide_resnet", "densenet": "densenet", "vgg": "vgg",
                   "mlp": "mlp", "efficientnet": "efficientnet"}[kind] + (f"_{suffix.lower()}" if suffix else "")
        rel = f"{place}/{modname}.py"
        put(rel, MODEL_KINDS[kind](ctx(), name, "models.blocks"), "model")
        dotted = rel[:-3].replace("/", ".")
        model_imports.append((dotted, name))
        model_pkgs.setdefault(place, []).append((modname, name))

    remaining = n_files - len(written)
    # __init__.py files come later (one per package folder); reserve a share for them
    plan = [
        ("train", 0.16), ("dataset", 0.10), ("transforms", 0.04), ("torch_util", 0.12),
        ("plain", 0.18), ("config", 0.07), ("logging", 0.06), ("tools", 0.07), ("test", 0.12),
    ]
    total_w = sum(w for _, w in plan)
    n_inits_est = 60
    budget = remaining - n_inits_est
    counts = {k: int(budget * w / total_w) for k, w in plan}
    exps = [f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{i:02d}" for i in range(24)]
    data_mods: List[str] = []
    util_imports: List[Tuple[str, str]] = [("utils.meters", "AverageMeter")]
    mc = ctx()
    put("utils/meters.py", header(mc, "Meters.") + std_imports(mc, True) + h_meter(mc, kind=0)
        + h_meter(mc, kind=1) + h_torch_accuracy(mc), "logging")

    def uniq(folder: str, stem: str) -> str:
        rel = f"{folder}/{stem}.py"
        k = 2
        while rel in written:
            rel = f"{folder}/{stem}_{k}.py"
            k += 1
        return rel

    for kind, count in counts.items():
        for _ in range(count):
            c = ctx()
            target = file_length(c.rng)
            if kind == "train":
                folder = rng.choice(["scripts", "experiments/" + rng.choice(exps), "projects/" + rng.choice(WORDS)])
                stem = rng.choice(["train", "main", "train_" + rng.choice(WORDS), "finetune", "pretrain", "run"])
                text = train_script(c, model_imports, "data", "utils.meters", target)
            elif kind == "dataset":
                folder = rng.choice(["data", "data/datasets", "datasets"])
                stem = rng.choice(WORDS) + rng.choice(["", "_dataset", "_data"])
                text = dataset_module(c, target)
                data_mods.append(folder.replace("/", ".") + "." + stem)
            elif kind == "transforms":
                folder = rng.choice(["data", "data/transforms"])
                stem = rng.choice(["transforms", "augment", "augmentations", "aug_" + rng.choice(WORDS)])
                text = transforms_module(c, target)
            elif kind == "torch_util":
                folder = rng.choice(["utils", "engine", "utils/torch", "lib"])
                stem = rng.choice(["misc", "checkpoint", "optim", "lr_sched", "metrics", "dist", "train_utils", "helpers"])
                text = torch_util_module(c, ["torch", "meter", "logging", "data"], "Training utilities.", target)
            elif kind == "plain":
                folder = rng.choice(["utils", "utils/io", "common", "lib/text", "tools/lib"])
                stem = rng.choice(["strings", "text", "io", "files", "paths", "fmt", "misc", "timer", "registry"])
                text = plain_module(c, ["string", "fileio", "config"], "Small helpers.", target)
            elif kind == "config":
                folder = rng.choice(["configs", "config", "experiments/" + rng.choice(exps)])
                stem = rng.choice(["config", "defaults", "cfg_" + rng.choice(WORDS), "base"])
                text = config_module(c, target)
            elif kind == "logging":
                folder = rng.choice(["utils", "utils/logging", "engine"])
                stem = rng.choice(["logger", "logging_utils", "meters", "summary", "tb_writer"])
                text = torch_util_module(c, ["logging", "meter", "fileio"], "Logging and metrics.", target) if c.rng.random() < 0.6 \
                    else plain_module(c, ["logging", "meter", "string"], "Logging helpers.", target)
            elif kind == "tools":
                folder = rng.choice(["tools", "scripts"])
                stem = rng.choice(["convert", "export", "prepare", "make_splits", "summarize", "plot", "download"]) + "_" + rng.choice(WORDS)
                if c.rng.random() < 0.5:
                    text = plain_module(c, ["fileio", "string", "config"], "Command-line tool.", target)
                else:
                    text = torch_util_module(c, ["torch", "fileio", "data"], "Command-line tool.", target)
                text += '\n\nif __name__ == "__main__":\n    import argparse\n\n    p = argparse.ArgumentParser()\n    p.add_argument("paths", nargs="*")\n    print(p.parse_args())\n'
            else:  # test
                folder = rng.choice(["tests", "tests/unit", "tests/models"])
                stem = "test_" + rng.choice(WORDS + NOUNS)
                text = test_module(c, target, model_imports, util_imports)
            put(uniq(folder, stem), text, kind)

    # __init__.py in every package folder (tests/, scripts/ and tools/ stay plain folders
    # in some repos; here: tests/ and tools/ without __init__, scripts/ with one)
    folders = set()
    for rel in written:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folders.add("/".join(parts[:i]))
    for folder in sorted(folders):
        if folder.split("/")[0] in ("tests", "tools"):
            continue
        pkg_mods = sorted({Path(rel).stem for rel in written if str(Path(rel).parent) == folder and not rel.endswith("__init__.py")})
        put(f"{folder}/__init__.py", init_module(ctx(), pkg_mods, model_pkgs.get(folder, [])), "init")

    # top up with plain utilities (or trim) to hit exactly n_files
    while len(written) < n_files:
        c = ctx()
        put(uniq(rng.choice(["utils", "common", "lib/text"]), rng.choice(["misc", "helpers", "extra"])),
            plain_module(c, ["string", "fileio", "config"], "Helpers.", file_length(c.rng)), "plain")
    if len(written) > n_files:
        # never drop a model file (package __init__ files re-export them) or the conftest
        removable = [rel for rel in written if kinds_of[rel] not in ("model", "init") and rel != "conftest.py"]
        for rel in sorted(removable, key=lambda s: random.Random(seed + len(s)).random())[: len(written) - n_files]:
            del written[rel]
        # a package's __init__ imports its modules: list only the ones that are left
        for folder in sorted(folders):
            init = f"{folder}/__init__.py"
            if init in written:
                pkg_mods = sorted({Path(rel).stem for rel in written if str(Path(rel).parent) == folder and not rel.endswith("__init__.py")})
                written[init] = init_module(ctx(), pkg_mods, model_pkgs.get(folder, []))

    for rel, text in written.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        stats.files += 1
        stats.lines += text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        if kinds_of[rel] == "model":
            stats.model_files += 1
    (dest / "README.md").write_text("# generated research repository (bnlint benchmark)\n")
    (dest / "requirements.txt").write_text("torch\nnumpy\npyyaml\npytest\n")
    (dest / "pyproject.toml").write_text('[project]\nname = "research"\nversion = "0.0.1"\n\n'
                                         '[tool.pytest.ini_options]\ntestpaths = ["tests"]\npythonpath = ["."]\n')
    return stats


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------

def py_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("*.py") if ".bnlint_cache" not in p.parts)


def read_texts(files: Sequence[Path]) -> List[str]:
    return [p.read_text(encoding="utf-8") for p in files]


def time_inprocess(fn: Callable[[], None], repeats: int) -> List[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


class TreeMemory(threading.Thread):
    """Polls /proc every ``interval`` s: peak of summed VmRSS over a process tree, and
    peak single-process VmRSS."""

    def __init__(self, root_pid: int, interval: float = 0.02):
        super().__init__(daemon=True)
        self.root = root_pid
        self.interval = interval
        self.peak_total_kb = 0
        self.peak_single_kb = 0
        self.max_procs = 0
        self._halt = threading.Event()

    @staticmethod
    def _children(pid: int) -> List[int]:
        kids: List[int] = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{tid}/children") as fh:
                        kids += [int(x) for x in fh.read().split()]
                except OSError:
                    pass
        except OSError:
            pass
        return kids

    @staticmethod
    def _rss_kb(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def sample(self) -> None:
        seen, todo, total, single = set(), [self.root], 0, 0
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            rss = self._rss_kb(pid)
            total += rss
            single = max(single, rss)
            todo += self._children(pid)
        self.peak_total_kb = max(self.peak_total_kb, total)
        self.peak_single_kb = max(self.peak_single_kb, single)
        self.max_procs = max(self.max_procs, len(seen))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


@dataclass
class RunResult:
    seconds: float
    rc: int
    stdout: str
    stderr: str
    peak_total_mb: float = 0.0
    peak_single_mb: float = 0.0
    max_procs: int = 0


def run_cmd(cmd: Sequence[str], cwd: Optional[Path] = None, memory: bool = False,
            env: Optional[Dict[str, str]] = None) -> RunResult:
    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=out_f, stderr=err_f, env=env)
    mon = None
    if memory:
        mon = TreeMemory(proc.pid)
        mon.start()
    rc = proc.wait()
    dt = time.perf_counter() - t0
    if mon is not None:
        mon.stop()
    out_f.seek(0)
    err_f.seek(0)
    res = RunResult(dt, rc, out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace"))
    if mon is not None:
        res.peak_total_mb = mon.peak_total_kb / 1024
        res.peak_single_mb = mon.peak_single_kb / 1024
        res.max_procs = mon.max_procs
    return res


def ensure_torchfix(venv: Path) -> Tuple[Path, str]:
    exe = venv / "bin" / "torchfix"
    if not exe.exists():
        print(f"creating {venv} and installing torchfix ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"), "torchfix"], check=True)
    ver = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.strip()
    return exe, ver


def machine_info() -> Dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version
        torch_v = version("torch")
        libcst_v = version("libcst")
    except Exception:  # noqa: BLE001
        torch_v = libcst_v = "?"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "torch": torch_v, "libcst": libcst_v, "platform": platform.platform(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def bnlint_has_jobs() -> bool:
    out = subprocess.run([sys.executable, "-m", "bnlint", "check", "--help"], capture_output=True, text=True).stdout
    return "--jobs" in out


def importtime_total(cmd: Sequence[str]) -> Tuple[float, float]:
    """(sum of self import times in s, wall s) of ``python -X importtime ...``."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    total_us = 0
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            first = line.split(":", 1)[1].split("|")[0].strip()
            if first.isdigit():
                total_us += int(first)
    return total_us / 1e6, wall


def bnl001_lines(text: str) -> List[str]:
    return [ln for ln in text.splitlines() if " BNL001 " in ln]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--model-fraction", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="generate into this folder and leave it there")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--bench-venv", type=Path, default=Path("/tmp/bnlint-bench-venv"))
    ap.add_argument("--skip-torchfix", action="store_true")
    ap.add_argument("--torchfix-single", action="store_true", help="also time torchfix -j 1 (slow)")
    ap.add_argument("--skip-bnlint", action="store_true")
    ap.add_argument("--timeout", type=float, default=None, help="passed to bnlint check --timeout")
    args = ap.parse_args(argv)
    R = max(1, args.repeats)

    tmp = None
    if args.keep is not None:
        repo = args.keep.resolve()
        if repo.exists():
            shutil.rmtree(repo)
    else:
        tmp = tempfile.mkdtemp(prefix="bnlint-large-repo-")
        repo = Path(tmp) / "repo"
    t0 = time.perf_counter()
    stats = generate_repo(repo, args.files, args.seed, args.model_fraction)
    gen_s = time.perf_counter() - t0
    files = py_files(repo)
    texts = read_texts(files)
    info = machine_info()
    print(f"generated {stats.files} files, {stats.lines} lines in {gen_s:.1f}s at {repo}", file=sys.stderr)
    print(f"  by kind: {stats.by_kind}", file=sys.stderr)
    results: Dict[str, Dict] = {}

    def record(name: str, times: List[float], **extra) -> None:
        results[name] = {"median_s": statistics.median(times), "times_s": times, **extra}
        print(f"{name}: {statistics.median(times):.3f}s {extra if extra else ''}", file=sys.stderr)

    import libcst

    record("libcst.parse_module", time_inprocess(lambda: [libcst.parse_module(t) for t in texts], R))
    record("ast.parse", time_inprocess(lambda: [ast.parse(t) for t in texts], R))

    failures: List[str] = []
    if not args.skip_bnlint:
        bn = [sys.executable, "-m", "bnlint", "check"]
        extra_opts = ["--timeout", str(args.timeout)] if args.timeout else []
        has_jobs = bnlint_has_jobs()
        variants = [("-j 1", ["-j", "1"]), ("-j 2", ["-j", "2"])] if has_jobs else [("(no -j option)", [])]
        for label, opt in variants:
            runs = [run_cmd([*bn, *opt, *extra_opts, "--no-cache", str(repo)], memory=True) for _ in range(R)]
            last = runs[-1]
            summary = (last.stdout.strip().splitlines() or [""])[-1]
            codes: Dict[str, int] = {}
            for ln in last.stdout.splitlines():
                parts = ln.split(": ", 1)
                if len(parts) == 2 and parts[1][:3] == "BNL":
                    code = parts[1].split()[0]
                    codes[code] = codes.get(code, 0) + 1
            record(f"bnlint cold {label}", [r.seconds for r in runs], rc=last.rc,
                   peak_tree_mb=max(r.peak_total_mb for r in runs),
                   peak_single_mb=max(r.peak_single_mb for r in runs),
                   max_procs=max(r.max_procs for r in runs), summary=summary, codes=codes)
            if last.rc == 2 or codes.get("BNL001"):
                failures = bnl001_lines(last.stdout)
            if last.rc not in (0, 1, 2):
                print(last.stderr[-3000:], file=sys.stderr)
        # warm: fresh cache dir, prime it, time the second run
        warm_times, prime_times = [], []
        for _ in range(R):
            cache_dir = Path(tempfile.mkdtemp(prefix="bnlint-cache-"))
            prime = run_cmd([*bn, *extra_opts, "--cache-dir", str(cache_dir), str(repo)])
            warm = run_cmd([*bn, *extra_opts, "--cache-dir", str(cache_dir), str(repo)], memory=True)
            prime_times.append(prime.seconds)
            warm_times.append(warm.seconds)
            shutil.rmtree(cache_dir, ignore_errors=True)
        record("bnlint cold, filling the cache", prime_times, rc=prime.rc)
        record("bnlint warm (second run, same cache)", warm_times, rc=warm.rc,
               peak_tree_mb=warm.peak_total_mb, peak_single_mb=warm.peak_single_mb)
        # start-up
        imp = [importtime_total([sys.executable, "-X", "importtime", "-m", "bnlint", "--version"]) for _ in range(R)]
        record("python -X importtime -m bnlint --version", [w for _, w in imp],
               import_total_s=statistics.median([t for t, _ in imp]))
        empty = Path(tempfile.mkdtemp(prefix="bnlint-empty-"))
        record("bnlint check <empty folder>", [run_cmd([*bn, "--no-cache", str(empty)]).seconds for _ in range(R)])
        shutil.rmtree(empty, ignore_errors=True)

    if not args.skip_torchfix:
        tf, tf_ver = ensure_torchfix(args.bench_venv)
        variants = [("torchfix (default -j = cores)", [])]
        if args.torchfix_single:
            variants.append(("torchfix -j 1", ["-j", "1"]))
        for label, extra in variants:
            runs = [run_cmd([str(tf), *extra, str(repo)], memory=True) for _ in range(R)]
            record(label, [r.seconds for r in runs], rc=runs[-1].rc, version=tf_ver,
                   peak_tree_mb=max(r.peak_total_mb for r in runs),
                   peak_single_mb=max(r.peak_single_mb for r in runs),
                   max_procs=max(r.max_procs for r in runs),
                   findings=len([ln for ln in runs[-1].stdout.splitlines() if ": TOR" in ln]))
            if runs[-1].rc not in (0, 1):
                print(runs[-1].stderr[-2000:], file=sys.stderr)

    # ---- report ----
    base = results["libcst.parse_module"]["median_s"]
    tf_key = "torchfix (default -j = cores)"
    tfv = results.get(tf_key, {}).get("median_s")
    print()
    print(f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, torch {info['torch']}, "
          f"libcst {info['libcst']} (bnlint's), load average at start {info['loadavg']}")
    print(f"Repository: {stats.files} .py files, {stats.lines:,} lines, seed {args.seed}, "
          f"model fraction {args.model_fraction} ({stats.model_files} files under models/), repeats {R} (median)")
    print()
    print("| what | wall s | vs libcst parse | vs torchfix | peak RSS tree / single (MB) | notes |")
    print("|---|---|---|---|---|---|")
    for name, res in results.items():
        s = res["median_s"]
        vs_tf = f"{s / tfv:.2f}x" if tfv else "-"
        mem = f"{res['peak_tree_mb']:.0f} / {res['peak_single_mb']:.0f}" if "peak_tree_mb" in res else "-"
        notes = []
        for k in ("rc", "findings", "summary", "max_procs", "import_total_s", "version"):
            if k in res:
                v = res[k]
                notes.append(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}")
        if res.get("codes"):
            notes.append("codes=" + ",".join(f"{k}:{v}" for k, v in sorted(res["codes"].items())))
        print(f"| {name} | {s:.2f} | {s / base:.2f}x | {vs_tf} | {mem} | {'; '.join(notes)} |")
    if failures:
        print()
        print(f"BNL001 (files that could not be analysed): {len(failures)}")
        for ln in failures:
            print("    " + ln)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "repo": {"files": stats.files, "lines": stats.lines,
                                                                   "by_kind": stats.by_kind, "path": str(repo)},
                                         "results": results, "bnl001": failures}, indent=2, default=str))
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
