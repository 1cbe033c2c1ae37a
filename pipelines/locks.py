"""File locks: one process trains in a run folder; one process creates or migrates a SQLite store.

Both are ``flock`` locks, which the kernel releases when the holding process dies (SIGKILL
included), so a lock left by a dead process never blocks the next run. The lock file records
the holder's pid and host for the message the second process prints.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from pipelines.errors import UsageError
from pipelines.storage import Location


class RunLocked(UsageError):
    """Another process trains in this run folder (exit status 2)."""


class RunLock:
    """An exclusive lock on a run folder, held while a process trains in it.

    For a local folder the lock file is ``{run}/.lock``; for a URI (object stores have no
    locks) it is in the local cache, so it guards against a second process on this machine."""

    def __init__(self, path: Path, handle: IO[str]):
        self.path = path
        self._handle: IO[str] | None = handle

    @staticmethod
    def acquire(run: Location, cache: Path) -> "RunLock":
        if run.is_local:
            path = Path(run.uri) / ".lock"
        else:
            path = cache / "locks" / f"{hashlib.sha256(run.uri.encode()).hexdigest()[:16]}.lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")
        except OSError as err:
            raise UsageError(f"train.storage: cannot write the run folder {run.uri}: {err}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLocked(
                f"{run.uri} is in use by {holder}; wait for it to finish, or stop it (a lock whose "
                "process has died is taken over automatically)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        handle.flush()
        return RunLock(path, handle)

    def release(self) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Block until this process holds the exclusive lock on ``path`` (created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
