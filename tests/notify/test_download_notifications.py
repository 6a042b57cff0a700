"""Download notifications: the policy's words and switches, and the bubbles a real daemon (dunst on the test desktop)
shows for a download that completes and one that fails halfway, driven by the core against the emulator.

    scripts/with-desktop.sh .venv/bin/pytest tests/notify/test_download_notifications.py
"""

from __future__ import annotations

import pytest

from lmstudio_tray.core.clock import FakeClock
from lmstudio_tray.core.config.schema import Config, InstanceConfig, NotificationsConfig
from lmstudio_tray.core.events import DownloadCompleted, DownloadFailed
from lmstudio_tray.core.models import DownloadFailure
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.notify.base import Urgency
from lmstudio_tray.notify.freedesktop import FreedesktopBackend
from lmstudio_tray.notify.policy import NotificationPolicy
from lmstudio_tray.notify.service import attach_notifications
from tests.desktop.xtools import dunst_history
from tests.emulator_fixtures import EmulatorFactory
from tests.notify.test_freedesktop import NotifyMonitor, backend, desktop, monitor  # noqa: F401 - fixtures

GRANITE = "ibm/granite-4-micro"
QWEN8 = "qwen/qwen3-8b"


def test_completed_and_failed_downloads_in_words() -> None:
    policy = NotificationPolicy(NotificationsConfig(), FakeClock())
    done = policy.decide(DownloadCompleted("local", model=GRANITE, job_id="j", total_bytes=2_279_145_003,
                                           seconds=95))
    assert done is not None and done.title == f"{GRANITE} downloaded" and done.category == "downloaded"
    assert done.body == f"On local (2.3 GB, in 1 min 35 s). Load it with `lmstudio-tray load {GRANITE}`."
    failed = policy.decide(DownloadFailed("local", model=GRANITE, job_id="j", reason="the disk is full.",
                                          cause=DownloadFailure.FAILED))
    assert failed is not None and failed.urgency is Urgency.CRITICAL and failed.replace_key == done.replace_key
    assert failed.body == f"local: the disk is full. Try again with `lmstudio-tray get {GRANITE}`."


def test_download_switches_and_quiet_mode() -> None:
    off = NotificationsConfig(categories={"downloaded": False, "download_failed": False})
    policy = NotificationPolicy(off, FakeClock())
    assert policy.decide(DownloadCompleted("local", model=GRANITE, job_id="j")) is None
    assert policy.decide(DownloadFailed("local", model=GRANITE, job_id="j", reason="x")) is None
    quiet = NotificationPolicy(NotificationsConfig(quiet=True), FakeClock())
    assert quiet.decide(DownloadCompleted("local", model=GRANITE, job_id="j")) is None
    assert quiet.decide(DownloadFailed("local", model=GRANITE, job_id="j", reason="x")) is not None


@pytest.mark.desktop
async def test_dunst_shows_a_completed_and_a_failed_download(
    emulator_factory: EmulatorFactory, backend: FreedesktopBackend, monitor: NotifyMonitor  # noqa: F811
) -> None:
    emu = emulator_factory(download_speed=1.0, fail_downloads={QWEN8: 0.5})
    config = Config(instances=[InstanceConfig(name="local", url=emu.api_url)],
                    notifications=NotificationsConfig(categories={"downloaded": True, "download_failed": True}))
    core = Core(config, lms_path=None)
    detach = attach_notifications(core, backend)
    try:
        await core.monitor.warm_up()
        granite = await core.downloads.start("local", GRANITE)
        qwen = await core.downloads.start("local", QWEN8)
        assert granite.job_id is not None and qwen.job_id is not None
        emu.finish_downloads()
        await core.downloads.wait("local", granite.job_id)
        await core.downloads.wait("local", qwen.job_id)
        assert backend.flush()
    finally:
        detach()
        await core.stop()
    shown = {n.get("summary"): n for n in dunst_history()}
    assert f"Load it with `lmstudio-tray load {GRANITE}`" in shown[f"{GRANITE} downloaded"]["body"]
    assert f"`lmstudio-tray get {QWEN8}`" in shown[f"Could not download {QWEN8}"]["body"]
    urgency = {c[3]: c[6]["urgency"] for c in monitor.calls}
    assert urgency[f"Could not download {QWEN8}"] == ("y", 2)  # critical
    assert urgency[f"{GRANITE} downloaded"] == ("y", 1)


@pytest.mark.desktop
async def test_the_downloaded_switch_keeps_dunst_quiet(
    emulator_factory: EmulatorFactory, backend: FreedesktopBackend, monitor: NotifyMonitor  # noqa: F811
) -> None:
    emu = emulator_factory(download_speed=1.0)
    config = Config(instances=[InstanceConfig(name="local", url=emu.api_url)],
                    notifications=NotificationsConfig(categories={"downloaded": False}))
    core = Core(config, lms_path=None)
    detach = attach_notifications(core, backend)
    try:
        await core.monitor.warm_up()
        job = await core.downloads.start("local", GRANITE)
        assert job.job_id is not None
        emu.finish_downloads()
        await core.downloads.wait("local", job.job_id)
        assert backend.flush()
    finally:
        detach()
        await core.stop()
    assert not [c for c in monitor.calls if "downloaded" in str(c[3])]
