"""Checkpoint I/O: strict safetensors weight loading and crash-safe (temp name + rename) folder writes."""
from __future__ import annotations

import contextlib
import errno
import resource
import shutil
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genie.errors import CheckpointError, CheckpointWriteError
from genie.files import atomic_directory

# torch's zip writer and safetensors report a failed write (a full disk, a file size limit) as a RuntimeError or a
# SafetensorError, not an OSError: these markers of their messages say that a write failed.
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter", "inline_container", "unexpected pos", "file write failed",
                         "No space left on device", "StorageFull", "os error 28")
_ERRNO_CAUSES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
                 errno.EFBIG: "the file size limit is exceeded", errno.EACCES: "no permission to write there",
                 errno.EPERM: "no permission to write there", errno.EROFS: "the file system is read-only"}


def write_failure_cause(error: BaseException, target: Path) -> str | None:
    """Why a write failed, in a few words, if `error` (or an exception it was raised from) is a failed
    write; None for any other error, which is a bug and keeps its traceback."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is None:  # numpy's short write: "X requested and Y written"
            return _short_write_cause(seen, target)
        if isinstance(seen, OSError):
            return _ERRNO_CAUSES.get(seen.errno, seen.strerror or type(seen).__name__)
        text = str(seen)
        if any(marker in text for marker in _TORCH_WRITE_FAILURES):
            return "no space left on the device" if _nearly_full(target) else f"the write failed ({text[:120]})"
        seen = seen.__cause__ or seen.__context__
    return None


def _short_write_cause(error: OSError, target: Path) -> str:
    """Why a write stopped short with no errno (numpy's tofile and save report a partial write so)."""
    if _nearly_full(target):
        return "no space left on the device"
    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return "the file size limit (ulimit -f) is exceeded"
    return f"the write failed ({str(error)[:120]})"


def _nearly_full(target: Path, margin_bytes: int = 1 << 20) -> bool:
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    return existing is not None and shutil.disk_usage(existing).free < margin_bytes


def describe_write_error(target: Path, cause: str, where: str | None, checkpoints: list[Path]) -> str:
    newest = f"the newest complete checkpoint is {checkpoints[0]}" if checkpoints else "no checkpoint was written yet"
    return (f"could not write {target}: {cause} ({where or target.parent}); the partial folder was removed and "
            f"{newest}; free space or fix permissions, then resume with --resume_from_checkpoint latest")


@contextlib.contextmanager
def one_line_write_errors(target: Path, make_error: Callable[[str, str | None], Exception],
                          partial: Callable[[], Path | None] = lambda: None) -> Iterator[None]:
    """A failed write of `target` (see write_failure_cause) becomes `make_error(cause, file)`, raised without
    its traceback, after the `partial()` folder (if any) is removed; any other error keeps its traceback."""
    try:
        yield
    except Exception as error:
        cause = write_failure_cause(error, target)
        if cause is None:
            raise
        folder = partial()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise make_error(cause, getattr(error, "filename", None)) from None


def write_errors(target: Path, checkpoints: list[Path], partial: Path | None = None):
    """A failed write of `target` (a full disk, no permission: see write_failure_cause) becomes a one-line
    CheckpointWriteError naming the folder, the cause and the newest of `checkpoints`; the `partial`
    folder is removed, so that it takes no space and is never mistaken for a checkpoint."""
    return one_line_write_errors(
        target, lambda cause, where: CheckpointWriteError(describe_write_error(target, cause, where, checkpoints)),
        lambda: partial)


def load_weights_strict(model: torch.nn.Module, weights_path: str | Path) -> None:
    """Load a safetensors file into `model`; every parameter must be present with the right shape.

    Nothing is silently re-initialised: any missing, unexpected or mis-shaped tensor is an error
    listing the offending names and shapes.
    """
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path} does not exist; a checkpoint folder needs model.safetensors")
    try:
        state_dict = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file ({error}); "
                              "re-save or re-download the checkpoint") from None
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
