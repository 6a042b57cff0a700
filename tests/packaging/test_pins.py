"""Libraries whose private API the code touches are pinned to the version it was tested with, and the
private names it relies on are still there in the installed version."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def _source(module: str) -> str:
    """A module's source, read without importing it or its package (importing pystray picks a backend,
    which needs a display)."""
    top, _, rest = module.partition(".")
    spec = importlib.util.find_spec(top)
    assert spec is not None and spec.origin, f"{top} is not installed"
    if not rest:
        return Path(spec.origin).read_text(encoding="utf-8")
    assert spec.submodule_search_locations, f"{top} is not a package"
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder.joinpath(*rest.split(".")).with_suffix(".py").read_text(encoding="utf-8")


def _pystray() -> None:
    # the GTK backend keeps its Gtk.StatusIcon in `_status_icon`, which PystrayView connects to
    assert "self._status_icon = Gtk.StatusIcon" in _source("pystray._gtk")


def _uvicorn() -> None:
    import uvicorn.server

    server = uvicorn.server.Server
    # api/server.py: _Server overrides these and relies on serve() going through them
    assert list(inspect.signature(server.on_tick).parameters) == ["self", "counter"]
    assert inspect.iscoroutinefunction(server.main_loop) and inspect.iscoroutinefunction(server.on_tick)
    body = inspect.getsource(server)
    assert "await self.main_loop()" in body and "with self.capture_signals()" in body
    assert "self.should_exit" in body and "self.force_exit" in body and "self.started = True" in body
    # platform/process.py: uvicorn/__init__.py takes Server, main and run from uvicorn.main
    assert "from uvicorn.main import Server, main, run" in _source("uvicorn")
    main = importlib.import_module("uvicorn.main")
    assert callable(main.main) and callable(main.run)


def _keyring() -> None:
    import keyring.core

    # core/support/secrets.py: the backend chosen in this process, None until someone chose one
    assert hasattr(keyring.core, "_keyring_backend")
    assert "_keyring_backend" in inspect.getsource(keyring.core.set_keyring)
    assert "_keyring_backend" in inspect.getsource(keyring.core.get_keyring)


def _httpx() -> None:
    # platform/process.py: httpx imports its command line from httpx._main, and falls back when it fails
    text = _source("httpx")
    assert "from ._main import main" in text and "except ImportError" in text
    assert importlib.util.find_spec("httpx._main") is not None


# distribution -> (where and what private API the code uses, the check that it is still there)
PRIVATE_API: dict[str, tuple[str, Callable[[], None]]] = {
    "pystray": ("tray/app.py: PystrayView connects to the GTK backend's Icon._status_icon", _pystray),
    "uvicorn": ("api/server.py: _Server overrides Server.main_loop and capture_signals, calls on_tick and "
                "replaces should_exit; platform/process.py stands in for uvicorn.main", _uvicorn),
    "keyring": ("core/support/secrets.py: secret_service_first reads keyring.core._keyring_backend", _keyring),
    "httpx": ("platform/process.py: skip_httpx_command_line stubs httpx._main", _httpx),
}


def test_private_api_users_are_pinned_and_the_pinned_version_is_installed() -> None:
    deps = {Requirement(d).name: Requirement(d) for d in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for dist, (why, _check) in PRIVATE_API.items():
        spec = deps[dist].specifier
        pins = [s for s in spec if s.operator == "=="]
        assert len(pins) == 1 and len(spec) == 1, f"{dist} must be pinned with == ({why}); it is {spec}"
        assert version(dist) == pins[0].version, f"{dist} {version(dist)} installed, {pins[0].version} pinned"


@pytest.mark.parametrize("dist", sorted(PRIVATE_API))
def test_the_private_names_still_exist_in_the_pinned_version(dist: str) -> None:
    _why, check = PRIVATE_API[dist]
    check()  # an AssertionError here: the pinned version no longer has what this uses (see `_why`)
