"""Checkpoint integrity: each step_N/ records a manifest (every file's size and SHA-256) when it is
written, and a checkpoint is used for resuming only if it verifies: its files match the manifest,
its trainer state is complete and its weights are readable and finite."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from genie.files import file_sha256

MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.json"
WEIGHTS = "model.safetensors"
# key -> the type its value must have
STATE_KEYS = {"step": int, "epoch": int, "batches_done_in_epoch": int, "lr_scheduler": dict}


def write_manifest(folder: Path) -> None:
    """Record the size and SHA-256 of every file under `folder` (written last, before the rename)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files}
    (folder / MANIFEST).write_text(json.dumps({"files": entries}, indent=1) + "\n")


def trainer_state_problem(state: Any) -> str | None:
    """What is wrong with a parsed trainer_state.json, or None."""
    if not isinstance(state, dict):
        return f"{TRAINER_STATE} is not a JSON object"
    missing = sorted(set(STATE_KEYS) - set(state))
    if missing:
        return f"{TRAINER_STATE} lacks {missing}"
    wrong = sorted(k for k, kind in STATE_KEYS.items() if not isinstance(state[k], kind) or isinstance(state[k], bool))
    if wrong or any(state[k] < 0 for k in STATE_KEYS if k != "lr_scheduler"):
        return f"{TRAINER_STATE} has wrong values for {wrong or ['step/epoch < 0']}"
    return None


def verify_checkpoint(folder: Path) -> str | None:
    """None if `folder` can be resumed from; else one phrase naming the bad file and what is wrong."""
    if not folder.is_dir():
        return "it does not exist"
    problem = _manifest_problem(folder) if (folder / MANIFEST).is_file() else None
    if problem:
        return problem
    try:
        state = json.loads((folder / TRAINER_STATE).read_text())
    except FileNotFoundError:
        return f"it has no {TRAINER_STATE} (an empty or unfinished checkpoint)"
    except (OSError, ValueError) as error:
        return f"{TRAINER_STATE} is unreadable ({type(error).__name__})"
    return trainer_state_problem(state) or _step_name_problem(folder, state) or _weights_problem(folder / WEIGHTS)


def _step_name_problem(folder: Path, state: dict) -> str | None:
    """A step_N/ folder must hold step N (a renamed or copied folder would resume at another step)."""
    name = folder.name.removeprefix("step_")
    if folder.name.startswith("step_") and name.isdigit() and int(name) != state["step"]:
        return f"its {TRAINER_STATE} records step {state['step']}, not {name} (was the folder renamed or copied?)"
    return None


def _manifest_problem(folder: Path) -> str | None:
    try:
        entries = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    for name, expected in entries.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{name} has {size} bytes, {expected['size']} were written (truncated or overwritten)"
        if file_sha256(path) != expected["sha256"]:
            return f"{name} does not match the checksum written with it (damaged)"
    return None


def _weights_problem(path: Path) -> str | None:
    """Readable safetensors with finite values (NaN weights would make every retry fail the same way)."""
    if not path.is_file():
        return None  # sharded (FSDP) checkpoints keep their weights elsewhere; the manifest covers them
    try:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                tensor = f.get_tensor(name)
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    return f"{WEIGHTS} holds non-finite values (in {name})"
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        return f"{WEIGHTS} is not readable safetensors ({str(error).splitlines()[0][:120]})"
    return None
