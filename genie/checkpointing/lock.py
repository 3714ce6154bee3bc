"""One writer per run folder: an exclusive lock, held by the main process while it trains.

The lock is an advisory `flock` on a file beside the run folder (`.<name>.lock` in its parent), so it
survives the run folder being moved aside by --overwrite_output_dir (inside the folder only when the
parent cannot be written). The kernel releases a flock
when its process dies, so a lock left by a killed run is stale by construction and simply taken
over; the file records who holds it, for the refusal message.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from genie.errors import RunFolderLockedError
from genie.files import one_line_write_failures


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
    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)
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
                raise RunFolderLockedError(f"--output_dir {self.output_dir} is being written by another training "
                                           f"process ({holder}); wait for it to end, or choose another folder") from None
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
