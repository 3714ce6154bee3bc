"""1X World Model Challenge v2.0 data: sharded Cosmos DV8x8x8 tokens with robot states.

A split is either sharded (train: `videos/video_{i}.bin`, `robot_states/states_{i}.bin`,
`segment_indices/segment_idx_{i}.bin`, `metadata/metadata_{i}.json`) or flat (val: `video_{i}.bin`,
`states_{i}.bin`, `segment_idx_{i}.bin`, `metadata_{i}.json`), with a top-level `metadata.json`
({num_shards, query, hz, num_images}). Counts are raw 30 Hz frames. Each clip of 17 raw frames is
3 latent frames of s x s tokens (int32, s = 32, vocabulary 64,000, not factorized): latent frame 0
covers raw frame 0 of the clip, latent frame k >= 1 covers raw frames 8k-7..8k. `segment_idx` and
`states` (float32, 25 per raw frame) are per raw frame.

A window is T latent frames = T/3 consecutive clips of one shard, all inside one segment (a clip
whose raw frames cross a segment cut, or that runs past the shard's last raw frame, is never used).
The states condition the model like v1.1 actions: each latent frame gets the states of the raw frames
it covers, pooled by `state_pooling` ("last": the last covered raw frame; "mean": their mean).
Optional metadata fields `s`, `vocab_size` let the same reader take smaller grids (the built-in data).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from genie.data.checks import first_nonfinite_frame, first_token_out_of_range
from genie.data.raw_tokens import check_fits_model, memmap_checked, window_start_indices
from genie.errors import DataFormatError
from genie.files import read_json_object
from genie.model.config import GenieConfig

RAW_PER_CLIP, LATENT_PER_CLIP, STATE_DIM = 17, 3, 25
DEFAULT_SIDE, DEFAULT_VOCAB = 32, 64000
STATE_POOLING = ("last", "mean")
STATE_STREAM = "states"  # the model config's action_dims key for the 25 robot-state values
# Raw frames (first, last) of a clip that each latent frame covers.
LATENT_RAW_RANGES = ((0, 0), (1, 8), (9, 16))


@dataclass
class Shard:
    index: int
    num_frames: int  # raw frames
    video: np.ndarray  # (clips, 3, s, s) int32
    segment_idx: np.ndarray  # (num_frames,) int32
    states: np.ndarray  # (num_frames, 25) float32


def is_v2_folder(data_dir: Path) -> bool:
    return (data_dir / "videos").is_dir() or (data_dir / "video_0.bin").is_file()


def _paths(data_dir: Path, i: int, sharded: bool) -> dict[str, Path]:
    if sharded:
        return {"video": data_dir / "videos" / f"video_{i}.bin", "states": data_dir / "robot_states" / f"states_{i}.bin",
                "segment_idx": data_dir / "segment_indices" / f"segment_idx_{i}.bin",
                "metadata": data_dir / "metadata" / f"metadata_{i}.json"}
    return {"video": data_dir / f"video_{i}.bin", "states": data_dir / f"states_{i}.bin",
            "segment_idx": data_dir / f"segment_idx_{i}.bin", "metadata": data_dir / f"metadata_{i}.json"}


def _count_shards(data_dir: Path, sharded: bool) -> int:
    pattern = "videos/video_*.bin" if sharded else "video_*.bin"
    return len(list(data_dir.glob(pattern)))


def read_v2_metadata(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "metadata.json"
    if not path.is_file():
        raise DataFormatError(f"{path} is missing; a v2.0 folder needs metadata.json with num_shards")
    metadata = read_json_object(path, DataFormatError)
    sharded = (data_dir / "videos").is_dir()
    num_shards = metadata.get("num_shards", 1 if not sharded else None)
    if not isinstance(num_shards, int) or isinstance(num_shards, bool) or num_shards < 1:
        raise DataFormatError(f"{path}: num_shards = {num_shards!r} must be a positive integer")
    found = _count_shards(data_dir, sharded)
    if found != num_shards:
        raise DataFormatError(f"{path} says num_shards = {num_shards} but {data_dir} holds {found} video shard file(s); "
                              "fix metadata.json or restore the missing shards")
    side, vocab = metadata.get("s", DEFAULT_SIDE), metadata.get("vocab_size", DEFAULT_VOCAB)
    return {**metadata, "num_shards": num_shards, "s": side, "vocab_size": vocab, "sharded": sharded,
            "format": "v2.0", "s_given": "s" in metadata}


def open_shard(data_dir: Path, i: int, metadata: dict[str, Any]) -> Shard:
    """One shard's memmaps, with every size checked against its metadata."""
    paths = _paths(data_dir, i, metadata["sharded"])
    if not paths["metadata"].is_file():
        raise DataFormatError(f"{paths['metadata']} is missing; each shard needs its shard_num_frames")
    frames = read_json_object(paths["metadata"], DataFormatError).get("shard_num_frames")
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise DataFormatError(f"{paths['metadata']}: shard_num_frames = {frames!r} must be a positive integer")
    side = metadata["s"]
    clip_bytes = LATENT_PER_CLIP * side * side * 4
    if paths["video"].is_file() and paths["video"].stat().st_size % clip_bytes:
        fix = ("the file is truncated" if metadata.get("s_given") else
               f'{data_dir / "metadata.json"} gives no "s", so frames are read as {side}x{side} tokens (the '
               'challenge\'s); add "s" (the frame side) to it, or the file is truncated')
        raise DataFormatError(f"{paths['video']} has {paths['video'].stat().st_size} bytes, not a multiple of one clip "
                              f"(3 x {side} x {side} int32 = {clip_bytes} bytes); {fix}")
    clips = math.ceil(frames / RAW_PER_CLIP)
    video = memmap_checked(paths["video"], np.int32, (clips, LATENT_PER_CLIP, side, side),
                    f"ceil({frames} raw frames / 17) = {clips} clips of tokens")
    segments = memmap_checked(paths["segment_idx"], np.int32, (frames,), "one int32 segment index per raw frame")
    states = memmap_checked(paths["states"], np.float32, (frames, STATE_DIM), "25 float32 states per raw frame")
    return Shard(i, frames, video, segments, states)


def clip_window_starts(shard: Shard, clips_per_window: int, filter_overlaps: bool) -> np.ndarray:
    """First clips of every window of `clips_per_window` consecutive clean clips inside one segment
    (vectorized). A clip is clean when its 17 raw frames exist and share one segment."""
    num_clips = len(shard.video)
    cuts = np.zeros(shard.num_frames, dtype=np.int64)  # segment changes up to each raw frame
    np.cumsum(shard.segment_idx[1:] != shard.segment_idx[:-1], out=cuts[1:])
    first = np.arange(num_clips) * RAW_PER_CLIP
    last = first + RAW_PER_CLIP - 1
    complete = last < shard.num_frames
    clean = complete & (cuts[first] == cuts[np.minimum(last, shard.num_frames - 1)])
    if clips_per_window == 1:  # one-clip windows never overlap
        return np.flatnonzero(clean)
    # Clean clips carry their segment's label; every other clip a label of its own, so that no window
    # of two or more clips spans it.
    labels = np.where(clean, cuts[first], -1 - np.arange(num_clips))
    return window_start_indices(labels, num_clips, clips_per_window, 1, filter_overlaps)


class CosmosV2Dataset(Dataset):
    """Windows of T latent frames from a v2.0 folder, with the v1.1 dataset's interface.

    Item: {"input_ids": int64 (T, S)} plus {"actions": float32 (T, 25)} with `with_states`. Implements
    genie/protocols.py `TokenDataset`: a window is a context clip then a target clip, so evaluation scores
    the target's latent frames, teacher-forced and all masked at once, and rolls out from the context clip.
    """
    first_scored_frame = LATENT_PER_CLIP
    rollout_prompt_frames = LATENT_PER_CLIP
    scores_block_masked = True

    def __init__(self, data_dir: str | Path, window_size: int = 6, stride: int = 1, filter_overlaps: bool = False,
                 with_states: bool = True, state_pooling: str = "last"):
        self.data_dir = Path(data_dir)
        if window_size < LATENT_PER_CLIP or window_size % LATENT_PER_CLIP:
            raise DataFormatError(f"v2.0 windows are whole clips of 3 latent frames: --window_size / T = {window_size} "
                                  "must be a multiple of 3 (6 = context clip + target clip)")
        if stride != 1:
            raise DataFormatError(f"v2.0 windows are consecutive clips: --stride {stride} must be 1")
        if state_pooling not in STATE_POOLING:
            raise DataFormatError(f"--state_pooling {state_pooling!r} must be one of {STATE_POOLING}")
        self.metadata = read_v2_metadata(self.data_dir)
        self.s, self.vocab_size = self.metadata["s"], self.metadata["vocab_size"]
        self.window_size, self.stride, self.state_pooling, self.with_states = window_size, 1, state_pooling, with_states
        self.shards = [open_shard(self.data_dir, i, self.metadata) for i in range(self.metadata["num_shards"])]
        self.num_images = sum(len(shard.video) * LATENT_PER_CLIP for shard in self.shards)
        self._check_contents()
        starts = [clip_window_starts(shard, window_size // LATENT_PER_CLIP, filter_overlaps) for shard in self.shards]
        self.window_shard = np.concatenate([np.full(len(s), i) for i, s in enumerate(starts)]).astype(np.int64)
        self.window_clip = np.concatenate(starts).astype(np.int64)
        if len(self.window_clip) == 0:
            raise DataFormatError(f"{self.data_dir}: no run of {window_size // LATENT_PER_CLIP} clean clips inside one "
                                  "segment; lower --window_size")

    def _check_contents(self) -> None:
        for shard, paths in ((s, _paths(self.data_dir, s.index, self.metadata["sharded"])) for s in self.shards):
            bad = first_token_out_of_range(shard.video.reshape(-1, self.s, self.s), self.vocab_size)
            if bad is not None:
                raise DataFormatError(f"{paths['video']}: latent frame {bad[0]} holds token id {bad[1]} outside "
                                      f"[0, {self.vocab_size}); fix the tokens or vocab_size in metadata.json")
            if self.with_states and (frame := first_nonfinite_frame(shard.states)) is not None:
                raise DataFormatError(f"{paths['states']}: raw frame {frame} holds a NaN or infinite state value")

    def __len__(self) -> int:
        return len(self.window_clip)

    def window_segments(self) -> np.ndarray:
        """A key per window for its segment (segment indices are per shard, so the shard is part of it)."""
        first_raw = [int(self.shards[s].segment_idx[c * RAW_PER_CLIP]) for s, c in zip(self.window_shard, self.window_clip)]
        return self.window_shard * (1 << 32) + np.asarray(first_raw, dtype=np.int64)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        shard = self.shards[int(self.window_shard[idx])]
        clip, clips = int(self.window_clip[idx]), self.window_size // LATENT_PER_CLIP
        tokens = np.asarray(shard.video[clip:clip + clips], dtype=np.int64).reshape(self.window_size, self.s * self.s)
        item = {"input_ids": torch.from_numpy(tokens)}
        if self.with_states:
            item["actions"] = torch.from_numpy(self._pooled_states(shard, clip, clips))
        return item

    def _pooled_states(self, shard: Shard, clip: int, clips: int) -> np.ndarray:
        """(T, 25): per latent frame, its raw frames' states pooled (last raw frame, or their mean)."""
        rows = []
        for c in range(clip, clip + clips):
            base = c * RAW_PER_CLIP
            for first, last in LATENT_RAW_RANGES:
                covered = np.asarray(shard.states[base + first:base + last + 1])
                rows.append(covered[-1] if self.state_pooling == "last" else covered.mean(axis=0))
        return np.stack(rows).astype(np.float32)

    def frame_arrays(self) -> list[np.ndarray]:
        """The latent frames of every shard as (frames, s, s) arrays (for token statistics)."""
        return [shard.video.reshape(-1, self.s, self.s) for shard in self.shards]

    def check_compatible(self, config: GenieConfig) -> None:
        """Raise a one-line error when the model config cannot read this data."""
        check_fits_model(self, config)
        if self.with_states and config.action_dims != {STATE_STREAM: STATE_DIM}:
            raise DataFormatError(f"{self.data_dir}: v2.0 data conditions on 25 robot states per frame; the model "
                                  f'config needs "action_dims": {{"{STATE_STREAM}": {STATE_DIM}}} (it has '
                                  f"{config.action_dims})")


def write_v2_split(out_dir: str | Path, shards: list[dict[str, np.ndarray]], sharded: bool, hz: int = 30,
                   extra_metadata: dict[str, Any] | None = None) -> Path:
    """Write a v2.0 split. Each shard: {"video": (clips, 3, s, s), "segment_idx": (n,), "states": (n, 25)}."""
    out_dir = Path(out_dir)
    for i, shard in enumerate(shards):
        paths = _paths(out_dir, i, sharded)
        for path in paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        np.asarray(shard["video"], dtype=np.int32).tofile(paths["video"])
        np.asarray(shard["segment_idx"], dtype=np.int32).tofile(paths["segment_idx"])
        np.asarray(shard["states"], dtype=np.float32).tofile(paths["states"])
        paths["metadata"].write_text(json.dumps({"shard_num_frames": len(shard["segment_idx"]), "shard_ind": i}))
    total = sum(len(shard["segment_idx"]) for shard in shards)
    metadata = {"num_shards": len(shards), "query": "written by genie", "hz": hz, "num_images": total,
                **(extra_metadata or {})}
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return out_dir
