"""File helpers every part of the package shares: reading a JSON object, writing a file or a folder
crash-safely (temporary name + rename), appending a line, removing a path without following a link, a
file's SHA-256, a folder's identity, one writer per output folder (a lock), and turning a failed write (whatever the errno, whichever library raised it) into one line.
A leaf: of genie it imports only genie.errors.

Nothing written through these helpers follows a symbolic link: a link at a temporary or final name is
removed (unlinked, its target untouched) or replaced by the rename itself."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from genie.errors import OutputWriteError, RunFolderLockedError, UserError


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
    name. An existing folder at `final_path` is replaced only after the new one is complete; a link at
    any of the names is removed, never followed.
    """
    final_path = Path(final_path)
    tmp_path = final_path.with_name(f".tmp-{final_path.name}-{os.getpid()}")
    remove_entry(tmp_path)
    tmp_path.mkdir(parents=True)
    try:
        yield tmp_path
    except BaseException:
        remove_entry(tmp_path)
        raise
    if final_path.exists() or final_path.is_symlink():
        old_path = final_path.with_name(f".old-{final_path.name}-{os.getpid()}")
        remove_entry(old_path)
        os.replace(final_path, old_path)
        os.replace(tmp_path, final_path)
        remove_entry(old_path)
    else:
        os.replace(tmp_path, final_path)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary name beside `path` (with its suffix, for writers that choose the format by it); on
    success it is renamed to `path` in one step (a link there is replaced, its target untouched); on any
    failure it is removed, and `path` keeps what it held."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    remove_entry(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_entry(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def append_line(path: str | Path, line: str) -> None:
    """Append `line` to the file at `path`, never through a link (a link there is removed and a file started);
    a failed write is undone (the file is cut back to its size before), so no half line is left."""
    path = Path(path)
    if path.is_symlink():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    size = os.fstat(fd).st_size
    try:
        data = line.encode()
        while data:
            data = data[os.write(fd, data):]
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise
    finally:
        os.close(fd)


def make_folder(path: str | Path) -> Path:
    """`path` as a real folder (made with its parents if needed); a link at that name is removed first, so that
    nothing is written through it."""
    path = Path(path)
    if path.is_symlink():
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_entry(path: str | Path) -> None:
    """Remove what is at `path` without following a link: a link or a file is unlinked, a real folder is
    deleted with what it holds (as far as it can be); nothing there is fine."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# torch's zip writer and safetensors report a failed write as a RuntimeError or a SafetensorError, not an
# OSError: safetensors names the errno ("(os error 27)", or "code: 28" in older versions); torch loses it,
# and these markers of its messages say that a write failed.
_OS_ERROR_CODE = re.compile(r"\(os error (\d+)\)|\bcode: (\d+)")
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter", "inline_container", "unexpected pos", "file write failed",
                         "No space left on device", "StorageFull")
_ELSEWHERE = "or write to another folder"
_ERRNO_CAUSES = {  # errno: (the cause in a few words, the fix)
    errno.ENOSPC: ("no space left on the device", "free space on the device"),
    errno.EDQUOT: ("the disk quota is exceeded", f"free space within your quota (or have it raised) {_ELSEWHERE}"),
    errno.EFBIG: ("the file size limit is exceeded", f"raise the file size limit (ulimit -f) {_ELSEWHERE}"),
    errno.EACCES: ("no permission to write there", f"make the folder writable {_ELSEWHERE}"),
    errno.EPERM: ("no permission to write there", f"make the folder writable {_ELSEWHERE}"),
    errno.EROFS: ("the file system is read-only", "write to a writable file system")}


def write_failure(error: BaseException, target: Path) -> tuple[str, str] | None:
    """(why a write failed, in a few words; the fix) if `error` or an exception it was raised from is a failed
    write: any OSError, whatever its errno, or safetensors' and torch's reports of one; None for any other
    error, which is a bug and keeps its traceback."""
    for seen in causes(error):
        code = _OS_ERROR_CODE.search(str(seen))
        if isinstance(seen, OSError) and seen.errno is None and not code:  # numpy's short write: no errno
            return _errno_lost(str(seen), target)
        if isinstance(seen, OSError) or code:
            number = getattr(seen, "errno", None) or (int(code.group(1) or code.group(2)) if code else None)
            return _ERRNO_CAUSES.get(number) or (_strerror(seen, number), f"fix that {_ELSEWHERE}")
        if any(marker in str(seen) for marker in _TORCH_WRITE_FAILURES):
            return _errno_lost(str(seen), target)
    return None


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions it was raised from, newest first (not a context hidden by `raise ... from None`)."""
    seen, count = error, 0
    while seen is not None and count < 20:
        yield seen
        seen, count = seen.__cause__ if seen.__cause__ is not None else \
            None if seen.__suppress_context__ else seen.__context__, count + 1


def _strerror(error: BaseException, number: int | None) -> str:
    text = getattr(error, "strerror", None) or (os.strerror(number) if number else type(error).__name__)
    return f"{text[:1].lower()}{text[1:]}" + (f" ({errno.errorcode.get(number, number)})" if number else "")


def _errno_lost(text: str, target: Path) -> tuple[str, str]:
    """torch's zip writer says only that a write failed: the full disk or the file size limit, where either is
    likely, or its words."""
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is not None and shutil.disk_usage(existing).free < 1 << 20:
        return _ERRNO_CAUSES[errno.ENOSPC]
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return f"the write failed, most likely at the file size limit of {limit} bytes", _ERRNO_CAUSES[errno.EFBIG][1]
    return f"the write failed ({text[:120]})", f"free space (a full disk or quota is the usual cause) {_ELSEWHERE}"


@contextlib.contextmanager
def one_line_write_failures(target: str | Path, left: str, then: str, partial: Iterable[Path] = (),
                            error_type: type[Exception] = OutputWriteError) -> Iterator[None]:
    """A failed write inside (see write_failure) removes the `partial` paths and becomes one `error_type` line:
    "could not write <target>: <cause>; <left>; <fix>, then <then>". Any other error passes unchanged."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        failure = write_failure(error, Path(target))
        if failure is None:
            raise
        for path in partial:
            with contextlib.suppress(OSError):
                remove_entry(path)
        where = getattr(error, "filename", None)
        shown = f" ({where})" if where and str(where) != str(target) else ""
        raise error_type(f"could not write {target}: {failure[0]}{shown}; {left}; {failure[1]}, then {then}") from None


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


# ----- one writer per output folder -------------------------------------------------------------------------
# An exclusive lock, held by the process writing a run folder or a recording: an advisory `flock` on a file
# beside the folder (`.<name>.lock` in its parent), so it survives the folder being moved aside by
# --overwrite_output_dir (inside the folder only when the parent cannot be written). The kernel releases a
# flock when its process dies, so a lock left by a killed process is stale by construction and simply taken
# over; the file records who holds it, for the refusal message.


def lock_path(output_dir: Path) -> Path:
    """`.<name>.lock` beside the run folder (beside the folder a link named as the run folder points at, so
    that both names meet one lock); inside it when only the folder itself is writable (a cluster home where
    the parent belongs to someone else)."""
    output_dir = Path(output_dir)
    output_dir = output_dir.resolve() if output_dir.is_symlink() else output_dir.absolute()
    if output_dir.is_dir() and not os.access(output_dir.parent, os.W_OK):
        return output_dir / ".genie.lock"
    return output_dir.parent / f".{output_dir.name}.lock"


class RunLock:
    def __init__(self, output_dir: str | Path, writer: str = "training process"):
        self.output_dir = Path(output_dir)
        self.writer = writer  # what the refusal calls the other process
        self.path = lock_path(self.output_dir)
        self._file = None

    def acquire(self) -> None:
        """Take the lock or raise RunFolderLockedError naming the holder; a lock file that cannot be written
        (a read-only folder, a full disk) is one OutputWriteError line."""
        with one_line_write_failures(self.path, "nothing was written", "run the command again"):
            self._acquire()

    def _acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            if self.path.is_symlink():
                self.path.unlink()  # a lock file is never a link: its target is not written
            handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666), "r+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(handle)
                handle.close()
                raise RunFolderLockedError(f"--output_dir {self.output_dir} is being written by another {self.writer} "
                                           f"({holder}); wait for it to end, or choose another folder") from None
            # The holder before us may have removed the file between our open and our lock: then
            # we hold a lock on a deleted file, and must try again on the new one.
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
            handle.close()
        self._file = handle
        try:  # unbuffered, so that a failed write is not tried again when the file is closed
            os.ftruncate(handle.fileno(), 0)
            os.pwrite(handle.fileno(), json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                   "since": time.time()}).encode(), 0)
        except BaseException:
            self.release()  # no lock file is left behind
            raise

    @staticmethod
    def _holder(handle) -> str:
        try:
            handle.seek(0)
            info = json.loads(handle.read())
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
            return f"pid {info['pid']} on {info['host']}, since {since}"
        except (ValueError, KeyError, TypeError):
            return "holder unknown"

    def release(self) -> None:
        if self._file is None:
            return
        try:
            os.unlink(self.path)  # while still locked: no one can be holding it
        except FileNotFoundError:
            pass
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None
