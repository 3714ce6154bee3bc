"""The optimizer both stages use."""
from __future__ import annotations

import torch

from genie.training.arguments import TrainingArguments


def build_optimizer(model: torch.nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    """AdamW (fused on GPU); weight decay only on Linear matrices (not biases, norms, embeddings, positions)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_matrix = param.ndim == 2 and not ("embed" in name)
        (decay if is_matrix else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta_1, args.adam_beta_2),
                             eps=args.adam_eps, fused=next(model.parameters()).is_cuda)
