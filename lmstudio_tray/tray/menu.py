"""The tray menu as plain data, built from a status snapshot: no toolkit, no IO, no clock.

`build_menu` is the whole menu logic; the pystray adapter only renders the tree, and the presenter
turns a clicked item's `MenuAction` into a core action. Tests therefore need no display.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from lmstudio_tray.core.models import (
    BenchPhase,
    BenchState,
    DownloadState,
    HubState,
    HubStatus,
    InstanceSnapshot,
    InstanceState,
    LoadProgress,
    ModelInfo,
    ModelType,
    StatusReport,
)
from lmstudio_tray.core.support.units import format_duration, format_size

APP_TITLE = "LM Studio Tray"
TOOLTIP_MAX = 127  # Windows truncates tray tooltips at 128 characters

STATE_WORDS = {
    InstanceState.OFFLINE: "Offline",
    InstanceState.AUTH_FAILED: "API token needed",
    InstanceState.IDLE: "Running, no model loaded",
    InstanceState.READY: "Ready",
    InstanceState.LOADING: "Loading",
    InstanceState.ERROR: "Error",
}

# The context sizes "Load model" offers under a model's maximum (which it always offers too).
CONTEXT_SIZES = (4096, 8192, 16384, 32768, 65536, 131072)
DEFAULT_CONTEXT_LABEL = "LM Studio's default"

TYPE_GROUPS = ((ModelType.LLM, "Language models"), (ModelType.VLM, "Vision models"),
               (ModelType.EMBEDDING, "Embedding models"))


class ActionKind(str, Enum):
    LOAD = "load"
    SWITCH = "switch"
    UNLOAD = "unload"
    UNLOAD_ALL = "unload_all"
    SERVER_START = "server_start"
    SERVER_STOP = "server_stop"
    START_LMSTUDIO = "start_lmstudio"
    CANCEL_LOAD = "cancel_load"
    COPY_ID = "copy_id"
    TOGGLE_NOTIFICATIONS = "toggle_notifications"
    TOGGLE_AUTOSTART = "toggle_autostart"
    TOGGLE_NOTIFY_CATEGORY = "toggle_notify_category"
    SET_VALIDATION = "set_validation"
    USE_PROFILE = "use_profile"
    USE_INSTANCE = "use_instance"
    SHOW_TIP = "show_tip"
    OPEN_DASHBOARD = "open_dashboard"
    OPEN_CONFIG = "open_config"
    OPEN_LOGS = "open_logs"
    ABOUT = "about"
    QUIT = "quit"


@dataclass(frozen=True)
class MenuAction:
    kind: ActionKind
    instance: str | None = None
    target: str | None = None  # model key or loaded instance id
    context_length: int | None = None  # LOAD: the context to load with; None: LM Studio's default


@dataclass(frozen=True)
class MenuItem:
    label: str
    action: MenuAction | None = None
    enabled: bool = True
    checked: bool | None = None  # None: not a check item
    children: tuple[MenuItem, ...] = ()
    separator: bool = False
    radio: bool = False  # a checked item drawn as one choice of several

    @property
    def is_submenu(self) -> bool:
        return bool(self.children)

    def find(self, label: str) -> MenuItem:
        """The first descendant whose label starts with `label` (for tests and the adapter)."""
        return find(self.children, label)


SEPARATOR = MenuItem("", separator=True)


@dataclass(frozen=True)
class MenuPrefs:
    notifications: bool = True
    autostart: bool | None = None  # None: autostart is not available here, so the item is hidden
    config_path: str | None = None
    logs_path: str | None = None
    # from the config (tray/preferences.py); empty tuples hide their submenus
    notify_categories: tuple[tuple[str, bool], ...] = ()
    validation: str | None = None  # the validation choice the policy matches; None: a custom policy
    validation_choices: tuple[str, ...] = ()
    profile: str | None = None
    profiles: tuple[tuple[str, str], ...] = ()  # (name, description)
    instances: tuple[str, ...] = ()  # configured instances: more than one shows the "Active instance" choice
    active_instance: str | None = None
    shared_instances: tuple[str, ...] = ()  # shared through the team profile: unload/switch may be refused
    team: str | None = None  # the team profile's name
    dashboard: bool = False  # the tray can open the local dashboard (shows "Open dashboard")
    busy_minutes: float = 0.0  # the team's busy window: another member's use within it marks the model in use


@dataclass(frozen=True)
class MenuContext:
    """Facts the menu needs that are not in the snapshot."""

    prefs: MenuPrefs = field(default_factory=MenuPrefs)
    can_cancel: Callable[[str, str], bool] = lambda instance, model: False
    busy: frozenset[tuple[str, str]] = frozenset()  # (instance, model) with a click still being handled
    tips: tuple[str, ...] = ()  # suggestions from the usage analytics, each with the numbers behind it
    coding_pick: str | None = None  # "Fastest here for coding: X (41 tok/s, 3/3 checks)", from the coding bench
    # this machine's LM Studio (core/control/server_control.py), for the local instances: its server's
    # settings in words ("port 1234, this machine only, CORS off"), and False when its service is not running
    server_line: str | None = None
    lmstudio_running: bool | None = None
    # other members' models in use on shared instances, as the team hub last said: instance -> model ->
    # ((member, seconds since their last use), ...), already cut to the busy window (`in_use_by_others`)
    team_uses: Mapping[str, Mapping[str, tuple[tuple[str, float], ...]]] = field(default_factory=dict)


TeamUses = Mapping[str, Mapping[str, tuple[tuple[str, float], ...]]]


def in_use_by_others(others: Mapping[str, Mapping[str, list[tuple[str, float]]]], shared: tuple[str, ...],
                     window_s: float, now: float) -> TeamUses:
    """The other members' uses (instance -> model -> [(member, wall time of the last use)], `TeamSync.others`) on
    `shared` instances within `window_s` seconds of `now`, as ages, the latest first."""
    out: dict[str, dict[str, tuple[tuple[str, float], ...]]] = {}
    for instance in shared:
        for model, seen in others.get(instance, {}).items():
            recent = sorted((max(0.0, now - t), member) for member, t in seen if now - t < window_s)
            if recent:
                out.setdefault(instance, {})[model] = tuple((member, age) for age, member in recent)
    return out


def age_text(seconds: float) -> str:
    """"42 s ago", "2 min ago", "1 h 05 min ago": how long ago, at the menu's precision."""
    if seconds < 60:
        return f"{max(0, int(seconds))} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{format_duration(seconds)} ago"


def in_use_text(ctx: MenuContext, instance: str, model: str) -> str:
    """" — in use by bob (2 min ago)" when other members used `model` on `instance` lately, else ""."""
    seen = ctx.team_uses.get(instance, {}).get(model, ())
    if not seen:
        return ""
    return " — in use by " + ", ".join(f"{member} ({age_text(age)})" for member, age in seen)


HUB_WORDS = {
    HubState.CONNECTED: "connected",
    HubState.UNREACHABLE: "unreachable, only this machine's uses are known",
    HubState.REFUSED: "refused",
}


def hub_line(status: HubStatus) -> str:
    """The tray's team hub line: connected (as whom), unreachable, or refused with the reason."""
    words = HUB_WORDS.get(status.state, status.state.value)
    if status.state is HubState.CONNECTED and status.member:
        words += f" as {status.member}"
    elif status.state is HubState.REFUSED and status.message:
        words += f": {_short(status.message, 90)}"
    return f"Team hub: {words}"


def find(items: tuple[MenuItem, ...], label: str) -> MenuItem:
    for item in items:
        if item.label.startswith(label) and not item.separator:
            return item
    for item in items:
        if item.children:
            try:
                return find(item.children, label)
            except KeyError:
                pass
    raise KeyError(label)


def flatten(items: tuple[MenuItem, ...]) -> list[MenuItem]:
    out: list[MenuItem] = []
    for item in items:
        out.append(item)
        out.extend(flatten(item.children))
    return out


# ---- text ------------------------------------------------------------------------------------------


def context_text(length: int | None) -> str:
    return f"{length:,} ctx" if length else ""


def load_text(load: LoadProgress) -> str:
    parts = []
    if load.progress is not None:
        parts.append(f"{load.progress * 100:.0f} %")
    if load.eta_seconds is not None:
        approx = "about " if load.estimated else ""
        parts.append(f"{approx}{format_duration(load.eta_seconds)} left")
    return f"Loading {load.model}" + (f" — {', '.join(parts)}" if parts else "…")


def bench_text(bench: BenchState, *, instance: bool = False) -> str:
    """One bench in progress: the model it is at and the step of all (models × runs), e.g. "Benchmarking qwen… 2/6"."""
    where = f" on {bench.instance}" if instance else ""
    phase = {BenchPhase.LOADING: " (loading)", BenchPhase.RESTORING: " (putting back what was loaded)"}.get(
        bench.phase, "") if bench.phase else ""
    return f"Benchmarking {bench.model}{where}… {bench.step}/{bench.total}{phase}"


def download_text(download: DownloadState, *, instance: bool = False) -> str:
    """One download in progress: percent, size and LM Studio's speed (or that it is paused there)."""
    where = f" on {download.instance}" if instance else ""
    parts = []
    if download.fraction is not None:
        parts.append(f"{download.fraction * 100:.0f} % of {format_size(download.total_bytes)}")
    if download.paused:
        parts.append("paused in LM Studio")
    elif download.bytes_per_second:
        parts.append(f"{format_size(int(download.bytes_per_second))}/s")
    return f"Downloading {download.model}{where}" + (f" — {', '.join(parts)}" if parts else "…")


def state_line(snap: InstanceSnapshot) -> str:
    words = STATE_WORDS[snap.state]
    if snap.state is InstanceState.READY:
        n = sum(len(m.instances) for m in snap.loaded_models)  # two copies of one model count twice
        words += f" · {n} model{'s' if n != 1 else ''} loaded"
    elif snap.state is InstanceState.LOADING and snap.loads:
        words = load_text(snap.loads[0])
    elif snap.state in (InstanceState.ERROR, InstanceState.OFFLINE, InstanceState.AUTH_FAILED) and snap.error:
        words += f" ({_short(snap.error)})"
    return f"{snap.name}: {words}"


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_label(model: ModelInfo) -> str:
    size = format_size(model.size_bytes)
    name = model.display_name or model.key
    if name != model.key:
        name = f"{name} ({model.key})"
    return f"{name} — {size}" if size else name


def tooltip(report: StatusReport) -> str:
    lines = [APP_TITLE + (f" · profile {report.profile}" if report.profile else "")]
    for snap in report.instances:
        loaded = ", ".join(
            f"{inst.id}" + (f" ({inst.context_length // 1024}k)" if inst.context_length else "")
            for m in snap.loaded_models
            for inst in m.instances
        )
        words = STATE_WORDS[snap.state].lower()
        lines.append(f"{snap.name}: {loaded}" if loaded else f"{snap.name}: {words}")
    if not report.instances:
        lines.append("no instances configured")
    text = "\n".join(lines)
    return text if len(text) <= TOOLTIP_MAX else text[: TOOLTIP_MAX - 1] + "…"


# ---- structure -------------------------------------------------------------------------------------


def build_menu(report: StatusReport, ctx: MenuContext | None = None) -> tuple[MenuItem, ...]:
    ctx = ctx or MenuContext()
    items: list[MenuItem] = []
    if not report.instances:
        items.append(MenuItem("No LM Studio instance configured", enabled=False))
    elif len(report.instances) == 1:
        items.extend(instance_section(report.instances[0], ctx))
    else:
        for snap in report.instances:
            label = state_line(snap)
            if snap.name in ctx.prefs.shared_instances:
                label += "  (shared)"
            if snap.name == report.active:
                label += "  (active)"
            items.append(MenuItem(label, children=instance_section(snap, ctx, header=False)))
    # downloads in progress, one line each (they are about the machine, not one model list)
    many = len(report.instances) > 1
    if report.downloads:
        items.append(SEPARATOR)
    items.extend(MenuItem(download_text(d, instance=many), enabled=False) for d in report.downloads)
    if report.benches and not report.downloads:
        items.append(SEPARATOR)
    items.extend(MenuItem(bench_text(b, instance=many), enabled=False) for b in report.benches)
    items.append(SEPARATOR)
    if report.team_hub is not None:
        items.append(MenuItem(hub_line(report.team_hub), enabled=False))
    items.extend(global_section(ctx.prefs, ctx.tips, ctx.coding_pick))
    return tuple(items)


def instance_section(snap: InstanceSnapshot, ctx: MenuContext, *, header: bool = True) -> tuple[MenuItem, ...]:
    name = snap.name
    online = snap.state in (InstanceState.IDLE, InstanceState.READY, InstanceState.LOADING)
    items: list[MenuItem] = []
    shared = name in ctx.prefs.shared_instances
    if header:
        items.append(MenuItem(state_line(snap) + ("  (shared)" if shared else ""), enabled=False))
    elif snap.error and not online:
        items.append(MenuItem(_short(snap.error, 80), enabled=False))
    if snap.url:
        items.append(MenuItem(snap.url, enabled=False))
    if shared:
        team = f"team {ctx.prefs.team!r}" if ctx.prefs.team else "your team"
        items.append(MenuItem(f"Shared with {team}: models in use are not unloaded without asking", enabled=False))

    loaded = [(m, inst) for m in snap.loaded_models for inst in m.instances]
    for m, inst in loaded:
        ctx_text = context_text(inst.context_length)
        items.append(MenuItem(f"● {inst.id}" + (f" · {ctx_text}" if ctx_text else "") + in_use_text(ctx, name, m.key),
                              enabled=False))

    for load in snap.loads:
        items.append(MenuItem(load_text(load), enabled=False))
        can_cancel = online and ctx.can_cancel(name, load.model)
        items.append(
            MenuItem(
                f"Cancel loading {load.model}" if can_cancel else f"Cancel loading {load.model} (not possible)",
                MenuAction(ActionKind.CANCEL_LOAD, name, load.model),
                enabled=can_cancel,
            )
        )

    items.append(SEPARATOR)
    loading_keys = {load.model for load in snap.loads}
    items.append(_model_picker("Load model", ActionKind.LOAD, snap, online, loading_keys, ctx))
    items.append(
        _model_picker("Switch to", ActionKind.SWITCH, snap, online and bool(loaded), loading_keys, ctx)
    )
    unload_children = tuple(
        MenuItem(
            inst.id + (f" · {context_text(inst.context_length)}" if inst.context_length else "")
            + in_use_text(ctx, name, m.key),
            MenuAction(ActionKind.UNLOAD, name, inst.id),
            enabled=online,
        )
        for m, inst in loaded
    )
    items.append(
        MenuItem("Unload", children=unload_children, enabled=online and bool(loaded))
        if unload_children
        else MenuItem("Unload", enabled=False)
    )
    items.append(MenuItem("Unload all", MenuAction(ActionKind.UNLOAD_ALL, name), enabled=online and bool(loaded)))

    copy_ids = sorted({inst.id for _, inst in loaded} | {m.key for m, _ in loaded})
    items.append(
        MenuItem(
            "Copy model id",
            children=tuple(MenuItem(i, MenuAction(ActionKind.COPY_ID, name, i)) for i in copy_ids),
        )
        if copy_ids
        else MenuItem("Copy model id", enabled=False)
    )

    server = _server_item(snap, online, ctx)
    if server is not None:
        items.append(SEPARATOR)
        if ctx.server_line and not snap.remote:
            items.append(MenuItem(f"Server: {ctx.server_line}", enabled=False))
        items.append(server)
    return tuple(items)


def _server_item(snap: InstanceSnapshot, online: bool, ctx: MenuContext) -> MenuItem | None:
    if not snap.can_control_server and snap.remote:
        return None  # nothing here can reach a remote server's process: do not offer it
    controllable = snap.can_control_server
    if snap.state is InstanceState.OFFLINE and not snap.remote and ctx.lmstudio_running is False:
        # nothing runs at all: `lms daemon up` starts llmster (or the desktop app), then its server
        label = "Start LM Studio" if controllable else "Start LM Studio (needs the lms CLI)"
        return MenuItem(label, MenuAction(ActionKind.START_LMSTUDIO, snap.name), enabled=controllable)
    if online or snap.state is InstanceState.AUTH_FAILED or snap.state is InstanceState.ERROR:
        label = "Stop server" if controllable else "Stop server (needs the lms CLI)"
        return MenuItem(label, MenuAction(ActionKind.SERVER_STOP, snap.name), enabled=controllable)
    label = "Start server" if controllable else "Start server (needs the lms CLI)"
    return MenuItem(label, MenuAction(ActionKind.SERVER_START, snap.name), enabled=controllable)


def _model_picker(
    title: str,
    kind: ActionKind,
    snap: InstanceSnapshot,
    enabled: bool,
    loading: set[str],
    ctx: MenuContext,
) -> MenuItem:
    groups: list[MenuItem] = []
    known_types = {t for t, _ in TYPE_GROUPS}
    for type_key, group_title in (*TYPE_GROUPS, (None, "Other models")):
        models = sorted(
            (m for m in snap.models
             if (_group_of(m) is type_key if type_key is not None else _group_of(m) not in known_types)),
            key=lambda m: (m.display_name or m.key).lower(),
        )
        if kind is ActionKind.SWITCH:
            models = [m for m in models if m.type is not ModelType.EMBEDDING]  # switching means "the chat model"
        if not models:
            continue
        children = tuple(
            MenuItem(
                model_label(m) + in_use_text(ctx, snap.name, m.key),
                None if kind is ActionKind.LOAD else MenuAction(kind, snap.name, m.key),
                enabled=enabled and m.key not in loading and (snap.name, m.key) not in ctx.busy,
                checked=m.loaded,
                children=context_choices(snap.name, m) if kind is ActionKind.LOAD else (),
            )
            for m in models
        )
        groups.append(MenuItem(group_title, children=children))
    if not groups:
        return MenuItem(title, enabled=False)
    if len(groups) == 1:
        # One group: skip the extra level, people should not hunt for their only models.
        return MenuItem(title, children=groups[0].children, enabled=enabled)
    return MenuItem(title, children=tuple(groups), enabled=enabled)


def context_choices(instance: str, model: ModelInfo) -> tuple[MenuItem, ...]:
    """A model's entries under "Load model": LM Studio's default, the common sizes below its maximum, the maximum."""
    items = [MenuItem(DEFAULT_CONTEXT_LABEL, MenuAction(ActionKind.LOAD, instance, model.key))]
    top = model.max_context_length
    if top:  # no maximum known: only the default is sure to be valid
        items += [MenuItem(f"{size // 1024}k", MenuAction(ActionKind.LOAD, instance, model.key, size))
                  for size in CONTEXT_SIZES if size < top]
        items.append(MenuItem(f"Maximum ({top:,})", MenuAction(ActionKind.LOAD, instance, model.key, top)))
    return tuple(items)


def _group_of(model: ModelInfo) -> ModelType:
    # LM Studio 0.4 reports vision models as type "llm" with a "vision" capability.
    return ModelType.VLM if model.type is ModelType.LLM and "vision" in model.capabilities else model.type


def global_section(prefs: MenuPrefs, tips: tuple[str, ...] = (), coding_pick: str | None = None
                   ) -> tuple[MenuItem, ...]:
    items = [
        MenuItem("Notifications", MenuAction(ActionKind.TOGGLE_NOTIFICATIONS), checked=prefs.notifications),
    ]
    if coding_pick:  # first and whole (it is short); the analytics' tip saying the same is not repeated
        tips = (coding_pick, *(t for t in tips if not t.startswith(coding_pick)))
    if tips:  # a click shows the whole tip: menu labels are cut short
        items.insert(0, MenuItem(f"Tips ({len(tips)})", children=tuple(
            MenuItem(_short(tip, 100 if tip == coding_pick else 70), MenuAction(ActionKind.SHOW_TIP, target=tip))
            for tip in tips
        )))
    items.extend(preference_items(prefs))
    if prefs.autostart is not None:
        items.append(MenuItem("Start at login", MenuAction(ActionKind.TOGGLE_AUTOSTART), checked=prefs.autostart))
    if prefs.dashboard:
        items.append(MenuItem("Open dashboard", MenuAction(ActionKind.OPEN_DASHBOARD)))
    items += [
        MenuItem("Open config file", MenuAction(ActionKind.OPEN_CONFIG), enabled=prefs.config_path is not None),
        MenuItem("Open logs folder", MenuAction(ActionKind.OPEN_LOGS), enabled=prefs.logs_path is not None),
        MenuItem(f"About {APP_TITLE}", MenuAction(ActionKind.ABOUT)),
        SEPARATOR,
        MenuItem("Quit", MenuAction(ActionKind.QUIT)),
    ]
    return tuple(items)


NOTIFY_CATEGORY_WORDS = {
    "loading": "Model loading",
    "loaded": "Model loaded",
    "load_failed": "Load failed",
    "offline": "Instance offline",
    "online": "Back online",
    "auth": "API token problems",
    "server": "Server started or stopped",
    "session": "OpenCode session failing",
    "downloaded": "Download completed",
    "download_failed": "Download failed",
    "bench": "Benchmark finished",
}
VALIDATION_WORDS = {
    "default": "Default (block what cannot answer)",
    "strict": "Strict (only loaded models)",
    "jit-friendly": "JIT-friendly (load on demand)",
}


def preference_items(prefs: MenuPrefs) -> tuple[MenuItem, ...]:
    """Notification types, validation policy and profile: each click is saved to the config file."""
    items: list[MenuItem] = []
    if prefs.notify_categories:
        items.append(MenuItem("Notification types", enabled=prefs.notifications, children=tuple(
            MenuItem(NOTIFY_CATEGORY_WORDS.get(name, name), MenuAction(ActionKind.TOGGLE_NOTIFY_CATEGORY, target=name),
                     checked=on, enabled=prefs.notifications)
            for name, on in prefs.notify_categories
        )))
    if prefs.validation_choices:
        choices = [
            MenuItem(VALIDATION_WORDS.get(name, name), MenuAction(ActionKind.SET_VALIDATION, target=name),
                     checked=prefs.validation == name, radio=True)
            for name in prefs.validation_choices
        ]
        if prefs.validation is None:
            choices.append(MenuItem("Custom (set in the config file)", checked=True, radio=True, enabled=False))
        items.append(MenuItem("OpenCode validation", children=tuple(choices)))
    if prefs.profiles:
        choices = [MenuItem("No profile", MenuAction(ActionKind.USE_PROFILE, target=""),
                            checked=prefs.profile is None, radio=True)]
        choices += [
            MenuItem(name + (f" — {_short(desc, 40)}" if desc else ""), MenuAction(ActionKind.USE_PROFILE, target=name),
                     checked=prefs.profile == name, radio=True)
            for name, desc in prefs.profiles
        ]
        items.append(MenuItem(f"Profile: {prefs.profile or 'none'}", children=tuple(choices)))
    if len(prefs.instances) > 1:
        active = prefs.active_instance or prefs.instances[0]
        items.append(MenuItem(f"Active instance: {active}", children=tuple(
            MenuItem(name + ("  (shared)" if name in prefs.shared_instances else ""),
                     MenuAction(ActionKind.USE_INSTANCE, target=name), checked=name == active, radio=True)
            for name in prefs.instances
        )))
    return tuple(items)
