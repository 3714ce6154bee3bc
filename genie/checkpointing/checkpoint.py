"""Checkpoint I/O: strict safetensors weight loading and crash-safe (temp name + rename) folder writes."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genie.errors import CheckpointError, CheckpointWriteError
from genie.files import atomic_directory, one_line_write_failures

RESUME = "resume with --resume_from_checkpoint latest"


def write_errors(target: Path, checkpoints: list[Path], partial: Path | None = None,
                 then: str = RESUME) -> contextlib.AbstractContextManager:
    """A failed write of `target` (whatever the errno, whichever library raised it: genie/files.py
    write_failure) becomes a one-line CheckpointWriteError naming the target, the cause, the newest of
    `checkpoints` and the fix; the `partial` path is removed, so that it takes no space and is never
    mistaken for a checkpoint."""
    newest = f"the newest complete checkpoint is {checkpoints[0]}" if checkpoints else "no checkpoint was written yet"
    return one_line_write_failures(target, f"nothing partial was left and {newest}", then,
                                   [partial] if partial is not None else [], CheckpointWriteError)


def load_weights_strict(model: torch.nn.Module, weights_path: str | Path,
                        complete: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> None:
    """Load a safetensors file into `model`; every parameter must be present with the right shape.

    Nothing is silently re-initialised: any missing, unexpected or mis-shaped tensor is an error
    listing the offending names and shapes. `complete`, if given, fills in what an older version of the
    model's weights lacks, by the model's own rule, before the check.
    """
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path} does not exist; a checkpoint folder needs model.safetensors")
    try:
        state_dict = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file ({error}); "
                              "re-save or re-download the checkpoint") from None
    if complete is not None:
        state_dict = complete(state_dict)
    problems = describe_state_dict_mismatch(model.state_dict(), state_dict)
    if problems:
        raise CheckpointError(f"{weights_path} does not match the model architecture: {'; '.join(problems)}")
    model.load_state_dict(state_dict, strict=True)


def same_weights(folder_a: str | Path, folder_b: str | Path) -> bool:
    """Whether two model folders hold bit-identical weights: the same tensor names in model.safetensors and
    equal values (how a resumed or killed run is checked against an uninterrupted one)."""
    a, b = load_file(Path(folder_a) / "model.safetensors"), load_file(Path(folder_b) / "model.safetensors")
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def describe_state_dict_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor],
                                 limit: int = 8) -> list[str]:
    """Human-readable differences between two state dicts (names and shapes); empty when they fit."""
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(name for name in set(expected) & set(found) if expected[name].shape != found[name].shape)
    if missing:
        problems.append(f"missing {_clip(missing, limit)}")
    if unexpected:
        problems.append(f"unexpected {_clip(unexpected, limit)}")
    if shapes:
        problems.append("shape mismatch " + _clip(
            [f"{n} {tuple(found[n].shape)} vs model {tuple(expected[n].shape)}" for n in shapes], limit))
    return problems


def _clip(items: list[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... {len(items) - limit} more' if len(items) > limit else ''}]"


def save_model_folder(folder: str | Path, config, state_dict: dict[str, torch.Tensor]) -> Path:
    """Write a Hugging Face-format model folder (config.json + model.safetensors), crash-safely.

    Takes a state dict rather than a module so that data-parallel runs can pass the gathered
    (e.g. FSDP full) state dict.
    """
    with atomic_directory(folder) as tmp:
        config.to_json_file(tmp / "config.json")
        save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp / "model.safetensors",
                  metadata={"format": "pt"})
    return Path(folder)
