"""Record Atari games (ALE) with their actions, fit a patch codebook on the train frames and write train/ and
val/ splits in the 1X v1.1 layout (tokens, one segment per episode, one-hot actions, the codebook).

    python scripts/record_atari.py --env_id ALE/Breakout-v5 --num_frames 6000 --output_dir data/atari/breakout
    python scripts/record_atari.py --env_id ALE/Breakout-v5,ALE/Pong-v5 --num_frames 4000 --output_dir D   # mixed

Frame skip 4 (max of the last two frames), sticky actions 0.25, a random policy holding each action for
1..8 steps, 64x64 RGB frames; docs/atari.md says what and why. Needs the atari extra: pip install -e ".[atari]".
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tqdm import tqdm

from genie.cli import parse, run_cli
from genie.data.atari import RecordingSpec, check_before_recording, record_atari


@dataclass
class RecordArguments:
    env_id: str = field(metadata={"help": "ALE game id(s), comma-separated, e.g. ALE/Breakout-v5,ALE/Pong-v5."})
    output_dir: str = field(metadata={"help": "New or empty folder; receives train/ and val/ at once when the "
                                              "recording is complete (one recorder per folder)."})
    num_frames: int = field(default=6000, metadata={"help": "Frames in all (15 per second of play), split evenly "
                                                            "between the games."})
    seed: int = field(default=0, metadata={"help": "Seeds the games, the policy, the val episodes and the codebook."})
    val_fraction: float = field(default=0.1, metadata={"help": "Share of each game's episodes held out (at least one)."})
    max_episode_frames: int = field(default=27000, metadata={"help": "Cut longer episodes (Atari's 108k-frame cap)."})
    patch_size: int = field(default=8, metadata={"help": "Codebook patch side in pixels (64/patch tokens a side)."})
    vocab_size: int = field(default=1024, metadata={"help": "Codebook entries (token ids)."})
    window_size: int = field(default=8, metadata={"help": "Each split must hold a window of this many frames "
                                                           "(the model config's T)."})
    codebook_patches: int = field(default=100_000, metadata={"help": "At most this many distinct patches "
                                                                     "enter the codebook fit."})


def main(argv: list[str] | None = None) -> tuple:
    (args,) = parse([RecordArguments], __doc__.split("\n")[0], argv)
    spec = RecordingSpec(tuple(i.strip() for i in args.env_id.split(",") if i.strip()), args.num_frames, args.seed,
                         args.val_fraction, max_episode_frames=args.max_episode_frames, patch=args.patch_size,
                         vocab_size=args.vocab_size, window_size=args.window_size,
                         codebook_patches=args.codebook_patches)
    check_before_recording(spec, args.output_dir)  # bad input fails before the progress bar opens
    with tqdm(total=args.num_frames, desc="recording", unit="frame") as bar:
        train, val = record_atari(spec, args.output_dir, on_frame=lambda: bar.update(1), log=tqdm.write)
    print(f"wrote {train} and {val}")
    return train, val


if __name__ == "__main__":
    run_cli(main)
