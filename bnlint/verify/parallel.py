"""Several GPUs: run the seeds in parallel, one process per device (torch.multiprocessing).

Workers rebuild the models from the source files, so only plain data crosses the
process boundary: the phase ("measure" or "train"), the seeds and the per-seed work
(``SeedWork``: sample counts, judged BNs, options, speed settings), the epochs and the
deadline. Not measured in this project's CI (no multi-GPU machine); the worker
function itself is tested on CPU.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence

import torch

from bnlint.verify.options import VerifyOptions

__all__ = ["gpu_seed_runner", "split_seeds", "run_seed_group"]


def split_seeds(seeds: Sequence[int], devices: int) -> List[List[int]]:
    """Round-robin seeds over devices; empty groups are dropped."""
    groups = [list(seeds[i::devices]) for i in range(devices)]
    return [g for g in groups if g]


def run_seed_group(before_path: str, after_path: str, model: Optional[str], input_shape, work, phase: str,
                   seeds: List[int], epochs: int, deadline: Optional[float]) -> List[Optional[dict]]:
    """One worker's share: phase 1 (``measure``) or phase 2 (``train``) for ``seeds``
    on ``work.device``. Phase 2 records are None where the deadline stopped them."""
    from bnlint.verify.model_experiment import make_task
    from bnlint.verify.model_seed import measure_seed, train_seed
    from bnlint.verify.sources import model_pair_from_files

    device = torch.device(work.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    pair = model_pair_from_files(before_path, after_path, model, input_shape)
    task_for = make_task(pair, work.options, pair.build_before())
    if phase == "measure":
        return [measure_seed(pair, task_for(seed), seed, work, epochs > 0) for seed in seeds]
    return [train_seed(pair, task_for(seed), seed, work, epochs, deadline) for seed in seeds]


def gpu_seed_runner(before_path: str, after_path: str, model: Optional[str], input_shape,
                    options: VerifyOptions) -> Optional[Callable]:
    """A ``seed_runner`` for run_model_experiment when several GPUs are usable, else None."""
    if options.device not in (None, "auto", "cuda") or not torch.cuda.is_available():
        return None
    count = torch.cuda.device_count()
    if count < 2 or options.seeds < 2:
        return None

    def runner(phase: str, seeds: Sequence[int], work, epochs: int, deadline: Optional[float]) -> List[Optional[dict]]:
        groups = split_seeds(seeds, count)
        ctx = torch.multiprocessing.get_context("spawn")
        jobs = [(before_path, after_path, model, input_shape, dataclasses.replace(work, device=f"cuda:{i}"), phase,
                 group, epochs, deadline) for i, group in enumerate(groups)]
        with ctx.Pool(len(jobs)) as pool:
            results = pool.starmap(run_seed_group, jobs)
        by_seed = {}
        for group, records in zip(groups, results):
            by_seed.update(zip(group, records))
        return [by_seed[s] for s in seeds]

    return runner
