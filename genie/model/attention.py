"""Multi-head self-attention through `F.scaled_dot_product_attention` (flash / memory-efficient on GPU),
and the cached temporal attention of decoding, which works in the (batch, frames, tokens, channels)
layout of the ST block so that a decoding step makes no layout copies."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Up to this many query frames, cached temporal attention is computed with broadcast products in the
# block's own layout (no transposes); longer blocks (a whole prompt) go through SDPA.
SMALL_QUERY_FRAMES = 2


class KVCache:
    """One layer's temporal keys/values for cached causal decoding, in buffers (max_len, B, S, heads,
    head_dim) preallocated for `max_len` frames: extending the cache never copies the past, and the
    cached frames are always a contiguous prefix.

    `extend` writes new frames after the cached ones and returns views of everything; only `commit`
    makes frames part of the cache (later writes overwrite uncommitted ones).
    """

    def __init__(self, max_len: int):
        self.max_len, self.length = max_len, 0
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v: (new frames, B, S, heads, head_dim) -> all frames' keys and values, same layout."""
        n = k.shape[0]
        if self.length + n > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} frames; {self.length} cached + {n} new do not fit")
        if self.k is None:
            self.k = k.new_empty((self.max_len, *k.shape[1:]))
            self.v = v.new_empty((self.max_len, *v.shape[1:]))
        end = self.length + n
        self.k[self.length:end] = k
        self.v[self.length:end] = v
        return self.k[:end], self.v[:end]

    def commit(self, n: int) -> None:
        self.length += n


class ConcatKVCache:
    """One layer's past keys/values given as tensors (past frames, B, S, heads, head_dim), e.g. the
    inputs of an exported graph: `extend` concatenates the new keys/values after them and keeps the
    new ones (`new_k`, `new_v`) so that the graph can return them; the caller owns the storage, so
    `commit` has nothing to do."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v
        self.new_k: torch.Tensor | None = None
        self.new_v: torch.Tensor | None = None

    @property
    def length(self):
        return self.k.shape[0]

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.new_k, self.new_v = k, v
        return torch.cat([self.k, k], dim=0), torch.cat([self.v, v], dim=0)

    def commit(self, n: int) -> None:
        pass


class SelfAttention(nn.Module):
    """Self-attention over the middle axis of (batch, sequence, d_model).

    Parameter names (`qkv`, `proj`, `norm`) match the reference checkpoints. With `qk_norm`, one
    LayerNorm over the head dimension is shared by queries and keys, as in the reference. A `rotary`
    module (spatial attention only) rotates queries and keys after that norm in `forward`, which cached
    decoding also runs for spatial attention; `attend_cached` (temporal attention) has none.
    """

    def __init__(self, num_heads: int, d_model: int, qkv_bias: bool = False, proj_bias: bool = True,
                 qk_norm: bool = True, attn_drop: float = 0.0, rotary: nn.Module | None = None):
        super().__init__()
        self.rotary = rotary  # rotates queries and keys by position (spatial attention with spatial_rope)
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=qkv_bias)
        self.proj = nn.Linear(d_model, d_model, bias=proj_bias)
        self.qk_norm = qk_norm
        if qk_norm:
            self.norm = nn.LayerNorm(self.head_dim, eps=1e-5)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (..., d_model) -> q, k, v (..., heads, head_dim), views of one projection (normalized with qk_norm)."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(-3)
        if self.qk_norm:
            q, k = self.norm(q).to(v.dtype), self.norm(k).to(v.dtype)
        return q, k, v

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """x (batch, n, d_model) -> (batch, n, d_model), attending over n (causally with `causal`)."""
        q, k, v = (t.transpose(1, 2) for t in self._qkv(x))  # (batch, heads, n, head_dim)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0,
                                             is_causal=causal)
        return self.proj(out.transpose(1, 2).flatten(2))

    def attend_cached(self, x: torch.Tensor, cache: KVCache | ConcatKVCache, drop: int = 0) -> torch.Tensor:
        """Causal attention over frames for x (B, N, S, d_model), N new frames after the frames in `cache`:
        every query sees the cached frames and the new frames up to its own. The new frames' keys/values
        are written into the cache. Returns (B, N - drop, S, d_model): the first `drop` new frames only
        feed the cache (no output is computed for them)."""
        num_past, num_new = cache.length, x.shape[1]
        q, k, v = self._qkv(x)  # (B, N, S, heads, head_dim)
        keys, values = cache.extend(k.transpose(0, 1), v.transpose(0, 1))  # (L + N, B, S, heads, head_dim)
        q = q[:, drop:]
        if torch.onnx.is_in_onnx_export():  # one graph for every number of frames: no shape branches
            out = _matmul_attention(q, keys, values, num_past + drop, num_new - drop)
        elif q.shape[1] <= SMALL_QUERY_FRAMES:
            out = _broadcast_attention(q, keys, values, num_past + drop)
        else:
            out = _sdpa_over_frames(q, keys, values, num_past + drop)
        # sizes spelt out: a -1 cannot be resolved when no frame is scored (drop = N, a prompt)
        return self.proj(out.reshape(x.shape[0], num_new - drop, x.shape[2], x.shape[3]))


def _future_frames(num_queries: int, num_keys: int, first_query: int, device: torch.device) -> torch.Tensor:
    """(queries, keys) bool, True = hidden: query i is frame `first_query + i` and sees the frames <= it."""
    query_frames = torch.arange(num_queries, device=device) + first_query
    return torch.arange(num_keys, device=device)[None, :] > query_frames[:, None]


def _broadcast_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, first_query: int) -> torch.Tensor:
    """Softmax attention of a few query frames q (B, n, S, heads, d) over key frames (L, B, S, heads, d),
    as broadcast products summed over d and over frames: for 1-2 queries in PyTorch this beats SDPA's
    per-(token, head) kernels and needs no transposes. Query i is frame `first_query + i`."""
    scores = (q.unsqueeze(2) * keys.transpose(0, 1).unsqueeze(1)).sum(-1) * q.shape[-1] ** -0.5  # (B, n, L, S, h)
    if q.shape[1] > 1:  # one query is the last key frame (attend_cached): it sees every key, nothing to mask
        future = _future_frames(q.shape[1], keys.shape[0], first_query, q.device)
        scores = scores.masked_fill(future[None, :, :, None, None], float("-inf"))
    weights = scores.softmax(dim=2)
    return (weights.unsqueeze(-1) * values.transpose(0, 1).unsqueeze(1)).sum(2)  # (B, n, S, heads, d)


def _matmul_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, first_query: int,
                      num_queries: int) -> torch.Tensor:
    """The same attention as `_broadcast_attention` as two batched matmuls over (B, S, heads): the form
    exported to ONNX, which ONNX Runtime runs about 1.35x faster than the broadcast Mul + ReduceSum
    (tiny, S 256: python -m scripts.bench --only onnx). `num_queries` is q.shape[1], passed in because the
    ONNX tracer would freeze the size of q."""
    per_token = lambda t: t.permute(1, 2, 3, 0, 4)  # noqa: E731  (frames, B, S, h, d) -> (B, S, h, frames, d)
    scores = torch.matmul(q.permute(0, 2, 3, 1, 4), per_token(keys).transpose(-1, -2)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(_future_frames(num_queries, keys.shape[0], first_query, q.device), float("-inf"))
    return torch.matmul(scores.softmax(-1), per_token(values)).permute(0, 3, 1, 2, 4)  # (B, n, S, heads, d)


def _sdpa_over_frames(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, first_query: int) -> torch.Tensor:
    """The same attention as `_broadcast_attention` through SDPA, for many query frames (a prompt)."""
    (b, n, s, heads, d), num_keys = q.shape, keys.shape[0]
    allowed = torch.ones(n, num_keys, dtype=torch.bool, device=q.device).tril(first_query)  # True = may attend
    per_token = lambda t: t.permute(1, 2, 3, 0, 4).reshape(b * s, heads, t.shape[0], d)  # noqa: E731
    out = F.scaled_dot_product_attention(per_token(q.transpose(0, 1)), per_token(keys), per_token(values),
                                         attn_mask=allowed)
    return out.reshape(b, s, heads, n, d).permute(0, 3, 1, 2, 4)  # (B, n, S, heads, d)
