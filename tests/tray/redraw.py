"""The tray's redraw thread for presenter tests, run the way TrayApp's setup() runs it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from lmstudio_tray.tray.presenter import TrayPresenter


class RedrawThread:
    def __init__(self, presenter: TrayPresenter) -> None:
        self.presenter = presenter
        self.thread = threading.Thread(target=presenter.run_redraws, name="tray-redraws", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.presenter.stop_redraws()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the redraw loop did not stop"


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} never became true"
        time.sleep(0.01)
