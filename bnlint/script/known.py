"""What bnlint knows about library names (by qualified name, never by importing them)."""
from __future__ import annotations

import re
from typing import Optional

__all__ = [
    "BN_NAMES", "sampler_kind", "permutation_lib", "inplace_shuffle_lib", "seed_lib",
    "is_dataloader", "is_cycle", "is_generator_ctor", "is_rng_ctor", "library_model_has_bn",
    "PURE_CALLS", "FRAMEWORK_METHODS", "is_framework_ctor", "is_iterable_dataset_ctor", "SCRIPT_HINT", "ROOT_HINT", "may_matter",
]

BN_NAMES = {
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
    "LazyBatchNorm2d", "LazyBatchNorm3d", "batch_norm", "BatchNorm",
}

# A file can only hold a finding when it names one of these (checked on the raw text,
# before parsing); ``no_grad``/``inference_mode``: an evaluation pass over a loader passed
# in under another name (BNL105).
SCRIPT_HINT = re.compile(
    r"DataLoader|[Ss]ampler|randperm|permutation|shuffle|cycle|manual_seed|\.seed\(|"
    r"set_seed|seed_everything|loader|no_grad|inference_mode"
)

# A file may start training code (an epoch loop around a helper's loader) when it
# names one of these.
ROOT_HINT = re.compile(r"backward|\.step\(|training_step")



def may_matter(text: str) -> bool:
    """May a file hold a script finding, or start the code that causes one? (A
    regular expression over the text: no parse.)"""
    return bool(SCRIPT_HINT.search(text) or ROOT_HINT.search(text))


_SAMPLERS = {
    "DistributedSampler": "distributed",
    "ElasticDistributedSampler": "distributed",
    "SequentialSampler": "sequential",
    "RandomSampler": "random",
    "SubsetRandomSampler": "random",
    "WeightedRandomSampler": "random",
    "BatchSampler": "batch",
}


def _last(q: str) -> str:
    return q.rsplit(".", 1)[-1]


def sampler_kind(q: Optional[str]) -> Optional[str]:
    if not q:
        return None
    return _SAMPLERS.get(_last(q))


def is_dataloader(q: Optional[str]) -> bool:
    return bool(q) and _last(q) == "DataLoader"


def is_cycle(q: Optional[str]) -> bool:
    return q == "itertools.cycle"


def permutation_lib(q: Optional[str]) -> Optional[str]:
    """Functions that return a permutation (or permuted copies)."""
    return {
        "torch.randperm": "torch",
        "numpy.random.permutation": "numpy",
        "sklearn.utils.shuffle": "numpy",
        "random.sample": "random",
    }.get(q or "")


def inplace_shuffle_lib(q: Optional[str]) -> Optional[str]:
    return {"random.shuffle": "random", "numpy.random.shuffle": "numpy"}.get(q or "")


def seed_lib(q: Optional[str]) -> Optional[str]:
    """Calls that seed a global random number generator, and which one."""
    if not q:
        return None
    if q in ("torch.manual_seed", "torch.random.manual_seed"):
        return "torch"
    if q in ("numpy.random.seed",):
        return "numpy"
    if q in ("random.seed",):
        return "random"
    if _last(q) in ("seed_everything", "set_seed") and q.split(".", 1)[0] in (
        "lightning", "pytorch_lightning", "lightning_fabric", "transformers", "accelerate",
    ):
        return "all"
    return None


def is_generator_ctor(q: Optional[str]) -> bool:
    return q == "torch.Generator"


def is_rng_ctor(q: Optional[str]) -> bool:
    return q in ("numpy.random.default_rng", "numpy.random.RandomState", "random.Random")


_TV_BN = re.compile(
    r"^(resnet|resnext|wide_resnet|vgg\d+_bn|densenet|mobilenet|efficientnet|regnet|"
    r"inception|googlenet|shufflenet|mnasnet|squeezenet_bn|fcn_|deeplab|fasterrcnn|"
    r"retinanet|maskrcnn|r3d|r2plus1d|mc3|s3d)"
)
_TIMM_BN = re.compile(
    r"^(resnet|resnext|seresnet|seresnext|wide_resnet|efficientnet|tf_efficientnet|"
    r"mobilenet|mixnet|mnasnet|regnet|densenet|dla|dpn|res2net|resnest|rexnet|ghostnet|"
    r"lcnet|hrnet|cspresnet|cspdarknet|darknet|vgg\d+_bn|inception|xception|nfnet_bn|"
    r"fbnet|hardcorenas|tinynet|repvgg|selecsls|skresnet|tresnet|legacy_se)"
)


def library_model_has_bn(q: Optional[str], first_arg: Optional[str]) -> Optional[bool]:
    """BN content of a model built by a known library constructor (None: unknown)."""
    if not q:
        return None
    if q.startswith("torchvision.models."):
        name = _last(q)
        if name == "get_model" and first_arg:
            name = first_arg
        return bool(_TV_BN.match(name.lower()))
    if q in ("timm.create_model",) and first_arg:
        return bool(_TIMM_BN.match(first_arg.lower()))
    return None


# Calls whose result depends only on their arguments (for seed-constancy).
PURE_CALLS = {
    "int", "float", "str", "abs", "hash", "sum", "min", "max", "len", "round", "pow",
    "math.floor", "math.ceil",
}

# Methods that take over a loader and call set_epoch themselves.
FRAMEWORK_METHODS = {"prepare", "prepare_data_loader", "setup_dataloaders", "fit"}


def is_iterable_dataset_ctor(q: Optional[str]) -> bool:
    """Library datasets that are iterable (their order is theirs to define):
    torchtext's datasets (datapipes), torchdata pipes, webdataset."""
    if not q:
        return False
    head = q.split(".", 1)[0]
    return (q.startswith("torchtext.datasets.") or head in ("torchdata", "webdataset", "wds")
            or _last(q) in ("IterableWrapper", "WebDataset", "WebLoader"))


def is_framework_ctor(q: Optional[str]) -> bool:
    """Constructors of trainers that own the epoch loop (and the sampler's epoch)."""
    if not q:
        return False
    head = q.split(".", 1)[0]
    return _last(q) == "Trainer" and head in (
        "transformers", "lightning", "pytorch_lightning", "trl", "accelerate",
    )
