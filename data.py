"""Token datasets in the 1X World Model Challenge format (v1.1) and the stage-2 MaskGIT collator.

A split is a folder with `metadata.json`, `video.bin` (num_images x s x s tokens), `segment_ids.bin`
(int32 per frame) and optionally `actions/<name>.bin` (float32, num_images x dim). See DESIGN.md §4.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from genie.checkpoint import atomic_directory
from genie.config import GenieConfig, read_json_object
from genie.factorization import factorize_token_ids, unfactorize_token_ids
from genie.masking import bernoulli_per_frame, frames_from

# Action streams the 1X challenge ships, with their per-frame dims.
KNOWN_ACTION_DIMS = {"driving_command": 2, "neck_desired": 1, "l_hand_closure": 1, "r_hand_closure": 1,
                     "joint_pos": 21}
_TOKEN_CHECK_FRAMES = 256  # frames read to check token ids against the vocabulary


class DataFormatError(ValueError):
    """A data folder is missing a file or holds a file of the wrong size or content; one line says which."""


def _read_metadata(data_dir: Path) -> dict[str, Any]:
    if not data_dir.is_dir():
        raise DataFormatError(f"data folder {data_dir} does not exist; pass a folder in the 1X format "
                              "(metadata.json, video.bin, segment_ids.bin) or omit the flag to use the built-in dataset")
    path = data_dir / "metadata.json"
    if not path.is_file():
        raise DataFormatError(f"{path} is missing; a data folder needs metadata.json with num_images, s and vocab_size")
    metadata = read_json_object(path, DataFormatError)
    for key in ("num_images", "s", "vocab_size"):
        value = metadata.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DataFormatError(f"{path}: field '{key}' = {value!r} must be a positive integer")
    try:
        metadata["token_dtype"] = np.dtype(metadata.get("token_dtype", "uint32")).name
    except TypeError:
        raise DataFormatError(f"{path}: token_dtype {metadata.get('token_dtype')!r} is not a numpy dtype "
                              "(use uint32, uint16 or int64)") from None
    if np.dtype(metadata["token_dtype"]).kind not in "ui":
        raise DataFormatError(f"{path}: token_dtype {metadata['token_dtype']!r} must be an integer dtype")
    return metadata


def _memmap_checked(path: Path, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.memmap:
    if not path.is_file():
        raise DataFormatError(f"{path} is missing; it should hold {what}")
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise DataFormatError(f"{path} has {actual} bytes but metadata implies {expected} "
                              f"({what}, shape {shape}, {np.dtype(dtype).name}); the file is truncated or metadata.json is wrong")
    if expected == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def window_start_indices(segment_ids: np.ndarray | None, num_frames: int, window_size: int, stride: int,
                         filter_overlaps: bool = False) -> np.ndarray:
    """Start frames of every window of `window_size` frames spaced `stride` apart (vectorized).

    A window is kept only when all frames it spans lie in one segment. With `filter_overlaps`, each
    frame is used by at most one window: within each run of consecutive valid starts, the starts of
    one residue class modulo `stride` are taken every `window_size` windows.
    """
    span = (window_size - 1) * stride  # frames between a window's first and last frame
    num_starts = max(num_frames - span, 0)
    if segment_ids is not None and num_starts:
        # Number of segment changes up to each frame; a window is clean if none happens inside it.
        # Slices, not index arrays: this runs over ~10M frames for the challenge data.
        segment_ids = np.asarray(segment_ids)
        cuts = np.zeros(num_frames, dtype=np.int64)
        np.cumsum(segment_ids[1:] != segment_ids[:-1], out=cuts[1:])
        valid = cuts[span:span + num_starts] == cuts[:num_starts]
    else:
        valid = np.ones(num_starts, dtype=bool)
    if filter_overlaps and num_starts:
        starts = np.arange(num_starts, dtype=np.int64)
        is_run_start = valid & ~np.concatenate([[False], valid[:-1]])
        run_start = np.maximum.accumulate(np.where(is_run_start, starts, -1))
        valid &= ((starts - run_start) // stride) % window_size == 0
    return np.flatnonzero(valid)


class RawTokenDataset(Dataset):
    """Memory-mapped windows of `window_size` frames from a 1X-format folder.

    Item: {"input_ids": int64 (T, S)} plus {"actions": float32 (T, action_dim)} when `action_dims` is given
    (streams concatenated in the given order).
    """

    def __init__(self, data_dir: str | Path, window_size: int, stride: int = 1, filter_interrupts: bool = True,
                 filter_overlaps: bool = False, action_dims: Mapping[str, int] | None = None):
        self.data_dir = Path(data_dir)
        if window_size < 1 or stride < 1:
            raise DataFormatError(f"window_size={window_size} and stride={stride} must both be >= 1")
        self.metadata = _read_metadata(self.data_dir)
        n, s = self.metadata["num_images"], self.metadata["s"]
        self.num_images, self.s, self.vocab_size = n, s, self.metadata["vocab_size"]
        self.window_size, self.stride = window_size, stride
        self.video = _memmap_checked(self.data_dir / "video.bin", np.dtype(self.metadata["token_dtype"]), (n, s, s),
                                     "the video tokens")
        seg_path = self.data_dir / "segment_ids.bin"
        if seg_path.is_file() or filter_interrupts:
            self.segment_ids = _memmap_checked(seg_path, np.dtype(np.int32), (n,), "one int32 segment id per frame")
        else:
            self.segment_ids = None
        self.action_dims = dict(action_dims or {})
        self.actions = {
            name: _memmap_checked(self.data_dir / "actions" / f"{name}.bin", np.dtype(np.float32), (n, dim),
                                  f"action stream '{name}' ({dim} float32 per frame)")
            for name, dim in self.action_dims.items()
        }
        self._check_token_range()
        self.start_indices = window_start_indices(self.segment_ids if filter_interrupts else None, n, window_size,
                                                  stride, filter_overlaps)
        if len(self.start_indices) == 0:
            longest = _longest_segment(self.segment_ids if filter_interrupts else None, n)
            raise DataFormatError(
                f"{self.data_dir}: no window of {window_size} frames at stride {stride} (spanning "
                f"{(window_size - 1) * stride + 1} frames) fits inside a segment; the longest segment has {longest} "
                "frames: lower --window_size or --stride")

    def _check_token_range(self) -> None:
        """Token ids must lie in [0, vocab_size): checked on evenly spaced frames, never silently wrapped."""
        if self.num_images == 0:
            return
        frames = np.unique(np.linspace(0, self.num_images - 1, min(_TOKEN_CHECK_FRAMES, self.num_images)).astype(np.int64))
        sample = np.asarray(self.video[frames]).reshape(len(frames), -1).astype(np.int64)
        bad_frames = ((sample >= self.vocab_size) | (sample < 0)).any(axis=1)
        if bad_frames.any():
            first = int(np.argmax(bad_frames))
            raise DataFormatError(f"{self.data_dir / 'video.bin'}: frame {int(frames[first])} holds token id "
                                  f"{int(sample[first].max())} outside [0, vocab_size={self.vocab_size}); "
                                  "fix vocab_size in metadata.json or the tokens")

    def __len__(self) -> int:
        return len(self.start_indices)

    def frame_indices(self, idx: int) -> np.ndarray:
        start = int(self.start_indices[idx])
        return np.arange(start, start + (self.window_size - 1) * self.stride + 1, self.stride)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        frames = self.frame_indices(idx)
        tokens = np.asarray(self.video[frames[0]:frames[-1] + 1:self.stride], dtype=np.int64)
        item = {"input_ids": torch.from_numpy(tokens.reshape(self.window_size, self.s * self.s))}
        if self.actions:
            streams = [np.asarray(self.actions[name][frames[0]:frames[-1] + 1:self.stride]) for name in self.action_dims]
            item["actions"] = torch.from_numpy(np.concatenate(streams, axis=1).astype(np.float32))
        return item

    def check_compatible(self, config: GenieConfig) -> None:
        """Raise a one-line error when the model config cannot read this data."""
        where = self.data_dir
        if self.s * self.s != config.S:
            raise DataFormatError(f"{where}: frames are {self.s}x{self.s} = {self.s * self.s} tokens but the model "
                                  f"config has S = {config.S}; use a config with S = {self.s * self.s}")
        if self.window_size != config.T:
            raise DataFormatError(f"{where}: --window_size {self.window_size} differs from the model config's "
                                  f"T = {config.T}; set them equal")
        if self.vocab_size > config.image_vocab_size:
            raise DataFormatError(f"{where}: vocab_size {self.vocab_size} exceeds the model's image_vocab_size "
                                  f"{config.image_vocab_size}; use a config whose vocabulary covers the data")


def _longest_segment(segment_ids: np.ndarray | None, num_frames: int) -> int:
    if segment_ids is None or num_frames == 0:
        return num_frames
    boundaries = np.flatnonzero(np.concatenate([[True], segment_ids[1:] != segment_ids[:-1], [True]]))
    return int(np.diff(boundaries).max())


def write_token_dataset(out_dir: str | Path, tokens: np.ndarray, segment_ids: np.ndarray, vocab_size: int,
                        hz: int = 30, actions: Mapping[str, np.ndarray] | None = None,
                        token_dtype: str = "uint32", extra_metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a split in the 1X v1.1 format; written to a temporary folder and renamed into place."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 3 or tokens.shape[1] != tokens.shape[2]:
        raise ValueError(f"tokens must have shape (num_images, s, s), got {tokens.shape}")
    if len(segment_ids) != len(tokens):
        raise ValueError(f"segment_ids has {len(segment_ids)} entries for {len(tokens)} frames")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size})")
    with atomic_directory(out_dir) as tmp:
        tokens.astype(token_dtype).tofile(tmp / "video.bin")
        np.asarray(segment_ids, dtype=np.int32).tofile(tmp / "segment_ids.bin")
        action_dims = {}
        for name, values in (actions or {}).items():
            values = np.asarray(values, dtype=np.float32).reshape(len(tokens), -1)
            (tmp / "actions").mkdir(exist_ok=True)
            values.tofile(tmp / "actions" / f"{name}.bin")
            action_dims[name] = values.shape[1]
        metadata = {"num_images": len(tokens), "s": tokens.shape[1], "vocab_size": vocab_size, "hz": hz,
                    "token_dtype": np.dtype(token_dtype).name, **({"action_dims": action_dims} if action_dims else {}),
                    **(extra_metadata or {})}
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return Path(out_dir)


def stack_features(features: Sequence[Mapping[str, torch.Tensor]] | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A list of dataset items -> a dict of batched tensors (an already batched dict passes through)."""
    if isinstance(features, Mapping):
        return dict(features)
    return {key: torch.stack([f[key] for f in features]) for key in features[0]}


class AutoregressiveMaskGITCollator:
    """Stage-2 batches, following the reference `get_maskgit_collator` (Copilot4D-style corruption):

    1. every factor of every token is replaced by a random value with probability max_corrupt_rate * U(0,1);
    2. with probability non_mlm_ratio the batch is "non-MLM": frames before a first frame drawn from
       [num_prompt_frames, T-1] stay as they are and later frames are corrupted more, each frame keeping
       its factors with a rate that decays by U(0.9, 1) per frame from U(0.25, 1); otherwise the first
       maskable frame is 1 (frame 0 is never masked);
    3. each sample and each maskable frame gets a mask probability cos(pi/2 * U(0,1)); tokens are masked
       independently with it. At least one token per batch is masked.

    Returns input_ids (masked and corrupted), labels (the clean tokens), loss_mask (True = masked =
    scored) and actions if present. Everything is vectorized and drawn from `generator`.
    """

    def __init__(self, config: GenieConfig):
        self.config = config

    def __call__(self, features, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        batch = stack_features(features)
        cfg = self.config
        tokens = batch["input_ids"]
        b, t, s = tokens.shape
        k, v = cfg.num_factored_vocabs, cfg.factored_vocab_size

        def rand(*shape):
            return torch.rand(shape, generator=generator)

        factors = factorize_token_ids(tokens, k, v)
        random_factors = torch.randint(0, v, factors.shape, generator=generator)
        corrupt = rand(b, t, s, k) < cfg.max_corrupt_rate * rand(1).item()
        if rand(1).item() < cfg.non_mlm_ratio:
            low = min(cfg.num_prompt_frames, t - 1)
            first_masked = int(torch.randint(low, t, (1,), generator=generator))
            keep_rate = 0.25 + 0.75 * rand(1).item()
            decay = torch.cumprod(0.9 + 0.1 * rand(t - first_masked), dim=0)
            frame_keep_rate = torch.ones(t)
            frame_keep_rate[first_masked:] = keep_rate * decay
            corrupt |= rand(b, t, s, k) > frame_keep_rate.reshape(1, t, 1, 1)
        else:
            first_masked = 1
        factors = torch.where(corrupt, random_factors, factors)

        mask_probability = torch.cos(math.pi / 2 * rand(b, t, 1))
        maskable = frames_from((b, t, s), first_masked)
        mask = bernoulli_per_frame((b, t, s), mask_probability, generator) & maskable
        if not mask.any():  # rare: make sure the batch scores at least one token
            mask[0, first_masked, int(torch.randint(0, s, (1,), generator=generator))] = True

        input_ids = torch.where(mask, cfg.mask_token_id, unfactorize_token_ids(factors, k, v))
        out = {"input_ids": input_ids, "labels": tokens, "loss_mask": mask}
        if "actions" in batch:
            out["actions"] = batch["actions"]
        return out


def get_maskgit_collator(config: GenieConfig) -> AutoregressiveMaskGITCollator:
    """The stage-2 collator; usable as a DataLoader `collate_fn` or on an already batched dict."""
    return AutoregressiveMaskGITCollator(config)


class MaskedPretrainCollator:
    """Stage-1 batches (MaskViT / MaskGIT style): each sample and each frame gets its own mask.

    The ratio is the schedule's value at the optimizer step passed in (`step` of `total_steps`), or a
    fixed `ratio` (evaluation). The pattern is random (exactly round(ratio*S) tokens per frame), block
    or tube; optional periodic prompt frames and a visible spatial lattice are ANDed in; frame 0
    stays visible unless `mask_all_frames`. Returns input_ids, labels, loss_mask (True = masked =
    scored) and actions if present.
    """

    def __init__(self, config, model_config: GenieConfig, total_steps: int = 1):
        self.config, self.model_config, self.total_steps = config, model_config, max(total_steps, 1)

    def mask_ratio(self, step: int) -> float:
        from genie.schedules import mask_ratio_at

        c = self.config
        return mask_ratio_at(step / self.total_steps, c.initial_mask_ratio, c.final_mask_ratio, c.mask_schedule,
                             c.exponential_k)

    def build_mask(self, shape: tuple[int, int, int], ratio: float, generator: torch.Generator | None) -> torch.Tensor:
        from genie.masking import block_mask, maskable_after_first_frame, maskable_between_prompt_frames, random_mask, maskable_off_lattice

        c, side = self.config, self.model_config.h
        if c.mask_pattern == "random":
            mask = random_mask(shape, ratio, generator)
        else:
            block_scale = min(max(ratio / c.block_count, 1.0 / shape[2]), 1.0)
            mask = block_mask(shape, side, side, c.block_count, (block_scale, block_scale),
                              (c.block_aspect_min, c.block_aspect_max), tube=c.mask_pattern == "tube",
                              generator=generator)
            if ratio == 0:
                mask = torch.zeros_like(mask)
        if c.prompt_frame_period:
            mask &= maskable_between_prompt_frames(shape, c.prompt_frame_period)
        if c.lattice_stride:
            mask &= maskable_off_lattice(shape, side, side, c.lattice_stride, c.lattice_offset)
        if not c.mask_all_frames:
            mask &= maskable_after_first_frame(shape)
        return mask

    def __call__(self, features, generator: torch.Generator | None = None, step: int = 0,
                 ratio: float | None = None) -> dict[str, torch.Tensor]:
        batch = stack_features(features)
        tokens = batch["input_ids"]
        mask = self.build_mask(tuple(tokens.shape), self.mask_ratio(step) if ratio is None else ratio, generator)
        out = {"input_ids": tokens.masked_fill(mask, self.model_config.mask_token_id), "labels": tokens,
               "loss_mask": mask}
        if "actions" in batch:
            out["actions"] = batch["actions"]
        return out


def get_masked_pretrain_collator(config, model_config: GenieConfig, total_steps: int = 1) -> MaskedPretrainCollator:
    """The stage-1 collator for a MaskedPretrainConfig, the model's GenieConfig and the run's step count."""
    return MaskedPretrainCollator(config, model_config, total_steps)
