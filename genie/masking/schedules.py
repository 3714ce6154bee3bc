"""Schedules: the mask ratio over training (docs/architecture.md, "Mask-ratio schedules") and MaskGIT's unmasking schedule."""
from __future__ import annotations

import math

MASK_SCHEDULES = ("cosine", "linear", "exponential", "constant")


def training_progress(step: int, total_steps: int) -> float:
    """Progress p = step / (total_steps - 1) of optimizer step `step` in 0..total_steps-1, so that the
    first step is at 0 and the last at 1 (a run of one step stays at 0). The schedules' input."""
    return step / max(total_steps - 1, 1)


def mask_ratio_at(progress: float, initial: float, final: float, schedule: str = "cosine",
                  exponential_k: float = 5.0) -> float:
    """Mask ratio at training progress p in [0, 1] (clamped; see `training_progress`).

    Every schedule starts exactly at `initial`, ends exactly at `final`, is monotone in between and
    never leaves [min(initial, final), max(initial, final)]. `constant` holds `initial` throughout, so
    it needs initial == final (MaskedPretrainConfig refuses anything else).
    """
    p = min(max(float(progress), 0.0), 1.0)
    if schedule == "linear":
        weight = 1.0 - p
    elif schedule == "cosine":
        weight = (1.0 + math.cos(math.pi * p)) / 2.0
    elif schedule == "exponential":
        if exponential_k <= 0:
            raise ValueError(f"exponential_k = {exponential_k} must be > 0")
        weight = (math.exp(-exponential_k * p) - math.exp(-exponential_k)) / (1.0 - math.exp(-exponential_k))
    elif schedule == "constant":
        if initial != final:
            raise ValueError(f"the constant schedule needs initial == final, got {initial} and {final}")
        weight = 1.0
    else:
        raise ValueError(f"unknown mask schedule {schedule!r}; choose one of {MASK_SCHEDULES}")
    return final + (initial - final) * weight


def maskgit_num_masked(step: int, num_steps: int, num_tokens: int) -> int:
    """Tokens still masked after decoding step `step` (0-based) of `num_steps`: ceil(cos(pi/2 * (step+1)/steps) * n).

    Reaches 0 after the last step, so every token is decoded.
    """
    if step >= num_steps - 1:
        return 0
    return math.ceil(math.cos(math.pi / 2 * (step + 1) / num_steps) * num_tokens)
