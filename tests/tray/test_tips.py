"""The "Tips" submenu: suggestions from the usage analytics, shown whole when clicked."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any
from unittest import mock

from lmstudio_tray.core.control.bench import SUITE_VERSION
from lmstudio_tray.core.models import BenchFigures
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


def _coding(model: str, tps: float, passed: int) -> BenchFigures:
    return BenchFigures(model=model, suite="coding", suite_version=SUITE_VERSION, measured_at=1.0, gen_tps=tps,
                        checks_passed=passed, checks=3)


def test_the_tips_menu_names_the_model_measured_fastest_here_for_coding() -> None:
    pick = "Fastest here for coding: mistralai/devstral-small-2507 (41 tok/s, 3/3 checks)"
    bench = {"mistralai/devstral-small-2507": (_coding("mistralai/devstral-small-2507", 41.0, 3),),
             "openai/gpt-oss-20b": (_coding("openai/gpt-oss-20b", 90.0, 1),)}  # faster, but its code failed
    # the analytics' tip saying the same is not listed twice
    tips = [pick + ", among 2 models in the coding bench.", LONG_TIP]
    view, reporter = mock.Mock(), mock.Mock()
    p = TrayPresenter(view, status=lambda: report(ready()), actions=FakeActions(), submit=LoopThread().submit,
                      reporter=reporter, tips=lambda: tips, bench=lambda: bench)
    p.refresh()
    menu = find(shown_menu(view), "Tips (2)")
    first = menu.children[0]
    assert first.label == pick  # whole, not cut short
    assert first.action == MenuAction(ActionKind.SHOW_TIP, target=pick)
    assert menu.children[1].action == MenuAction(ActionKind.SHOW_TIP, target=LONG_TIP)
    p.on_click(first.action)
    reporter.report.assert_called_once_with("Tip", pick, failure=False)


def test_no_coding_bench_no_coding_line_even_with_a_quick_bench() -> None:
    quick = BenchFigures(model="a", suite="quick", suite_version=SUITE_VERSION, measured_at=1.0, gen_tps=50.0)
    benches: list[dict[str, tuple[BenchFigures, ...]]] = [{}, {"a": (quick,)}, {"a": (_coding("a", 41.0, 3),)}]
    for bench in benches:  # the last: one model is the fastest of nothing
        view, reporter = mock.Mock(), mock.Mock()
        p = TrayPresenter(view, status=lambda: report(ready()), actions=FakeActions(), submit=LoopThread().submit,
                          reporter=reporter, tips=lambda: [], bench=functools.partial(dict, bench))
        p.refresh()
        assert not any(i.label.startswith("Tips") for i in shown_menu(view))


def test_the_coding_line_compares_figures_of_this_views_instances_and_names_the_instance() -> None:
    def on(instance: str, model: str, tps: float) -> BenchFigures:
        return replace(_coding(model, tps, 3), instance=instance)

    elsewhere = {"a": (on("laptop", "a", 90.0),), "b": (on("laptop", "b", 41.0),)}  # a machine not in this view
    mixed = {"a": (on("local", "a", 90.0),), "b": (on("second", "b", 41.0),)}  # one model per machine
    here = {"a": (on("second", "a", 90.0), on("local", "a", 10.0)), "b": (on("second", "b", 41.0),)}
    lines = []
    for bench in (elsewhere, mixed, here):
        view, reporter = mock.Mock(), mock.Mock()
        p = TrayPresenter(view, status=lambda: report(ready("local"), ready("second")), actions=FakeActions(),
                          submit=LoopThread().submit, reporter=reporter, tips=lambda: [],
                          bench=functools.partial(dict, bench))
        p.refresh()
        lines.append([c.label for item in shown_menu(view) if item.label.startswith("Tips") for c in item.children])
    assert lines == [[], [], ["Fastest here for coding on second: a (90 tok/s, 3/3 checks)"]]
