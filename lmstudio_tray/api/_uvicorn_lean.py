"""Import uvicorn's server without its command line.

`import uvicorn` runs `uvicorn/__init__.py`, which imports `uvicorn.main`: the `uvicorn` command (click)
and its `--reload`/`--workers` supervisors (multiprocessing). The endpoint only embeds `uvicorn.Server`,
and those modules cost the long-running tray ~2.1 MiB of memory. Before the first `import uvicorn`, a
stand-in for `uvicorn.main` is registered: it hands out the real `Server`, and loads the real module
(and rebinds `uvicorn.main` / `uvicorn.run`) the first time anyone calls `uvicorn.run()` or
`uvicorn.main()`, so `python -m uvicorn` and other users in the same process still work.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

STAND_IN = "uvicorn.main"


def _real_main_module() -> types.ModuleType:
    if getattr(sys.modules.get(STAND_IN), "_lmstudio_tray_stand_in", False):
        del sys.modules[STAND_IN]
    real = importlib.import_module(STAND_IN)
    package: Any = sys.modules["uvicorn"]
    package.main, package.run = real.main, real.run  # importing the submodule rebound `uvicorn.main`
    return real


def _run(*args: Any, **kwargs: Any) -> Any:
    return _real_main_module().run(*args, **kwargs)


def _main(*args: Any, **kwargs: Any) -> Any:
    return _real_main_module().main(*args, **kwargs)


def _stand_in_getattr(name: str) -> Any:
    if name == "Server":
        from uvicorn.server import Server

        return Server
    if name.startswith("__"):  # the import system asks for `__path__` and friends: a plain module has none
        raise AttributeError(name)
    return getattr(_real_main_module(), name)


def skip_uvicorn_command_line() -> None:
    """Register the stand-in unless uvicorn (or its command line) is already imported."""
    if "uvicorn" in sys.modules or STAND_IN in sys.modules:
        return
    stand_in = types.ModuleType(STAND_IN, "uvicorn's command line, loaded on first use")
    stand_in.run = _run  # type: ignore[attr-defined]
    stand_in.main = _main  # type: ignore[attr-defined]
    stand_in.__getattr__ = _stand_in_getattr  # type: ignore[method-assign]
    stand_in._lmstudio_tray_stand_in = True  # type: ignore[attr-defined]
    sys.modules[STAND_IN] = stand_in
