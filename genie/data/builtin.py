"""The built-in dataset: a procedural sprite world tokenized by a fixed patch tokenizer.

Each segment has its own static textured background, one-patch sprites that swing back and forth
over three patches along a row or a column (one patch per frame, a 4-frame period; drawn with a
bright edge facing their next move), and solid sprites steered by the per-frame action
`driving_command` (dy, dx in {-1, 0, 1} patches per frame). Sprites move a whole patch (one token)
per frame: copying the last frame is wrong exactly where something moves, while the swinging motion
is predictable from the frames before (it repeats every 4 frames).

Two variants (`WORLDS`, chosen with --builtin_world):
- "swing" (the default; the world of every run before the variants, bit-identical): three swingers and
  one steered sprite on a sticky command (redrawn with chance 1/4 per frame, the same one 1 time in 9),
  stopped by the frame's edges: it sits against a wall in many frames, where its command moves
  nothing (it moves in 52% of frames, though the command is non-zero in 85%). The steered sprite
  makes 16% of the changed tokens (8x8 tokens; 19% at 16x16).
- "steered": one swinger and two steered sprites on one command, held for 1-8 frames (uniform) and
  then replaced by a different one ("stay" (0, 0) among them), so the motion after a hold ends cannot
  be read from earlier frames, only from the action. The steered sprites wrap around the frame's
  edges (no wall hides the command or piles them up) and start apart; they move in 90% of frames and
  make 65% of the changed tokens (8x8 tokens; 64% at 16x16; changed tokens are 8.3% of all tokens,
  10.3% in "swing"). With one steered sprite and three swingers the share would be 24%, with one of
  each 48%. Both worlds change command about once in 4.5 frames.
(Measured on 16,384 frames at 8x8 and 4,096 at 16x16, seed 0; a changed token counts as a steered
sprite's when it is a steered patch in either frame.)
Whether a model reads the action is `changed_action_sensitivity` (genie/evaluation/scores.py), and
`new_action_changed_action_sensitivity` where the command changes. At T 8 it stays about 0 (|x| < 0.01
nats) on both worlds, even where the model beats every reference on the changed tokens: a 4x4-token
model for up to 12,000 steps, configs/small.json, with or without the changed-token loss weight, dynamics
masking, Muon and spatial rope. At T 2 a 4x4-token model does read an action after 3,000 steps: the
visible frame's, i.e. the previous command (docs/performance.md, "Why the models ignore their actions").

The tokenizer writes each p x p patch of a `levels`-level grey image as a base-`levels` number:
- "challenge": 3x3 patches, 4 levels -> 4**9 = 2**18 tokens, factorizable as 2 x 512 (like 1X data);
- "small": 2x2 patches, 4 levels -> 256 tokens.
Decoding is exact, so predictions can be shown as pictures.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from genie.data.cosmos_v2 import RAW_PER_CLIP, STATE_DIM, write_v2_split
from genie.data.raw_tokens import write_token_dataset
from genie.data.tokenizers import PatchTokenizer
from genie.errors import ConfigError
from genie.files import atomic_directory

# Where the training commands write the built-in dataset on first use: data/builtin under the
# working directory (the repository when run from it), or $GENIE_BUILTIN_DATA_DIR.
DEFAULT_ROOT = Path(os.environ.get("GENIE_BUILTIN_DATA_DIR", "data/builtin"))
ACTION_NAME = "driving_command"


def _background(rng: np.random.Generator, size: int, patch: int) -> np.ndarray:
    """A static texture in levels {0, 1, 2}: a random tile pattern plus per-pixel grain."""
    cells = rng.integers(0, 3, size=(size // (2 * patch) + 1,) * 2)
    coarse = cells.repeat(2 * patch, 0).repeat(2 * patch, 1)[:size, :size]
    grain = rng.random((size, size)) < 0.15
    return np.where(grain, (coarse + 1) % 3, coarse)


WORLD_VERSION = 3  # part of the cached folder's name: a changed world is written anew
DIRECTIONS = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]])  # right, left, down, up (rows, columns)


def _sprite(patch: int, direction: np.ndarray) -> np.ndarray:
    """A one-patch sprite whose bright edge (level 3) faces the way it moves, on level 2."""
    sprite = np.full((patch, patch), 2)
    dy, dx = direction
    if dx:
        sprite[:, -1 if dx > 0 else 0] = 3
    else:
        sprite[-1 if dy > 0 else 0, :] = 3
    return sprite


SWING = np.array([0, 1, 2, 1])  # a swinging sprite's offset along its axis over its 4-frame period
COMMANDS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])  # the 9 commands, "stay" (0, 0) among them
MAX_HOLD = 8  # the "steered" world holds each command for 1..MAX_HOLD frames


def _swing_commands(rng: np.random.Generator, length: int) -> np.ndarray:
    """The "swing" world's policy: a sticky random command, redrawn (possibly the same) with chance 1/4
    each frame. Row t is the command that produced frame t from frame t-1 (row 0: none, zeros)."""
    commands = np.zeros((length, 2), dtype=np.int64)
    action = np.zeros(2, dtype=np.int64)
    for t in range(1, length):
        if rng.random() < 0.25:
            action = rng.integers(-1, 2, size=2)
        commands[t] = action
    return commands


def _held_commands(rng: np.random.Generator, length: int) -> np.ndarray:
    """The "steered" world's policy: a random command held for 1-8 frames (uniform), then another one
    that differs from it (one of the 8 others, "stay" (0, 0) among them), so frames before a change
    never tell the motion after it. Rows as in `_swing_commands`."""
    commands = np.zeros((length, 2), dtype=np.int64)
    code = int(rng.integers(0, len(COMMANDS)))
    t = 1
    while t < length:
        hold = int(rng.integers(1, MAX_HOLD + 1))
        commands[t:t + hold] = COMMANDS[code]
        code = (code + int(rng.integers(1, len(COMMANDS)))) % len(COMMANDS)  # any command but this one
        t += hold
    return commands


def _steered_starts(rng: np.random.Generator, grid: int, world: World) -> np.ndarray:
    """The steered sprites' first patches (steered, 2). On a wrapping world they are distinct: moving together
    around the torus, they then never merge (stopped by a wall, one command would pile them up in a corner)."""
    if not world.wrap:
        return rng.integers(0, grid, size=(world.steered, 2))
    cells = rng.choice(grid * grid, size=world.steered, replace=False)
    return np.stack([cells // grid, cells % grid], axis=1)


def _segment(rng: np.random.Generator, length: int, grid: int, patch: int, world: World
             ) -> tuple[np.ndarray, np.ndarray]:
    """Render one segment: (length, grid*patch, grid*patch) grey levels and (length, 2) actions.

    Swinging sprites go back and forth over three patches along a row or a column, one patch per
    frame (a 4-frame period), drawn with their bright edge facing their next move. The steered
    sprites (solid level 3) all move by the frame's action (dy, dx in {-1, 0, 1}), stopped by the frame's
    edge or, in a wrapping world, coming back in on the other side."""
    size = grid * patch
    background = _background(rng, size, patch)
    axis = DIRECTIONS[rng.choice([0, 2], size=world.swingers)]  # along a row or a column
    start = rng.integers(0, grid, size=(world.swingers, 2)) % (grid - 2 * axis)  # the swing fits in the frame
    phase = rng.integers(0, len(SWING), size=world.swingers)
    agents = _steered_starts(rng, grid, world)
    commands = world.policy(rng, length)
    frames = np.empty((length, size, size), dtype=np.int64)
    for t in range(length):
        agents = (agents + commands[t]) % grid if world.wrap else np.clip(agents + commands[t], 0, grid - 1)
        step = (t + phase) % len(SWING)
        pos = start + axis * SWING[step][:, None]
        heading = axis * np.sign(SWING[(step + 1) % len(SWING)] - SWING[step])[:, None]
        frame = background.copy()
        for (y, x), v in zip(pos, heading):
            frame[y * patch:(y + 1) * patch, x * patch:(x + 1) * patch] = _sprite(patch, v)
        for ay, ax in agents:
            frame[ay * patch:(ay + 1) * patch, ax * patch:(ax + 1) * patch] = 3
        frames[t] = frame
    return frames, commands.astype(np.float32)


@dataclass(frozen=True)
class World:
    """One variant of the built-in world: how many sprites swing, how many are steered, the policy that
    draws the steering commands of a segment (rng, length) -> (length, 2), and whether the steered sprites
    wrap around the frame's edges (else the edges stop them)."""
    swingers: int
    steered: int
    policy: Callable[[np.random.Generator, int], np.ndarray]
    wrap: bool = False


# The variants, by the name --builtin_world takes; the first is the default (its cached folder keeps the
# name it had before there were variants).
WORLDS = {"swing": World(swingers=3, steered=1, policy=_swing_commands),
          "steered": World(swingers=1, steered=2, policy=_held_commands, wrap=True)}
DEFAULT_WORLD = next(iter(WORLDS))


def world_named(name: str | None) -> World:
    """The variant called `name` (None: the default); an unknown name is a one-line ConfigError."""
    if name is None:
        return WORLDS[DEFAULT_WORLD]
    if name not in WORLDS:
        raise ConfigError(f"--builtin_world {name!r} is not a built-in world; choose one of {', '.join(WORLDS)}")
    return WORLDS[name]


def is_default_world(name: str | None) -> bool:
    """Whether `name` is the default world, whose folder and metadata keep their names from before variants."""
    return world_named(name) is WORLDS[DEFAULT_WORLD]


def make_split(num_frames: int, grid: int, tokenizer: PatchTokenizer, seed: int, min_segment: int = 48,
               max_segment: int = 128, world: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens (N, grid, grid), segment ids (N,) and actions (N, 2) for a split of the named world
    (None: the default); deterministic by seed."""
    variant = world_named(world)
    rng = np.random.default_rng(seed)
    tokens, segment_ids, actions = [], [], []
    total, segment = 0, 0
    while total < num_frames:
        length = int(min(rng.integers(min_segment, max_segment + 1), num_frames - total))
        frames, acts = _segment(rng, length, grid, tokenizer.patch, variant)
        tokens.append(tokenizer.encode(frames))
        segment_ids.append(np.full(length, segment, dtype=np.int32))
        actions.append(acts)
        total += length
        segment += 1
    return np.concatenate(tokens), np.concatenate(segment_ids), np.concatenate(actions)


def write_builtin_dataset(root: str | Path, grid: int = 16, vocab_size: int = 262144, train_frames: int = 16384,
                          val_frames: int = 2048, seed: int = 0, world: str | None = None) -> tuple[Path, Path]:
    """Write train/ and val/ splits of the named world (None: the default) under `root` (val uses its own
    seed, so its segments are unseen)."""
    root = Path(root)
    tokenizer = PatchTokenizer.for_vocab(vocab_size)
    extra = _builtin_metadata(tokenizer, seed, world)
    paths = []
    for split, frames, split_seed in (("train", train_frames, seed), ("val", val_frames, seed + 1_000_003)):
        tokens, segment_ids, actions = make_split(frames, grid, tokenizer, split_seed, world=world)
        paths.append(write_token_dataset(root / split, tokens, segment_ids, vocab_size, hz=2,
                                         actions={ACTION_NAME: actions}, extra_metadata=extra))
    return paths[0], paths[1]


def builtin_dataset_dirs(grid: int, vocab_size: int, seed: int = 0, root: str | Path = DEFAULT_ROOT,
                         v2_layout: bool = False, world: str | None = None) -> tuple[Path, Path]:
    """Train and val folders of the named built-in world (None: the default) for this frame size and
    vocabulary, made if missing: in the v1.1 layout, or with `v2_layout` in the v2.0 one."""
    vocab_size = builtin_vocab(vocab_size)
    folder = Path(root) / builtin_folder_name(grid, vocab_size, seed, v2_layout, world)
    train, val = folder / "train", folder / "val"
    if not ((train / "metadata.json").is_file() and (val / "metadata.json").is_file()):
        write = write_builtin_v2_dataset if v2_layout else write_builtin_dataset
        write(folder, grid=grid, vocab_size=vocab_size, seed=seed, world=world)
    return train, val


def builtin_folder_name(grid: int, vocab_size: int, seed: int, v2_layout: bool = False, world: str | None = None
                        ) -> str:
    """The cached folder's name: the world's version and variant (none for the default, whose folders keep
    the name they had before there were variants), layout, frame size, vocabulary and seed."""
    variant = "" if is_default_world(world) else f"-{world}"
    return f"{'v2-' if v2_layout else ''}world{WORLD_VERSION}{variant}-grid{grid}-vocab{vocab_size}-seed{seed}"


def builtin_vocab(model_vocab: int) -> int:
    """The built-in world's vocabulary for a model of `model_vocab` ids: the world's own size when it has it
    (256 or 262144), else the largest that the model's ids cover (a 64,000-id model reads the 256-id world,
    with a note); a model smaller than every world is a one-line ConfigError."""
    sizes = sorted((PatchTokenizer(patch, 4).vocab_size for patch in (2, 3)), reverse=True)
    fitting = [size for size in sizes if size <= model_vocab]
    if not fitting:
        raise ConfigError(f"the built-in world has {' or '.join(map(str, sizes[::-1]))} token ids, more than the model "
                          f"config's image_vocab_size {model_vocab}; use a config with image_vocab_size >= {sizes[-1]} "
                          "or pass --train_data_dir and --val_data_dir for data of another vocabulary")
    if fitting[0] != model_vocab:
        print(f"note: the built-in world comes in {' or '.join(map(str, sizes[::-1]))} token ids; the model's "
              f"image_vocab_size {model_vocab} is neither, so it reads the {fitting[0]}-id world (ids {fitting[0]} "
              f"and above never occur)", flush=True)
    return fitting[0]


def _builtin_metadata(tokenizer: PatchTokenizer, seed: int, world: str | None = None) -> dict:
    """What a split's metadata records of the built-in world (its tokenizer decodes it to pictures); the
    variant's name unless it is the default (whose metadata stays as it was before there were variants)."""
    metadata = {"builtin_tokenizer": {"patch": tokenizer.patch, "levels": tokenizer.levels}, "builtin_seed": seed,
                "builtin_world_version": WORLD_VERSION}
    if not is_default_world(world):
        metadata["builtin_world"] = world
    return metadata


def _v2_shard(raw_tokens: np.ndarray, segment_ids: np.ndarray, actions: np.ndarray) -> dict[str, np.ndarray]:
    """A v2.0 shard from raw frames: each clip of 17 raw frames becomes 3 latent frames, those at raw
    offsets 0, 8 and 16 (the last raw frame each latent frame covers); the last, partial clip repeats
    its final raw frame. States: the steering action in columns 0-1, zeros elsewhere (25 columns)."""
    n = len(raw_tokens)
    clips = -(-n // RAW_PER_CLIP)
    raw = np.minimum(np.arange(clips)[:, None] * RAW_PER_CLIP + np.array([0, 8, 16]), n - 1)
    states = np.zeros((n, STATE_DIM), dtype=np.float32)
    states[:, :2] = actions
    return {"video": raw_tokens[raw], "segment_idx": segment_ids, "states": states}


def write_builtin_v2_dataset(root: str | Path, grid: int = 8, vocab_size: int = 256, shards: int = 3,
                             frames_per_shard: int = 4000, val_frames: int = 2000, seed: int = 0,
                             world: str | None = None) -> tuple[Path, Path]:
    """The named built-in world (None: the default) in the v2.0 layout: a sharded train/ and a flat val/ split."""
    root = Path(root)
    tokenizer = PatchTokenizer.for_vocab(vocab_size)
    extra = {"s": grid, "vocab_size": vocab_size, **_builtin_metadata(tokenizer, seed, world)}
    splits = {"train": ([seed + i for i in range(shards)], frames_per_shard, True),
              "val": ([seed + 1_000_003], val_frames, False)}
    for split, (seeds, frames, sharded) in splits.items():
        parts = [_v2_shard(*make_split(frames, grid, tokenizer, s, world=world)) for s in seeds]
        with atomic_directory(root / split) as tmp:
            write_v2_split(tmp, parts, sharded, extra_metadata=extra)
    return root / "train", root / "val"

