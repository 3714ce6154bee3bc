"""The world model: factorized token embedding + learned (T, S) positions + ST transformer + factorized head.

Parameter names and the forward computation match the reference `STMaskGIT` (github
1x-technologies/1xgpt), so its `save_pretrained` checkpoints load here and give the same logits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from genie.checkpointing.checkpoint import load_weights_strict
from genie.errors import CheckpointNotFoundError
from genie.model.attention import KVCache
from genie.model.config import GenieConfig
from genie.model.factorization import FactorizedEmbedding, factorize_token_ids
from genie.model.st_transformer import STTransformer


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, S, num_factored_vocabs, factored_vocab_size)
    loss: torch.Tensor | None = None  # mean over scored tokens of the sum over factors of cross-entropy (nats)
    acc: torch.Tensor | None = None  # share of scored tokens whose every factor is predicted right
    num_scored: torch.Tensor | None = None  # number of scored tokens (for exact averaging across batches)


class STMaskGIT(nn.Module, PyTorchModelHubMixin):
    def __init__(self, config: GenieConfig):
        super().__init__()
        self.config = config
        self.token_embed = FactorizedEmbedding(
            factored_vocab_size=config.factored_vocab_size,
            num_factored_vocabs=config.num_factored_vocabs,
            d_model=config.d_model,
            mask_token_id=config.mask_token_id,
        )
        self.pos_embed_TSC = nn.Parameter(torch.zeros(1, config.T, config.S, config.d_model))
        self.action_proj = nn.Linear(config.action_dim, config.d_model) if config.action_dims else None
        self.decoder = STTransformer(config)
        self.out_x_proj = nn.Linear(config.d_model, config.num_factored_vocabs * config.factored_vocab_size)
        # What a frame whose action is withheld (NaN) gets instead of action_proj(action): a learned vector.
        # Zeros: it draws nothing from the RNG, so every other weight is initialised as before.
        self.no_action = nn.Parameter(torch.zeros(config.d_model)) if config.action_dims else None
        self._hub_mixin_config = config.to_portable_dict()  # what save_pretrained writes to config.json
        self.init_weights()

    @property
    def mask_token_id(self) -> int:
        return self.config.mask_token_id

    def init_weights(self) -> None:
        """Same initialisation as the reference: N(0, 0.02) for Linear and Embedding weights, zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.decoder.gradient_checkpointing = enabled

    def set_temporal_attention(self, mode: str) -> None:
        """Switch the default temporal attention ("causal" | "bidirectional"), e.g. at the stage-1 -> 2 hand-off."""
        self.config = self.config.replace(temporal_attention=mode)
        self._hub_mixin_config = self.config.to_portable_dict()  # what save_pretrained writes to config.json

    def compute_logits(self, tokens: torch.Tensor, actions: torch.Tensor | None = None,
                       causal: bool | None = None) -> torch.Tensor:
        """tokens (B, T', S) with T' <= T, mask id where hidden -> logits (B, T', S, K, V).

        `causal` picks the temporal attention for this call; None uses the config's mode.
        `actions` (B, T' or more, action_dim), row t being the action that produced frame t, are added,
        projected, to every token of their frame (config action_placement "own") or of the frame before
        ("previous": frame t gets row t+1, and a frame with no row after it `no_action`). A row of NaN
        (withheld, e.g. --drop_actions) gets the learned `no_action` vector too. Rows after the frames
        given are read only by "previous": decoders pass the row after the frame they decode.
        """
        causal = self.config.causal if causal is None else causal
        x = self.decoder(self._embed(tokens, actions, first_frame=0), causal=causal)
        return self._head(x)

    def new_kv_cache(self) -> list[KVCache]:
        """Empty per-layer KV caches for `compute_logits_cached` (room for T frames)."""
        return [KVCache(self.config.T) for _ in self.decoder.layers]

    def compute_logits_cached(self, tokens: torch.Tensor, cache: list[KVCache], actions: torch.Tensor | None = None,
                              commit: int = 0) -> torch.Tensor:
        """Causal logits (B, T' - commit, S, K, V) of new frames `tokens` (B, T', S) that follow the frames
        held in `cache`: the first `commit` new frames are added to the cache and get no logits (the last
        layer and the output head skip them); the others get the logits `compute_logits` gives them on the
        whole prefix."""
        first_frame = cache[0].length
        logits = self._head(self.decoder.forward_cached(self._embed(tokens, actions, first_frame), cache, commit))
        for layer_cache in cache:
            layer_cache.commit(commit)
        return logits

    def _embed(self, tokens: torch.Tensor, actions: torch.Tensor | None, first_frame: int) -> torch.Tensor:
        num_frames = tokens.shape[1]
        x = self.token_embed(tokens) + self.pos_embed_TSC[:, first_frame:first_frame + num_frames]
        if self.action_proj is not None:
            if actions is None:
                raise ValueError(f"this model is conditioned on actions {self.config.action_dims}; pass `actions`")
            x = x + self._action_embedding(self._placed_actions(actions, num_frames).to(x.dtype)).unsqueeze(2)
        return x

    def _placed_actions(self, actions: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The action row each of `num_frames` frames gets (B, num_frames, A): its own, or with action_placement
        "previous" the next frame's (NaN, "no action", where the input has no row after it)."""
        if self.config.action_placement == "own":
            return actions[:, :num_frames]
        following = actions[:, 1:num_frames + 1]
        missing = num_frames - following.shape[1]
        return torch.cat([following, following.new_full((actions.shape[0], missing, actions.shape[2]), float("nan"))],
                         dim=1)

    def _action_embedding(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, T', A) -> (B, T', d_model): action_proj of each frame's action, or `no_action` where it is withheld
        (NaN). Frames with an action get exactly action_proj(action), so runs without NaN are unchanged."""
        withheld = actions.isnan().any(dim=-1, keepdim=True)
        projected = self.action_proj(torch.where(withheld, torch.zeros_like(actions), actions))
        return torch.where(withheld, self.no_action.to(projected.dtype), projected)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_x_proj(x).unflatten(-1, (self.config.num_factored_vocabs, self.config.factored_vocab_size))

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                loss_mask: torch.Tensor | None = None, actions: torch.Tensor | None = None,
                causal: bool | None = None, loss_denominator: torch.Tensor | None = None,
                loss_weights: torch.Tensor | None = None) -> ModelOutput:
        """input_ids, labels: (B, T', S). loss_mask: bool (B, T', S), True = masked = scored.

        Without `loss_mask` the scored positions are those holding the mask token (the reference's rule).
        `loss_denominator` replaces the local number of scored tokens in the mean (data parallelism
        passes global count / processes, so that averaged gradients equal one process's).
        `loss_weights` (B, T', S), if given, weighs each scored token: the loss is then the weighted mean.
        """
        logits = self.compute_logits(input_ids, actions=actions, causal=causal)
        if labels is None:
            return ModelOutput(logits=logits)
        if loss_mask is None:
            loss_mask = input_ids == self.mask_token_id
        loss, acc, num_scored = masked_token_loss(logits, labels, loss_mask, self.config, loss_denominator, loss_weights)
        return ModelOutput(logits=logits, loss=loss, acc=acc, num_scored=num_scored)

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path) -> "STMaskGIT":
        """Load a local Hugging Face-format folder (`config.json` + `model.safetensors`), strictly.

        Works for folders written by this project and by the reference `STMaskGIT.save_pretrained`.
        """
        checkpoint_dir = Path(checkpoint_dir)
        if not checkpoint_dir.is_dir():
            raise CheckpointNotFoundError(f"checkpoint folder {checkpoint_dir} does not exist; pass a folder holding "
                                    "config.json and model.safetensors")
        if not (checkpoint_dir / "config.json").is_file():
            raise CheckpointNotFoundError(f"checkpoint folder {checkpoint_dir} has no config.json; pass a folder written "
                                    "by save_pretrained (a run's final model or a step_N/ folder)")
        model = cls(GenieConfig.from_json_file(checkpoint_dir / "config.json"))
        load_weights_strict(model, checkpoint_dir / "model.safetensors", with_legacy_weights)
        return model


def with_legacy_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict written before `no_action` existed, completed: its action models fed withheld actions
    as zeros, which the action projection turns into its bias, so `no_action` starts as that bias (the
    same logits as before). Any other state dict is returned as it is."""
    if "action_proj.bias" in state_dict and "no_action" not in state_dict:
        return {**state_dict, "no_action": state_dict["action_proj.bias"].clone()}
    return state_dict


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, config: GenieConfig
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy summed over factors (B, T, S) and per-token correctness (every factor right)."""
    factor_labels = factorize_token_ids(labels, config.num_factored_vocabs, config.factored_vocab_size)
    # Class dimension last and flattened: no permuted copy of the (large) logits.
    per_factor_ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), factor_labels.reshape(-1),
                                    reduction="none").reshape(factor_labels.shape)
    return per_factor_ce.sum(dim=-1), (logits.argmax(dim=-1) == factor_labels).all(dim=-1)


def masked_token_loss(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor, config: GenieConfig,
                      denominator: torch.Tensor | None = None, token_weights: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean over scored tokens (loss_mask True) of the per-factor cross-entropy sum, and token accuracy;
    with `token_weights`, the weighted mean (the denominator is then the scored tokens' total weight).

    The mask multiplies instead of indexing, so no shape depends on the data and nothing syncs the host.
    """
    token_ce, token_correct = token_cross_entropy(logits, labels, config)
    weights = loss_mask.to(token_ce.dtype)
    if token_weights is not None:
        weights = weights * token_weights.to(token_ce.dtype)
    num_scored = weights.sum()
    denominator = (num_scored if denominator is None else denominator.to(weights.dtype)).clamp(min=1.0)
    return (token_ce * weights).sum() / denominator, (token_correct * weights).sum() / denominator, num_scored
