"""How many samples a dataset holds, when the source says so (BNL107).

Only what is certain from the text: tensors and arrays made with a literal (or
constant) first dimension (``torch.randn(1025, 16)``, ``np.zeros((n, 3))`` with ``n =
1025`` a constant), ``range``/list literals, ``TensorDataset`` / ``Subset`` of those,
``random_split`` with literal lengths, and torchvision datasets whose splits have a
published size (``CIFAR10(train=True)``: 50,000). Everything else has no length.
"""
from __future__ import annotations

from typing import Optional

import libcst as cst

from bnlint.script.facts import Value, options

__all__ = ["array_length", "range_length", "length_of", "torchvision_length", "const_int"]

# torchvision.datasets: (split keyword, default split, sizes per split); "train" stands
# for the boolean ``train=`` argument (True: "train", False: "test").
_TORCHVISION = {
    "MNIST": ("train", "train", {"train": 60000, "test": 10000}),
    "FashionMNIST": ("train", "train", {"train": 60000, "test": 10000}),
    "KMNIST": ("train", "train", {"train": 60000, "test": 10000}),
    "CIFAR10": ("train", "train", {"train": 50000, "test": 10000}),
    "CIFAR100": ("train", "train", {"train": 50000, "test": 10000}),
    "USPS": ("train", "train", {"train": 7291, "test": 2007}),
    "SVHN": ("split", "train", {"train": 73257, "test": 26032, "extra": 531131}),
    "STL10": ("split", "train", {"train": 5000, "test": 8000, "unlabeled": 100000, "train+unlabeled": 105000}),
    "Flowers102": ("split", "train", {"train": 1020, "val": 1020, "test": 6149}),
    "Food101": ("split", "train", {"train": 75750, "test": 25250}),
    "GTSRB": ("split", "train", {"train": 26640, "test": 12630}),
    "StanfordCars": ("split", "train", {"train": 8144, "test": 8041}),
    "OxfordIIITPet": ("split", "trainval", {"trainval": 3680, "test": 3669}),
    "FGVCAircraft": ("split", "trainval", {"train": 3334, "val": 3333, "test": 3333, "trainval": 6667}),
}
_FIRST_DIM = {"torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty", "torch.full",
              "numpy.random.randn", "numpy.random.rand", "numpy.zeros", "numpy.ones", "numpy.empty",
              "numpy.full"}
# Size given by keyword (``size=``), or as the last positional argument when it is a tuple.
_SIZE_KW = {"torch.randint", "torch.normal", "numpy.random.randint", "numpy.random.normal",
            "numpy.random.uniform", "numpy.random.choice"}
_ARANGE = {"torch.arange", "numpy.arange"}


def const_int(value: Optional[Value]) -> Optional[int]:
    """The integer a value certainly is (the same on every path), else None."""
    found = set()
    for opt, _ in options(value):
        if opt is None or opt.kind != "const" or not isinstance(opt.get("py"), int) or isinstance(opt.get("py"), bool):
            return None
        found.add(opt.get("py"))
    return found.pop() if len(found) == 1 else None


def _first_of_size(value: Optional[Value]) -> Optional[int]:
    """``n`` for a size given as ``n`` or ``(n, ...)``."""
    if value is not None and value.kind in ("tuple", "list") and value.get("elems"):
        return const_int(value.get("elems")[0])
    return const_int(value)


def array_length(q: str, call: cst.Call, args) -> Optional[int]:
    """Rows of a tensor or array built by the library call ``q``; ``args`` are the
    call's evaluated ``(cst.Arg, (Value, deps))`` pairs."""
    positional = [v for a, (v, _) in args if a.keyword is None and not a.star]
    keywords = {a.keyword.value: v for a, (v, _) in args if a.keyword is not None}
    if any(a.star for a, _ in args):
        return None
    if q in _FIRST_DIM:
        if "size" in keywords:
            return _first_of_size(keywords["size"])
        return _first_of_size(positional[0]) if positional else None
    if q in _SIZE_KW:
        if "size" in keywords:
            return _first_of_size(keywords["size"])
        if q == "torch.randint" and positional and positional[-1] is not None and positional[-1].kind == "tuple":
            return _first_of_size(positional[-1])
        return None
    if q in _ARANGE:
        if len(positional) == 1 and not keywords:
            return const_int(positional[0])
        if len(positional) == 2 and not keywords:
            start, end = const_int(positional[0]), const_int(positional[1])
            return max(0, end - start) if start is not None and end is not None else None
        return None
    if q in ("torch.tensor", "torch.as_tensor", "torch.from_numpy", "numpy.array", "numpy.asarray") and positional:
        return length_of(positional[0])
    return None


def range_length(args) -> Optional[int]:
    """``range(n)`` / ``range(a, b)``."""
    values = [v for a, (v, _) in args if a.keyword is None and not a.star]
    if len(values) != len(args) or not 1 <= len(values) <= 2:
        return None
    ints = [const_int(v) for v in values]
    if any(i is None for i in ints):
        return None
    return max(0, ints[0]) if len(ints) == 1 else max(0, ints[1] - ints[0])


def length_of(value: Optional[Value]) -> Optional[int]:
    """Samples in a dataset, tensor, list or range, when certain."""
    if value is None:
        return None
    if value.kind in ("dataset", "array", "range") or (value.kind == "list" and value.get("length") is not None):
        length = value.get("length")
        return length if isinstance(length, int) else None
    if value.kind in ("list", "tuple") and value.get("elems") is not None:
        return len(value.get("elems"))
    return None


def torchvision_length(q: str, call: cst.Call) -> Optional[int]:
    """Size of a torchvision dataset split named by literal arguments."""
    if not q.startswith("torchvision.datasets."):
        return None
    entry = _TORCHVISION.get(q.rsplit(".", 1)[-1])
    if entry is None:
        return None
    keyword, default, sizes = entry
    split = default
    for i, arg in enumerate(call.args):
        if arg.star:
            return None
        if arg.keyword is not None and arg.keyword.value == keyword:
            value = arg.value
            if keyword == "train":
                if not (isinstance(value, cst.Name) and value.value in ("True", "False")):
                    return None
                split = "train" if value.value == "True" else "test"
            else:
                if not isinstance(value, cst.SimpleString) or not isinstance(value.evaluated_value, str):
                    return None
                split = value.evaluated_value
        elif arg.keyword is None and i == 1:
            return None  # the split given by position: leave it
    return sizes.get(split)
