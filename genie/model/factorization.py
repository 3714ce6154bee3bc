"""Factorized vocabularies: a token id is a number written in base `factored_vocab_size`.

token = sum_k c_k * factored_vocab_size**k, so with 2 x 512 factor 0 is `token % 512` and factor 1 is
`token // 512`. This matches the reference implementation's layout.
"""
from __future__ import annotations

import torch
from torch import nn


def factorize_token_ids(token_ids: torch.Tensor, num_factored_vocabs: int, factored_vocab_size: int) -> torch.Tensor:
    """(...) token ids in [0, factored_vocab_size**num_factored_vocabs) -> (..., num_factored_vocabs) factor ids."""
    powers = factored_vocab_size ** torch.arange(num_factored_vocabs, device=token_ids.device)
    return (token_ids.unsqueeze(-1) // powers) % factored_vocab_size


def unfactorize_token_ids(factor_ids: torch.Tensor, num_factored_vocabs: int, factored_vocab_size: int) -> torch.Tensor:
    """Inverse of `factorize_token_ids`: (..., num_factored_vocabs) -> (...)."""
    powers = factored_vocab_size ** torch.arange(num_factored_vocabs, device=factor_ids.device)
    return (factor_ids * powers).sum(dim=-1)


class FactorizedEmbedding(nn.Module):
    """Embedding of a token = sum of its factors' embeddings; the mask token gets its own learned vector.

    Written with `torch.where` instead of boolean-index gathers, so shapes never depend on the data
    and the module works under torch.compile. Parameter names match the reference checkpoints
    (`factored_embeds.{k}.weight`, `mask_token_embed` of shape (1, d_model)).
    """

    def __init__(self, factored_vocab_size: int, num_factored_vocabs: int, d_model: int, mask_token_id: int):
        super().__init__()
        self.factored_vocab_size = factored_vocab_size
        self.num_factored_vocabs = num_factored_vocabs
        self.mask_token_id = mask_token_id
        self.factored_embeds = nn.ModuleList(
            [nn.Embedding(factored_vocab_size, d_model) for _ in range(num_factored_vocabs)]
        )
        self.mask_token_embed = nn.Parameter(torch.zeros(1, d_model))

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        """(...) int64 token ids, possibly the mask id -> (..., d_model)."""
        is_mask = token_ids == self.mask_token_id  # True = masked
        # Any valid id stands in for the mask token; its embedding is discarded by the `where` below.
        safe_ids = token_ids.masked_fill(is_mask, 0)
        factor_ids = factorize_token_ids(safe_ids, self.num_factored_vocabs, self.factored_vocab_size)
        embeds = sum(embed(ids) for embed, ids in zip(self.factored_embeds, factor_ids.unbind(-1)))
        return torch.where(is_mask.unsqueeze(-1), self.mask_token_embed.to(embeds.dtype), embeds)
