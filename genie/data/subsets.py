"""Views of a training split for label-scarce training: a seeded fraction of its segments (the
"labelled" subset), and the same windows with their action labels withheld (the unlabelled pool).

A segment is one continuous recording, so a subset never cuts a recording in two and the windows of
one recording are either all in or all out. Withheld actions are NaN: the model then adds its learned
`no_action` vector to those frames instead of projecting a value (genie/model/stmaskgit.py), so a
withheld action is never mistaken for a real command (zeros would be "stay" on the built-in world).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from genie.errors import ConfigError, DataFormatError


class _View(Dataset):
    """A dataset over another one's windows; every other attribute (data_dir, window_size, frame_arrays,
    check_compatible, ...) is the underlying split's."""

    def __init__(self, base: Any):
        self.base = base

    def __getattr__(self, name: str) -> Any:
        if name == "base":  # not set yet (unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.base, name)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        return self.base[idx]


class SegmentSubset(_View):
    """The windows of `fraction` of a split's segments, chosen by `seed`; a fraction that keeps none is a
    one-line ConfigError."""

    def __init__(self, base: Any, fraction: float, seed: int):
        super().__init__(base)
        segments = base.window_segments()
        count = len(np.unique(segments))
        if round(fraction * count) < 1:
            raise ConfigError(f"--train_segment_fraction {fraction:g} keeps 0 of the {count} segments of "
                              f"{base.data_dir} (round({fraction:g} x {count})); pass at least 1/{count} = "
                              f"{1 / count:.3g} (one segment)")
        kept_ids = choose_segments(np.unique(segments), fraction, seed)
        self.windows = np.flatnonzero(np.isin(segments, kept_ids))
        self.num_segments, self.kept_segments = len(np.unique(segments)), kept_ids

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        return self.base[int(self.windows[idx])]

    def record(self) -> dict[str, Any]:
        """What a run's config.json keeps: which segments it trained on."""
        ids = [int(i) for i in self.kept_segments]
        return {"segments": len(ids), "of_segments": self.num_segments, "windows": len(self.windows),
                "of_windows": len(self.base), "segment_ids_sha1": hashlib.sha1(str(ids).encode()).hexdigest(),
                "segment_ids": ids}


def choose_segments(segment_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """round(fraction x segments) of the given ids, drawn without replacement by `seed`, sorted. Nested in
    the fraction: at one seed, the segments of a smaller fraction are among a larger one's."""
    count = round(fraction * len(segment_ids))
    order = np.random.default_rng(seed).permutation(len(segment_ids))
    return np.sort(segment_ids[order[:count]])


class WithoutActions(_View):
    """The same windows with every action value replaced by NaN, "no action" (see the module's docstring).
    With `width`, windows read without actions (a split that has no action files) get (T, width) NaN, what a
    model of that many action values takes."""

    def __init__(self, base: Any, width: int = 0):
        super().__init__(base)
        self.width = width

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        item = dict(self.base[idx])
        if "actions" in item:
            item["actions"] = torch.full_like(item["actions"], float("nan"))
        elif self.width:
            item["actions"] = torch.full((len(item["input_ids"]), self.width), float("nan"), dtype=torch.float32)
        return item


def drop_actions_note(config: Any, data_dir: Path) -> str | None:
    """What --drop_actions does on this model and split when it is not the usual (labels read, then withheld):
    a model without actions has nothing to withhold; a split without the action files has no labels to drop."""
    if not config.action_dims:
        return "--drop_actions has nothing to withhold: the model config has no action input (action_dims is empty)"
    missing = [name for name in config.action_dims if not (Path(data_dir) / "actions" / f"{name}.bin").is_file()]
    if (Path(data_dir) / "video.bin").is_file() and missing:
        return (f"{data_dir} has no action file for {', '.join(missing)}: --drop_actions has no labels to withhold "
                f"there; the model's action input gets 'no action' (NaN rows), as for every window with --drop_actions")
    return None


def training_view(dataset: Any, segment_fraction: float, drop_actions: bool, seed: int, action_width: int = 0
                  ) -> tuple[Any, dict[str, Any]]:
    """The training windows a run uses and what to record about them (empty when it uses them all). With
    `drop_actions`, windows read without actions get (T, `action_width`) NaN ("no action")."""
    record: dict[str, Any] = {}
    if segment_fraction < 1.0:
        if not hasattr(dataset, "window_segments"):
            raise DataFormatError(f"{dataset.data_dir}: --train_segment_fraction needs segment ids, which this "
                                  "layout does not have; leave the flag out")
        dataset = SegmentSubset(dataset, segment_fraction, seed)
        record["train_segments"] = dataset.record()
    if drop_actions:
        dataset = WithoutActions(dataset, action_width)
        record["actions_withheld"] = True
    return dataset, record
