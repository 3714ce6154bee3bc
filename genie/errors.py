"""Every error that means "the user gave a wrong input", in one leaf module that imports nothing of genie.

Commands catch `UserError` (genie/cli.py `run_cli`) and print its message as one line with exit 2;
any other exception is a bug and keeps its traceback. Each message names the file or flag and the fix.
"""
from __future__ import annotations


class UserError(Exception):
    """Base of the errors a user can fix by changing an input; the message is one line."""


class DownloadError(UserError):
    """The Hugging Face hub could not deliver what was asked for (no network, offline mode, a refusal)."""


class ConfigError(UserError, ValueError):
    """A configuration value or flag is wrong; the message names the field and the fix."""


class RunFolderLockedError(ConfigError):
    """Another live process is writing this run folder."""


class DataFormatError(UserError, ValueError):
    """A data folder is missing a file or holds a file of the wrong size or content; one line says which."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, corrupted or does not fit the model; one line says which and why."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint folder (or its config.json) does not exist."""


class OutputWriteError(UserError):
    """An output (a run folder's file, an ONNX export, an evaluation's report) could not be written: a full disk, a
    quota, a file size limit, no permission, a read-only file system; nothing partial is left behind."""


class CheckpointWriteError(CheckpointError, OutputWriteError):
    """A checkpoint or the final model could not be written (disk full, no permission)."""


class OnnxExportError(UserError, ValueError):
    """An ONNX export folder is missing, damaged, of another model, or would replace another model's export."""


class RunStopped(UserError):
    """A run stopped on a signal (SIGTERM, SIGINT) after saving a checkpoint: not finished."""


class RecordingStopped(UserError):
    """A recording stopped on a signal (SIGTERM, SIGINT) before its folder was written: nothing was written."""


class RecordingWriteError(UserError):
    """A recording could not be written (disk full, quota, file size limit, no permission); nothing partial is left."""


class StudyJobsFailed(UserError):
    """Jobs of a study ended without finishing their runs (killed, failed, out of memory or time): the store
    keeps the checkpoints they saved, and running the study again submits them anew."""


class NonFiniteLossError(UserError, RuntimeError):
    """The training loss became NaN or infinite (a learning rate or data problem the user must fix)."""


class NothingToLearnError(UserError, RuntimeError):
    """A training batch masks (and so scores) no token."""


def check_flag(ok: bool, flag: str, value, what: str) -> None:
    """A wrong flag value is a one-line ConfigError naming the flag, its value and what it must be."""
    if not ok:
        raise ConfigError(f"--{flag} {value!r} {what}")
