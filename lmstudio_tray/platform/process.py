"""Process-wide tweaks the entry points opt into: importing a module of lmstudio_tray changes none of this.

Each function changes the whole interpreter, so only the programs' entry points call them, before the
work starts (`lmstudio_tray.cli.main` for every command; `run` and `serve` also for the endpoint); a test
imports every module of the package in a fresh interpreter and checks that nothing changes meanwhile.
Figures from `bench/process_tweaks_bench.py` (docs/benchmarks.md § Process-wide tweaks):

- `skip_uvicorn_command_line()`: `import uvicorn` also imports uvicorn's command line (click) and its
  `--reload`/`--workers` supervisors (multiprocessing), which an embedded server never uses: the endpoint
  loads with 1.6 MiB less resident memory (held by the tray all day; 26 modules fewer). The import time
  saved (6-28 ms) is within the noise.
- `skip_httpx_command_line()`: `import httpx` also imports httpx's own command line (click, rich,
  pygments) whenever those are installed: 5.7 MiB and ~37 ms (96 modules) in what uses httpx (`doctor`,
  `instances discover`, the team profile fetched from a URL, in the tray too).
- `shorten_switch_interval()`: a busy background thread (the analytics writer, the tray's GUI) holds the
  GIL for up to the switch interval (5 ms by default) before the endpoint's loop gets it back: next to one
  busy thread, validate takes p50 5.4 ms / p99 17.6 ms at the default and 0.9 ms / 4.9 ms at 0.5 ms.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

UVICORN_MAIN = "uvicorn.main"
HTTPX_MAIN = "httpx._main"
SWITCH_INTERVAL = 0.0005  # seconds; CPython's default is 0.005


# ---- uvicorn ---------------------------------------------------------------------------------------


def _real_uvicorn_main() -> types.ModuleType:
    if getattr(sys.modules.get(UVICORN_MAIN), "_lmstudio_tray_stand_in", False):
        del sys.modules[UVICORN_MAIN]
    real = importlib.import_module(UVICORN_MAIN)
    package: Any = sys.modules["uvicorn"]
    package.main, package.run = real.main, real.run  # importing the submodule rebound `uvicorn.main`
    return real


def _uvicorn_run(*args: Any, **kwargs: Any) -> Any:
    return _real_uvicorn_main().run(*args, **kwargs)


def _uvicorn_main(*args: Any, **kwargs: Any) -> Any:
    return _real_uvicorn_main().main(*args, **kwargs)


def _uvicorn_stand_in_getattr(name: str) -> Any:
    if name == "Server":
        from uvicorn.server import Server

        return Server
    if name.startswith("__"):  # the import system asks for `__path__` and friends: a plain module has none
        raise AttributeError(name)
    return getattr(_real_uvicorn_main(), name)


def skip_uvicorn_command_line() -> bool:
    """Let `import uvicorn` skip uvicorn's command line; True if the stand-in was registered now.

    `uvicorn/__init__.py` imports `uvicorn.main`: the `uvicorn` command (click) and its supervisors
    (multiprocessing). Registered before the first `import uvicorn`, a stand-in for `uvicorn.main` hands out
    the real `Server` and loads the real module (rebinding `uvicorn.main` / `uvicorn.run`) the first time
    anyone calls `uvicorn.run()` or `uvicorn.main()`, so other users in the same process still work.
    Measured gain: the endpoint loads with 1.6 MiB less resident memory. Does nothing once uvicorn (or
    its command line) is imported.
    """
    if "uvicorn" in sys.modules or UVICORN_MAIN in sys.modules:
        return False
    stand_in = types.ModuleType(UVICORN_MAIN, "uvicorn's command line, loaded on first use")
    stand_in.run = _uvicorn_run  # type: ignore[attr-defined]
    stand_in.main = _uvicorn_main  # type: ignore[attr-defined]
    stand_in.__getattr__ = _uvicorn_stand_in_getattr  # type: ignore[method-assign]
    stand_in._lmstudio_tray_stand_in = True  # type: ignore[attr-defined]
    sys.modules[UVICORN_MAIN] = stand_in
    return True


# ---- httpx -----------------------------------------------------------------------------------------


def skip_httpx_command_line() -> bool:
    """Keep `import httpx` from importing httpx's command-line tool; True if the stub was registered now.

    httpx imports `httpx._main` (click, rich, pygments) whenever click and rich are installed, which they
    are (uvicorn, our progress bars). A stub in its place costs nothing; `httpx.main()` then does nothing,
    and nothing here calls it. Measured gain: `import httpx` takes 5.7 MiB and ~37 ms less. Does nothing
    once httpx is imported.
    """
    if "httpx" in sys.modules or HTTPX_MAIN in sys.modules:
        return False
    stub = types.ModuleType(HTTPX_MAIN, "httpx's command line, left out")
    stub.main = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    sys.modules[HTTPX_MAIN] = stub
    return True


# ---- the GIL ---------------------------------------------------------------------------------------


def shorten_switch_interval(interval: float = SWITCH_INTERVAL) -> bool:
    """Make a thread holding the GIL hand it over after `interval` s instead of 5 ms; True if changed.

    For processes that serve the endpoint next to other busy threads (the analytics writer, the tray's
    GUI): the hook's answer waits for the GIL at most this long per hand-over. Measured gain next to one
    busy thread: validate p50 5.4 -> 0.9 ms, p99 17.6 -> 4.9 ms. Never lengthens a shorter interval.
    """
    if sys.getswitchinterval() <= interval:
        return False
    sys.setswitchinterval(interval)
    return True


__all__ = ["shorten_switch_interval", "skip_httpx_command_line", "skip_uvicorn_command_line"]
