"""OS file locks: one running copy per user (the tray, the endpoint), one config writer at a time.

filelock takes the lock (flock on POSIX, LockFileEx on Windows). The OS drops it when the process dies, so a
crash never leaves a stale lock behind (a pid file alone would).

Windows locks are mandatory: while one process holds `tray.lock`, reading that file fails in every other
process. So nobody ever reads a lock file: the holder writes its pid into a file next to it (`tray.lock` ->
`tray.pid`) right after taking the lock, and a second start reads that one to say who runs.

Everything the locks need from the OS goes through `LockOS`; `NativeLockOS` is the real one, and tests
stand in for Windows with a fake (tests/core/test_lock.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from lmstudio_tray.core.errors import LockError, LockTimeout
from lmstudio_tray.core.support.files import atomic_write

log = logging.getLogger(__name__)

HOLDER_WAIT = 2.0  # how long a second start waits for the holder's pid file to name a live process
POLL = 0.05


class OSLock(Protocol):
    """One lock file's OS lock, as `LockOS.lock` gives it."""

    def try_acquire(self, timeout: float) -> bool:
        """Take the lock, waiting up to `timeout` seconds (0: one attempt); False when it stays taken."""

    def release(self) -> None:
        """Release the lock."""


class LockOS(Protocol):
    """What the locks need from the OS."""

    def lock(self, path: Path) -> OSLock:
        """The OS lock of the file `path` (not taken yet)."""

    def read_file(self, path: Path) -> str:
        """The text of `path`; OSError when it cannot be read."""

    def write_file(self, path: Path, text: str) -> None:
        """Write `text` to `path` (atomically, on the real OS)."""

    def remove(self, path: Path) -> None:
        """Delete `path`; a missing file is fine."""

    def pid(self) -> int:
        """This process's id."""

    def pid_alive(self, pid: int) -> bool:
        """Whether a process with the id `pid` runs."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for `seconds`."""


class _FileLock:
    def __init__(self, path: Path) -> None:
        import filelock  # only processes that lock pay for the import

        # thread_local=False: the endpoint takes its lock on the core's thread and may release it on another
        self._lock = filelock.FileLock(str(path), thread_local=False)
        self._timeout_error = filelock.Timeout

    def try_acquire(self, timeout: float) -> bool:
        try:
            self._lock.acquire(timeout=timeout, poll_interval=POLL)
        except self._timeout_error:
            return False
        return True

    def release(self) -> None:
        self._lock.release()


class NativeLockOS:
    """The real OS: filelock for the locks, `files` for the pid file, psutil for liveness."""

    def lock(self, path: Path) -> OSLock:
        """A filelock lock on `path`; the file is created when it is taken."""
        return _FileLock(path)

    def read_file(self, path: Path) -> str:
        """`path`'s text, as UTF-8."""
        return path.read_text(encoding="utf-8")

    def write_file(self, path: Path, text: str) -> None:
        """`files.atomic_write(path, text)`."""
        atomic_write(path, text)

    def remove(self, path: Path) -> None:
        """`path.unlink()`; a missing file is fine."""
        path.unlink(missing_ok=True)

    def pid(self) -> int:
        """`os.getpid()`."""
        return os.getpid()

    def pid_alive(self, pid: int) -> bool:
        """psutil's answer: `os.kill(pid, 0)` would terminate the process on Windows."""
        import psutil  # never os.kill(pid, 0): on Windows that terminates the process

        return bool(psutil.pid_exists(pid))

    def sleep(self, seconds: float) -> None:
        """`time.sleep(seconds)`."""
        time.sleep(seconds)


def pid_file(lock_path: Path) -> Path:
    """Where the holder of `lock_path` writes its pid: `tray.lock` -> `tray.pid`."""
    return lock_path.with_suffix(".pid")


def _take(lock_os: LockOS, path: Path, timeout: float) -> OSLock | None:
    """The lock on `path` (None when another process keeps it); LockError when the file cannot be made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = lock_os.lock(path)
        return lock if lock.try_acquire(timeout) else None
    except OSError as exc:
        raise LockError(
            f"cannot create the lock file {path} ({exc.strerror or exc}); check that {path.parent} is a "
            "folder you can write to"
        ) from None


class SingleInstance:
    """One holder per lock file across processes; a second one learns the holder's pid."""

    def __init__(self, path: Path, *, lock_os: LockOS | None = None, holder_wait: float = HOLDER_WAIT) -> None:
        self.path = path
        self.pid_path = pid_file(path)
        self.holder_wait = holder_wait
        self._os: LockOS = lock_os if lock_os is not None else NativeLockOS()
        self._lock: OSLock | None = None

    def acquire(self) -> int | None:
        """None when we hold the lock now; otherwise the holder's pid (0 if unknown)."""
        lock = _take(self._os, self.path, 0)
        if lock is None:
            return self._holder()
        self._lock = lock
        try:
            self._os.write_file(self.pid_path, str(self._os.pid()))
        except OSError as exc:  # we still hold the lock; only a second start's "(pid N)" is lost
            log.warning("could not write %s: %s", self.pid_path, exc)
        return None

    def release(self) -> None:
        """Give the lock up, removing our pid file first; nothing happens when we do not hold it."""
        if self._lock is None:
            return
        # the pid file goes first: once the lock is free, the file belongs to whoever takes it next
        if self._read_pid() == self._os.pid():
            with contextlib.suppress(OSError):
                self._os.remove(self.pid_path)
        with contextlib.suppress(OSError):
            self._lock.release()
        self._lock = None

    def _read_pid(self) -> int:
        try:
            text = self._os.read_file(self.pid_path).strip()
        except OSError:
            return 0
        return int(text) if text.isdigit() else 0

    def _holder(self) -> int:
        # The holder writes its pid right after it took the lock: a start in between finds the file of an
        # earlier run (or none) for a moment.
        for attempt in range(round(self.holder_wait / POLL) + 1):
            if attempt:
                self._os.sleep(POLL)
            pid = self._read_pid()
            if pid and self._os.pid_alive(pid):
                return pid
        return 0


@contextlib.contextmanager
def exclusive(path: Path, timeout: float, *, lock_os: LockOS | None = None) -> Iterator[None]:
    """Hold the lock on `path` for the block, waiting up to `timeout` s for it (LockTimeout after that)."""
    lock = _take(lock_os if lock_os is not None else NativeLockOS(), path, timeout)
    if lock is None:
        raise LockTimeout(path, timeout)
    try:
        yield
    finally:
        lock.release()
