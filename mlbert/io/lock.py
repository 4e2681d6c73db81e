"""``OUTPUT.lock``: one mlb-batch run per output at a time, and no lock file left behind.

The lock is an exclusive, non-blocking ``flock`` on ``OUTPUT.lock``, held for the whole
run; the kernel releases it when the process dies, so a killed run never leaves a stale
lock. The file is removed when the run ends. Removing a lock file naively races: a
second run may have opened the old file just before it was unlinked and then lock that
orphan while a third run creates and locks a new file, and both would write. So a run
that gets the lock checks that the path still names the very file it locked (same
device and inode) and otherwise tries again on the current file; the run that ends
unlinks the file while it still holds the lock. Only a killed run leaves the file (with
its pid); the next run takes it over and removes it.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from mlbert.errors import MlbError, OutputLocked

LOCK_SUFFIX = ".lock"


class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``OUTPUT.lock`` for the life of the run."""

    def __init__(self, output_path: str):
        self.path = output_path + LOCK_SUFFIX
        self._fd: Optional[int] = None

    def acquire(self) -> "OutputLock":
        import fcntl

        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise MlbError(f"{self.path}: cannot create the lock file ({exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._refuse(fd)
            if self._still_named(fd):
                break
            os.close(fd)  # the run that held it removed it meanwhile: lock the current file instead
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def _still_named(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def _refuse(self, fd: int) -> None:
        holder = ""
        try:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        except OSError:
            pass
        os.close(fd)
        who = f" (process {holder})" if holder else ""
        raise OutputLocked(
            f"{self.path[: -len(LOCK_SUFFIX)]}: another mlb-batch run is writing this output{who}; "
            "not starting a second one"
        ) from None

    def release(self) -> None:
        """Remove the lock file while still holding the lock, then let go of it."""
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass  # a read-only folder: the file stays, the lock is released all the same
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
