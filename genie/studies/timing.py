"""Timing two things honestly in one process: alternated round by round (A B, then B A), with the same
thread count on both sides, and the machine they ran on recorded beside the figures."""
from __future__ import annotations

import os
import platform
import time
from itertools import count
from typing import Any, Callable

import numpy as np
import torch


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def compare_abba(ours: Callable[[], object], reference: Callable[[], object], rounds: int, warmup: int = 1) -> dict:
    """Time `ours()` and `reference()` alternately, A B then B A round by round (after `warmup` calls of
    each): medians of their seconds and the median, min and max of the per-round ratios reference / ours."""
    for _ in range(warmup):
        ours()
        reference()
    synchronize()
    ours_s, reference_s = [], []
    for r in range(rounds):
        if r % 2 == 0:
            ours_s.append(run_timed(ours))
            reference_s.append(run_timed(reference))
        else:
            reference_s.append(run_timed(reference))
            ours_s.append(run_timed(ours))
    ratios = [b / a for a, b in zip(ours_s, reference_s)]
    return {"ours_s": float(np.median(ours_s)), "reference_s": float(np.median(reference_s)),
            "ratio": float(np.median(ratios)), "ratio_min": min(ratios), "ratio_max": max(ratios), "rounds": rounds}


def machine() -> dict:
    """What the figures were measured on: CPU model, cores, threads used, load average (1, 5, 15 min)."""
    model = platform.processor()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "load_avg": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__}


def stepping_trainer(args: Any, objective: Any, model: torch.nn.Module, steps: int) -> tuple[Any, Callable[[], object]]:
    """A genie Trainer for (args, objective, model) and a function that takes `steps` optimizer steps with
    it, cycling through epochs: a training step as a timing benchmark sees it. Close the trainer after."""
    from tqdm.auto import tqdm

    from genie.training.trainer import Trainer

    trainer = Trainer(args, objective, model)
    trainer.progress = tqdm(disable=True)  # train_step advances the bar that train() would have opened

    def endless_batches():
        for epoch in count():
            trainer.train_loader.set_epoch(epoch)
            yield from trainer.train_loader

    batches = endless_batches()
    return trainer, lambda: [trainer.train_step(batches) for _ in range(steps)]
