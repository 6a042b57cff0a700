"""The Linux tray icon as a StatusNotifierItem with a DBusMenu, over jeepney: no GTK in this process.

The desktop's StatusNotifierItem host (KDE Plasma, GNOME's AppIndicator extension, the XFCE / MATE /
Cinnamon plugins, waybar, ...) draws the icon and renders the menu from what we publish on the session
bus: `org.kde.StatusNotifierItem` at /StatusNotifierItem and `com.canonical.dbusmenu` at /MenuBar.
GTK's import, theme and status icon cost ~27 MiB of resident memory for a 22-pixel picture and a
menu; the bus protocol costs next to nothing, and it works on Wayland without XWayland too.

Threads: `run()` owns the calling thread and blocks in `select()` on the bus socket (no timers, so
zero CPU while idle); method calls from the host are answered there, and menu clicks run there.
`set_icon` / `set_tooltip` / `set_menu` may come from any thread: they swap the published state under
a lock and emit a change signal (jeepney serialises sends with its own send lock).
"""

from __future__ import annotations

import html
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmstudio_tray.core.models import InstanceState
from lmstudio_tray.tray.icons import render_icon
from lmstudio_tray.tray.menu import APP_TITLE, MenuAction, MenuItem

log = logging.getLogger(__name__)

ITEM_PATH = "/StatusNotifierItem"
MENU_PATH = "/MenuBar"
ITEM_INTERFACE = "org.kde.StatusNotifierItem"
MENU_INTERFACE = "com.canonical.dbusmenu"
WATCHER = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"
PROPERTIES = "org.freedesktop.DBus.Properties"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
PEER = "org.freedesktop.DBus.Peer"
ICON_SIZES = (16, 22, 24, 32, 48)  # hosts pick the closest size; a panel rarely draws above 48 px
APP_ID = "lmstudio-tray"
NODE_SIGNATURE = "(ia{sv}av)"
REGISTER_RETRIES = (0.2, 0.5, 1.0, 2.0)  # seconds before each new try after the watcher refused

Variant = tuple[str, Any]
Props = dict[str, Variant]


def session_bus_target(env: Mapping[str, str] | None = None) -> str:
    """Where to connect for the session bus: $DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus (what
    systemd user sessions provide even when the variable did not reach this process)."""
    from jeepney.bus import get_bus  # type: ignore[import-untyped]

    env = os.environ if env is None else env
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return str(get_bus(address))
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.exists(os.path.join(runtime, "bus")):
        return os.path.join(runtime, "bus")
    raise ConnectionError("no session bus: DBUS_SESSION_BUS_ADDRESS is not set and $XDG_RUNTIME_DIR/bus is missing")


# ---- the menu as a DBusMenu layout (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class MenuNode:
    id: int
    props: Props
    children: tuple[MenuNode, ...] = ()


@dataclass
class MenuLayout:
    """One revision of the menu: the tree (root id 0), every node by id, and what each id does."""

    root: MenuNode
    nodes: dict[int, MenuNode] = field(default_factory=dict)
    actions: dict[int, MenuAction] = field(default_factory=dict)


class MenuIds:
    """Gives an item the same id in every revision it appears in, so a click on a menu the host drew
    from an older revision still reaches the same action, or nothing; ids are never reused."""

    def __init__(self) -> None:
        self._ids: dict[Hashable, int] = {}
        self._next = itertools.count(1)  # 0 is the root

    def assign(self, keys: Iterable[Hashable]) -> list[int]:
        ids = [self._ids.get(k) or self._ids.setdefault(k, next(self._next)) for k in keys]
        return ids

    def keep_only(self, keys: set[Hashable]) -> None:
        self._ids = {k: v for k, v in self._ids.items() if k in keys}


def escape_label(label: str) -> str:
    """DBusMenu labels use `_` as the mnemonic marker; a literal underscore is written `__`."""
    return label.replace("_", "__")


def item_props(item: MenuItem) -> Props:
    if item.separator:
        return {"type": ("s", "separator")}
    props: Props = {"label": ("s", escape_label(item.label))}
    # A leaf without an action does nothing: greyed, like the pystray adapter draws it.
    clickable = item.enabled and (item.action is not None or bool(item.children))
    if not clickable:
        props["enabled"] = ("b", False)
    if item.checked is not None:
        props["toggle-type"] = ("s", "radio" if item.radio else "checkmark")
        props["toggle-state"] = ("i", 1 if item.checked else 0)
    if item.children:
        props["children-display"] = ("s", "submenu")
    return props


def tooltip_body(text: str) -> str:
    """The spec lets hosts read a tooltip body as markup (KDE does): `&` and `<` in a model name stay text."""
    return html.escape(text, quote=False)


def build_layout(items: Sequence[MenuItem], ids: MenuIds | None = None) -> MenuLayout:
    """The DBusMenu tree for a menu: ids stable across calls with the same `ids`, and id -> action."""
    ids = ids or MenuIds()
    layout = MenuLayout(MenuNode(0, {"children-display": ("s", "submenu")}))
    used: set[Hashable] = set()

    def key_of(item: MenuItem, parent: Hashable, index: int) -> Hashable:
        if item.separator:
            base: Hashable = (parent, "separator", index)
        elif item.action is not None:
            base = ("action", item.action)
        else:
            base = (parent, "label", item.label)
        key, n = base, 1
        while key in used:  # the same action or label twice: still distinct items
            n += 1
            key = (base, n)
        used.add(key)
        return key

    def nodes(children: Sequence[MenuItem], parent: Hashable) -> tuple[MenuNode, ...]:
        keys = [key_of(item, parent, i) for i, item in enumerate(children)]
        out = []
        for item, key, node_id in zip(children, keys, ids.assign(keys), strict=True):
            node = MenuNode(node_id, item_props(item), nodes(item.children, key))
            layout.nodes[node_id] = node
            if item.action is not None and item.enabled and not item.separator:
                layout.actions[node_id] = item.action
            out.append(node)
        return tuple(out)

    layout.root = MenuNode(0, layout.root.props, nodes(items, "root"))
    layout.nodes[0] = layout.root
    ids.keep_only(used)
    return layout


def node_value(node: MenuNode, depth: int, names: Sequence[str]) -> tuple[int, Props, list[Variant]]:
    """A node as GetLayout returns it: (id, properties, children as variants), `depth` levels deep."""
    props = {k: v for k, v in node.props.items() if not names or k in names}
    children: list[Variant] = []
    if depth != 0:
        children = [(NODE_SIGNATURE, node_value(c, depth - 1, names)) for c in node.children]
    return node.id, props, children


def icon_pixmaps(
    state: InstanceState, progress: float | None, sizes: Sequence[int] = ICON_SIZES
) -> list[tuple[int, int, bytes]]:
    """IconPixmap's a(iiay): ARGB32 pixels in network byte order (bytes A, R, G, B), one per size."""
    from PIL import Image

    out = []
    for size in sizes:
        img = render_icon(state, size, progress).convert("RGBA")
        r, g, b, a = img.split()
        out.append((size, size, Image.merge("RGBA", (a, r, g, b)).tobytes()))
    return out


# ---- the view ----------------------------------------------------------------------------------------

# What Introspect describes: {interface: (properties, methods (in, out signatures), signals)}.
INTERFACES: dict[str, tuple[dict[str, str], dict[str, tuple[str, str]], dict[str, str]]] = {
    ITEM_INTERFACE: (
        {"Category": "s", "Id": "s", "Title": "s", "Status": "s", "WindowId": "i", "IconThemePath": "s",
         "IconName": "s", "IconPixmap": "a(iiay)", "OverlayIconName": "s", "OverlayIconPixmap": "a(iiay)",
         "AttentionIconName": "s", "AttentionIconPixmap": "a(iiay)", "AttentionMovieName": "s",
         "ToolTip": "(sa(iiay)ss)", "ItemIsMenu": "b", "Menu": "o"},
        {"ContextMenu": ("ii", ""), "Activate": ("ii", ""), "SecondaryActivate": ("ii", ""), "Scroll": ("is", "")},
        {"NewTitle": "", "NewIcon": "", "NewAttentionIcon": "", "NewOverlayIcon": "", "NewToolTip": "",
         "NewStatus": "s"},
    ),
    MENU_INTERFACE: (
        {"Version": "u", "TextDirection": "s", "Status": "s", "IconThemePath": "as"},
        {"GetLayout": ("iias", "u" + NODE_SIGNATURE), "GetGroupProperties": ("aias", "a(ia{sv})"),
         "GetProperty": ("is", "v"), "Event": ("isvu", ""), "EventGroup": ("a(isvu)", "ai"),
         "AboutToShow": ("i", "b"), "AboutToShowGroup": ("ai", "aiai")},
        {"ItemsPropertiesUpdated": "a(ia{sv})a(ias)", "LayoutUpdated": "ui", "ItemActivationRequested": "iu"},
    ),
    PROPERTIES: ({}, {"Get": ("ss", "v"), "GetAll": ("s", "a{sv}")}, {}),
    INTROSPECTABLE: ({}, {"Introspect": ("", "s")}, {}),
    PEER: ({}, {"Ping": ("", ""), "GetMachineId": ("", "s")}, {}),
}


def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            continue
    return ""


def split_signature(signature: str) -> list[str]:
    """'iias' -> ['i', 'i', 'as']: one complete type per argument."""
    out, depth, current = [], 0, ""
    for char in signature:
        current += char
        depth += char in "({"
        depth -= char in ")}"
        if depth == 0 and char != "a":
            out.append(current)
            current = ""
    return out


def introspection_xml() -> str:
    def args(signature: str, direction: str | None = None) -> str:
        where = f' direction="{direction}"' if direction else ""
        return "".join(f'<arg type="{t}"{where}/>' for t in split_signature(signature))

    lines = ['<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"',
             ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">', "<node>"]
    for name, (props, methods, signals) in INTERFACES.items():
        lines.append(f' <interface name="{name}">')
        lines += [f'  <property name="{p}" type="{t}" access="read"/>' for p, t in props.items()]
        lines += [f'  <method name="{m}">{args(i, "in")}{args(o, "out")}</method>' for m, (i, o) in methods.items()]
        lines += [f'  <signal name="{s}">{args(t)}</signal>' for s, t in signals.items()]
        lines.append(" </interface>")
    return "\n".join([*lines, "</node>", ""])


class DBusError(Exception):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name


class SniView:
    """TrayView published as a StatusNotifierItem. Setters may be called from any thread."""

    backend = "sni"

    def __init__(self, sizes: Sequence[int] = ICON_SIZES) -> None:
        self.on_click: Callable[[MenuAction], None] = lambda action: None
        self.bus_name = f"org.kde.StatusNotifierItem-{os.getpid()}-1"
        self._sizes = tuple(sizes)
        self._lock = threading.Lock()  # guards the published state below
        self._pixmaps = icon_pixmaps(InstanceState.OFFLINE, None, self._sizes)
        self._tooltip = APP_TITLE
        self._ids = MenuIds()
        self._layout = build_layout((), self._ids)
        self._revision = 1
        self._conn: Any = None
        self._stopped = threading.Event()
        self._pending: dict[int, Callable[[Any], None]] = {}  # serial -> reply handler (run thread)
        self._retry_at: float | None = None  # when to try registering again (run thread)
        self._retries = 0
        self.registered = threading.Event()  # the watcher accepted us: a host shows the icon

    # ---- TrayView -------------------------------------------------------------------------------

    def set_icon(self, state: InstanceState, progress: float | None) -> None:
        pixmaps = icon_pixmaps(state, progress, self._sizes)
        with self._lock:
            self._pixmaps = pixmaps
        self._signal(ITEM_PATH, ITEM_INTERFACE, "NewIcon")

    def set_tooltip(self, text: str) -> None:
        with self._lock:
            self._tooltip = text
        self._signal(ITEM_PATH, ITEM_INTERFACE, "NewToolTip")

    def set_menu(self, items: tuple[MenuItem, ...]) -> None:
        from lmstudio_tray.tray.desktop import dump_menu

        with self._lock:
            self._layout = build_layout(items, self._ids)
            self._revision += 1
            revision = self._revision
        log.debug("tray: menu revision %s", revision)
        self._signal(MENU_PATH, MENU_INTERFACE, "LayoutUpdated", "ui", (revision, 0))
        dump_menu(items)

    def copy_text(self, text: str) -> bool:
        from lmstudio_tray.tray.desktop import copy_to_clipboard

        return copy_to_clipboard(text)

    def open_path(self, path: str) -> bool:
        from lmstudio_tray.tray.desktop import open_with_desktop

        return open_with_desktop(path)

    def quit(self) -> None:
        self._stopped.set()
        conn = self._conn
        if conn is not None:
            conn.interrupt()

    # ---- the loop -------------------------------------------------------------------------------

    def run(self, setup: Callable[[SniView], None] | None = None, connect_timeout: float = 5.0) -> None:
        """Publish the item and answer the host until `quit()`; `setup` runs in a daemon thread."""
        from jeepney.bus_messages import MatchRule, message_bus  # type: ignore[import-untyped]
        from jeepney.io.blocking import prep_socket  # type: ignore[import-untyped]
        from jeepney.io.threading import DBusConnection, ReceiveStopped  # type: ignore[import-untyped]

        conn = DBusConnection(prep_socket(session_bus_target(), False, timeout=connect_timeout))
        self._conn = conn
        try:
            # Pipelined: the bus daemon handles them in order, and replies come back through the loop.
            self._call(message_bus.Hello(), lambda msg: setattr(conn, "unique_name", msg.body[0]))
            self._call(message_bus.RequestName(self.bus_name, 4), self._named)  # 4: do not queue
            watcher_back = MatchRule(type="signal", sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
                                     member="NameOwnerChanged", path="/org/freedesktop/DBus")
            watcher_back.add_arg_condition(0, WATCHER)
            self._call(message_bus.AddMatch(watcher_back))
            self._register()
            if setup is not None:
                threading.Thread(target=setup, args=(self,), name="tray-setup", daemon=True).start()
            while not self._stopped.is_set():
                # Blocks in select() on the socket and the stop pipe; a timeout only while a registration
                # retry is due, so an idle tray never wakes up.
                timeout = None if self._retry_at is None else max(0.0, self._retry_at - time.monotonic())
                try:
                    msg = conn.receive(timeout=timeout)
                except ReceiveStopped:
                    break
                except TimeoutError:
                    self._retry_at = None
                    self._register()
                    continue
                try:
                    self._dispatch(msg)
                except Exception:
                    log.exception("tray: could not handle a D-Bus message")
        finally:
            self._conn = None
            conn.close()

    def _named(self, msg: Any) -> None:
        if msg.body and msg.body[0] not in (1, 4):  # primary owner / already owner
            log.warning("tray: could not own the bus name %s (reply %s)", self.bus_name, msg.body[0])

    def _register(self) -> None:
        from jeepney import DBusAddress, new_method_call  # type: ignore[import-untyped]

        watcher = DBusAddress(WATCHER_PATH, bus_name=WATCHER, interface=WATCHER)
        self._call(new_method_call(watcher, "RegisterStatusNotifierItem", "s", (self.bus_name,)),
                   self._registered)

    def _registered(self, msg: Any) -> None:
        from jeepney import MessageType

        if msg.header.message_type == MessageType.error:
            self.registered.clear()
            reason = msg.body[0] if msg.body else "no reason"
            # A watcher that has just taken its name may not serve its object yet: try again a few times.
            if self._retries < len(REGISTER_RETRIES):
                self._retry_at = time.monotonic() + REGISTER_RETRIES[self._retries]
                self._retries += 1
                log.debug("tray: registration refused (%s); trying again", reason)
                return
            log.warning("tray: no StatusNotifierItem host accepted the icon yet (%s); it appears when "
                        "one starts. Notifications keep working.", reason)
            return
        self._retries = 0
        if not self.registered.is_set():
            self.registered.set()
            log.info("tray: icon registered with the StatusNotifierItem host")

    def _call(self, msg: Any, on_reply: Callable[[Any], None] | None = None) -> None:
        serial = next(self._conn.outgoing_serial)
        if on_reply is not None:
            self._pending[serial] = on_reply
        self._conn.send(msg, serial=serial)

    def _signal(self, path: str, interface: str, name: str, signature: str | None = None,
                body: tuple[Any, ...] = ()) -> None:
        conn = self._conn
        if conn is None:
            return  # not published yet: the host reads the current state when it first asks
        from jeepney import DBusAddress, new_signal

        try:
            conn.send(new_signal(DBusAddress(path, interface=interface), name, signature, body))
        except OSError as exc:
            log.debug("tray: could not send %s: %s", name, exc)

    # ---- incoming messages (run thread) ---------------------------------------------------------

    def _dispatch(self, msg: Any) -> None:
        from jeepney import HeaderFields, MessageType

        kind = msg.header.message_type
        fields = msg.header.fields
        if kind in (MessageType.method_return, MessageType.error):
            handler = self._pending.pop(fields.get(HeaderFields.reply_serial, -1), None)
            if handler is not None:
                handler(msg)
            return
        if kind == MessageType.signal:
            if fields.get(HeaderFields.member) == "NameOwnerChanged" and msg.body[0] == WATCHER:
                if msg.body[2]:
                    log.info("tray: a StatusNotifierWatcher appeared; registering the icon with it")
                    self._retries = 0
                    self._register()
                else:
                    self.registered.clear()
                    log.info("tray: the StatusNotifierWatcher left; the icon returns when it does")
            return
        if kind == MessageType.method_call:
            self._answer(msg)

    def _answer(self, msg: Any) -> None:
        from jeepney import HeaderFields, new_error, new_method_return
        from jeepney.low_level import MessageFlag  # type: ignore[import-untyped]

        fields = msg.header.fields
        path = fields.get(HeaderFields.path)
        interface = fields.get(HeaderFields.interface)
        member = fields.get(HeaderFields.member, "")
        try:
            signature, body = self._method(path, interface, member, tuple(msg.body))
            reply = new_method_return(msg, signature, body)
        except DBusError as exc:
            reply = new_error(msg, exc.name, "s", (str(exc),))
        if not msg.header.flags & MessageFlag.no_reply_expected:
            self._conn.send(reply)

    def _method(self, path: str, interface: str | None, member: str,
                args: tuple[Any, ...]) -> tuple[str | None, tuple[Any, ...]]:
        if interface == PEER:  # every object answers it (libdbus and GDBus do so for their services)
            if member == "Ping":
                return None, ()
            if member == "GetMachineId":
                return "s", (machine_id(),)
        if path not in (ITEM_PATH, MENU_PATH, "/"):
            raise DBusError("org.freedesktop.DBus.Error.UnknownObject", f"no object at {path}")
        if member == "Introspect" and interface in (INTROSPECTABLE, None):
            if path == "/":
                return "s", ('<node><node name="StatusNotifierItem"/><node name="MenuBar"/></node>',)
            return "s", (introspection_xml(),)
        if interface in (PROPERTIES, None) and member in ("Get", "GetAll"):
            props = self._properties(path, args[0])
            if member == "GetAll":
                return "a{sv}", (props,)
            if args[1] not in props:
                raise DBusError("org.freedesktop.DBus.Error.UnknownProperty", f"no property {args[1]}")
            return "v", (props[args[1]],)
        clicks = ("ContextMenu", "Activate", "SecondaryActivate", "Scroll")
        if path == ITEM_PATH and interface in (ITEM_INTERFACE, None) and member in clicks:
            return None, ()  # ItemIsMenu: the host opens the menu itself
        if path == MENU_PATH and interface in (MENU_INTERFACE, None):
            return self._menu_method(member, args)
        raise DBusError("org.freedesktop.DBus.Error.UnknownMethod", f"no method {interface}.{member} at {path}")

    def _properties(self, path: str, interface: str) -> Props:
        if path == ITEM_PATH and interface == ITEM_INTERFACE:
            with self._lock:
                pixmaps, tip = self._pixmaps, self._tooltip
            return {
                "Category": ("s", "ApplicationStatus"),
                "Id": ("s", APP_ID),
                "Title": ("s", APP_TITLE),
                "Status": ("s", "Active"),
                "WindowId": ("i", 0),
                "IconThemePath": ("s", ""),
                "IconName": ("s", ""),
                "IconPixmap": ("a(iiay)", pixmaps),
                "OverlayIconName": ("s", ""),
                "OverlayIconPixmap": ("a(iiay)", []),
                "AttentionIconName": ("s", ""),
                "AttentionIconPixmap": ("a(iiay)", []),
                "AttentionMovieName": ("s", ""),
                "ToolTip": ("(sa(iiay)ss)", ("", [], APP_TITLE, tooltip_body(tip))),
                "ItemIsMenu": ("b", True),
                "Menu": ("o", MENU_PATH),
            }
        if path == MENU_PATH and interface == MENU_INTERFACE:
            return {
                "Version": ("u", 3),
                "TextDirection": ("s", "ltr"),
                "Status": ("s", "normal"),
                "IconThemePath": ("as", []),
            }
        raise DBusError("org.freedesktop.DBus.Error.UnknownInterface", f"no interface {interface} at {path}")

    def _menu_method(self, member: str, args: tuple[Any, ...]) -> tuple[str | None, tuple[Any, ...]]:
        with self._lock:
            layout, revision = self._layout, self._revision
        if member == "GetLayout":
            parent, depth, names = args
            node = layout.nodes.get(parent)
            if node is None:
                raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", f"no menu item {parent}")
            return "u" + NODE_SIGNATURE, (revision, node_value(node, depth, names))
        if member == "GetGroupProperties":
            ids, names = args
            found = [layout.nodes[i] for i in (ids or layout.nodes) if i in layout.nodes]
            return "a(ia{sv})", ([(n.id, node_value(n, 0, names)[1]) for n in found],)
        if member == "GetProperty":
            node = layout.nodes.get(args[0])
            if node is None or args[1] not in node.props:
                raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", f"no property {args[1]} on {args[0]}")
            return "v", (node.props[args[1]],)
        if member == "Event":
            self._event(layout, args[0], args[1])
            return None, ()
        if member == "EventGroup":
            missing = [e[0] for e in args[0] if e[0] not in layout.nodes]
            for event in args[0]:
                self._event(layout, event[0], event[1])
            return "ai", (missing,)
        if member == "AboutToShow":
            return "b", (False,)
        if member == "AboutToShowGroup":
            return "aiai", ([], [i for i in args[0] if i not in layout.nodes])
        raise DBusError("org.freedesktop.DBus.Error.UnknownMethod", f"no method {member}")

    def _event(self, layout: MenuLayout, item: int, event: str) -> None:
        action = layout.actions.get(item)
        log.debug("tray: menu item %s %s (%s)", item, event, action.kind.value if action else "no action")
        if event == "clicked" and action is not None:
            self.on_click(action)


__all__ = [
    "MenuIds",
    "MenuLayout",
    "MenuNode",
    "SniView",
    "build_layout",
    "escape_label",
    "icon_pixmaps",
    "session_bus_target",
]
