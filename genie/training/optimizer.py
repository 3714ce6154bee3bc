"""The optimizers both stages use: AdamW, or Muon for the transformer's hidden matrices with AdamW for
the rest (`--optimizer muon`)."""
from __future__ import annotations

from typing import Any

import torch

from genie.training.arguments import TrainingArguments


def is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    """The 2-D weights inside the transformer blocks (attention and MLP projections): what Muon steps.
    Embeddings, the action projection, the output head, norms, biases and positions stay with AdamW,
    as in the Muon write-ups (its orthogonalised update suits hidden layers only)."""
    return param.ndim == 2 and name.startswith("decoder.layers.")


def adamw_groups(named_params: list[tuple[str, torch.Tensor]], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay only on Linear matrices (not biases, norms, embeddings, positions)."""
    decay, no_decay = [], []
    for name, param in named_params:
        is_matrix = param.ndim == 2 and not ("embed" in name)
        (decay if is_matrix else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    """AdamW (fused on GPU) over every parameter, or with `--optimizer muon` Muon over the hidden
    matrices (is_hidden_matrix) and AdamW over the rest, each at its own learning rate."""
    named = list(model.named_parameters())
    fused = next(model.parameters()).is_cuda
    adamw_settings = dict(lr=args.learning_rate, betas=(args.adam_beta_1, args.adam_beta_2), eps=args.adam_eps,
                          fused=fused)
    if args.optimizer == "adamw":
        return torch.optim.AdamW(adamw_groups(named, args.weight_decay), **adamw_settings)
    hidden = [param for name, param in named if is_hidden_matrix(name, param)]
    rest = [(name, param) for name, param in named if not is_hidden_matrix(name, param)]
    muon = torch.optim.Muon(hidden, lr=args.muon_learning_rate, momentum=args.muon_momentum,
                            weight_decay=args.weight_decay)
    return MuonWithAdamW(muon, torch.optim.AdamW(adamw_groups(rest, args.weight_decay), **adamw_settings))


class MuonWithAdamW(torch.optim.Optimizer):
    """Two optimizers stepped as one, so that one learning-rate scheduler, one gradient clip and one
    checkpoint serve both. The parameter groups are the inner optimizers' own dicts: a scheduler that
    scales each group's `lr` scales Muon's and AdamW's, each from its own initial rate."""

    def __init__(self, muon: torch.optim.Muon, adamw: torch.optim.AdamW):
        self.muon, self.adamw = muon, adamw
        super().__init__([*muon.param_groups, *adamw.param_groups], {})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Keep the inner optimizers' group dicts themselves (the base class would keep them too, but
        # its checks run first); new groups after construction are not supported.
        if any(group is param_group for group in (*self.muon.param_groups, *self.adamw.param_groups)):
            self.param_groups.append(param_group)
            return
        raise NotImplementedError("MuonWithAdamW takes its parameter groups from its two optimizers")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        # Loading gives the inner optimizers new group dicts: take them, or a scheduler would scale stale
        # copies. (Accelerate's prepare loads the state once to place it, so every run goes through here.)
        self.param_groups[:] = [*self.muon.param_groups, *self.adamw.param_groups]
