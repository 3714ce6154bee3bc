"""Mask builders. Every mask is a torch.bool tensor where True means MASKED: the token is hidden
from the model (replaced by the mask token id) and is a prediction target. False means visible.

Builders are pure functions of (shape, parameters, generator) and compose with `&` and `|`.
Shapes are (B, T, S): batch, frames, tokens per frame.

Two kinds: pattern builders (`random_mask`, `block_mask`, `frames_from`, `bernoulli_per_frame`)
return True = masked; constraint builders named `maskable_*` return True = may be masked, and are
ANDed with a pattern to keep their False positions visible, e.g.
`random_mask(shape, 0.5, g) & maskable_after_first_frame(shape)`.
"""
from __future__ import annotations

import torch


def frames_from(shape: tuple[int, int, int], first_frame: int | torch.Tensor,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """True = masked: every token of frames t >= first_frame (the autoregressive target frames).

    `first_frame` is an int or a (B,) tensor giving each sample its own first masked frame.
    """
    batch, num_frames, num_tokens = shape
    first = torch.as_tensor(first_frame, device=device).reshape(-1, 1, 1)
    frame_index = torch.arange(num_frames, device=device).reshape(1, -1, 1)
    return (frame_index >= first).expand(batch, num_frames, num_tokens)


def maskable_after_first_frame(shape: tuple[int, int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """True = maskable: every frame except frame 0 (the "first frame visible" constraint)."""
    return frames_from(shape, 1, device)


def bernoulli_per_frame(shape: tuple[int, int, int], probability: torch.Tensor,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """True = masked, independently per token, with a probability given per sample and frame.

    probability: broadcastable to (B, T, 1), values in [0, 1].
    """
    device = probability.device
    return torch.rand(shape, generator=generator, device=device) < probability


def _check_grid(height: int, width: int, num_tokens: int) -> None:
    if height * width != num_tokens:
        raise ValueError(f"height * width = {height * width} must equal the tokens per frame {num_tokens}")


def _check_ratio(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} = {value} must be in [0, 1]")


def random_mask(shape: tuple[int, int, int], ratio: float, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """True = masked: exactly round(ratio * S) tokens per sample and per frame, chosen uniformly.

    Vectorized: the masked tokens are those with the `count` smallest of S uniform keys (topk is
    several times cheaper than sorting here).
    """
    _check_ratio("mask ratio", ratio)
    batch, num_frames, num_tokens = shape
    count = round(ratio * num_tokens)
    keys = torch.rand(shape, generator=generator, device=device)
    chosen = keys.topk(count, dim=-1, largest=False, sorted=False).indices
    return torch.zeros(shape, dtype=torch.bool, device=device).scatter_(-1, chosen, True)


def block_mask(shape: tuple[int, int, int], height: int, width: int, num_blocks: int = 1,
               scale: tuple[float, float] = (0.15, 0.2), aspect_ratio: tuple[float, float] = (0.75, 1.5),
               tube: bool = False, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """True = masked: the union of `num_blocks` rectangles per frame (I-JEPA style).

    Each rectangle covers about `scale` (a fraction of the frame drawn uniformly from the range) with
    height/width drawn log-uniformly from `aspect_ratio`; its corner is uniform over valid positions.
    With `tube`, each sample uses the same rectangles in every frame.
    """
    batch, num_frames, num_tokens = shape
    _check_grid(height, width, num_tokens)
    if num_blocks < 1:
        raise ValueError(f"num_blocks = {num_blocks} must be >= 1")
    if not (0.0 < scale[0] <= scale[1] <= 1.0):
        raise ValueError(f"block scale range {scale} must satisfy 0 < min <= max <= 1")
    if not (0.0 < aspect_ratio[0] <= aspect_ratio[1]):
        raise ValueError(f"block aspect ratio range {aspect_ratio} must satisfy 0 < min <= max")
    frames = 1 if tube else num_frames
    draw = (batch, frames, num_blocks)

    def uniform(low, high):
        return low + (high - low) * torch.rand(draw, generator=generator, device=device)

    area = uniform(*scale) * num_tokens
    log_aspect = uniform(torch.log(torch.tensor(aspect_ratio[0])).item(), torch.log(torch.tensor(aspect_ratio[1])).item())
    aspect = torch.exp(log_aspect)
    block_h = torch.sqrt(area * aspect).round().clamp(1, height).long()
    block_w = torch.sqrt(area / aspect).round().clamp(1, width).long()
    top = (torch.rand(draw, generator=generator, device=device) * (height - block_h + 1)).floor().long()
    left = (torch.rand(draw, generator=generator, device=device) * (width - block_w + 1)).floor().long()
    rows = torch.arange(height, device=device).reshape(1, 1, 1, height, 1)
    cols = torch.arange(width, device=device).reshape(1, 1, 1, 1, width)
    inside = ((rows >= top[..., None, None]) & (rows < (top + block_h)[..., None, None])
              & (cols >= left[..., None, None]) & (cols < (left + block_w)[..., None, None]))
    mask = inside.any(dim=2).reshape(batch, frames, num_tokens)
    return mask.expand(batch, num_frames, num_tokens) if tube else mask


def maskable_between_prompt_frames(shape: tuple[int, int, int], period: int, offset: int = 0,
                                   device: torch.device | str = "cpu") -> torch.Tensor:
    """True = maskable: every frame except the prompt frames t with t % period == offset, which stay
    fully visible (the video analogue of VampNet's periodic prompt). AND it with a mask."""
    if period < 1:
        raise ValueError(f"prompt frame period = {period} must be >= 1")
    batch, num_frames, num_tokens = shape
    frame_index = torch.arange(num_frames, device=device).reshape(1, -1, 1)
    return (frame_index % period != offset % period).expand(batch, num_frames, num_tokens)


def maskable_off_lattice(shape: tuple[int, int, int], height: int, width: int, stride: int, offset: int = 0,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """True = maskable: every token except a regular spatial lattice (rows and columns
    `offset, offset + stride, ...`), which stays visible. AND it with a mask."""
    batch, num_frames, num_tokens = shape
    _check_grid(height, width, num_tokens)
    if stride < 1:
        raise ValueError(f"lattice stride = {stride} must be >= 1")
    if not 0 <= offset < stride:
        raise ValueError(f"lattice offset = {offset} must be in [0, stride)")
    rows = torch.arange(height, device=device).reshape(height, 1)
    cols = torch.arange(width, device=device).reshape(1, width)
    on_lattice = ((rows % stride) == offset) & ((cols % stride) == offset)
    return (~on_lattice).reshape(1, 1, num_tokens).expand(batch, num_frames, num_tokens)


def changed_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """True = the token differs from the same position in the previous frame (B, T, S); frame 0 is all
    False (it has no previous frame). The importance map of dynamics-aware masking."""
    changed = torch.zeros_like(tokens, dtype=torch.bool)
    changed[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
    return changed


def importance_mask(important: torch.Tensor, ratio: float | torch.Tensor, focus: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """True = masked, independently per token, more often where `important` (B, T, S) is True.

    Token i of a frame is masked with probability p_i = min(1, c * w_i), where w_i = focus for an
    important token plus (1 - focus) for every token, and c is chosen per frame so that the expected
    number of masked tokens is ratio * S (or every token of weight > 0, when fewer carry weight);
    `ratio` is a number or a tensor broadcastable to (B, T, 1) (a ratio per sample and frame).
    focus 0 is uniform masking at `ratio`; focus 1 masks important tokens only. Mixing with uniform
    (focus < 1) keeps masked static tokens in every frame, so the mask does not tell the model exactly
    where the change is (at inference every token of a new frame starts masked).
    """
    ratios = torch.as_tensor(ratio, dtype=torch.float64, device=important.device)
    _check_ratio("mask ratio", float(ratios.min()))
    _check_ratio("mask ratio", float(ratios.max()))
    _check_ratio("focus", focus)
    weights = focus * important.double() + (1.0 - focus)
    probability = _capped_probabilities(weights, ratios * important.shape[-1])
    return torch.rand(important.shape, generator=generator, device=important.device, dtype=torch.float64) < probability


def _capped_probabilities(weights: torch.Tensor, expected: float, iterations: int = 30) -> torch.Tensor:
    """p = min(1, c * weights) per frame (last dimension), with c such that sum(p) = expected where that
    can be reached (else every token of weight > 0 gets p = 1): a bisection on c, vectorized over frames."""
    total = weights.sum(dim=-1, keepdim=True)
    low = torch.zeros_like(total)
    high = torch.where(total > 0, expected / total.clamp(min=1e-12), torch.zeros_like(total))
    # c = expected / total is the answer without the cap; with it, c grows until the capped sum reaches
    # `expected` (at most 1 / min positive weight puts every weighted token at 1).
    positive = torch.where(weights > 0, weights, torch.full_like(weights, float("inf"))).amin(dim=-1, keepdim=True)
    high = torch.maximum(high, torch.where(torch.isfinite(positive), 1.0 / positive, torch.zeros_like(positive)))
    for _ in range(iterations):
        middle = (low + high) / 2
        too_few = (middle * weights).clamp(max=1.0).sum(dim=-1, keepdim=True) < expected
        low, high = torch.where(too_few, middle, low), torch.where(too_few, high, middle)
    return (high * weights).clamp(max=1.0)
