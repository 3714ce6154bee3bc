"""Declared interfaces where two implementations meet.

`MaskGITModel` is all that MaskGIT decoding (genie/decoding.py) and the evaluation need from a
model: the full logits call, the cached one-frame call, the cache constructor, the config and the
mask id. `STMaskGIT` satisfies it; another backend (e.g. an ONNX Runtime session) can stand in for
it, and the decoding loop stays written once.

`TokenDataset` is all that training and evaluation need from a data format: windows, the split's
metadata and frame arrays, a compatibility check, and how a window is scored (the first scored frame,
the rollout prompt, whether the scored frames are also masked at once). The 1X v1.1 and v2.0 readers
satisfy it; a third format is a new reader only.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from genie.model.config import GenieConfig


@runtime_checkable
class MaskGITModel(Protocol):
    config: GenieConfig

    @property
    def mask_token_id(self) -> int:
        """The token id that marks a masked (hidden, to be predicted) position."""

    def compute_logits(self, tokens: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T', S), mask id where hidden -> factorized logits (B, T', S, K, V). `actions` has a row
        per frame, row t the action that produced frame t, and the decoders pass one row more where the
        window has it (the row after the last frame, which action_placement "previous" reads): a model
        reads the rows it needs."""

    def new_kv_cache(self) -> Any:
        """An empty cache of temporal keys/values for `compute_logits_cached` (opaque to callers)."""

    def compute_logits_cached(self, tokens: torch.Tensor, cache: Any, actions: torch.Tensor | None = None,
                              commit: int = 0) -> torch.Tensor:
        """Causal logits (B, T' - commit, S, K, V) of frames `tokens` (B, T', S) that follow those in
        `cache`: the first `commit` of them are added to the cache and get no logits."""


@runtime_checkable
class TokenDataset(Protocol):
    data_dir: Any  # the split's folder (a Path)
    metadata: dict[str, Any]  # the split's metadata.json, checked
    window_size: int  # frames per window (T)
    stride: int  # raw frames between consecutive window frames
    first_scored_frame: int  # evaluation scores frames first_scored_frame..T-1 (1 for v1.1; 3 for v2.0's target clip)
    rollout_prompt_frames: int | None  # the rollout prompt the format fixes (v2.0: the context clip), or None
    scores_block_masked: bool  # also score the frames from first_scored_frame all masked at once

    def __len__(self) -> int:
        """Number of windows."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """{"input_ids": int64 (T, S)} plus {"actions": float32 (T, A)} for action-conditioned data."""

    def frame_arrays(self) -> list[np.ndarray]:
        """The split's token frames as (N, s, s) arrays (one per shard), e.g. for the unigram reference."""

    def check_compatible(self, config: GenieConfig) -> None:
        """Raise a one-line DataFormatError when the data does not fit the model config."""
