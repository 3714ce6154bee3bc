"""Multi-head self-attention through `F.scaled_dot_product_attention` (flash / memory-efficient on GPU)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class SelfAttention(nn.Module):
    """Self-attention over the middle axis of (batch, sequence, d_model).

    Parameter names (`qkv`, `proj`, `norm`) match the reference checkpoints. With `qk_norm`, one
    LayerNorm over the head dimension is shared by queries and keys, as in the reference.
    """

    def __init__(self, num_heads: int, d_model: int, qkv_bias: bool = False, proj_bias: bool = True,
                 qk_norm: bool = True, attn_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=qkv_bias)
        self.proj = nn.Linear(d_model, d_model, bias=proj_bias)
        self.qk_norm = qk_norm
        if qk_norm:
            self.norm = nn.LayerNorm(self.head_dim, eps=1e-5)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        return self.attend(x, causal)[0]

    def attend(self, x: torch.Tensor, causal: bool = False,
               past_kv: tuple[torch.Tensor, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attention output and this call's keys/values (B, heads, N_past + N, head_dim).

        With `past_kv` the queries of `x` also attend to cached keys/values of earlier positions.
        Cached decoding feeds one new position at a time, so it needs no mask: the past is all
        visible, the future is not there.
        """
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        if self.qk_norm:
            q, k = self.norm(q).to(v.dtype), self.norm(k).to(v.dtype)
        if past_kv is not None:
            if causal and x.shape[1] > 1:
                raise ValueError("cached causal attention takes one new position at a time")
            k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
            causal = False
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, is_causal=causal
        )
        return self.proj(rearrange(out, "b h n d -> b n (h d)")), (k, v)
