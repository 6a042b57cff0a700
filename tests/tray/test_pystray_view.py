"""PystrayView's mapping of the menu model onto pystray, per backend. Windows' pystray backend cannot run
here, so pystray itself is replaced by a recorder of what the view asks it for."""

from __future__ import annotations

from typing import Any

import pytest

from lmstudio_tray.tray.app import PystrayView
from lmstudio_tray.tray.menu import MenuContext, MenuPrefs, build_menu

from .factories import ready, report


class FakePystray:
    class Menu:
        SEPARATOR = object()

        def __init__(self, *items: Any) -> None:
            self.items = items

    class MenuItem:
        def __init__(self, text: str, action: Any, **options: Any) -> None:
            self.text, self.action, self.options = text, action, options

    class Icon:
        def __init__(self, name: str, **options: Any) -> None:
            self.name, self.options, self.menu = name, options, None


def top_items(backend: str) -> dict[str, Any]:
    view = PystrayView(FakePystray.Icon, FakePystray, backend)
    view.set_menu(build_menu(report(ready()), MenuContext(prefs=MenuPrefs(dashboard=True))))
    return {i.text: i for i in view.icon.menu.items if isinstance(i, FakePystray.MenuItem)}


@pytest.mark.parametrize("backend", ["win32", "xorg"])
def test_a_left_click_opens_the_dashboard_where_it_cannot_open_the_menu(backend: str) -> None:
    items = top_items(backend)
    defaults = [text for text, item in items.items() if item.options.get("default")]
    assert defaults == ["Open dashboard"]


@pytest.mark.parametrize("backend", ["darwin", "appindicator"])
def test_no_default_item_where_a_click_opens_the_menu(backend: str) -> None:
    assert not [t for t, i in top_items(backend).items() if i.options.get("default")]
