"""Spatiotemporal transformer: per block, spatial attention within each frame, temporal attention
across frames at each token position, then an MLP (Genie, arXiv 2402.15391, Figure 4)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from genie.model.attention import ConcatKVCache, KVCache, SelfAttention
from genie.model.config import GenieConfig
from genie.model.rotary import AxialRotary


class Mlp(nn.Module):
    def __init__(self, d_model: int, mlp_ratio: float, mlp_bias: bool, mlp_drop: float):
        super().__init__()
        hidden = int(d_model * mlp_ratio)
        self.fc1 = nn.Linear(d_model, hidden, bias=mlp_bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d_model, bias=mlp_bias)
        self.drop = nn.Dropout(mlp_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class STBlock(nn.Module):
    """One ST block, laid out exactly like the reference so its checkpoints load and match.

    The reference pre-normalizes only the spatial attention and the MLP (the temporal attention gets
    the raw residual stream), and with qk_norm it drops both LayerNorms in favour of normalizing
    queries and keys. We keep that layout: changing it would break checkpoint compatibility.
    """

    def __init__(self, config: GenieConfig):
        super().__init__()
        d = config.d_model
        attn_kwargs = dict(num_heads=config.num_heads, d_model=d, qkv_bias=config.qkv_bias,
                           proj_bias=config.proj_bias, qk_norm=config.qk_norm, attn_drop=config.attn_drop)
        self.norm1 = nn.Identity() if config.qk_norm else nn.LayerNorm(d, eps=1e-5)
        rotary = AxialRotary(config.h, config.w, d // config.num_heads) if config.spatial_rope else None
        self.spatial_attn = SelfAttention(**attn_kwargs, rotary=rotary)
        self.temporal_attn = SelfAttention(**attn_kwargs)
        self.norm2 = nn.Identity() if config.qk_norm else nn.LayerNorm(d, eps=1e-5)
        self.mlp = Mlp(d, config.mlp_ratio, config.mlp_bias, config.mlp_drop)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        """x: (B, T, S, C) -> (B, T, S, C), a view in the (B, S, T, C) memory layout of the temporal step."""
        b, t, s, c = x.shape
        x = x.reshape(b * t, s, c)
        x = x + self.spatial_attn(self.norm1(x))
        x = x.view(b, t, s, c).transpose(1, 2).reshape(b * s, t, c)
        x = x + self.temporal_attn(x, causal=causal)
        x = x + self.mlp(self.norm2(x))
        return x.view(b, s, t, c).transpose(1, 2)

    def forward_cached(self, x: torch.Tensor, cache: KVCache | ConcatKVCache, drop: int = 0) -> torch.Tensor:
        """x: (B, N, S, C), new frames after the frames in `cache` (causal in time) -> (B, N - drop, S, C).
        Their temporal keys/values are written into the cache; the first `drop` frames only feed it. Stays
        in the (B, N, S, C) layout throughout: no transposes."""
        b, n, s, c = x.shape
        x = x + self.spatial_attn(self.norm1(x.reshape(b * n, s, c))).view(b, n, s, c)
        x = x[:, drop:] + self.temporal_attn.attend_cached(x, cache, drop)
        return x + self.mlp(self.norm2(x))


class STTransformer(nn.Module):
    def __init__(self, config: GenieConfig):
        super().__init__()
        self.layers = nn.ModuleList([STBlock(config) for _ in range(config.num_layers)])
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                # Non-reentrant checkpointing works with keyword arguments, autocast and DDP.
                x = checkpoint(layer, x, causal, use_reentrant=False)
            else:
                x = layer(x, causal)
        return x

    def forward_cached(self, x: torch.Tensor, caches: list[KVCache] | list[ConcatKVCache], drop: int = 0
                       ) -> torch.Tensor:
        """Causal pass over new frames x (B, N, S, C) after the frames held in every layer's cache; returns
        the output of frames drop..N-1 (the first `drop` frames are only needed for the caches, so the last
        layer skips their attention output and MLP)."""
        last = len(self.layers) - 1
        for i, (layer, cache) in enumerate(zip(self.layers, caches)):
            x = layer.forward_cached(x, cache, drop if i == last else 0)
        return x
