"""FSDP support: evaluation and decoding call model methods other than `forward` (compute_logits,
the KV-cached passes), which FSDP's forward hooks do not see, so the full parameters are gathered
around them."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType


@contextlib.contextmanager
def full_parameters(accelerator: Accelerator, model: torch.nn.Module) -> Iterator[None]:
    """Inside: the prepared model's parameters are whole on every rank (a no-op without FSDP)."""
    if accelerator.distributed_type != DistributedType.FSDP:
        yield
        return
    if accelerator.is_fsdp2:
        # The root's own parameters (embeddings, heads) are gathered here; the wrapped blocks gather
        # theirs in their own forward hooks, as in training.
        model.unshard()
        try:
            yield
        finally:
            model.reshard()
    else:
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(model, writeback=False):
            yield
