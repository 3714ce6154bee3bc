"""Collators: a list of dataset items -> model inputs. One collator per masking strategy, plus
`stack_features`, the plain one (no masking) that the trainer's DataLoaders use: training masks the
global batch later, in the objective, so that masks do not depend on workers or processes.

They live beside the mask builders, not in `genie.data`: `genie.data` re-exports them for the
reference's `from data import ...`, so nothing here may import `genie.data`.

Every masking collator has the same call, `collator(features, generator=None, progress=0.0) -> batch`,
where `features` is a list of items (or an already batched dict), `generator` drives all randomness
and `progress` is the training progress p in [0, 1] of `schedules.training_progress` (mask-ratio
schedules use it; the caller passes it in, the collator keeps no training state). Every collator
ends in `apply_mask`, the one place that writes the mask token and builds
`input_ids / labels / loss_mask / actions`.
Masks are torch.bool with True = masked = hidden from the model and scored.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

from genie.errors import DataFormatError
from genie.masking.masks import (bernoulli_per_frame, block_mask, changed_tokens, frames_from, importance_mask,
                                 maskable_after_first_frame, maskable_between_prompt_frames, maskable_off_lattice,
                                 random_mask)
from genie.masking.schedules import mask_ratio_at
from genie.model.config import GenieConfig
from genie.model.factorization import factorize_token_ids, unfactorize_token_ids


def stack_features(features: Sequence[Mapping[str, torch.Tensor]] | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A list of dataset items -> a dict of batched tensors (an already batched dict passes through)."""
    if isinstance(features, Mapping):
        return dict(features)
    return {key: torch.stack([f[key] for f in features]) for key in features[0]}


def as_windows(batch: dict[str, torch.Tensor], config: GenieConfig) -> dict[str, torch.Tensor]:
    """Batched items with input_ids (B, T', S), 2 <= T' <= T (shorter: a window-length curriculum's
    first frames); the reference's flat layout (B, T*S), as its RawTokenDataset yields, is reshaped.
    Any other shape is a one-line error."""
    tokens, t, s = batch["input_ids"], config.T, config.S
    if tokens.ndim == 2 and tokens.shape[1] == t * s:
        return {**batch, "input_ids": tokens.reshape(tokens.shape[0], t, s)}
    if tokens.ndim != 3 or not 2 <= tokens.shape[1] <= t or tokens.shape[2] != s:
        raise DataFormatError(f"input_ids of shape {tuple(tokens.shape)} do not fit the model config: expected "
                              f"(batch, T={t}, S={s}) (or 2 to T frames) or the flat (batch, T*S={t * s})")
    return batch


def apply_mask(batch: Mapping[str, torch.Tensor], mask: torch.Tensor, mask_token_id: int,
               corrupted_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The model inputs for clean windows `batch["input_ids"]` (B, T, S) and `mask` (True = masked).

    input_ids: the mask token where `mask` is True, elsewhere the clean tokens (or `corrupted_ids`,
    when the objective corrupts visible tokens); labels: the clean tokens; loss_mask: `mask` (the
    masked tokens are the ones scored); actions: passed through when present.
    """
    tokens = batch["input_ids"]
    visible = tokens if corrupted_ids is None else corrupted_ids
    out = {"input_ids": visible.masked_fill(mask, mask_token_id), "labels": tokens, "loss_mask": mask}
    if "actions" in batch:
        out["actions"] = batch["actions"]
    return out


class AutoregressiveMaskGITCollator:
    """Stage-2 batches, following the reference `get_maskgit_collator` (Copilot4D-style corruption):

    1. every factor of every token is replaced by a random value with probability max_corrupt_rate * U(0,1);
    2. with probability non_mlm_ratio the batch is "non-MLM": frames before a first frame drawn from
       [num_prompt_frames, T-1] stay as they are and later frames are corrupted more, each frame keeping
       its factors with a rate that decays by U(0.9, 1) per frame from U(0.25, 1); otherwise the first
       maskable frame is 1 (frame 0 is never masked);
    3. each sample and each maskable frame gets a mask probability cos(pi/2 * U(0,1)); tokens are masked
       independently with it. At least one token per batch is masked.
    With `dynamics_focus` f > 0 (dynamics-aware masking), step 3 masks the tokens that differ from the
    previous frame more often, keeping the frame's expected masked count (masks.importance_mask).
    """

    def __init__(self, config: GenieConfig, dynamics_focus: float = 0.0):
        self.config, self.dynamics_focus = config, dynamics_focus

    def __call__(self, features, generator: torch.Generator | None = None,
                 progress: float = 0.0) -> dict[str, torch.Tensor]:
        """`progress` is unused: stage 2 masks by the same draws throughout training."""
        cfg = self.config
        batch = as_windows(stack_features(features), cfg)
        tokens = batch["input_ids"]
        b, t, s = tokens.shape
        k, v = cfg.num_factored_vocabs, cfg.factored_vocab_size

        def rand(*shape):
            return torch.rand(shape, generator=generator)

        factors = factorize_token_ids(tokens, k, v)
        random_factors = torch.randint(0, v, factors.shape, generator=generator)
        corrupt = rand(b, t, s, k) < cfg.max_corrupt_rate * rand(1).item()
        if rand(1).item() < cfg.non_mlm_ratio:
            low = min(cfg.num_prompt_frames, t - 1)
            first_masked = int(torch.randint(low, t, (1,), generator=generator))
            keep_rate = 0.25 + 0.75 * rand(1).item()
            decay = torch.cumprod(0.9 + 0.1 * rand(t - first_masked), dim=0)
            frame_keep_rate = torch.ones(t)
            frame_keep_rate[first_masked:] = keep_rate * decay
            corrupt |= rand(b, t, s, k) > frame_keep_rate.reshape(1, t, 1, 1)
        else:
            first_masked = 1
        factors = torch.where(corrupt, random_factors, factors)

        mask_probability = torch.cos(math.pi / 2 * rand(b, t, 1))
        maskable = frames_from((b, t, s), first_masked)
        if self.dynamics_focus:
            mask = importance_mask(changed_tokens(tokens), mask_probability, self.dynamics_focus, generator) & maskable
        else:
            mask = bernoulli_per_frame((b, t, s), mask_probability, generator) & maskable
        if not mask.any():  # rare: make sure the batch scores at least one token
            mask[0, first_masked, int(torch.randint(0, s, (1,), generator=generator))] = True
        return apply_mask(batch, mask, cfg.mask_token_id, corrupted_ids=unfactorize_token_ids(factors, k, v))


def get_maskgit_collator(config: GenieConfig, dynamics_focus: float = 0.0) -> AutoregressiveMaskGITCollator:
    """The stage-2 collator; usable as a DataLoader `collate_fn` or on an already batched dict."""
    return AutoregressiveMaskGITCollator(config, dynamics_focus)


MASK_PATTERNS = ("random", "block", "tube", "dynamics")  # the patterns MaskedPretrainCollator.build_mask draws


class MaskedPretrainCollator:
    """Stage-1 batches (MaskViT / MaskGIT style): each sample and each frame gets its own mask.

    The ratio is the schedule's value at the training progress passed in (`progress`, see
    `schedules.training_progress`), or a fixed `ratio` (evaluation). The pattern is random (exactly
    round(ratio*S) tokens per frame), block or tube; optional periodic prompt frames and a visible
    spatial lattice are ANDed in; frame 0 stays visible unless `mask_all_frames`. Masks: True = masked.
    """

    def __init__(self, config, model_config: GenieConfig):
        self.config, self.model_config = config, model_config

    def mask_ratio(self, progress: float) -> float:
        """The schedule's ratio at training progress `progress` in [0, 1]: initial_mask_ratio at 0 (the
        first optimizer step), final_mask_ratio at 1 (the last)."""
        c = self.config
        return mask_ratio_at(progress, c.initial_mask_ratio, c.final_mask_ratio, c.mask_schedule, c.exponential_k)

    def build_mask(self, tokens: torch.Tensor, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
        """True = masked: the pattern at `ratio` for clean windows `tokens` (B, T, S) (the dynamics pattern
        weighs the tokens that change), ANDed with the configured visibility constraints."""
        c, side, shape = self.config, self.model_config.h, tuple(tokens.shape)
        if c.mask_pattern == "random":
            mask = random_mask(shape, ratio, generator)
        elif c.mask_pattern == "dynamics":
            mask = importance_mask(changed_tokens(tokens), ratio, c.dynamics_focus, generator)
        else:
            block_scale = min(max(ratio / c.block_count, 1.0 / shape[2]), 1.0)
            mask = block_mask(shape, side, side, c.block_count, (block_scale, block_scale),
                              (c.block_aspect_min, c.block_aspect_max), tube=c.mask_pattern == "tube",
                              generator=generator)
            if ratio == 0:
                mask = torch.zeros_like(mask)
        # Not in place: a tube mask is one frame's mask expanded over time (shared memory).
        if c.prompt_frame_period:
            mask = mask & maskable_between_prompt_frames(shape, c.prompt_frame_period)
        if c.lattice_stride:
            mask = mask & maskable_off_lattice(shape, side, side, c.lattice_stride, c.lattice_offset)
        if not c.mask_all_frames:
            mask = mask & maskable_after_first_frame(shape)
        return mask

    def __call__(self, features, generator: torch.Generator | None = None, progress: float = 0.0,
                 ratio: float | None = None) -> dict[str, torch.Tensor]:
        batch = as_windows(stack_features(features), self.model_config)
        mask = self.build_mask(batch["input_ids"], self.mask_ratio(progress) if ratio is None else ratio, generator)
        return apply_mask(batch, mask, self.model_config.mask_token_id)


def get_masked_pretrain_collator(config, model_config: GenieConfig) -> MaskedPretrainCollator:
    """The stage-1 collator for a MaskedPretrainConfig and the model's GenieConfig."""
    return MaskedPretrainCollator(config, model_config)
