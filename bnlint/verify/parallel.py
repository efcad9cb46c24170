"""Several GPUs: run the seeds in parallel, one process per device (torch.multiprocessing).

Workers rebuild the models from the source files, so only plain data crosses the
process boundary.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch

from bnlint.verify.options import VerifyOptions

__all__ = ["gpu_seed_runner", "split_seeds"]


def split_seeds(seeds: Sequence[int], devices: int) -> List[List[int]]:
    """Round-robin seeds over devices; empty groups are dropped."""
    groups = [list(seeds[i::devices]) for i in range(devices)]
    return [g for g in groups if g]


def _run_seed_group(before_path: str, after_path: str, model: Optional[str], input_shape, options: VerifyOptions,
                    seeds: List[int], epochs: int, device: str) -> List[dict]:
    from bnlint.verify.model_experiment import make_task, run_model_seed
    from bnlint.verify.progress import ProgressBar
    from bnlint.verify.sources import model_pair_from_files

    torch.cuda.set_device(torch.device(device))
    pair = model_pair_from_files(before_path, after_path, model, input_shape)
    probe = pair.build_before()
    task_for = make_task(pair, options, probe)
    bar = ProgressBar(1, "", enabled=False)
    return [run_model_seed(pair, task_for(seed), seed, epochs, options, torch.device(device), bar) for seed in seeds]


def gpu_seed_runner(before_path: str, after_path: str, model: Optional[str], input_shape,
                    options: VerifyOptions) -> Optional[Callable]:
    """A ``seed_runner`` for run_model_experiment when several GPUs are usable, else None."""
    if options.device not in (None, "auto", "cuda") or not torch.cuda.is_available():
        return None
    count = torch.cuda.device_count()
    if count < 2 or options.seeds < 2:
        return None

    def runner(seeds: Sequence[int], epochs: int, device: torch.device) -> List[dict]:
        groups = split_seeds(seeds, count)
        ctx = torch.multiprocessing.get_context("spawn")
        jobs = [(before_path, after_path, model, input_shape, options, group, epochs, f"cuda:{i}")
                for i, group in enumerate(groups)]
        with ctx.Pool(len(jobs)) as pool:
            results = pool.starmap(_run_seed_group, jobs)
        by_seed = {r["seed"]: r for group in results for r in group}
        return [by_seed[s] for s in seeds]

    return runner
