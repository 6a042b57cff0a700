"""The tray marks the models other team members use on a shared instance (as the team hub last said) and shows the
hub's state: a presenter over a mock view, its team uses given as `TeamSync.others` would hold them."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any
from unittest import mock

from lmstudio_tray.core.models import HubState, HubStatus, StatusReport
from lmstudio_tray.tray.menu import MenuItem, MenuPrefs, find, flatten
from lmstudio_tray.tray.presenter import TrayPresenter

from .factories import ready, report

OtherUses = dict[str, dict[str, list[tuple[str, float]]]]


class Tray:
    def __init__(self, status: StatusReport, others: OtherUses, *, shared: tuple[str, ...] = ("gpu",),
                 busy_minutes: float = 5.0) -> None:
        self.status = status
        self.others = others
        self.view = mock.Mock()
        self.presenter = TrayPresenter(
            self.view, status=lambda: self.status, actions=mock.Mock(), submit=mock.Mock(), reporter=mock.Mock(),
            prefs=MenuPrefs(shared_instances=shared, team="ml", busy_minutes=busy_minutes),
            team_uses=lambda: self.others,
        )

    def menu(self) -> tuple[MenuItem, ...]:
        self.presenter.refresh()
        items: tuple[MenuItem, ...] = self.view.set_menu.call_args.args[0]
        return items

    def labels(self) -> list[str]:
        return [item.label for item in flatten(self.menu())]


def two_instances(hub: HubStatus | None = None) -> StatusReport:
    return replace(report(ready("gpu"), ready("desk")), team_hub=hub)


def test_a_model_another_member_uses_on_a_shared_instance_is_marked_with_who_and_when() -> None:
    now = time.time()
    tray = Tray(two_instances(), {"gpu": {"qwen3-8b": [("bob", now - 130), ("carol", now - 20)]},
                                  "desk": {"qwen3-8b": [("bob", now - 5)]}})
    gpu = find(tray.menu(), "gpu")
    loaded = find(gpu.children, "● qwen3-8b")
    # the latest first: carol 20 s ago (a few more on a slow machine), then bob 2 min ago
    assert re.fullmatch(r"● qwen3-8b · 8,192 ctx — in use by carol \(2\d s ago\), bob \(2 min ago\)", loaded.label)
    assert "bob (2 min ago)" in find(find(gpu.children, "Unload").children, "qwen3-8b").label
    assert "in use by carol" in find(find(gpu.children, "Load model").children, "qwen3-8b").label
    # the same model on an instance the team does not share is not marked
    desk = find(tray.menu(), "desk")
    assert not any("in use by" in item.label for item in flatten(desk.children))


def test_uses_outside_the_busy_window_or_of_other_models_are_not_marked() -> None:
    now = time.time()
    tray = Tray(two_instances(), {"gpu": {"qwen3-8b": [("bob", now - 600)], "gemma-3-4b": [("bob", now - 5)]}})
    gpu = find(tray.menu(), "gpu")
    assert "in use by" not in find(gpu.children, "● qwen3-8b").label  # 10 min ago, the window is 5
    marked = [i.label for i in flatten(gpu.children) if "in use by" in i.label]  # under Load model and Switch to
    gemma = r"Gemma 3 4B \(gemma-3-4b\) — 3.2 GB — in use by bob \(\d s ago\)"
    assert len(marked) == 2 and all(re.fullmatch(gemma, label) for label in marked)


def test_the_mark_goes_once_the_hub_no_longer_says_so() -> None:
    now = time.time()
    tray = Tray(two_instances(), {"gpu": {"qwen3-8b": [("bob", now - 5)]}})
    assert any("in use by bob" in label for label in tray.labels())
    tray.others = {}
    assert not any("in use by" in label for label in tray.labels())


def test_a_broken_team_view_leaves_the_menu_drawn_without_marks() -> None:
    def broken() -> Any:
        raise OSError("gone")

    tray = Tray(two_instances(), {})
    tray.presenter._team_uses = broken
    assert "● qwen3-8b · 8,192 ctx" in tray.labels()


def test_the_hub_state_is_a_line_of_the_menu() -> None:
    tray = Tray(two_instances(), {})
    assert not any(label.startswith("Team hub") for label in tray.labels())  # no hub in the profile
    tray.status = two_instances(HubStatus(HubState.CONNECTED, "", "alice"))
    assert "Team hub: connected as alice" in tray.labels()
    tray.status = two_instances(HubStatus(HubState.UNREACHABLE, "https://hub.lan:8765 did not answer"))
    assert "Team hub: unreachable, only this machine's uses are known" in tray.labels()
    tray.status = two_instances(HubStatus(HubState.REFUSED, "the hub refused this member's token: the token of "
                                          "member 'alice' was revoked"))
    line = next(label for label in tray.labels() if label.startswith("Team hub"))
    assert line.startswith("Team hub: refused: the hub refused this member's token") and "revoked" in line
    assert find(tray.menu(), "Team hub").enabled is False
