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

import contextlib
import errno
import glob
import os
import resource
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from genie.data.raw_tokens import write_token_dataset
from genie.data.tokenizers import CodebookTokenizer, fit_codebook
from genie.errors import ConfigError, RecordingStopped, RecordingWriteError, check_flag
from genie.files import RunLock, atomic_directory, one_line_write_failures, write_failure

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
    check_flag(spec.window_size >= 2, "window_size", spec.window_size,
               "must be >= 2, the model config's T (a prompt frame and a frame to predict)")
    needed = 2 * spec.window_size * games
    if spec.num_frames < needed:
        raise ConfigError(f"--num_frames {spec.num_frames} is too small: each game needs one window of "
                          f"{spec.window_size} frames in train and one in val, so {games} game(s) need at least "
                          f"{needed}; raise --num_frames")
    check_flag(0 < spec.val_fraction < 1, "val_fraction", spec.val_fraction, "must lie strictly between 0 and 1")
    if spec.max_episode_frames < spec.window_size:
        raise ConfigError(f"--max_episode_frames {spec.max_episode_frames} must be >= the window of "
                          f"{spec.window_size} frames")
    if spec.patch < 1 or spec.frame_size % spec.patch:
        raise ConfigError(f"--patch_size {spec.patch} must divide the {spec.frame_size}-pixel frame side "
                          "(e.g. 4 or 8)")
    check_flag(spec.vocab_size >= 2, "vocab_size", spec.vocab_size, "must be >= 2")
    check_flag(spec.codebook_patches >= spec.vocab_size, "codebook_patches", spec.codebook_patches,
               f"must be >= --vocab_size {spec.vocab_size}: k-means needs a patch for each codebook entry")
    check_flag(spec.seed >= 0, "seed", spec.seed, "must be >= 0")
    check_memory(spec)
    for env_id in spec.env_ids:
        make_env(env_id).close()


def memory_per_frame(spec: RecordingSpec) -> int:
    """About how many bytes of memory one recorded frame takes at the peak (fitting and tokenizing): the
    frames are held until the codebook is fitted, copied a few times into patches, sorted to find the
    distinct ones (int64 indices per patch). Measured with tracemalloc on 2,000 frames: about 100 kB."""
    frame_bytes = spec.frame_size * spec.frame_size * 3
    return 8 * frame_bytes + 32 * (spec.frame_size // spec.patch) ** 2


def available_memory() -> int | None:
    """Bytes of memory this process can still take: the system's MemAvailable and, under a cgroup (v2) limit
    (a container, a SLURM job), what is left of it; None when neither can be read."""
    found = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = Path("/proc/meminfo").read_text().splitlines()
        found += [int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:")]
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    return min(found) if found else None


def check_memory(spec: RecordingSpec) -> None:
    """Refuse a recording that cannot fit in memory, before any frame is played (it would be killed for
    memory at the end and lose everything)."""
    per_frame, available = memory_per_frame(spec), available_memory()
    if available is not None and spec.num_frames * per_frame > available:
        raise ConfigError(f"--num_frames {spec.num_frames} needs about {spec.num_frames * per_frame / 1e9:.1f} GB "
                          f"of memory (about {per_frame // 1000} kB a frame until the codebook is fitted), but "
                          f"{available / 1e9:.1f} GB is available: record at most {available // per_frame} frames "
                          "per folder")


def check_output_empty(output_dir: str | Path) -> None:
    """The recording goes to a new or empty folder only: it never mixes with or replaces other files."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--output_dir {path} is a file; pass a new or empty folder")
    if path.is_dir() and any(path.iterdir()):
        names = {p.name for p in path.iterdir()}
        if "val" not in names and all(n == "train" or n.startswith((".tmp-train-", ".tmp-val-")) for n in names):
            raise ConfigError(f"--output_dir {path} holds an interrupted recording ({', '.join(sorted(names))}, "
                              "no val/) of an older version; delete the folder and record again")
        raise ConfigError(f"--output_dir {path} already holds files; pass an empty or new folder")


def output_sizes(spec: RecordingSpec) -> tuple[int, int]:
    """(all the recording's bytes, its largest file's bytes), about and at most: every frame's tokens, segment
    id and one-hot actions, counted once for the largest file and twice for the whole (train and val), plus
    each split's codebook and metadata."""
    side = spec.frame_size // spec.patch
    token_bytes = side * side * (2 if spec.vocab_size <= 2 ** 16 else 4)
    codebook_bytes = spec.vocab_size * spec.patch * spec.patch * 3 * 4
    largest = max(spec.num_frames * token_bytes, spec.num_frames * NUM_ALE_ACTIONS * 4, codebook_bytes)
    per_frame = token_bytes + 4 + NUM_ALE_ACTIONS * 4 + 100  # 100: an episode's line in metadata.json at most
    return spec.num_frames * per_frame + 2 * (codebook_bytes + (1 << 16)), largest


def check_writable(spec: RecordingSpec, target: Path) -> None:
    """Before anything is recorded: the folder that receives the recording (its parent, where it is written
    aside first) can be written and renamed in, holds the recording's size, and the file size limit
    (ulimit -f) allows its largest file."""
    parent = where = next(p for p in target.parents if p.exists())
    try:
        if not parent.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(parent))
        os.rmdir(tempfile.mkdtemp(prefix=f".tmp-{target.name}-check-", dir=parent))
        where = target
        if target.exists() and not os.access(target, os.W_OK):
            raise PermissionError(errno.EACCES, "cannot be written", str(target))
    except OSError as error:
        failure = write_failure(error, target)
        cause = failure[0] if failure else str(error)
        raise ConfigError(f"cannot write --output_dir {target}: {cause} ({where}); choose a folder you may "
                          "write, or fix its permissions") from None
    total, largest = output_sizes(spec)
    free = shutil.disk_usage(parent).free
    if total > free:
        raise ConfigError(f"--output_dir {target}: the recording needs about {total / 1e6:.1f} MB, but its disk "
                          f"has {free / 1e6:.1f} MB free; free space, choose another disk or lower --num_frames")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and largest > limit:
        raise ConfigError(f"the file size limit (ulimit -f) is {limit} bytes, but the recording's largest file "
                          f"would hold about {largest} bytes; raise the limit (ulimit -f unlimited) or lower "
                          "--num_frames")


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


def write_split(out_dir: Path, episodes: list[Episode], tokens: np.ndarray, tokenizer: CodebookTokenizer,
                spec: RecordingSpec) -> Path:
    """One split in the v1.1 layout: the episodes' `tokens`, one segment per episode, the one-hot action stream,
    and the codebook beside them (named in metadata.json)."""
    segment_ids = np.repeat(np.arange(len(episodes), dtype=np.int32), [len(e.frames) for e in episodes])
    actions = one_hot_actions(np.concatenate([e.actions for e in episodes]))
    return write_token_dataset(out_dir, tokens, segment_ids, tokenizer.vocab_size, hz=HZ,
                               actions={ACTION_STREAM: actions},
                               token_dtype="uint16" if tokenizer.vocab_size <= 2 ** 16 else "uint32",
                               extra_metadata=recording_metadata(spec, episodes, tokenizer),
                               extra_arrays={CODEBOOK_FILE: tokenizer.centroids.astype(np.float32)})


class StopOnSignal:
    """SIGTERM / SIGINT stop a recording: before its folder is written they raise RecordingStopped (the stack
    unwinds, nothing is written); while it is written they wait until the folder is in place."""

    def __init__(self, target: Path):
        self.target, self.writing, self.received, self._previous = target, False, None, {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name
        if not self.writing:
            raise RecordingStopped(f"stopped by {self.received} while recording: nothing was written to "
                                   f"{self.target}; run the same command again to record")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.writing = True
        try:
            yield
        finally:
            self.writing = False


def write_recording(target: Path, splits: dict[str, tuple[list[Episode], np.ndarray]], tokenizer: CodebookTokenizer,
                    spec: RecordingSpec) -> None:
    """Write train/ and val/ aside (a temporary sibling folder) and rename it to `target` when complete. A
    failed write (a full disk, a quota, the file size limit, no permission: genie/files.py write_failure) is
    a one-line RecordingWriteError, with the partial folder removed."""
    with one_line_write_failures(target, "nothing was written", "record again", error_type=RecordingWriteError):
        with atomic_directory(target) as folder:  # removes its partial folder on any failure
            for name, (episodes, tokens) in splits.items():
                write_split(folder / name, episodes, tokens, tokenizer, spec)


def remove_interrupted_recordings(target: Path, log: Callable[[str], None]) -> None:
    """Remove the temporary folders that recordings into `target` killed while writing left beside it. Only
    called under the folder's lock, so no live process is writing them."""
    name = glob.escape(target.name)
    for leftover in sorted([*target.parent.glob(f".tmp-{name}-*"), *target.parent.glob(f".old-{name}-*")]):
        if leftover.is_symlink() or not leftover.is_dir():
            leftover.unlink()
        else:
            shutil.rmtree(leftover)
        log(f"removed {leftover}, left by an interrupted recording")


def check_before_recording(spec: RecordingSpec, output_dir: str | Path) -> Path:
    """Every check that can fail before a frame is played: the settings, the memory the frames need, the
    output folder (new or empty, writable, room on its disk); returns the folder the recording goes to
    (a symlink's target)."""
    check_output_empty(output_dir)
    check_spec(spec)
    target = Path(output_dir).resolve()
    check_writable(spec, target)
    return target


def record_atari(spec: RecordingSpec, output_dir: str | Path, on_frame: Callable[[], None] = lambda: None,
                 log: Callable[[str], None] = lambda message: None) -> tuple[Path, Path]:
    """Record, fit the codebook on the train split's frames, tokenize both splits and write
    output_dir/train and output_dir/val, all at once (written aside and renamed: never one split alone).
    Bad settings fail before anything is recorded or written; one recorder writes a folder at a time."""
    target = check_before_recording(spec, output_dir)
    lock = RunLock(target, writer="recording process")
    lock.acquire()
    try:
        with StopOnSignal(target) as stop:
            check_output_empty(output_dir)  # a recording that ended while this one waited for its checks
            remove_interrupted_recordings(target, log)
            train, val = record_splits(spec, on_frame)
            log(f"recorded {len(train)} train and {len(val)} val episodes; fitting a {spec.vocab_size}-entry "
                f"codebook of {spec.patch}x{spec.patch} patches on the train frames")
            tokenizer = fit_codebook(np.concatenate([e.frames for e in train]), spec.patch, spec.vocab_size,
                                     spec.seed, spec.codebook_patches)
            splits = {name: (episodes, tokenizer.encode(np.concatenate([e.frames for e in episodes])))
                      for name, episodes in (("train", train), ("val", val))}
            with stop.deferred():
                write_recording(target, splits, tokenizer, spec)
            if stop.received:
                log(f"received {stop.received} while writing: the recording was complete and is in place")
    finally:
        lock.release()
    root = Path(output_dir)
    return root / "train", root / "val"
