"""Random generators seeded from coordinates (seed, step, micro-batch, stream): no shared state to save,
to race on, or to depend on the number of DataLoader workers or processes."""
from __future__ import annotations

import numpy as np
import torch


def batch_generator(seed: int, step: int, micro_step: int, stream: int = 0,
                    device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on `device` seeded from the batch's coordinates."""
    state = np.random.SeedSequence([seed, step, micro_step, stream]).generate_state(2, dtype=np.uint64)
    return torch.Generator(device=device).manual_seed(int(state[0] >> np.uint64(1)))
