"""Atomic file writes: a crash, a full disk or a kill leaves the old file or the new one, never half of one.

Every file the app writes goes through here (tests/core/test_files.py checks that nothing else renames or
writes files in place). The new content goes into a temporary file in the target's own directory (a rename
across file systems is not atomic), which `mkstemp` creates 0600, so a token is never readable by others,
not even for a moment. It is fsynced, given its final mode and renamed over the target; on any failure the
temporary file is removed again and the target is untouched.

On Windows a rename onto a file that another process has open (a reader of the config, an antivirus scan)
fails with PermissionError for as long as it stays open: that is retried for about a second first.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"
REPLACE_RETRIES = 8  # Windows only: waits 10, 20, 40 ... 1280 ms between attempts (about 2.5 s in all)
REPLACE_FIRST_WAIT = 0.01


def temp_glob(path: Path) -> str:
    """The glob (in `path.parent`) that matches temporary files of `path` a killed writer left behind."""
    return f".{path.name}.*{TEMP_SUFFIX}"


def replace(
    src: str | Path,
    dst: Path,
    *,
    windows: bool = sys.platform == "win32",
    rename: Callable[[str | Path, Path], None] = os.replace,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """`os.replace`, retried on Windows while another process still has `dst` open."""
    wait = REPLACE_FIRST_WAIT
    for _ in range(REPLACE_RETRIES if windows else 0):
        try:
            rename(src, dst)
            return
        except PermissionError:  # ERROR_ACCESS_DENIED / ERROR_SHARING_VIOLATION: a reader holds dst
            sleep(wait)
            wait *= 2
    rename(src, dst)  # the last attempt (the only one elsewhere) raises what went wrong


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """A file to write the new content of `path` into; it replaces `path` when the block ends normally.

    The file is open for reading too, so a caller can check what it wrote before it is committed; an
    exception in the block leaves `path` as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` via a temporary file in the same directory, fsync, then rename."""
    with atomic_writer(path, mode) as fh:
        fh.write(data)


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Text (UTF-8, `\\n` line ends on every OS, so files diff the same everywhere) written atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)
