from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from lmstudio_tray.core.clock import FakeClock
from lmstudio_tray.core.config.schema import Config, NotificationsConfig
from lmstudio_tray.core.events import EventBus, InstanceOffline, InstanceOnline, LoadFailed, ModelLoaded
from lmstudio_tray.notify.backends import NOTIFIER_ENV, DesktopNotifierBackend, PlyerBackend, choose_notifier
from lmstudio_tray.notify.base import LogNotifier, Message, Notifier, RecordingNotifier
from lmstudio_tray.notify.service import NotificationService, attach_notifications


class ExplodingNotifier(Notifier):
    name = "exploding"

    def _send(self, message: Message) -> None:
        raise OSError("no daemon")


class FakeActions:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, int | None]] = []
        self.fail = fail

    async def load(self, instance: str, model: str, *, context_length: int | None = None) -> str:
        self.calls.append((instance, model, context_length))
        if self.fail:
            raise RuntimeError("still not enough memory")
        return model


def test_events_on_the_bus_become_messages() -> None:
    bus = EventBus()
    rec = RecordingNotifier()
    service = NotificationService(rec, NotificationsConfig(), clock=FakeClock())
    detach = service.subscribe(bus)
    bus.publish(ModelLoaded("local", model="qwen", instance_id="qwen", context_length=4096))
    assert [m.title for m in rec.messages] == ["qwen is ready"]
    assert rec.messages[0].replace_key == "load:local:qwen"
    assert rec.messages[0].kind == "model.loaded"
    detach()
    bus.publish(ModelLoaded("local", model="other", instance_id="other"))
    assert len(rec.messages) == 1


def test_no_exception_escapes_a_broken_backend(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    service = NotificationService(ExplodingNotifier(), NotificationsConfig(), clock=FakeClock())
    service.subscribe(bus)
    with caplog.at_level(logging.INFO):
        bus.publish(LoadFailed("local", model="m", reason="oom"))
        bus.publish(LoadFailed("local", model="m", reason="oom again"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no daemon" in warnings[0].getMessage()
    assert any("Could not load m" in r.getMessage() for r in caplog.records)


async def test_retry_button_loads_again_in_the_core_loop() -> None:
    actions = FakeActions()
    rec = RecordingNotifier()
    service = NotificationService(
        rec, NotificationsConfig(), clock=FakeClock(),
        retry_load=lambda i, m, c: actions.load(i, m, context_length=c),
    )
    bus = EventBus()
    service.subscribe(bus)
    bus.publish(LoadFailed("local", model="qwen", reason="oom", context_length=8192))
    assert [b.label for b in rec.messages[0].buttons] == ["Retry"]
    # The press comes from the notifier's own thread, as with desktop-notifier.
    presser = threading.Thread(target=rec.press, args=("Retry",))
    presser.start()
    presser.join()
    for _ in range(50):
        if actions.calls:
            break
        await asyncio.sleep(0.01)
    assert actions.calls == [("local", "qwen", 8192)]


async def test_failed_retry_is_reported() -> None:
    actions = FakeActions(fail=True)
    rec = RecordingNotifier()
    service = NotificationService(
        rec, NotificationsConfig(), clock=FakeClock(),
        retry_load=lambda i, m, c: actions.load(i, m, context_length=c),
    )
    service.handle(LoadFailed("local", model="qwen", reason="oom"))
    future = service.retry(LoadFailed("local", model="qwen", reason="oom"))
    assert future is not None
    for _ in range(50):
        if len(rec.messages) == 2:
            break
        await asyncio.sleep(0.01)
    assert rec.messages[-1].body == "local: still not enough memory"
    assert rec.messages[-1].replace_key == "load:local:qwen"


def test_the_trays_failure_report_keeps_the_retry_button_of_the_bubble_it_replaces() -> None:
    # The tray reports a failed Load click with the same replace_key as the policy's "Could not load"
    # bubble; since backends now replace bubbles in place, the report must not drop the Retry button.
    rec = RecordingNotifier()
    service = NotificationService(rec, NotificationsConfig(), clock=FakeClock(), retry_load=FakeActions().load)
    service.handle(LoadFailed("local", model="qwen", reason="oom"))
    service.report("Could not load qwen", "Loading qwen on local failed: oom", replace_key="load:local:qwen")
    assert rec.messages[-1].replace_key == rec.messages[0].replace_key == "load:local:qwen"
    assert [b.label for b in rec.messages[-1].buttons] == ["Retry"]
    # Once the bubble shows something else (loaded), a later report has nothing to keep.
    service.handle(ModelLoaded("local", model="qwen"))
    service.report("Could not load qwen", "again", replace_key="load:local:qwen")
    assert rec.messages[-1].buttons == ()
    service.report("Could not unload", "boom", replace_key="action:local")
    assert rec.messages[-1].buttons == ()


def test_retry_without_running_loop_reports() -> None:
    rec = RecordingNotifier()
    service = NotificationService(rec, NotificationsConfig(), clock=FakeClock(), retry_load=FakeActions().load)
    assert service.retry(LoadFailed("local", model="m")) is None
    assert rec.messages[-1].title == "Could not retry m"


def test_no_retry_button_when_backend_has_none() -> None:
    log_only = LogNotifier()
    sent: list[Message] = []
    log_only._send = sent.append  # type: ignore[method-assign]
    service = NotificationService(log_only, NotificationsConfig(), clock=FakeClock(), retry_load=FakeActions().load)
    service.handle(LoadFailed("local", model="m", reason="x"))
    assert sent and sent[0].buttons == ()


def test_toggle_and_report() -> None:
    rec = RecordingNotifier()
    service = NotificationService(rec, NotificationsConfig(), clock=FakeClock())
    service.set_enabled(False)
    assert not service.enabled
    service.report("Could not unload", "boom")
    service.handle(InstanceOnline("local"))
    service.handle(InstanceOffline("local"))
    assert rec.messages == []
    service.set_enabled(True)
    service.report("Could not unload", "boom")
    assert rec.messages[-1].title == "Could not unload"


def test_attach_notifications_to_a_core_like_object() -> None:
    bus = EventBus()
    rec = RecordingNotifier()
    listeners: list[Any] = []
    core: Any = SimpleNamespace(bus=bus, config=Config(), actions=FakeActions(), on_config_change=listeners.append)
    detach = attach_notifications(core, rec, clock=FakeClock())
    assert len(listeners) == 1  # it follows the core's settings
    bus.publish(LoadFailed("local", model="m", reason="x"))
    assert len(rec.messages) == 1 and rec.messages[0].buttons
    detach()
    bus.publish(LoadFailed("local", model="n", reason="y"))
    assert len(rec.messages) == 1


def test_choose_log_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NOTIFIER_ENV, "log")
    assert isinstance(choose_notifier(), LogNotifier)


def test_headless_without_bus_falls_back_to_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NOTIFIER_ENV, raising=False)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    if __import__("sys").platform != "linux":
        pytest.skip("the D-Bus path is Linux only")
    notifier = choose_notifier()
    try:
        assert isinstance(notifier, LogNotifier)
        notifier.send(Message("t", "b"))  # must not raise
    finally:
        notifier.close()


def test_desktop_notifier_probe_fails_cleanly_without_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    dn = DesktopNotifierBackend()
    try:
        assert dn.probe(timeout=3) is False
        dn.send(Message("t", "b"))  # queued; its failure is logged, not raised
    finally:
        dn.close()
        dn.close()


def test_plyer_probe_without_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    backend = PlyerBackend()
    try:
        if __import__("sys").platform.startswith("linux"):
            assert backend.probe() is False
    finally:
        backend.close()
