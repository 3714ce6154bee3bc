"""File helpers every part of the package shares: reading a JSON object, writing a folder crash-safely
(temporary name + rename), a file's SHA-256, a folder's identity. A leaf: it imports nothing from genie."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator


def read_json_object(path: Path, error_type: type[Exception], what: str = "") -> dict[str, Any]:
    """The JSON object in `path`; malformed JSON or another JSON type raises `error_type` in one line."""
    try:
        values = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise error_type(f"{what}{path} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(values, dict):
        raise error_type(f"{what}{path} must hold a JSON object")
    return values


@contextlib.contextmanager
def atomic_directory(final_path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it is renamed to `final_path` in one step.

    A crash while writing leaves only the `.tmp-*` folder, never a half-written folder under the real
    name. An existing folder at `final_path` is replaced only after the new one is complete.
    """
    final_path = Path(final_path)
    tmp_path = final_path.with_name(f".tmp-{final_path.name}-{os.getpid()}")
    shutil.rmtree(tmp_path, ignore_errors=True)
    tmp_path.mkdir(parents=True)
    try:
        yield tmp_path
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise
    if final_path.exists():
        old_path = final_path.with_name(f".old-{final_path.name}-{os.getpid()}")
        os.replace(final_path, old_path)
        os.replace(tmp_path, final_path)
        shutil.rmtree(old_path, ignore_errors=True)
    else:
        os.replace(tmp_path, final_path)


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def folder_identity(folder: str | Path) -> dict[str, Any] | None:
    """What a data folder holds, cheaply: its metadata.json's content (by hash) and each file's size and
    modification time, so that other data under the same path is told apart (None: no such folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    metadata = folder / "metadata.json"
    files = {p.relative_to(folder).as_posix(): [p.stat().st_size, p.stat().st_mtime_ns]
             for p in sorted(folder.rglob("*")) if p.is_file()}
    return {"metadata_sha1": hashlib.sha1(metadata.read_bytes()).hexdigest() if metadata.is_file() else None,
            "files": files}
