"""Axial 2-D rotary position embedding (RoPE, Su et al. 2021, arXiv 2104.09864) for spatial attention.

A frame's tokens lie on an h x w grid. Each head's channels form pairs (i, i + head_dim/2), each pair
rotated by an angle: the first half of the pairs by the token's row, the second half by its column, at
geometric frequencies. A query-key product then
depends on the two tokens' row and column offsets, not on where they are: "the token one patch to the
left" is one direction from the first step, where the learned (zero-initialised) position embedding
has to be learned before attention can find a neighbour. That is what moving a sprite by a command, or
predicting where a swinging sprite goes next, needs.
"""
from __future__ import annotations

import torch
from torch import nn

BASE = 100.0  # slowest wavelength 2*pi*BASE tokens: far longer than any frame's side here


class AxialRotary(nn.Module):
    """Rotates queries or keys (..., h*w, head_dim), pair (i, i + head_dim/2) by the token's row for
    i < head_dim/4 and by its column above. The angles are buffers that are not saved: checkpoints are
    unchanged."""

    def __init__(self, h: int, w: int, head_dim: int, base: float = BASE):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"axial rotary embedding needs head_dim divisible by 4, got {head_dim}")
        per_axis = head_dim // 4  # rotation pairs per axis
        frequencies = base ** (-torch.arange(per_axis, dtype=torch.float64) / per_axis)
        rows, columns = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        angles = torch.cat([rows.reshape(-1, 1) * frequencies, columns.reshape(-1, 1) * frequencies], dim=1)
        self.register_buffer("cos", angles.cos().float(), persistent=False)  # (h*w, head_dim/2)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., h*w, head_dim) -> the same shape, each channel pair (i, i + head_dim/2) rotated."""
        first, second = x.chunk(2, dim=-1)
        cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)
        return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
