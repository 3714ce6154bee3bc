"""A window-length curriculum: the first optimizer steps train on the first F frames of each window
(cheaper steps: the cost is about proportional to the frames), later steps on more, the rest on all T.

`--curriculum_frames 4 --curriculum_fractions 0.5` trains the first half of the steps on 4-frame
windows; `--curriculum_frames 2,4 --curriculum_fractions 0.25,0.25` on 2 frames, then 4, then T. The
frame count of a step depends only on (step, total steps), so a resumed run, every micro-batch of a
step (gradient accumulation) and every process see the same count, and masks (drawn after the cut,
from per-step generators) follow the seed as before.

Why the first frames of a window rather than a sub-window elsewhere in it: windows start at random
frames of the data, so the first F frames are a random F-frame window too; and the model's positions
0..F-1 are the ones a short window uses whichever frames fill it. With causal temporal attention a
short window gives fewer context frames, which is what the first, cheap phase is for: learning
one-to-few-frame dynamics before the long context."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from genie.errors import ConfigError


def parse_list(text: str, flag: str, kind: type) -> tuple:
    """'4,8' -> (4, 8); an empty string -> (); anything else is a one-line error naming the flag."""
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip()) if text else ()
    except ValueError:
        raise ConfigError(f"--{flag} {text!r} must be comma-separated {kind.__name__}s, e.g. "
                          f"{'4,6' if kind is int else '0.25,0.25'}") from None


@dataclass(frozen=True)
class FrameCurriculum:
    """Phases of shorter windows before the full T: `frames[i]` frames for a `fractions[i]` share of the
    optimizer steps, in order; the steps left over train on all T frames."""
    frames: tuple[int, ...] = ()
    fractions: tuple[float, ...] = ()

    @classmethod
    def from_flags(cls, frames: str, fractions: str) -> "FrameCurriculum":
        curriculum = cls(parse_list(frames, "curriculum_frames", int),
                         parse_list(fractions, "curriculum_fractions", float))
        curriculum.check()
        return curriculum

    def check(self, window_frames: int | None = None) -> None:
        """One-line errors for a curriculum that is not shorter windows growing towards `window_frames` (T)."""
        if len(self.frames) != len(self.fractions):
            raise ConfigError(f"--curriculum_frames has {len(self.frames)} value(s) and --curriculum_fractions "
                              f"{len(self.fractions)}; give one fraction of the steps per frame count")
        if any(f < 2 for f in self.frames) or list(self.frames) != sorted(set(self.frames)):
            raise ConfigError(f"--curriculum_frames {','.join(map(str, self.frames))} must be increasing frame counts "
                              ">= 2 (frame 0 is never a target), e.g. 4 or 2,4")
        if any(not 0 < f < 1 for f in self.fractions) or sum(self.fractions) >= 1:
            raise ConfigError(f"--curriculum_fractions {','.join(f'{f:g}' for f in self.fractions)} must each be in "
                              "(0, 1) and sum to less than 1 (the last steps train on the full windows), e.g. 0.5")
        if window_frames is not None and self.frames and self.frames[-1] >= window_frames:
            raise ConfigError(f"--curriculum_frames {self.frames[-1]} is not shorter than the windows (T = "
                              f"{window_frames}); use frame counts below T")

    def phase_ends(self, total_steps: int) -> list[int]:
        """The optimizer step at which each short phase ends (rounded cumulative shares of `total_steps`)."""
        ends, share = [], 0.0
        for fraction in self.fractions:
            share += fraction
            ends.append(round(share * total_steps))
        return ends

    def frames_at(self, step: int, total_steps: int, window_frames: int) -> int:
        """Frames per window at optimizer step `step` (0-based) of `total_steps`."""
        for frames, end in zip(self.frames, self.phase_ends(total_steps)):
            if step < end:
                return frames
        return window_frames

    def describe(self, total_steps: int, window_frames: int) -> str:
        """One line for the start banner, e.g. 'steps 0-149 on 4 frames, 150-299 on 8 (T)'."""
        if not self.frames:
            return f"all steps on {window_frames} frames (T)"
        starts = [0, *self.phase_ends(total_steps)]
        phases = [f"steps {start}-{end - 1} on {frames} frames" if end > start else f"no step on {frames} frames"
                  for frames, start, end in zip(self.frames, starts, starts[1:])]
        return ", ".join(phases + [f"steps {starts[-1]}-{total_steps - 1} on {window_frames} (T)"])


def first_frames(batch: dict[str, torch.Tensor], frames: int) -> dict[str, torch.Tensor]:
    """The first `frames` frames of every window of a clean batch (input_ids (B, T, S)); its actions
    (B, T, A) keep the row after them too, which a model with action_placement "previous" puts on the last
    frame (a model with "own" reads only the first `frames`)."""
    return {key: value[:, :frames + 1 if key == "actions" else frames] for key, value in batch.items()}
