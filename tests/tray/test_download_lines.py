"""Downloads in progress in the tray menu: the line's words, and the whole path from a real core (the emulator's
download, the core's events) through the presenter's coalesced redraws on the tray's own thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from lmstudio_tray.core.config.schema import Config, InstanceConfig
from lmstudio_tray.core.models import DownloadState
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.tray.menu import build_menu, download_text, flatten
from lmstudio_tray.tray.presenter import TrayPresenter
from tests.emulator_fixtures import EmulatorFactory

from .factories import ready, report
from .redraw import RedrawThread, wait_for
from .test_presenter import FakeActions
from .test_redraws import RecordingView, _NoReports

GRANITE = "ibm/granite-4-micro"


def test_the_line_of_a_download() -> None:
    d = DownloadState("local", GRANITE, "job_1", 1_139_572_501, 2_279_145_003, 250e6)
    assert download_text(d) == f"Downloading {GRANITE} — 50 % of 2.3 GB, 250.0 MB/s"
    assert download_text(replace(d, paused=True), instance=True) == (
        f"Downloading {GRANITE} on local — 50 % of 2.3 GB, paused in LM Studio")
    assert download_text(DownloadState("local", GRANITE, "job_1")) == f"Downloading {GRANITE}…"
    one = replace(report(ready()), downloads=(d,))
    labels = [i.label for i in flatten(build_menu(one))]
    assert f"Downloading {GRANITE} — 50 % of 2.3 GB, 250.0 MB/s" in labels
    two = replace(report(ready(), ready("gpu")), downloads=(d,))
    assert f"Downloading {GRANITE} on local — 50 % of 2.3 GB, 250.0 MB/s" in [i.label for i in build_menu(two)]


class LiveTray:
    """A real core (its loop in a CoreThread) against the emulator, the presenter subscribed as the tray does."""

    def __init__(self, url: str, *, watch_benches: bool = False) -> None:
        self.core = Core(Config(instances=[InstanceConfig(name="local", url=url)]), lms_path=None)
        if watch_benches:  # as the composition root does for the tray: see other processes' benches
            self.core.add_service(self.core.benches.start, self.core.benches.stop)
        self.thread = CoreThread(self.core)
        self.thread.start()
        self.view = RecordingView()
        self.presenter = TrayPresenter(self.view, status=self.core.status, actions=FakeActions(),
                                       submit=self.thread.submit, reporter=_NoReports())
        self.core.bus.subscribe(self.presenter.on_event, *self.presenter.EVENTS)
        self.redraws = RedrawThread(self.presenter)

    def labels(self) -> list[str]:
        return [i.label for i in flatten(self.view.menus[-1])] if self.view.menus else []

    def close(self) -> None:
        self.redraws.stop()
        self.thread.stop()


@pytest.fixture
def live(emulator_factory: EmulatorFactory) -> Iterator[tuple[LiveTray, object]]:
    emu = emulator_factory(download_speed=1.0)
    tray = LiveTray(emu.api_url)
    yield tray, emu
    tray.close()


def test_a_download_shows_while_it_runs_then_its_model_is_in_the_load_menu(live: tuple[LiveTray, object]) -> None:
    tray, emu = live
    tray.thread.submit(tray.core.monitor.warm_up()).result(30)
    started = tray.thread.submit(tray.core.downloads.start("local", GRANITE)).result(30)
    wait_for(lambda: any(label.startswith(f"Downloading {GRANITE} — 0 % of 2.3 GB") for label in tray.labels()),
             what="the download's line")
    redraw_threads = {tid for what, _, tid in tray.view.draws if what == "menu"}
    assert redraw_threads == {tray.redraws.thread.ident} != {threading.get_ident()}  # drawn on the tray's thread
    emu.finish_downloads()  # type: ignore[attr-defined]
    assert started.job_id is not None
    tray.thread.submit(tray.core.downloads.wait("local", started.job_id)).result(30)
    wait_for(lambda: not any(label.startswith("Downloading") for label in tray.labels())
             and any(GRANITE in label for label in tray.labels()), what="the line gone and the model listed")
