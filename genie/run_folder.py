"""The run folder: what may be written where, replacing a run without losing it, resume lookup and checks.

Layout (docs/architecture.md, "Run folder"): config.json (the run), step_N/ (resumable state with
trainer_state.json), the final model in Hugging Face format, metrics.jsonl.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from genie.checkpoint import CheckpointError
from genie.cli import check_output_folder
from genie.config import ConfigError

TRAINER_STATE = "trainer_state.json"


def is_run_folder(path: Path) -> bool:
    """True when `path` holds a run of this project: its config.json names the stage and the model config."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "stage" in config and "genie_config" in config


def check_output_dir(output_dir: str | Path, overwrite: bool, resuming: bool) -> None:
    """Refuse, before anything is written, an output folder that cannot or must not receive this run."""
    out = Path(output_dir)
    check_output_folder(out)
    if resuming or not out.is_dir() or not any(out.iterdir()):
        return
    if not is_run_folder(out):
        raise ConfigError(f"--output_dir {out} is not empty and holds no run of this project (no run config.json); "
                          "nothing there is replaced or mixed with a run: choose a new or empty folder")
    if not overwrite:
        raise ConfigError(f"--output_dir {out} already holds a run; pass --resume_from_checkpoint latest to continue "
                          "it, --overwrite_output_dir to replace it, or choose another folder")
    here = Path.cwd().resolve()
    if out.resolve() in (here, *here.parents):
        raise ConfigError(f"--output_dir {out} contains the working directory; --overwrite_output_dir refuses to "
                          "replace it: choose a folder below it")


def prepare_output_dir(output_dir: str | Path, overwrite: bool, resuming: bool) -> Path | None:
    """Create the output folder. A run to be replaced is moved aside, not deleted: returns where it went
    (`discard_replaced_run` deletes it once the new run has a checkpoint; `restore_replaced_run` puts
    it back if the new run fails before that)."""
    out = Path(output_dir)
    aside = None
    if overwrite and not resuming and is_run_folder(out):
        aside = out.with_name(f".replaced-{out.name}-{os.getpid()}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(out, aside)
    out.mkdir(parents=True, exist_ok=True)
    return aside


def discard_replaced_run(aside: Path | None) -> None:
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def restore_replaced_run(output_dir: str | Path, aside: Path | None) -> None:
    """Put a replaced run back in place of a new run that failed before its first checkpoint."""
    if aside is not None and aside.is_dir():
        shutil.rmtree(output_dir, ignore_errors=True)
        os.replace(aside, output_dir)


def model_folder(path: str | Path, flag: str = "checkpoint_dir") -> Path:
    """A folder holding a saved model; a run folder gets a one-line error naming the model folder in it."""
    path = Path(path)
    if path.is_file():
        raise CheckpointError(f"--{flag} {path} is a file; pass the folder holding config.json and model.safetensors")
    if path.is_dir() and not (path / "model.safetensors").is_file() and is_run_folder(path):
        finals = sorted(d.name for d in path.iterdir() if (d / "model.safetensors").is_file()
                        and not d.name.startswith(("step_", ".")))
        hint = f"pass {path / finals[0]}" if finals else "it has no final model yet; pass one of its step_N/ folders"
        raise CheckpointError(f"--{flag} {path} is a run folder, not a model folder; {hint}")
    return path


def find_checkpoint(output_dir: Path, spec: str) -> Path:
    """`latest` -> the newest step_N/ of the run; otherwise the given folder, which must exist."""
    if spec == "latest":
        steps = sorted((p for p in output_dir.glob("step_*") if p.name.split("_")[1].isdigit()),
                       key=lambda p: int(p.name.split("_")[1]))
        if not steps:
            raise CheckpointError(f"--resume_from_checkpoint latest: {output_dir} has no step_N/ checkpoint yet")
        return steps[-1]
    path = Path(spec)
    if not (path / TRAINER_STATE).is_file():
        raise CheckpointError(f"--resume_from_checkpoint {path} is not a step_N/ checkpoint folder "
                              f"(no {TRAINER_STATE}); pass a step_N/ folder of a run or 'latest'")
    return path


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    try:
        state = json.loads((checkpoint / TRAINER_STATE).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot resume from {checkpoint}: {TRAINER_STATE} is unreadable ({error}); "
                              "pick an earlier step_N/ folder") from None
    if not isinstance(state, dict) or not {"step", "epoch", "batches_done_in_epoch", "lr_scheduler"} <= set(state):
        raise CheckpointError(f"cannot resume from {checkpoint}: {TRAINER_STATE} lacks the step and data position; "
                              "pick an earlier step_N/ folder")
    return state


def check_resumable(checkpoint: Path, saved: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint whose stage, model config or data-order arguments differ from this run's."""
    if saved is None:  # written before checkpoints recorded their run; nothing to compare
        return
    def importance(key: str) -> tuple[int, str]:  # the stage first, the masking settings last
        return ({"stage": 0}.get(key, 3 if key.startswith("masking.") else 2 if key.startswith("model.") else 1), key)

    differing = sorted((key for key in set(saved) | set(current) if saved.get(key) != current.get(key)), key=importance)
    if differing:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}" for k in differing[:4])
        raise CheckpointError(f"cannot resume from {checkpoint}: it was made with other settings ({details}); use the "
                              "same settings, or pass --allow_resume_mismatch if the change is meant")
