"""Token datasets in the 1X World Model Challenge format (v1.1): the reader, its window index, a writer.

A split is a folder with `metadata.json`, `video.bin` (num_images x s x s tokens), `segment_ids.bin`
(int32 per frame) and optionally `actions/<name>.bin` (float32, num_images x dim); see
docs/architecture.md ("Data").
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from genie.data.checks import first_nonfinite_frame, first_token_out_of_range
from genie.errors import DataFormatError
from genie.files import atomic_directory, read_json_object
from genie.model.config import GenieConfig


def _read_metadata(data_dir: Path) -> dict[str, Any]:
    if data_dir.is_file():
        raise DataFormatError(f"data folder {data_dir} is a file; pass a folder in the 1X format (metadata.json, "
                              "video.bin, segment_ids.bin)")
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


def memmap_checked(path: Path, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.memmap:
    """A read-only memmap of `path` as `shape`; a missing file or a size that does not fit is a one-line error."""
    if not path.is_file():
        raise DataFormatError(f"{path} is missing; it should hold {what}")
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise DataFormatError(f"{path} has {actual} bytes but metadata implies {expected} "
                              f"({what}, shape {shape}, {np.dtype(dtype).name}); the file is truncated or its metadata is wrong")
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
    (streams concatenated in the given order). Implements genie/protocols.py `TokenDataset`.
    """
    first_scored_frame = 1  # the challenge scores every frame after the first
    rollout_prompt_frames = None  # the model config's num_prompt_frames
    scores_block_masked = False

    def __init__(self, data_dir: str | Path, window_size: int, stride: int = 1, filter_interrupts: bool = True,
                 filter_overlaps: bool = False, action_dims: Mapping[str, int] | None = None):
        self.data_dir = Path(data_dir)
        if window_size < 1 or stride < 1:
            raise DataFormatError(f"window_size={window_size} and stride={stride} must both be >= 1")
        self.metadata = _read_metadata(self.data_dir)
        n, s = self.metadata["num_images"], self.metadata["s"]
        self.num_images, self.s, self.vocab_size = n, s, self.metadata["vocab_size"]
        self.window_size, self.stride = window_size, stride
        self.video = memmap_checked(self.data_dir / "video.bin", np.dtype(self.metadata["token_dtype"]), (n, s, s),
                                     "the video tokens")
        seg_path = self.data_dir / "segment_ids.bin"
        if seg_path.is_file() or filter_interrupts:
            self.segment_ids = memmap_checked(seg_path, np.dtype(np.int32), (n,), "one int32 segment id per frame")
        else:
            self.segment_ids = None
        self.action_dims = dict(action_dims or {})
        self.actions = {
            name: memmap_checked(self.data_dir / "actions" / f"{name}.bin", np.dtype(np.float32), (n, dim),
                                  f"action stream '{name}' ({dim} float32 per frame)")
            for name, dim in self.action_dims.items()
        }
        self._check_contents()
        self.start_indices = window_start_indices(self.segment_ids if filter_interrupts else None, n, window_size,
                                                  stride, filter_overlaps)
        if len(self.start_indices) == 0:
            longest = _longest_segment(self.segment_ids if filter_interrupts else None, n)
            raise DataFormatError(
                f"{self.data_dir}: no window of {window_size} frames at stride {stride} (spanning "
                f"{(window_size - 1) * stride + 1} frames) fits inside a segment; the longest segment has {longest} "
                "frames: lower --window_size or --stride")

    @staticmethod
    def read_metadata(data_dir: str | Path) -> dict[str, Any]:
        """A split's metadata.json, checked (one-line DataFormatError when it is missing or wrong)."""
        return _read_metadata(Path(data_dir))

    def _check_contents(self) -> None:
        """Every token id lies in [0, vocab_size) (never silently wrapped) and every action value is finite:
        the whole files are read once, in chunks."""
        bad_token = first_token_out_of_range(self.video, self.vocab_size)
        if bad_token is not None:
            frame, token = bad_token
            raise DataFormatError(f"{self.data_dir / 'video.bin'}: frame {frame} holds token id {token} outside "
                                  f"[0, vocab_size={self.vocab_size}); fix vocab_size in metadata.json or the tokens")
        for name, values in self.actions.items():
            frame = first_nonfinite_frame(values)
            if frame is not None:
                raise DataFormatError(f"{self.data_dir / 'actions' / (name + '.bin')}: frame {frame} holds a NaN or "
                                      "infinite value; fix or drop that action stream")

    def __len__(self) -> int:
        return len(self.start_indices)

    def frame_arrays(self) -> list[np.ndarray]:
        """The token frames as (frames, s, s) arrays (for token statistics); one array for v1.1."""
        return [self.video]

    def window_segments(self) -> np.ndarray:
        """The segment id of each window (its first frame's; a window never spans two segments)."""
        if self.segment_ids is None:
            raise DataFormatError(f"{self.data_dir} has no segment_ids.bin, so its segments are unknown; add one "
                                  "(one int32 per frame) to train on a fraction of its segments")
        return np.asarray(self.segment_ids)[self.start_indices]

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
        check_fits_model(self, config)


def check_fits_model(dataset, config: GenieConfig) -> None:
    """One-line errors when a dataset's frames, windows or vocabulary do not fit the model config."""
    where, side = dataset.data_dir, dataset.s
    if side * side != config.S:
        raise DataFormatError(f"{where}: frames are {side}x{side} = {side * side} tokens but the model "
                              f"config has S = {config.S}; use a config with S = {side * side}")
    if dataset.window_size != config.T:
        raise DataFormatError(f"{where}: --window_size {dataset.window_size} differs from the model config's "
                              f"T = {config.T}; set them equal")
    if dataset.vocab_size > config.image_vocab_size:
        raise DataFormatError(f"{where}: vocab_size {dataset.vocab_size} exceeds the model's image_vocab_size "
                              f"{config.image_vocab_size}; use a config whose vocabulary covers the data")


def _longest_segment(segment_ids: np.ndarray | None, num_frames: int) -> int:
    if segment_ids is None or num_frames == 0:
        return num_frames
    boundaries = np.flatnonzero(np.concatenate([[True], segment_ids[1:] != segment_ids[:-1], [True]]))
    return int(np.diff(boundaries).max())


def write_token_dataset(out_dir: str | Path, tokens: np.ndarray, segment_ids: np.ndarray, vocab_size: int,
                        hz: int = 30, actions: Mapping[str, np.ndarray] | None = None,
                        token_dtype: str = "uint32", extra_metadata: Mapping[str, Any] | None = None,
                        extra_arrays: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write a split in the 1X v1.1 format; written to a temporary folder and renamed into place.
    `extra_arrays` (file name -> array) are saved beside the data as .npy files (no pickle), e.g. a
    tokenizer's codebook that `extra_metadata` names."""
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
        for name, array in (extra_arrays or {}).items():
            np.save(tmp / name, np.asarray(array), allow_pickle=False)
        metadata = {"num_images": len(tokens), "s": tokens.shape[1], "vocab_size": vocab_size, "hz": hz,
                    "token_dtype": np.dtype(token_dtype).name, **({"action_dims": action_dims} if action_dims else {}),
                    **(extra_metadata or {})}
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return Path(out_dir)
