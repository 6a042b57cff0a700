"""Shared fixtures. Every test runs with its own HOME, XDG dirs and an in-memory keyring.

Nothing a test does may touch the developer's real config, state, keyring or LM Studio home.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import pytest

pytest_plugins = ["pytester", "tests.emulator_fixtures", "tests.loop_guard"]


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring that lives for one test."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Path]:
    home = tmp_path / "isolated-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        path = tmp_path / "xdg" / sub
        path.mkdir(parents=True)
        monkeypatch.setenv(var, str(path))
    monkeypatch.delenv("LMSTUDIO_TRAY_CONFIG", raising=False)
    for var in list(os.environ):
        # a proxy in the developer's environment must not reroute the tests' 127.0.0.1 traffic: httpx and
        # the core's http1 both honour HTTP_PROXY and friends
        if var.startswith("LMSTUDIO_TRAY_TOKEN_") or var.lower().endswith("_proxy"):
            monkeypatch.delenv(var)
    if request.node.get_closest_marker("real_keyring") is None:
        previous = keyring.get_keyring()
        keyring.set_keyring(MemoryKeyring())
        yield home
        keyring.set_keyring(previous)
    else:
        yield home


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    backend = keyring.get_keyring()
    assert isinstance(backend, MemoryKeyring)
    return backend
