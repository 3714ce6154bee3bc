"""Atari video recorded from the Arcade Learning Environment with its actions, tokenized by a learned
patch codebook and written as train/ and val/ splits in the 1X v1.1 layout (docs/atari.md).

Atari 100k conventions: 4 emulator frames per agent step (the observation is the pixel-wise max of the
last two, which removes sprite flicker), sticky actions with probability 0.25, the game's minimal
action set. Policy: a uniformly random action of the minimal set, held for a uniformly random 1..8
agent steps. Frames are downscaled to 64x64 RGB by area averaging (every source pixel counts, so a
2-pixel ball never falls between samples). Each episode is one segment; frame t's action row is the
one-hot (over ALE's 18 joystick actions) of the action taken between frame t-1 and frame t, zeros for
an episode's first frame. Validation holds out whole episodes. Everything is deterministic for a seed.

ale-py, gymnasium and scikit-learn are the optional `atari` extra: imported only when used.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from genie.data.raw_tokens import write_token_dataset
from genie.data.tokenizers import CodebookTokenizer, fit_codebook
from genie.errors import ConfigError

ACTION_STREAM = "ale_action"  # the action stream's name in actions/ and in a model config's action_dims
NUM_ALE_ACTIONS = 18  # ALE's full joystick action set; every game's minimal set is a subset of it
FRAME_SKIP = 4
STICKY_ACTION_PROBABILITY = 0.25
MAX_HOLD_STEPS = 8  # the random policy holds each action for 1..MAX_HOLD_STEPS agent steps
HZ = 15  # 60 emulator frames per second / frame skip 4
CODEBOOK_FILE = "codebook.npy"
POLICY = (f"uniformly random action of the game's minimal action set, held for a uniformly random 1..{MAX_HOLD_STEPS} "
          "agent steps")
INSTALL_HINT = 'pip install -e ".[atari]"'


@dataclass(frozen=True)
class Episode:
    """One recorded episode: (n, size, size, 3) uint8 frames and the ALE action id (0..17) taken before
    each frame (-1 for the first frame, which follows a reset); `game_over` is False for an episode cut
    at the frame budget or at max_episode_frames."""
    env_id: str
    frames: np.ndarray
    actions: np.ndarray
    game_over: bool


@dataclass(frozen=True)
class RecordingSpec:
    env_ids: tuple[str, ...]
    num_frames: int
    seed: int = 0
    val_fraction: float = 0.1
    frame_size: int = 64
    max_episode_frames: int = 27_000  # Atari's 108,000 emulator-frame episode cap / frame skip 4
    patch: int = 8
    vocab_size: int = 1024
    window_size: int = 8  # each split must hold at least one window of this many frames
    codebook_patches: int = 100_000  # at most this many (distinct) patches enter the codebook fit


def _gym():
    try:
        import ale_py
        import gymnasium
    except ImportError:
        raise ConfigError(f"recording Atari needs ale-py and gymnasium: {INSTALL_HINT}") from None
    gymnasium.register_envs(ale_py)
    return gymnasium


def make_env(env_id: str):
    """The ALE game `env_id` with one emulator frame per step (we skip frames ourselves, to max-pool the
    last two) and sticky actions; an id that is not an ALE game is a one-line ConfigError."""
    gymnasium = _gym()
    try:
        env = gymnasium.make(env_id, frameskip=1, repeat_action_probability=STICKY_ACTION_PROBABILITY,
                             full_action_space=False)
    except (gymnasium.error.Error, TypeError, ValueError) as error:
        raise ConfigError(f"--env_id {env_id!r} is not an ALE game ({str(error).splitlines()[0][:120]}); "
                          "use an id such as ALE/Breakout-v5, ALE/Pong-v5 or ALE/MsPacman-v5") from None
    if not hasattr(env.unwrapped, "ale"):
        env.close()
        raise ConfigError(f"--env_id {env_id!r} is not an ALE game; use an id such as ALE/Breakout-v5")
    return env


def downscale(frame: np.ndarray, size: int) -> np.ndarray:
    """(210, 160, 3) uint8 -> (size, size, 3) uint8 by area averaging (PIL's BOX filter)."""
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BOX))


def _agent_step(env, action: int) -> tuple[np.ndarray, bool]:
    """FRAME_SKIP emulator frames of `action`; the observation is the max of the last two frames."""
    last = []
    done = False
    for _ in range(FRAME_SKIP):
        obs, _, terminated, truncated, _ = env.step(action)
        last = (last + [obs])[-2:]
        done = terminated or truncated
        if done:
            break
    return np.maximum.reduce(last), done


def record_episode(env, rng: np.random.Generator, first_obs: np.ndarray, limit: int, size: int,
                   on_frame: Callable[[], None]) -> Episode:
    """Play from `first_obs` until the game ends or the episode has `limit` frames."""
    minimal = [a.value for a in env.unwrapped.ale.getMinimalActionSet()]
    frames, actions = [downscale(first_obs, size)], [-1]
    on_frame()
    hold, choice, done = 0, 0, False
    while len(frames) < limit and not done:
        if hold == 0:
            choice, hold = int(rng.integers(len(minimal))), int(rng.integers(1, MAX_HOLD_STEPS + 1))
        obs, done = _agent_step(env, choice)
        hold -= 1
        frames.append(downscale(obs, size))
        actions.append(minimal[choice])
        on_frame()
    return Episode(env.spec.id, np.stack(frames), np.array(actions, dtype=np.int64), done)


def record_game(env_id: str, num_frames: int, seed: int, size: int, max_episode_frames: int,
                on_frame: Callable[[], None] = lambda: None) -> list[Episode]:
    """`num_frames` frames of `env_id` as whole episodes (the last one cut at the frame budget)."""
    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    try:
        obs, _ = env.reset(seed=seed)
        episodes, total = [], 0
        while total < num_frames:
            episode = record_episode(env, rng, obs, min(max_episode_frames, num_frames - total), size, on_frame)
            episodes.append(episode)
            total += len(episode.frames)
            if total < num_frames:
                obs, _ = env.reset()
    finally:
        env.close()
    return episodes


def one_hot_actions(actions: np.ndarray) -> np.ndarray:
    """ALE action ids (-1 = none) -> (n, 18) float32 one-hot rows (all zeros for -1)."""
    out = np.zeros((len(actions), NUM_ALE_ACTIONS), dtype=np.float32)
    taken = actions >= 0
    out[np.flatnonzero(taken), actions[taken]] = 1.0
    return out


def split_episodes(episodes: list[Episode], val_fraction: float, rng: np.random.Generator
                   ) -> tuple[list[Episode], list[Episode]]:
    """Hold out round(val_fraction x episodes) whole episodes of one game for val (at least one, and at
    least one left for train), chosen at random; both keep recording order."""
    if len(episodes) < 2:
        raise ConfigError(f"--num_frames gave {episodes[0].env_id} a single episode, but train and val need one "
                          "each: raise --num_frames or lower --max_episode_frames")
    num_val = int(np.clip(round(val_fraction * len(episodes)), 1, len(episodes) - 1))
    val = set(rng.choice(len(episodes), num_val, replace=False).tolist())
    return ([e for i, e in enumerate(episodes) if i not in val], [e for i, e in enumerate(episodes) if i in val])


def check_spec(spec: RecordingSpec) -> None:
    """One-line ConfigErrors for settings that cannot give a usable recording, before anything runs."""
    games = len(spec.env_ids)
    if not games:
        raise ConfigError("--env_id is empty; name an ALE game such as ALE/Breakout-v5")
    needed = 2 * spec.window_size * games
    if spec.num_frames < needed:
        raise ConfigError(f"--num_frames {spec.num_frames} is too small: each game needs one window of "
                          f"{spec.window_size} frames in train and one in val, so {games} game(s) need at least "
                          f"{needed}; raise --num_frames")
    if not 0 < spec.val_fraction < 1:
        raise ConfigError(f"--val_fraction {spec.val_fraction} must lie strictly between 0 and 1")
    if spec.max_episode_frames < spec.window_size:
        raise ConfigError(f"--max_episode_frames {spec.max_episode_frames} must be >= the window of "
                          f"{spec.window_size} frames")
    if spec.patch < 1 or spec.frame_size % spec.patch:
        raise ConfigError(f"--patch_size {spec.patch} must divide the {spec.frame_size}-pixel frame side "
                          "(e.g. 4 or 8)")
    if spec.vocab_size < 2:
        raise ConfigError(f"--vocab_size {spec.vocab_size} must be >= 2")
    for env_id in spec.env_ids:
        make_env(env_id).close()


def check_output_empty(output_dir: str | Path) -> None:
    """The recording goes to a new or empty folder only: it never mixes with or replaces other files."""
    path = Path(output_dir)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"--output_dir {path} already holds files; pass an empty or new folder")


def game_seeds(seed: int, count: int) -> list[int]:
    """One independent seed per game (environment and policy), from the recording's seed."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(count)]


def record_splits(spec: RecordingSpec, on_frame: Callable[[], None] = lambda: None
                  ) -> tuple[list[Episode], list[Episode]]:
    """Record every game's share of the frames and hold out whole episodes of each game for val."""
    shares = [spec.num_frames // len(spec.env_ids) + (i < spec.num_frames % len(spec.env_ids))
              for i in range(len(spec.env_ids))]
    train, val = [], []
    for env_id, share, seed in zip(spec.env_ids, shares, game_seeds(spec.seed, len(spec.env_ids))):
        episodes = record_game(env_id, share, seed, spec.frame_size, spec.max_episode_frames, on_frame)
        game_train, game_val = split_episodes(episodes, spec.val_fraction, np.random.default_rng(seed))
        train += game_train
        val += game_val
    for name, episodes in (("train", train), ("val", val)):
        if max(len(e.frames) for e in episodes) < spec.window_size:
            raise ConfigError(f"--num_frames {spec.num_frames}: no {name} episode reached {spec.window_size} "
                              "frames (one window); raise --num_frames")
    return train, val


def recording_metadata(spec: RecordingSpec, episodes: list[Episode], tokenizer: CodebookTokenizer) -> dict:
    """What a split's metadata.json records beyond the v1.1 fields: the tokenizer and how it was recorded."""
    import ale_py

    meanings = sorted(ale_py.Action.__members__, key=lambda name: ale_py.Action.__members__[name].value)
    return {"tokenizer": tokenizer.metadata(CODEBOOK_FILE),
            "atari": {"env_ids": list(spec.env_ids), "frame_skip": FRAME_SKIP, "max_pool_last_two_frames": True,
                      "repeat_action_probability": STICKY_ACTION_PROBABILITY, "frame_size": spec.frame_size,
                      "channels": 3, "resize": "area average (PIL BOX)", "policy": POLICY, "seed": spec.seed,
                      "val_fraction": spec.val_fraction, "max_episode_frames": spec.max_episode_frames,
                      "action_stream": ACTION_STREAM, "action_encoding": "one-hot over ALE's 18 actions; "
                      "row t = the action between frames t-1 and t; zeros on an episode's first frame",
                      "action_meanings": meanings,
                      "episodes": [{"env_id": e.env_id, "segment_id": i, "num_frames": len(e.frames),
                                    "game_over": e.game_over}
                                   for i, e in enumerate(episodes)]}}


def write_split(out_dir: Path, episodes: list[Episode], tokenizer: CodebookTokenizer, spec: RecordingSpec) -> Path:
    """One split in the v1.1 layout: tokens, one segment per episode, the one-hot action stream, and the
    codebook beside them (named in metadata.json)."""
    tokens = tokenizer.encode(np.concatenate([e.frames for e in episodes]))
    segment_ids = np.repeat(np.arange(len(episodes), dtype=np.int32), [len(e.frames) for e in episodes])
    actions = one_hot_actions(np.concatenate([e.actions for e in episodes]))
    return write_token_dataset(out_dir, tokens, segment_ids, tokenizer.vocab_size, hz=HZ,
                               actions={ACTION_STREAM: actions},
                               token_dtype="uint16" if tokenizer.vocab_size <= 2 ** 16 else "uint32",
                               extra_metadata=recording_metadata(spec, episodes, tokenizer),
                               extra_arrays={CODEBOOK_FILE: tokenizer.centroids.astype(np.float32)})


def record_atari(spec: RecordingSpec, output_dir: str | Path, on_frame: Callable[[], None] = lambda: None,
                 log: Callable[[str], None] = lambda message: None) -> tuple[Path, Path]:
    """Record, fit the codebook on the train split's frames, tokenize both splits and write
    output_dir/train and output_dir/val. Bad settings fail before anything is recorded or written."""
    check_output_empty(output_dir)
    check_spec(spec)
    train, val = record_splits(spec, on_frame)
    log(f"recorded {len(train)} train and {len(val)} val episodes; fitting a {spec.vocab_size}-entry codebook of "
        f"{spec.patch}x{spec.patch} patches on the train frames")
    tokenizer = fit_codebook(np.concatenate([e.frames for e in train]), spec.patch, spec.vocab_size, spec.seed,
                             spec.codebook_patches)
    root = Path(output_dir)
    return write_split(root / "train", train, tokenizer, spec), write_split(root / "val", val, tokenizer, spec)
