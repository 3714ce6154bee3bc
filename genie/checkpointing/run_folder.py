"""The run folder: what may be written where, replacing a run without losing it, resume lookup and checks,
and `RunFolder`, which does a training run's bookkeeping in it (lock, config.json, checkpoints, restore).

Layout (docs/architecture.md, "Run folder"): config.json (the run), step_N/ (resumable state with
trainer_state.json), the final model in Hugging Face format, metrics.jsonl.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from accelerate.utils import load as accelerate_load

from genie.checkpointing.checkpoint import save_model_folder, write_errors
from genie.files import RunLock
from genie.checkpointing.manifest import (MANIFEST, TRAINER_STATE, trainer_state_problem, verify_checkpoint,
                                          write_manifest)
from genie.errors import CheckpointError, ConfigError, OutputWriteError, RunFolderLockedError, check_flag
from genie.files import remove_entry, write_text_atomic


def check_output_folder(path: str | Path | None, flag: str = "output_dir") -> None:
    """An output folder must be a folder (or not exist yet) that can be written."""
    if path is None:
        return
    path = Path(path)
    check_flag(path.exists() or not path.is_symlink(), flag, str(path), f"is a symbolic link to "
               f"{os.readlink(path) if path.is_symlink() else ''}, which does not exist; create that folder or choose "
               "another")
    check_flag(not path.exists() or path.is_dir(), flag, str(path), "is a file, not a folder; choose a folder path")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    check_flag(_writable(existing), flag, str(path), f"cannot be written ({existing} is not writable); choose a "
               "folder you can write")


def _writable(folder: Path) -> bool:
    """Whether files can be created in `folder`: permissions, and (for root, whom permissions do not stop)
    an anonymous temporary file that leaves no trace."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


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
    foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if not written_by_a_run(p.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(f"--overwrite_output_dir would delete files in {out} that no run wrote ({shown}); move them "
                          "out of the folder first, or choose another folder")


# What a run (and the commands around it) writes inside its folder; --overwrite_output_dir replaces only these.
RUN_ENTRIES = ("config.json", "metrics.jsonl", "final_model", "masked_pretrain_final", "pictures", "generated", "wandb",
               ".genie.lock")
RUN_ENTRY_PREFIXES = ("step_", ".tmp-", ".old-", "genie-")


def written_by_a_run(name: str) -> bool:
    return name in RUN_ENTRIES or name.startswith(RUN_ENTRY_PREFIXES)


def real_folder(path: str | Path) -> Path:
    """The folder itself: a link named as the output folder is resolved, so that moving the folder aside and
    back moves the run, not the link (which keeps pointing at the new run)."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path.absolute()


def aside_folders(output_dir: str | Path) -> list[Path]:
    """Folders that an --overwrite_output_dir moved aside beside `output_dir` and that are still there (the
    process that moved them was killed before its first checkpoint or before putting them back)."""
    out = real_folder(output_dir)
    if not out.parent.is_dir():
        return []
    return sorted(p for p in out.parent.glob(f".replaced-{out.name}-*") if p.is_dir() and not p.is_symlink())


def replaced_runs(output_dir: str | Path) -> list[Path]:
    """The aside folders that hold a run (an empty one, left by a move that failed, is no run)."""
    return [p for p in aside_folders(output_dir) if is_run_folder(p)]


def prepare_output_dir(output_dir: str | Path, overwrite: bool, resuming: bool) -> Path | None:
    """Create the output folder. A run to be replaced is moved aside, not deleted: returns where it went
    (`discard_replaced_run` deletes it once the new run has a checkpoint; `restore_replaced_run` puts
    it back if the new run fails before that)."""
    out = real_folder(output_dir)
    aside = None
    if overwrite and not resuming and is_run_folder(out):
        # A fresh, unique name: a folder left by an earlier interrupted overwrite is never touched.
        aside = Path(tempfile.mkdtemp(prefix=f".replaced-{out.name}-", dir=out.parent))
        try:
            os.replace(out, aside)  # rename onto the new empty folder: one step
        except BaseException:
            aside.rmdir()
            raise
    out.mkdir(parents=True, exist_ok=True)
    return aside


def discard_replaced_run(aside: Path | None) -> None:
    if aside is not None:
        remove_entry(aside)


def restore_replaced_run(output_dir: str | Path, aside: Path | None) -> None:
    """Put a replaced run back in place of a new run that failed before its first checkpoint."""
    if aside is not None and aside.is_dir():
        out = real_folder(output_dir)
        remove_entry(out)
        os.replace(aside, out)


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


def step_folders(output_dir: Path) -> list[Path]:
    """The run's step_N/ folders, newest first."""
    steps = [p for p in output_dir.glob("step_*") if p.name.split("_")[1].isdigit()]
    return sorted(steps, key=lambda p: int(p.name.split("_")[1]), reverse=True)


def find_checkpoint(output_dir: Path, spec: str) -> tuple[Path | None, list[str]]:
    """The checkpoint to resume from and, for `latest`, the newer ones skipped (with why).

    `latest`: the newest step_N/ that verifies (genie/checkpointing/manifest.py); None when the run has
    no checkpoint yet (it starts from step 0). A named folder must verify, or it is refused."""
    if spec != "latest":
        path = Path(spec)
        if not (path / TRAINER_STATE).is_file() and not (path / MANIFEST).is_file():
            raise CheckpointError(f"--resume_from_checkpoint {path} is not a step_N/ checkpoint folder "
                                  f"(no {TRAINER_STATE}); pass a step_N/ folder of a run or 'latest'")
        problem = verify_checkpoint(path)
        if problem:
            raise CheckpointError(f"--resume_from_checkpoint {path} is damaged: {problem}; pass an earlier step_N/ "
                                  "folder or 'latest' (the newest one that verifies)")
        return path, []
    skipped = []
    for candidate in step_folders(output_dir):
        problem = verify_checkpoint(candidate)
        if problem is None:
            return candidate, skipped
        skipped.append(f"skipped {candidate.name}/: {problem}")
    if skipped:
        raise CheckpointError(f"--resume_from_checkpoint latest: no checkpoint of {output_dir} verifies "
                              f"({'; '.join(skipped)}); start a new run with --overwrite_output_dir")
    return None, []


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    try:
        state = json.loads((checkpoint / TRAINER_STATE).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot resume from {checkpoint}: {TRAINER_STATE} is unreadable ({error}); "
                              "pick an earlier step_N/ folder") from None
    problem = trainer_state_problem(state)
    if problem:
        raise CheckpointError(f"cannot resume from {checkpoint}: {problem}; pick an earlier step_N/ folder")
    return state


def check_resumable(checkpoint: Path, saved: dict[str, Any] | None, current: dict[str, Any],
                    allow_mismatch: bool = False) -> list[str]:
    """Refuse to resume a checkpoint whose stage, process count, model config or data-order arguments
    differ from this run's; with `allow_mismatch`, return what differs instead (to be printed)."""
    if saved is None:  # written before checkpoints recorded their run; nothing to compare
        return []
    def importance(key: str) -> tuple[int, str]:  # the stage first, the masking settings last
        order = {"stage": 0, "num_processes": 1}
        return (order.get(key, 4 if key.startswith("masking.") else 3 if key.startswith("model.") else 2), key)

    differing = sorted((key for key in set(saved) | set(current) if saved.get(key) != current.get(key)), key=importance)
    changes = [describe_change(k, saved, current) for k in differing]
    if differing and not allow_mismatch:
        raise CheckpointError(f"cannot resume from {checkpoint}: it was made with other settings "
                              f"({'; '.join(changes[:4])}); use the same settings, or pass --allow_resume_mismatch if "
                              "the change is meant")
    return changes


def describe_change(key: str, saved: dict[str, Any], current: dict[str, Any]) -> str:
    if key == "num_processes" and {"num_processes", "per_device_train_batch_size"} <= set(saved) & set(current):
        batch = lambda run: (run["num_processes"] * run["per_device_train_batch_size"]  # noqa: E731
                             * run.get("gradient_accumulation_steps", 1))
        return (f"{saved[key]} processes when saved, {current[key]} now: the global batch changes from "
                f"{batch(saved)} to {batch(current)} windows per optimizer step and the data order changes "
                f"(launch with {saved[key]} processes to continue exactly)")
    return f"{key}: checkpoint {saved.get(key)!r} vs now {current.get(key)!r}"


def drop_records_after(path: Path, step: int) -> None:
    """Keep only the records up to `step` (a resumed run logs the later steps again); atomic rewrite."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines(keepends=True) if _step_of(line) <= step]
    write_text_atomic(path, "".join(kept))


def _step_of(line: str) -> float:
    """The step of one metrics line; a line cut short by a kill counts as after every step."""
    try:
        return json.loads(line)["step"] if line.endswith("\n") else math.inf
    except (ValueError, KeyError, TypeError):
        return math.inf


class RunFolder:
    """A training run's folder as its processes share it: one writer (the lock), config.json, the
    checkpoint to resume from, step_N/ checkpoints written as .tmp-step_N and renamed into place, and
    a run replaced by --overwrite_output_dir, kept aside until this run has its first checkpoint.

    The main process writes; every process takes part in the collective steps (the lock's outcome,
    the waits, Accelerate's save_state), in the same order on every process."""

    def __init__(self, output_dir: Path, accelerator: Accelerator, overwrite: bool, resume_from: str | None):
        self.path, self.accelerator = Path(output_dir), accelerator
        self.overwrite, self.resume_from = overwrite, resume_from
        self._lock: RunLock | None = None
        self.replaced_run: Path | None = None  # where the replaced run waits for this run's first checkpoint

    # ----- the lock -----
    def lock(self) -> None:
        """One writer per run folder: the main process takes the lock, every process learns the outcome.
        Does nothing when the lock is held already."""
        if self._lock is not None:
            return
        lock, refusal = RunLock(self.path), [None]
        if self.accelerator.is_main_process:
            try:
                lock.acquire()
            except (RunFolderLockedError, OutputWriteError) as error:
                refusal = [error]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(refusal)
        if refusal[0]:
            raise refusal[0]
        self._lock = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    # ----- reading -----
    @property
    def stage(self) -> str:
        """The stage of the run in the folder, as its config.json records it."""
        return json.loads((self.path / "config.json").read_text())["stage"]

    def checkpoints(self) -> list[Path]:
        """The step_N/ folders, newest first."""
        return step_folders(self.path)

    def find_checkpoint(self, stage: str) -> Path | None:
        """The checkpoint to resume from: the named one, or the newest that verifies (saying which newer
        ones were skipped and why); None for a new run or a run killed before its first checkpoint."""
        if not self.resume_from:
            return None
        checkpoint, skipped = find_checkpoint(self.path, self.resume_from)
        for line in skipped:
            self.accelerator.print(f"--resume_from_checkpoint latest {line}")
        if checkpoint is not None and not (checkpoint / MANIFEST).is_file():
            self.accelerator.print(f"note: {checkpoint} has no {MANIFEST}, so its files cannot be checked for damage "
                                   "(sizes, SHA-256); resuming from it unchecked")
        if checkpoint is None:
            self._check_restartable(stage)
            self.accelerator.print(f"{self.path} holds a run with no checkpoint yet: it starts from step 0")
        return checkpoint

    def _check_restartable(self, stage: str) -> None:
        """`latest` on a run with no checkpoint restarts it from step 0: only a run of this stage."""
        if not is_run_folder(self.path):
            raise CheckpointError(f"--resume_from_checkpoint latest: {self.path} holds no run to resume; start it "
                                  "without --resume_from_checkpoint")
        saved = self.stage
        if saved != stage:
            raise CheckpointError(f"--resume_from_checkpoint latest: {self.path} holds a '{saved}' run, not a '{stage}' "
                                  "run; resume it with the matching command")

    def note_replaced_runs(self) -> None:
        """Name the runs an interrupted --overwrite_output_dir left beside the folder, and what to do."""
        out = real_folder(self.path) if self.path.is_symlink() else self.path
        for aside in replaced_runs(self.path):
            self.accelerator.print(f"note: {aside} holds a run that an interrupted --overwrite_output_dir moved aside; "
                                   f"to restore it: rm -rf {out} && mv {aside} {out}; to discard it: rm -rf {aside}")

    def load(self, checkpoint: Path, fingerprint: dict[str, Any], allow_mismatch: bool) -> dict[str, Any]:
        """Check that `checkpoint` was made by a run with this `fingerprint` (or print what differs,
        with `allow_mismatch`), load Accelerate's state from it; returns its trainer state."""
        state = read_trainer_state(checkpoint)
        for change in check_resumable(checkpoint, state.get("run"), fingerprint, allow_mismatch):
            self.accelerator.print(f"--allow_resume_mismatch: resuming although {change}")
        if written_before_no_action(checkpoint):
            raise CheckpointError(f"cannot resume from {checkpoint}: it has no no_action, which this version's model "
                                  "has (it was written by an older genie); finish that run with the version that wrote "
                                  "it, or start this stage again")
        try:
            # Accelerate reads weights with safetensors and the optimizer / RNG files with
            # torch.load(weights_only=True): a pickle that would run code is refused, not executed.
            # It skips an RNG file it cannot read without a word: refuse it here instead.
            for rng_file in sorted(checkpoint.glob("random_states_*.pkl")):
                accelerate_load(rng_file)
            self.accelerator.load_state(str(checkpoint))
        except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, KeyError, EOFError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"cannot resume from {checkpoint}: {type(error).__name__}: {first_line[:300]}; "
                                  "pick an earlier step_N/ folder") from None
        return state

    # ----- writing -----
    def create(self, run_config: dict[str, Any], resumed_step: int) -> None:
        """Create the folder (a replaced run is moved aside until this run has a checkpoint) and write
        config.json; a resumed run's metric records after `resumed_step` go (they are logged again).
        The folder must be locked."""
        if self.accelerator.is_main_process:
            new = not self.path.exists()
            for empty in set(aside_folders(self.path)) - set(replaced_runs(self.path)):
                with contextlib.suppress(OSError):
                    empty.rmdir()  # left empty by a move aside that failed (older versions): nothing to keep
            with write_errors(self.path / "config.json", self.checkpoints(), partial=self.path if new else None,
                              then="run the command again"):
                self.replaced_run = prepare_output_dir(self.path, self.overwrite, bool(self.resume_from))
                if self.replaced_run is not None:
                    print(f"moved the previous run in {self.path} to {self.replaced_run}; it is deleted when this run "
                          "writes its first checkpoint, and put back if this run fails before that")
                write_text_atomic(self.path / "config.json", json.dumps(run_config, indent=2) + "\n")
                if self.resume_from:
                    drop_records_after(self.path / "metrics.jsonl", resumed_step)
        self.accelerator.wait_for_everyone()

    def save(self, step: int, state: dict[str, Any], model_config) -> None:
        """step_N/ with everything needed to resume exactly (Accelerate's state, `model_config` as
        config.json, `state` as trainer_state.json) and its manifest; written as .tmp-step_N and renamed into place.
        A failed write (disk full, no permission) removes the partial folder and stops the run with one line."""
        accelerator = self.accelerator
        final, tmp = self.path / f"step_{step}", self.path / f".tmp-step_{step}"
        if accelerator.is_main_process:
            remove_entry(tmp)  # a link there is unlinked: nothing is written through it
        accelerator.wait_for_everyone()
        with write_errors(final, self.checkpoints(), partial=tmp):
            accelerator.save_state(str(tmp))  # every rank saves its part (sharded optimizers need this)
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                model_config.to_json_file(tmp / "config.json")  # step_N/ loads with from_pretrained too
                (tmp / TRAINER_STATE).write_text(json.dumps(state))
                write_manifest(tmp)
                remove_entry(final)
                os.replace(tmp, final)  # a crash before this line leaves only the .tmp- folder
                discard_replaced_run(self.replaced_run)  # the new run can now be resumed: the old one goes
                self.replaced_run = None
        accelerator.wait_for_everyone()

    def save_model(self, dirname: str, model_config, state_dict: dict[str, torch.Tensor]) -> Path:
        """The model in Hugging Face format in `dirname`/ (written by the main process); returns the folder."""
        folder = self.path / dirname
        if self.accelerator.is_main_process:
            with write_errors(folder, self.checkpoints()):  # save_model_folder removes its own partial folder
                save_model_folder(folder, model_config, state_dict)
        self.accelerator.wait_for_everyone()
        return folder

    def writing(self, target: Path) -> contextlib.AbstractContextManager:
        """A failed write of `target` (metrics.jsonl, a picture) stops the run with one line naming the newest
        checkpoint to resume from."""
        return write_errors(target, self.checkpoints())

    def close(self, failed: bool) -> None:
        """Release the lock; a run replaced by --overwrite_output_dir is put back if this run failed
        before its first checkpoint."""
        self.release()
        if failed and self.accelerator.is_main_process and self.replaced_run is not None:
            restore_replaced_run(self.path, self.replaced_run)
            print(f"this run failed before its first checkpoint: the previous run is back in {self.path}")


def written_before_no_action(checkpoint: Path) -> bool:
    """Whether a step_N/ holds an action model saved before the "no action" input existed (an action
    projection, no `no_action`): Accelerate would refuse it with a long strict-load error. A checkpoint
    without model.safetensors (sharded FSDP) is not judged here."""
    weights = checkpoint / "model.safetensors"
    if not weights.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as saved:
        names = set(saved.keys())
    return "action_proj.bias" in names and "no_action" not in names  # with_legacy_weights' test, in the model
