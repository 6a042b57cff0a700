"""The freedesktop (jeepney) notification backend against a real daemon: dunst on the test desktop.

    scripts/with-desktop.sh .venv/bin/pytest -m desktop tests/notify/test_freedesktop.py

Tests marked `desktop` skip outside a desktop, unless LMSTUDIO_TRAY_REQUIRE_DESKTOP=1 (CI), where they
fail. The no-bus and hung-bus tests need no desktop and always run.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.notify.base import Message, NotifyButton, Urgency
from lmstudio_tray.notify.freedesktop import FreedesktopBackend
from tests.desktop.xtools import dunst_displayed, dunst_history, wait_for

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="org.freedesktop.Notifications is Linux")


@pytest.fixture
def desktop() -> None:
    missing = [v for v in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS") if not os.environ.get(v)]
    if not missing:
        subprocess.run(["dunstctl", "close-all"], check=True, timeout=10)
        return
    problem = f"no test desktop ({', '.join(missing)} not set); run under scripts/with-desktop.sh"
    if os.environ.get("LMSTUDIO_TRAY_REQUIRE_DESKTOP") == "1":
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def backend(desktop: None) -> Iterator[FreedesktopBackend]:
    fd = FreedesktopBackend()
    assert fd.probe(), "dunst did not answer GetCapabilities"
    yield fd
    fd.close()


class NotifyMonitor:
    """Every Notify call on the session bus, read by a D-Bus monitor connection (what we really sent)."""

    def __init__(self) -> None:
        from jeepney import new_method_call  # type: ignore[import-untyped]
        from jeepney.bus_messages import MatchRule, Monitoring  # type: ignore[import-untyped]
        from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]

        self._conn: Any = open_dbus_connection()
        rule = MatchRule(type="method_call", interface="org.freedesktop.Notifications", member="Notify")
        self._conn.send_and_get_reply(
            new_method_call(Monitoring(), "BecomeMonitor", "asu", ([rule.serialise()], 0)), timeout=5
        )
        self.calls: list[tuple[Any, ...]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.receive()
            except Exception:
                return
            if len(msg.body) == 8:
                self.calls.append(msg.body)

    def close(self) -> None:
        self._conn.close()


@pytest.fixture
def monitor(desktop: None) -> Iterator[NotifyMonitor]:
    mon = NotifyMonitor()
    yield mon
    mon.close()


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


@pytest.mark.desktop
def test_a_bubble_reaches_dunst_with_title_body_and_urgency(
    backend: FreedesktopBackend, monitor: NotifyMonitor
) -> None:
    title = unique("Model failed to load")
    backend.send(Message(title, "not enough memory", urgency=Urgency.CRITICAL))
    assert backend.flush()
    entry = next(n for n in dunst_history() if n.get("summary") == title)
    assert entry["body"] == "not enough memory"
    assert entry["appname"] == "LM Studio Tray"
    sent = next(c for c in monitor.calls if c[3] == title)
    assert sent[6]["urgency"] == ("y", 2)  # the spec's byte: critical
    assert sent[7] == -1  # the server's default expiry
    assert backend.capabilities and "actions" in backend.capabilities and backend.supports_buttons


@pytest.mark.desktop
def test_an_update_replaces_the_bubble_on_screen(backend: FreedesktopBackend, monitor: NotifyMonitor) -> None:
    key = unique("load:local:qwen")
    first, second = unique("Loading qwen"), unique("qwen is loaded")
    backend.send(Message(first, "about 20 s left", replace_key=key, urgency=Urgency.LOW))
    assert backend.flush()
    assert dunst_displayed() == 1
    backend.send(Message(second, "ready to use", replace_key=key))
    assert backend.flush()
    assert dunst_displayed() == 1  # replaced in place, not stacked
    titles = [n.get("summary") for n in dunst_history()]
    assert second in titles and first not in titles
    shown = [c for c in monitor.calls if c[3] in (first, second)]
    assert shown[0][1] == 0 and shown[1][1] != 0  # the update names the bubble it replaces
    assert [c[6]["urgency"] for c in shown] == [("y", 0), ("y", 1)]


@pytest.mark.desktop
def test_a_closed_bubble_is_not_replaced_but_shown_again(backend: FreedesktopBackend) -> None:
    key = unique("offline:local")
    backend.send(Message(unique("local is offline"), "x", replace_key=key))
    assert backend.flush()
    subprocess.run(["dunstctl", "close-all"], check=True, timeout=10)
    again = unique("local is offline again")
    # NotificationClosed reaches the listener asynchronously: the next bubble must appear either way.
    time.sleep(0.3)
    backend.send(Message(again, "y", replace_key=key))
    assert backend.flush()
    assert dunst_displayed() == 1
    assert again in [n.get("summary") for n in dunst_history()]


@pytest.mark.desktop
def test_the_retry_button_fires_its_callback_and_is_forgotten_when_closed(backend: FreedesktopBackend) -> None:
    desktop_tmp = os.environ.get("DESKTOP_TMP")
    if not desktop_tmp:
        pytest.fail("DESKTOP_TMP is not set: run under scripts/with-desktop.sh")
    pressed = threading.Event()
    title = unique("Could not load qwen")
    backend.send(Message(title, "not enough memory", urgency=Urgency.CRITICAL,
                         buttons=(NotifyButton("Retry", pressed.set),)))
    assert backend.flush()
    assert backend.bubbles_with_actions == 1
    # Press it the way a dunst user does: the context menu (a dmenu stand-in picks "Retry").
    Path(desktop_tmp, "dmenu-pick").write_text("Retry")
    subprocess.run(["dunstctl", "context"], check=True, timeout=10)
    assert pressed.wait(10), "the Retry callback did not fire"
    assert "#Retry" in Path(desktop_tmp, "dmenu.in").read_text()
    subprocess.run(["dunstctl", "close-all"], check=True, timeout=10)
    wait_for(lambda: backend.bubbles_with_actions == 0, 10, what="callbacks dropped after the bubble closed")


@pytest.mark.desktop
def test_a_click_runs_on_click_and_a_failing_callback_does_not_stop_the_listener(
    backend: FreedesktopBackend, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> None:
        raise RuntimeError("callback bug")

    backend.send(Message(unique("first"), "click me", on_click=explode))
    assert backend.flush()
    with caplog.at_level(logging.ERROR, logger="lmstudio_tray.notify.freedesktop"):
        subprocess.run(["dunstctl", "action", "0"], check=True, timeout=10)
        wait_for(lambda: "click callback failed" in caplog.text, 10, what="the failing callback logged")
    subprocess.run(["dunstctl", "close-all"], check=True, timeout=10)
    clicked = threading.Event()
    backend.send(Message(unique("second"), "click me too", on_click=clicked.set))
    assert backend.flush()
    subprocess.run(["dunstctl", "action", "0"], check=True, timeout=10)
    assert clicked.wait(10), "the listener stopped after a callback raised"


@pytest.mark.desktop
def test_close_stops_the_listener_and_sender_threads(desktop: None) -> None:
    fd = FreedesktopBackend()
    assert fd.probe()
    listener = fd.listener
    assert listener is not None and listener.is_alive()
    title = unique("sent right before quitting")
    fd.send(Message(title, "still shown"))
    fd.close()  # flushes the queued bubble first
    assert not listener.is_alive()
    assert not any(t.name == "notify-send" and t.is_alive() for t in threading.enumerate())
    assert title in [n.get("summary") for n in dunst_history()]
    fd.send(Message("after close", "goes to the log"))  # must not raise
    fd.close()


@pytest.mark.desktop
def test_the_tray_on_linux_picks_freedesktop_without_loading_desktop_notifier(desktop: None) -> None:
    # Build the notifier as the tray does (make_service -> choose_notifier), in a fresh interpreter.
    code = (
        "import sys\n"
        "from types import SimpleNamespace\n"
        "from lmstudio_tray.core.config.schema import Config\n"
        "from lmstudio_tray.core.events import EventBus\n"
        "from lmstudio_tray.notify.base import Message\n"
        "from lmstudio_tray.notify.service import make_service\n"
        "s = make_service(SimpleNamespace(bus=EventBus(), config=Config(), actions=None,\n"
        "                                on_config_change=lambda listener: None))\n"
        "s.notifier.send(Message('hello', 'world'))\n"
        "s.notifier.close()\n"
        "print(s.notifier.name, 'desktop_notifier' in sys.modules, 'dbus_fast' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LMSTUDIO_TRAY_NOTIFIER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.split() == ["freedesktop", "False", "False"], out.stderr


@pytest.mark.desktop
def test_the_env_variable_picks_a_backend(desktop: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmstudio_tray.notify.backends import NOTIFIER_ENV, choose_notifier

    for wanted, name in (("freedesktop", "freedesktop"), ("desktop-notifier", "desktop-notifier")):
        monkeypatch.setenv(NOTIFIER_ENV, wanted)
        notifier = choose_notifier()
        try:
            assert notifier.name == name
        finally:
            notifier.close()


# ---- no daemon: never an exception, never a hang ---------------------------------------------------


@linux_only
@pytest.mark.parametrize("address", [None, "unix:path=/nonexistent/bus"])
def test_probe_is_false_without_a_session_bus(monkeypatch: pytest.MonkeyPatch, address: str | None) -> None:
    if address is None:
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    fd = FreedesktopBackend()
    try:
        # no bus means an immediate answer, not the timeout: with an hour to wait, a probe that waited
        # would run into the test's own timeout instead of answering
        assert fd.probe(timeout=3600) is False
        assert fd.listener is None
    finally:
        fd.close()


@pytest.fixture
def hung_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A socket that accepts connections and never says a word: a wedged dbus-daemon."""
    path = tmp_path / "bus"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={path}")
    yield
    server.close()


@linux_only
def test_probe_gives_up_on_a_hung_bus_within_its_timeout(hung_bus: None) -> None:
    fd = FreedesktopBackend()
    try:
        assert fd.probe(timeout=1) is False  # gives up (a probe that hung would meet the test's timeout)
    finally:
        fd.close()


@linux_only
def test_a_send_never_blocks_the_caller_and_its_failure_is_logged(
    hung_bus: None, caplog: pytest.LogCaptureFixture
) -> None:
    fd = FreedesktopBackend()
    try:
        with caplog.at_level(logging.INFO, logger="lmstudio_tray.notify"):
            fd.send(Message("Could not load qwen", "not enough memory"))
            wait_for(lambda: "notification: Could not load qwen: not enough memory" in caplog.text, 20,
                     what="the failed bubble written to the log")
        failures = [r for r in caplog.records if "could not show a notification through freedesktop" in r.message]
        assert failures
        # queued, not sent from the caller's thread: the hung daemon held up the sender thread only
        assert {r.threadName for r in failures} == {"notify-send"}
    finally:
        fd.close()
