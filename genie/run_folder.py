"""The run folder: refusing to mix runs, finding the checkpoint to resume from.

Layout (docs/architecture.md, "Run folder"): config.json (the run), step_N/ (resumable state with
trainer_state.json), the final model in Hugging Face format, metrics.jsonl.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from genie.checkpoint import CheckpointError
from genie.config import ConfigError

TRAINER_STATE = "trainer_state.json"


def prepare_output_dir(output_dir: str | Path, overwrite: bool, resuming: bool) -> Path:
    """Refuse to mix two runs in one folder unless asked to overwrite or resume."""
    out = Path(output_dir)
    existing = out / "config.json"
    if existing.is_file() and not (overwrite or resuming):
        raise ConfigError(f"--output_dir {out} already holds a run; pass --resume_from_checkpoint latest to continue "
                          "it, --overwrite_output_dir to replace it, or choose another folder")
    if overwrite and not resuming and out.is_dir():
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


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
