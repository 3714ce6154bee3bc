"""Mask builders. Every mask is a torch.bool tensor where True means MASKED: the token is hidden
from the model (replaced by the mask token id) and is a prediction target. False means visible.

Builders are pure functions of (shape, parameters, generator) and compose with `&` and `|`.
Shapes are (B, T, S): batch, frames, tokens per frame.
"""
from __future__ import annotations

import torch


def frames_from(shape: tuple[int, int, int], first_frame: int | torch.Tensor,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """True for every token of frames t >= first_frame (the autoregressive target frames).

    `first_frame` is an int or a (B,) tensor giving each sample its own first masked frame.
    """
    batch, num_frames, num_tokens = shape
    first = torch.as_tensor(first_frame, device=device).reshape(-1, 1, 1)
    frame_index = torch.arange(num_frames, device=device).reshape(1, -1, 1)
    return (frame_index >= first).expand(batch, num_frames, num_tokens)


def first_frame_visible(shape: tuple[int, int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """True everywhere except frame 0 (the complement of frame 0): AND it with a mask to keep frame 0 visible."""
    return frames_from(shape, 1, device)


def bernoulli_per_frame(shape: tuple[int, int, int], probability: torch.Tensor,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """True independently per token with a probability given per sample and frame.

    probability: broadcastable to (B, T, 1), values in [0, 1].
    """
    device = probability.device
    return torch.rand(shape, generator=generator, device=device) < probability
