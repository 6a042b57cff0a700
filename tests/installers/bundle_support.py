"""Build (or reuse) the one-file Linux bundle and run the bundle's own emulator, for tests and the bench."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from .helpers import ROOT


def _load_builder() -> ModuleType:
    # installers/bundle.py is a script, not a package module: load it from its path.
    spec = importlib.util.spec_from_file_location("lmstudio_tray_bundle_builder", ROOT / "installers" / "bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


builder = _load_builder()


def build(*, force: bool = False) -> Path:
    """The one-file bundle, built once and reused while no input changed (installers/bundle.py)."""
    return Path(builder.build(force=force))


@contextmanager
def bundle_emulator(exe: Path, workdir: Path, *load: str) -> Iterator[str]:
    """`<bundle> emulator` in the background; yields its API URL, stops it afterwards."""
    ready = workdir / "emulator-ready.json"
    args = [str(exe), "emulator", "--ready-file", str(ready)]
    for key in load:
        args += ["--load", key]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # a one-file bundle unpacks itself first; the machine is shared
        while not ready.exists():
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"the bundle's emulator exited {proc.returncode}: {err}")
            if time.monotonic() > deadline:
                raise RuntimeError("the bundle's emulator did not start within 120 s")
            time.sleep(0.1)
        time.sleep(0.05)  # the file is written in one go, but be sure it is complete
        yield str(json.loads(ready.read_text())["api_url"])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


def write_config(path: Path, url: str) -> Path:
    path.write_text(f'[[instances]]\nname = "local"\nurl = "{url}"\n', encoding="utf-8")
    return path
