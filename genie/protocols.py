"""Declared interfaces where two implementations meet.

`MaskGITModel` is all that MaskGIT decoding (genie/decoding.py) and the evaluation need from a
model: the full logits call, the cached one-frame call, the cache constructor, the config and the
mask id. `STMaskGIT` satisfies it; another backend (e.g. an ONNX Runtime session) can stand in for
it, and the decoding loop stays written once.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from genie.config import GenieConfig


@runtime_checkable
class MaskGITModel(Protocol):
    config: GenieConfig

    @property
    def mask_token_id(self) -> int:
        """The token id that marks a masked (hidden, to be predicted) position."""

    def compute_logits(self, tokens: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T', S), mask id where hidden -> factorized logits (B, T', S, K, V)."""

    def new_kv_cache(self) -> Any:
        """An empty cache of temporal keys/values for `compute_logits_cached` (opaque to callers)."""

    def compute_logits_cached(self, tokens: torch.Tensor, cache: Any, actions: torch.Tensor | None = None,
                              commit: int = 0) -> torch.Tensor:
        """Causal logits (B, T', S, K, V) of frames that follow those in `cache`; the first `commit`
        of them are added to the cache."""
