"""Nothing slow runs on the core's loop: a team profile server that never answers and a keyring that waits
to be unlocked stall only the change that needs them, while validate keeps answering and the monitor keeps
polling. These run under the loop guard (tests/loop_guard.py), which also fails them on any callback that
holds the loop for 50 ms."""

from __future__ import annotations

import contextlib
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.api.server import EndpointServer, attach_endpoint
from lmstudio_tray.core.config import team_fetch
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.models import InstanceState
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator
from tests.loop_guard import SlowCallback

QWEN = "qwen/qwen3-4b-2507"
TOKEN = "sk-lm-loopTEST:abcdefghijABCDEFGHij"
WAIT = 30.0  # generous deadline for anything that should happen at once


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


class SilentServer:
    """A server that accepts connections and never says a word: a team profile host that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = threading.Event()
        self.client_left = threading.Event()  # a client closed its end: its request is over
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, name="silent-server", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.accepted.set()
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            while conn.recv(4096):
                pass  # the TLS hello goes unanswered
        except OSError:
            return  # closed by release()
        self.client_left.set()

    @property
    def pending(self) -> bool:
        return self.accepted.is_set() and not self.client_left.is_set()

    def release(self) -> None:
        self.sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes our reader, and the client sees the end at once
            conn.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.release()


class SlowKeyring:
    """A SecretStore whose look-ups of some names wait until it is unlocked, like a Secret Service showing
    its unlock prompt (keyring look-ups go over D-Bus and may take up to 10 s, or wait for the person)."""

    backend = "test keyring (locked until unlock())"

    def __init__(self, tokens: dict[str, str], locked: set[str]) -> None:
        self.tokens = dict(tokens)
        self.locked = set(locked)
        self.asked = threading.Event()
        self._unlocked = threading.Event()

    def unlock(self) -> None:
        self._unlocked.set()

    def get(self, name: str) -> str | None:
        if name in self.locked:
            self.asked.set()
            if not self._unlocked.wait(120):
                raise TimeoutError("the keyring was never unlocked")
        return self.tokens.get(name)

    def set(self, name: str, token: str) -> None:
        self.tokens[name] = token

    def delete(self, name: str) -> None:
        self.tokens.pop(name, None)


@pytest.fixture
def core_threads() -> Iterator[list[CoreThread]]:
    threads: list[CoreThread] = []
    yield threads
    for thread in threads:
        thread.stop()


def start_core(core: Core, threads: list[CoreThread]) -> EndpointServer:
    server = attach_endpoint(core)
    thread = CoreThread(core)
    thread.start()
    threads.append(thread)
    return server


def validate(server: EndpointServer, base_url: str) -> dict[str, Any]:
    """One hook call with a generous deadline: on a blocked loop it times out instead of answering."""
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {server.token}"}, timeout=WAIT) as c:
        try:
            r = c.post("/v1/validate", json={"model": QWEN, "base_url": base_url + "/v1"})
        except httpx.TimeoutException:
            pytest.fail(f"validate got no answer within {WAIT:.0f} s: the core's loop is blocked")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def polls_go_on(emu: Emulator, until: Callable[[], bool]) -> None:
    """The monitor's poll loop keeps asking the emulator while `until()` still holds."""
    before = len(emu.requests)
    wait_until(lambda: len(emu.requests) >= before + 3, "the monitor polled again")
    assert until()


def test_validate_keeps_answering_while_a_team_profile_fetch_hangs(
    tmp_path: Path, emulator: Emulator, silent_server: SilentServer, core_threads: list[CoreThread],
    monkeypatch: pytest.MonkeyPatch, slow_callbacks: Callable[[], list[SlowCallback]],
) -> None:
    # long enough that the fetch is still hanging whenever the test looks, however slow the machine is
    monkeypatch.setattr(team_fetch, "FETCH_TIMEOUT", 120.0)
    emulator.load(QWEN)  # every validate below is answered `ready`, without loading anything
    path = tmp_path / "config.toml"
    settings = textwrap.dedent(f"""\
        [[instances]]
        name = "local"
        url = "{emulator.api_url}"

        [monitor]
        poll_interval = 0.2

        [endpoint]
        port = 0
        """)
    path.write_text(settings)
    core = Core(load_config(path), config_path=path, lms_path=None)
    server = start_core(core, core_threads)
    assert validate(server, emulator.api_url)["category"] == "ready"

    url = f"https://127.0.0.1:{silent_server.port}/team.toml"
    path.write_text(f'team_profile = "{url}"\n\n' + settings)  # the watcher reloads it: the fetch starts
    wait_until(silent_server.accepted.is_set, "the team profile fetch connected")
    for _ in range(5):
        assert validate(server, emulator.api_url)["category"] == "ready"
    assert silent_server.pending, "the answers came only after the fetch had ended"
    polls_go_on(emulator, lambda: silent_server.pending)

    silent_server.release()  # the fetch fails: the settings apply without the unreachable team layer
    wait_until(lambda: core.config.team_profile == url, "the changed config was applied")
    assert validate(server, emulator.api_url)["category"] == "ready"
    assert slow_callbacks() == []


def test_monitoring_goes_on_while_the_keyring_is_asked_for_a_new_instances_token(
    emulator_factory: Callable[..., Emulator], core_threads: list[CoreThread],
    slow_callbacks: Callable[[], list[SlowCallback]],
) -> None:
    home, secured = emulator_factory(), emulator_factory(auth_token=TOKEN)
    home.load(QWEN)
    keyring = SlowKeyring({"secured": TOKEN}, locked={"secured"})
    before = {"instances": [{"name": "home", "url": home.api_url}], "monitor": {"poll_interval": 0.2},
              "endpoint": {"port": 0}}
    core = Core(parse_config(before), secrets=keyring, lms_path=None)
    server = start_core(core, core_threads)
    after = {**before, "instances": [*before["instances"], {"name": "secured", "url": secured.api_url}]}
    applied = core_threads[0].submit(core.apply_config(parse_config(after)))

    wait_until(keyring.asked.is_set, "the keyring was asked for the new instance's token")
    assert validate(server, home.api_url)["category"] == "ready"
    polls_go_on(home, lambda: not applied.done())

    keyring.unlock()
    changes = applied.result(WAIT)
    assert any(c.startswith("watching secured") for c in changes)
    snap = core.monitor.snapshot("secured")
    assert snap is not None and snap.state is InstanceState.IDLE  # polled with the token from the keyring
    assert slow_callbacks() == []


def test_validate_for_an_unknown_url_waits_for_the_keyring_alone(
    emulator_factory: Callable[..., Emulator], core_threads: list[CoreThread],
    slow_callbacks: Callable[[], list[SlowCallback]],
) -> None:
    home, other = emulator_factory(), emulator_factory()
    home.load(QWEN)
    ad_hoc = f"127.0.0.1-{other.api_port}"  # the name an unknown base URL is monitored under
    keyring = SlowKeyring({}, locked={ad_hoc})
    core = Core(parse_config({"instances": [{"name": "home", "url": home.api_url}], "endpoint": {"port": 0}}),
                secrets=keyring, lms_path=None)
    server = start_core(core, core_threads)

    with ThreadPoolExecutor(1) as pool:
        unknown: Future[dict[str, Any]] = pool.submit(validate, server, other.api_url)
        wait_until(keyring.asked.is_set, "the keyring was asked for the ad-hoc instance's token")
        assert validate(server, home.api_url)["category"] == "ready"
        assert not unknown.done()
        keyring.unlock()
        assert unknown.result(WAIT)["facts"]["instance"] == ad_hoc
    assert slow_callbacks() == []
