"""The val windows that generation starts from: spread evenly over the split, so that the examples show
different segments (consecutive windows would show one segment several times)."""
from __future__ import annotations

import torch

from genie.protocols import TokenDataset


def spread_window_indices(num_windows: int, num_examples: int, offset: int = 0) -> list[int]:
    """`num_examples` window indices `num_windows // num_examples` apart (at least 1), the first at `offset`,
    wrapping around the end of the split; e.g. 10 windows, 3 examples, offset 2 -> [2, 5, 8]."""
    spacing = max(1, num_windows // num_examples)
    return [(offset + i * spacing) % num_windows for i in range(num_examples)]


def example_windows(dataset: TokenDataset, num_examples: int, offset: int = 0
                    ) -> tuple[list[int], torch.Tensor, torch.Tensor | None]:
    """The indices of the example windows (spread_window_indices), their tokens (N, T, S) and their
    actions (N, T, A), or None for data without actions."""
    indices = spread_window_indices(len(dataset), num_examples, offset)
    items = [dataset[i] for i in indices]
    tokens = torch.stack([item["input_ids"] for item in items])
    actions = torch.stack([item["actions"] for item in items]) if "actions" in items[0] else None
    return indices, tokens, actions
