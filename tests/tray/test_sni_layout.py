"""The menu as a DBusMenu layout and the icon as IconPixmap: the pure half of the SNI backend."""

from __future__ import annotations

from lmstudio_tray.core.models import InstanceState
from lmstudio_tray.tray.icons import state_colour
from lmstudio_tray.tray.menu import ActionKind, MenuAction, MenuContext, MenuItem, MenuPrefs, build_menu
from lmstudio_tray.tray.sni import MenuIds, MenuNode, build_layout, escape_label, icon_pixmaps, node_value

from .factories import GEMMA, NOMIC, QWEN, ready, report, snap


def by_label(node: MenuNode, label: str) -> MenuNode:
    """The first node (depth first) whose label starts with `label`."""
    for child in node.children:
        if str(child.props.get("label", ("s", ""))[1]).startswith(label):
            return child
        try:
            return by_label(child, label)
        except LookupError:
            pass
    raise LookupError(label)


def idle_menu() -> tuple[MenuItem, ...]:
    return build_menu(report(snap(InstanceState.IDLE, models=(QWEN, GEMMA, NOMIC))), MenuContext(prefs=MenuPrefs()))


def test_every_model_is_a_submenu_of_clickable_context_choices_under_load_model() -> None:
    layout = build_layout(idle_menu())
    load = by_label(layout.root, "Load model")
    assert load.props["children-display"] == ("s", "submenu")
    models = [model for group in load.children for model in group.children]
    assert len(models) == 3 and all(m.props["children-display"] == ("s", "submenu") for m in models)
    assert all(m.props["label"] == ("s", "LM Studio's default") for m in (m.children[0] for m in models))
    leaves = [leaf for model in models for leaf in model.children]
    targets = {layout.actions[leaf.id].target for leaf in leaves}
    assert targets == {QWEN.key, GEMMA.key, NOMIC.key}
    assert {layout.actions[leaf.id].kind for leaf in leaves} == {ActionKind.LOAD}
    assert all("enabled" not in leaf.props for leaf in leaves)


def test_greyed_items_do_nothing_and_say_so() -> None:
    layout = build_layout(idle_menu())
    unload = by_label(layout.root, "Unload all")  # nothing loaded
    assert unload.props["enabled"] == ("b", False)
    assert unload.id not in layout.actions
    state_line = layout.root.children[0]  # a label without an action: greyed, like pystray draws it
    assert state_line.props["enabled"] == ("b", False)


def test_separators_toggles_and_radios() -> None:
    items = (
        MenuItem("Notifications", MenuAction(ActionKind.TOGGLE_NOTIFICATIONS), checked=True),
        MenuItem("", separator=True),
        MenuItem("work", MenuAction(ActionKind.USE_PROFILE, target="work"), checked=False, radio=True),
    )
    toggle, separator, radio = build_layout(items).root.children
    assert toggle.props["toggle-type"] == ("s", "checkmark") and toggle.props["toggle-state"] == ("i", 1)
    assert separator.props == {"type": ("s", "separator")}
    assert radio.props["toggle-type"] == ("s", "radio") and radio.props["toggle-state"] == ("i", 0)


def test_underscores_are_not_mnemonics() -> None:
    assert escape_label("qwen_2.5_coder") == "qwen__2.5__coder"
    layout = build_layout((MenuItem("my_model", MenuAction(ActionKind.LOAD, "emu", "my_model")),))
    assert layout.root.children[0].props["label"] == ("s", "my__model")


def test_ids_stay_with_their_item_across_revisions() -> None:
    ids = MenuIds()
    before = build_layout(idle_menu(), ids)
    after = build_layout(build_menu(report(ready()), MenuContext(prefs=MenuPrefs())), ids)
    # A host that drew the old menu and sends the old id still reaches the same action.
    for node_id, action in before.actions.items():
        if node_id in after.actions:
            assert after.actions[node_id] == action
    quit_before = next(i for i, a in before.actions.items() if a.kind is ActionKind.QUIT)
    quit_after = next(i for i, a in after.actions.items() if a.kind is ActionKind.QUIT)
    assert quit_before == quit_after
    # Items that went away never lend their id to a new one.
    gone = set(before.nodes) - set(after.nodes)
    new = set(after.nodes) - set(before.nodes)
    assert gone.isdisjoint(new)


def test_the_same_menu_gives_the_same_ids() -> None:
    ids = MenuIds()
    first, second = build_layout(idle_menu(), ids), build_layout(idle_menu(), ids)
    assert node_value(first.root, -1, []) == node_value(second.root, -1, [])
    assert len(first.nodes) == len(set(first.nodes))


def test_get_layout_depth_and_property_filter() -> None:
    layout = build_layout(idle_menu())
    _, _, children = node_value(layout.root, 1, ["label"])
    assert children, "depth 1 lists the top level"
    for signature, (_, child_props, grandchildren) in children:
        assert signature == "(ia{sv}av)"
        assert set(child_props) <= {"label"}
        assert grandchildren == []
    full = node_value(by_label(layout.root, "Load model"), -1, [])
    assert full[2] and full[2][0][1][2] is not None


def test_icon_pixmap_is_argb_in_network_order() -> None:
    pixmaps = icon_pixmaps(InstanceState.IDLE, None, (16, 48))
    assert [(w, h) for w, h, _ in pixmaps] == [(16, 16), (48, 48)]
    width, height, data = pixmaps[1]
    assert len(data) == width * height * 4
    red, green, blue = state_colour(InstanceState.IDLE)
    corner = data[0:4]
    assert corner[0] == 0, "transparent outside the disc (alpha comes first)"
    # The disc's rim, left of the glyph, is the state colour, opaque.
    offset = ((height // 2) * width + 3) * 4
    a, r, g, b = data[offset:offset + 4]
    assert a == 255 and abs(r - red) < 8 and abs(g - green) < 8 and abs(b - blue) < 8


def test_tooltip_text_is_not_markup() -> None:
    from lmstudio_tray.tray.sni import tooltip_body

    assert tooltip_body("local: R&D <8B> model") == "local: R&amp;D &lt;8B&gt; model"
