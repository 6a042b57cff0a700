"""The "Tips" submenu: suggestions from the usage analytics, shown whole when clicked."""

from __future__ import annotations

from typing import Any
from unittest import mock

from lmstudio_tray.tray.menu import ActionKind, MenuAction, find
from lmstudio_tray.tray.presenter import TrayPresenter

from .factories import ready, report
from .test_presenter import FakeActions, LoopThread

LONG_TIP = (
    "Reload qwen/qwen3-4b-2507 with a larger context: 7 of 20 turns came within 10% of its 4096-token "
    "loaded context (largest 4012 tokens)."
)


def presenter(tips: Any) -> tuple[TrayPresenter, mock.Mock, mock.Mock]:
    view, reporter = mock.Mock(), mock.Mock()
    p = TrayPresenter(view, status=lambda: report(ready()), actions=FakeActions(), submit=LoopThread().submit,
                      reporter=reporter, tips=tips)
    p.refresh()
    return p, view, reporter


def shown_menu(view: mock.Mock) -> Any:
    return view.set_menu.call_args.args[0]


def test_tips_submenu_lists_each_tip_and_a_click_shows_it_whole() -> None:
    p, view, reporter = presenter(lambda: [LONG_TIP, "Unload google/gemma-3-12b: unused for 9 days, holds 8.1 GB."])
    tips = find(shown_menu(view), "Tips (2)")
    assert len(tips.children) == 2
    first = tips.children[0]
    assert first.label != LONG_TIP and LONG_TIP.startswith(first.label.rstrip("…"))  # cut short in the menu
    assert first.action == MenuAction(ActionKind.SHOW_TIP, target=LONG_TIP)
    p.on_click(first.action)
    reporter.report.assert_called_once_with("Tip", LONG_TIP, failure=False)


def test_no_tips_no_item_and_a_failing_source_does_not_break_the_menu() -> None:
    _, view, _ = presenter(lambda: [])
    assert not any(i.label.startswith("Tips") for i in shown_menu(view))

    def broken() -> list[str]:
        raise RuntimeError("database is locked")

    _, view, _ = presenter(broken)
    labels = [i.label for i in shown_menu(view)]
    assert "Quit" in labels and not any(label.startswith("Tips") for label in labels)
