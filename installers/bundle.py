"""Build the one-file Linux bundle with PyInstaller, reusing the previous build when nothing changed.

    python installers/bundle.py [--dist DIR] [--work DIR] [--force]

Prints the path of the executable. The tests and bench/bundle_bench.py call `build()`: a build takes
minutes, so it is skipped when the executable is newer than every file that goes into it.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "installers" / "linux" / "lmstudio-tray.spec"
DEFAULT_DIST = ROOT / ".cache" / "bundle" / "dist"
DEFAULT_WORK = ROOT / ".cache" / "bundle" / "build"


def inputs() -> Iterable[Path]:
    yield SPEC
    yield ROOT / "installers" / "bundle_common.py"
    yield ROOT / "pyproject.toml"
    yield from (ROOT / "assets").glob("*")
    for path in (ROOT / "lmstudio_tray").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def up_to_date(exe: Path) -> bool:
    if not exe.is_file():
        return False
    built = exe.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in inputs())


def build(dist: Path = DEFAULT_DIST, work: Path = DEFAULT_WORK, *, force: bool = False,
          python: str = sys.executable) -> Path:
    """The bundle's executable, built (or rebuilt) as needed. Raises RuntimeError with PyInstaller's log."""
    exe = dist / "lmstudio-tray"
    if not force and up_to_date(exe):
        return exe
    dist.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    # Two builds into one work dir corrupt each other (the tests and the bench may start together).
    with (work / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and up_to_date(exe):
            return exe  # the other build finished meanwhile
        return _run_pyinstaller(exe, dist, work, python)


def _run_pyinstaller(exe: Path, dist: Path, work: Path, python: str) -> Path:
    cmd = [python, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work), str(SPEC)]
    started = time.time()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if r.returncode != 0 or not exe.is_file():
        raise RuntimeError(f"PyInstaller failed (exit {r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}")
    # Date the bundle by when its inputs were read: a file edited during the build makes the next call rebuild.
    os.utime(exe, (started, started))
    return exe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dist", type=Path, default=DEFAULT_DIST)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--force", action="store_true", help="rebuild even when nothing changed")
    args = parser.parse_args(argv)
    print(build(args.dist, args.work, force=args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
