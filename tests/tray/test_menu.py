from __future__ import annotations

import pytest

from lmstudio_tray.core.models import InstanceState, LoadProgress
from lmstudio_tray.tray.menu import (
    TOOLTIP_MAX,
    ActionKind,
    MenuAction,
    MenuContext,
    MenuItem,
    MenuPrefs,
    build_menu,
    find,
    flatten,
    tooltip,
)

from .factories import GEMMA, NOMIC, QWEN, loaded, loading, ready, report, snap


def labels(items: tuple[MenuItem, ...]) -> list[str]:
    return [i.label if not i.separator else "---" for i in items]


def test_ready_single_instance_is_flat() -> None:
    menu = build_menu(report(ready()))
    assert labels(menu) == [
        "local: Ready · 1 model loaded",
        "http://127.0.0.1:1234",
        "● qwen3-8b · 8,192 ctx",
        "---",
        "Load model",
        "Switch to",
        "Unload",
        "Unload all",
        "Copy model id",
        "---",
        "Stop server",
        "---",
        "Notifications",
        "Open config file",
        "Open logs folder",
        "About LM Studio Tray",
        "---",
        "Quit",
    ]
    assert not menu[0].enabled  # the state line is information, not a button


def test_load_model_groups_downloads_with_sizes() -> None:
    menu = build_menu(report(ready()))
    load = find(menu, "Load model")
    assert labels(load.children) == ["Language models", "Vision models", "Embedding models"]
    llm = load.children[0].children[0]
    assert llm.label == "qwen3-8b — 4.7 GB"
    assert llm.checked is True  # already loaded: ticked, still allowed (a second copy)
    # a submenu of context lengths, LM Studio's default first (QWEN's maximum is 32,768)
    assert llm.action is None
    assert [(c.label, c.action) for c in llm.children] == [
        ("LM Studio's default", MenuAction(ActionKind.LOAD, "local", "qwen3-8b")),
        ("4k", MenuAction(ActionKind.LOAD, "local", "qwen3-8b", 4096)),
        ("8k", MenuAction(ActionKind.LOAD, "local", "qwen3-8b", 8192)),
        ("16k", MenuAction(ActionKind.LOAD, "local", "qwen3-8b", 16384)),
        ("Maximum (32,768)", MenuAction(ActionKind.LOAD, "local", "qwen3-8b", 32768)),
    ]
    vlm = load.children[1].children[0]
    assert vlm.label == "Gemma 3 4B (gemma-3-4b) — 3.2 GB" and vlm.checked is False
    assert labels(vlm.children) == ["LM Studio's default"]  # no maximum known: nothing else is sure to fit
    assert load.children[2].children[0].label == "nomic-embed — 84.0 MB"


def test_single_group_is_not_nested() -> None:
    menu = build_menu(report(snap(InstanceState.IDLE, models=(QWEN,))))
    load = find(menu, "Load model")
    assert [c.label for c in load.children] == ["qwen3-8b — 4.7 GB"]


def test_switch_excludes_embeddings_and_needs_something_loaded() -> None:
    menu = build_menu(report(ready()))
    switch = find(menu, "Switch to")
    assert switch.enabled
    assert "Embedding models" not in labels(switch.children)
    assert switch.children[1].children[0].action == MenuAction(ActionKind.SWITCH, "local", "gemma-3-4b")
    idle = build_menu(report(snap(InstanceState.IDLE)))
    assert not find(idle, "Switch to").enabled


def test_unload_and_copy_list_each_loaded_instance() -> None:
    two = loaded(QWEN, ("qwen3-8b", 8192), ("qwen3-8b:2", 32768))
    menu = build_menu(report(snap(InstanceState.READY, models=(two, GEMMA))))
    unload = find(menu, "Unload")
    assert [c.label for c in unload.children] == ["qwen3-8b · 8,192 ctx", "qwen3-8b:2 · 32,768 ctx"]
    assert unload.children[1].action == MenuAction(ActionKind.UNLOAD, "local", "qwen3-8b:2")
    assert find(menu, "Unload all").action == MenuAction(ActionKind.UNLOAD_ALL, "local")
    copy = find(menu, "Copy model id")
    assert [c.label for c in copy.children] == ["qwen3-8b", "qwen3-8b:2"]
    assert "● qwen3-8b:2 · 32,768 ctx" in labels(menu)
    assert labels(menu)[0] == "local: Ready · 2 models loaded"


def test_idle_greys_what_needs_a_loaded_model() -> None:
    menu = build_menu(report(snap(InstanceState.IDLE)))
    assert menu[0].label == "local: Running, no model loaded"
    assert find(menu, "Load model").enabled
    for label in ("Switch to", "Unload", "Unload all", "Copy model id"):
        assert not find(menu, label).enabled, label
    assert find(menu, "Stop server").enabled


def test_offline_offers_start_and_greys_the_rest() -> None:
    menu = build_menu(report(snap(InstanceState.OFFLINE, error="connection refused")))
    assert menu[0].label == "local: Offline (connection refused)"
    start = find(menu, "Start server")
    assert start.enabled and start.action == MenuAction(ActionKind.SERVER_START, "local")
    for label in ("Load model", "Switch to", "Unload", "Unload all", "Copy model id"):
        assert not find(menu, label).enabled, label
    assert "Stop server" not in labels(menu)


def test_offline_without_lms_greys_start_with_the_reason() -> None:
    menu = build_menu(report(snap(InstanceState.OFFLINE, can_control_server=False)))
    item = find(menu, "Start server")
    assert item.label == "Start server (needs the lms CLI)" and not item.enabled


def test_remote_without_control_hides_server_items() -> None:
    menu = build_menu(report(snap(InstanceState.IDLE, remote=True, can_control_server=False)))
    assert not any("server" in label.lower() for label in labels(menu))


def test_auth_failed_explains_and_greys() -> None:
    menu = build_menu(report(snap(InstanceState.AUTH_FAILED, error="401 Unauthorized")))
    assert menu[0].label == "local: API token needed (401 Unauthorized)"
    assert not find(menu, "Load model").enabled


def test_error_state_line() -> None:
    menu = build_menu(report(snap(InstanceState.ERROR, error="HTTP 500 from /api/v1/models", models=())))
    assert menu[0].label.startswith("local: Error (HTTP 500")
    assert find(menu, "Stop server").enabled


def test_running_load_shows_percent_eta_and_cancel() -> None:
    menu = build_menu(
        report(loading(0.45, 12)),
        MenuContext(can_cancel=lambda i, m: (i, m) == ("local", "gemma-3-4b")),
    )
    assert menu[0].label == "local: Loading gemma-3-4b — 45 %, about 12 s left"
    cancel = find(menu, "Cancel loading gemma-3-4b")
    assert cancel.enabled and cancel.action == MenuAction(ActionKind.CANCEL_LOAD, "local", "gemma-3-4b")
    # The model being loaded cannot be clicked again; others can.
    vlm = find(find(menu, "Load model").children, "Vision models").children[0]
    assert not vlm.enabled
    assert find(find(menu, "Load model").children, "Language models").children[0].enabled


def test_load_that_cannot_be_cancelled_says_so() -> None:
    menu = build_menu(report(loading(None, None)))
    assert menu[0].label == "local: Loading gemma-3-4b…"
    cancel = find(menu, "Cancel loading")
    assert cancel.label.endswith("(not possible)") and not cancel.enabled


def test_busy_model_is_greyed_while_its_click_runs() -> None:
    menu = build_menu(report(snap(InstanceState.IDLE)), MenuContext(busy=frozenset({("local", "qwen3-8b")})))
    qwen = find(find(menu, "Load model").children, "qwen3-8b")
    assert not qwen.enabled


def test_several_instances_get_one_submenu_each() -> None:
    r = report(ready("local"), snap(InstanceState.OFFLINE, name="gpu-box", remote=True, can_control_server=False,
                                    error="timed out"), active="local")
    menu = build_menu(r)
    assert labels(menu)[:2] == ["local: Ready · 1 model loaded  (active)", "gpu-box: Offline (timed out)"]
    local, remote = menu[0], menu[1]
    assert local.is_submenu and remote.is_submenu
    assert find(local.children, "Unload all").action == MenuAction(ActionKind.UNLOAD_ALL, "local")
    assert not find(remote.children, "Load model").enabled
    # Actions carry their instance, so the presenter never guesses.
    actions = [i.action for i in flatten(menu) if i.action and i.action.instance]
    assert {a.instance for a in actions} == {"local", "gpu-box"}


def test_no_instances() -> None:
    menu = build_menu(report())
    assert menu[0].label == "No LM Studio instance configured" and not menu[0].enabled
    assert labels(menu)[-1] == "Quit"


@pytest.mark.parametrize("enabled", [True, False])
def test_global_items_follow_prefs(enabled: bool) -> None:
    prefs = MenuPrefs(notifications=enabled, autostart=None, config_path="/c.toml", logs_path=None)
    menu = build_menu(report(ready()), MenuContext(prefs=prefs))
    assert find(menu, "Notifications").checked is enabled
    assert "Start at login" not in labels(menu)  # hidden until autostart exists
    assert find(menu, "Open config file").enabled
    assert not find(menu, "Open logs folder").enabled
    with_autostart = build_menu(report(ready()), MenuContext(prefs=MenuPrefs(autostart=True)))
    assert find(with_autostart, "Start at login").checked is True


def test_every_state_builds_a_menu() -> None:
    for state in InstanceState:
        loads = (LoadProgress("qwen3-8b", 0.0, 0.1, 30),) if state is InstanceState.LOADING else ()
        menu = build_menu(report(snap(state, loads=loads)))
        assert menu[-1].action == MenuAction(ActionKind.QUIT)
        for item in flatten(menu):
            # Clickable leaves always carry an action; submenus never do.
            if item.enabled and not item.separator and not item.children and item.label != menu[1].label:
                assert item.action is not None or item.label.startswith(("local", "●", "Loading")), item


def test_tooltip_lists_instances_and_models() -> None:
    two = loaded(QWEN, ("qwen3-8b", 8192), ("qwen3-8b:2", 32768))
    r = report(snap(InstanceState.READY, models=(two, NOMIC)), snap(InstanceState.OFFLINE, name="gpu-box"))
    assert tooltip(r) == "LM Studio Tray\nlocal: qwen3-8b (8k), qwen3-8b:2 (32k)\ngpu-box: offline"
    assert tooltip(report()) == "LM Studio Tray\nno instances configured"


def test_tooltip_is_capped() -> None:
    many = tuple(snap(InstanceState.OFFLINE, name=f"instance-number-{i}") for i in range(10))
    text = tooltip(report(*many))
    assert len(text) == TOOLTIP_MAX and text.endswith("…")


def test_nothing_running_here_offers_start_lmstudio_and_shows_the_server_settings() -> None:
    ctx = MenuContext(server_line="port 1234, this machine only, CORS off", lmstudio_running=False)
    menu = build_menu(report(snap(InstanceState.OFFLINE)), ctx)
    start = find(menu, "Start LM Studio")
    assert start.enabled and start.action == MenuAction(ActionKind.START_LMSTUDIO, "local")
    assert "Start server" not in labels(menu)
    line = find(menu, "Server: port 1234, this machine only, CORS off")
    assert not line.enabled and line.action is None
    without_lms = build_menu(report(snap(InstanceState.OFFLINE, can_control_server=False)), ctx)
    item = find(without_lms, "Start LM Studio (needs the lms CLI)")
    assert not item.enabled


def test_with_lmstudio_running_or_unknown_offline_offers_the_server_only() -> None:
    for running in (True, None):
        menu = build_menu(report(snap(InstanceState.OFFLINE)), MenuContext(lmstudio_running=running))
        assert find(menu, "Start server").enabled and "Start LM Studio" not in labels(menu)
    online = build_menu(report(ready()), MenuContext(server_line="port 1234, local network (0.0.0.0), CORS on",
                                                     lmstudio_running=True))
    assert find(online, "Server: port 1234, local network (0.0.0.0), CORS on")
    assert find(online, "Stop server").enabled


def test_a_remote_instance_shows_no_local_server_settings_nor_start_lmstudio() -> None:
    ctx = MenuContext(server_line="port 1234, this machine only, CORS off", lmstudio_running=False)
    menu = build_menu(report(snap(InstanceState.OFFLINE, remote=True, can_control_server=False)), ctx)
    assert not any(label.startswith(("Server:", "Start ", "Stop ")) for label in labels(flatten(menu)))
