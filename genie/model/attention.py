"""Multi-head self-attention through `F.scaled_dot_product_attention` (flash / memory-efficient on GPU)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class KVCache:
    """One layer's temporal keys/values for cached causal decoding, in buffers preallocated for
    `max_len` positions, so that extending the cache never copies the past.

    `extend` writes new positions after the cached ones and returns views of everything; only
    `commit` makes positions part of the cache (later writes overwrite uncommitted ones).
    """

    def __init__(self, max_len: int):
        self.max_len, self.length = max_len, 0
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = k.shape[2]
        if self.length + n > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {self.length} cached + {n} new do not fit")
        if self.k is None:
            self.k = k.new_empty((*k.shape[:2], self.max_len, k.shape[3]))
            self.v = v.new_empty((*v.shape[:2], self.max_len, v.shape[3]))
        end = self.length + n
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]

    def commit(self, n: int) -> None:
        self.length += n


class ConcatKVCache:
    """One layer's past keys/values given as tensors, e.g. the inputs of an exported graph: `extend`
    concatenates the new keys/values after them and keeps the new ones (`new_k`, `new_v`) so that the
    graph can return them; the caller owns the storage, so `commit` has nothing to do."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v
        self.new_k: torch.Tensor | None = None
        self.new_v: torch.Tensor | None = None

    @property
    def length(self):
        return self.k.shape[2]

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.new_k, self.new_v = k, v
        return torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)

    def commit(self, n: int) -> None:
        pass


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
        return self.attend(x, causal)

    def attend(self, x: torch.Tensor, causal: bool = False,
               cache: KVCache | ConcatKVCache | None = None) -> torch.Tensor:
        """Attention output. With `cache` the queries of `x` also attend to the cached keys/values of
        earlier positions (all visible) and the new positions are written into the cache; with
        `causal` the new positions see each other causally."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        if self.qk_norm:
            q, k = self.norm(q).to(v.dtype), self.norm(k).to(v.dtype)
        attn_mask = None
        if cache is not None:
            num_past, num_new = cache.length, x.shape[1]
            k, v = cache.extend(k, v)
            if causal and num_new > 1:  # True = may attend: every past position, earlier new ones
                attn_mask = torch.ones(num_new, num_past + num_new, dtype=torch.bool, device=x.device).tril(num_past)
            causal = False
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0, is_causal=causal
        )
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))
