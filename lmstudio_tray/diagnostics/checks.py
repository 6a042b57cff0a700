"""`doctor` checks: each answers ok / warn / fail with what it saw and, when it is not ok, how to fix it.

Every check is a plain function over real things (the config file, the keyring, PATH, the LM Studio
servers, the session D-Bus, the X server, the discovery file), so tests run them against the emulator,
a private dbus-daemon and Xvfb. Nothing here prints; `cli/commands/doctor.py` renders the results.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import httpx

from lmstudio_tray import __version__
from lmstudio_tray.core.config.loader import TeamProfiles, load_config
from lmstudio_tray.core.config.schema import Config, InstanceConfig, Policy
from lmstudio_tray.core.errors import ConfigError, LMStudioError
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.lmstudio.lms import LMS_MISSING, find_lms
from lmstudio_tray.core.models import ApiFlavor, FailureKind
from lmstudio_tray.core.support import paths
from lmstudio_tray.platform.x11 import system_tray_owned

SNI_WATCHER = "org.kde.StatusNotifierWatcher"
NOTIFICATIONS = "org.freedesktop.Notifications"
DBUS_TIMEOUT = 2.0


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"  # works, but not the way it should (an insecure keyring, an old LM Studio)
    FAIL = "fail"
    SKIP = "skip"  # does not apply here (no tray host needed on macOS, no instances configured)


@dataclass(frozen=True)
class CheckResult:
    name: str  # stable id: config, keyring, lms, instance:<name>, tray, notifications, endpoint
    title: str
    status: Status
    detail: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "status": self.status.value, "detail": self.detail,
                "fix": self.fix, "data": self.data}


# ---- config ----------------------------------------------------------------------------------------------


def check_config(path: Path, teams: TeamProfiles | None = None) -> tuple[CheckResult, Config | None]:
    """The config parses and validates. Returns the config (defaults when the file is absent) or None.
    `teams` remembers the team profile the load found (for a core built from the config later)."""
    try:
        config = load_config(path, teams)
    except ConfigError as exc:
        return CheckResult(
            "config", "Config file", Status.FAIL, f"{path} has problems: " + "; ".join(exc.problems),
            f"edit {path} and fix the lines named above (`lmstudio-tray config validate` re-checks; "
            "`lmstudio-tray config explain` lists every key)",
            {"path": str(path), "problems": exc.problems},
        ), None
    names = ", ".join(i.name for i in config.instances) or "none"
    where = str(path) if path.exists() else f"{path} (absent: all defaults)"
    return CheckResult("config", "Config file", Status.OK, f"{where}; instances: {names}",
                       data={"path": str(path), "exists": path.exists()}), config


def check_waiting_policy(config: Config) -> CheckResult:
    """Requests for a model that is loading should wait for the load (`validation.policy.loading`).

    Earlier versions defaulted to `allow`, and the tray's validation menu wrote that into config files: such
    a request then reaches LM Studio before the model is there, which with JIT loading off fails with
    "Invalid model identifier".
    """
    loading = config.validation.policy.get("loading", Policy.ENSURE)
    if loading is Policy.ENSURE:
        return CheckResult("waiting", "Requests during a load", Status.OK,
                           "an OpenCode request for a model that is loading waits for it",
                           data={"loading": loading.value})
    return CheckResult(
        "waiting", "Requests during a load", Status.WARN,
        f"validation.policy.loading = {loading.value}: an OpenCode request for a model that is still loading "
        "goes to LM Studio at once; with JIT loading off LM Studio refuses it (\"Invalid model identifier\")",
        "let such requests wait for the load: `lmstudio-tray config set validation.policy.loading ensure` "
        "(or choose a validation setting again in the tray menu)",
        {"loading": loading.value},
    )


# ---- keyring ---------------------------------------------------------------------------------------------

# Backends that keep secrets encrypted or behind the OS's own access control.
_SECURE_MODULES = ("keyring.backends.SecretService", "keyring.backends.libsecret", "keyring.backends.kwallet",
                   "keyring.backends.macOS", "keyring.backends.Windows")
_INSECURE_NAMES = ("PlaintextKeyring", "null", "fail", "keyrings.alt")


def classify_backend(backend: object) -> tuple[str, bool | None]:
    """(name, secure): True for OS secret stores, False for plaintext/null/fail, None when unknown."""
    cls = type(backend)
    name = f"{cls.__module__}.{cls.__qualname__}"
    inner = getattr(backend, "backends", None)  # keyring's ChainerBackend
    if isinstance(inner, (list, tuple)) and inner:
        # The chainer writes to the first backend (highest priority) that accepts: that one holds the tokens.
        first, secure = classify_backend(inner[0])
        return first, secure
    if any(name.startswith(m) for m in _SECURE_MODULES):
        return name, True
    if any(part in name for part in _INSECURE_NAMES):
        return name, False
    return name, None


def check_keyring(instances: list[InstanceConfig] | None = None) -> CheckResult:
    try:
        import keyring
        from keyring.backends import fail as fail_backend
    except ImportError as exc:  # pragma: no cover - keyring is a dependency
        return CheckResult("keyring", "Keyring", Status.FAIL, f"the keyring package is missing ({exc})",
                           "reinstall lmstudio-tray (pip install --force-reinstall lmstudio-tray)")
    backend = keyring.get_keyring()
    name, secure = classify_backend(backend)
    fallback = paths.data_dir() / "secrets.json"
    no_store_fix = (
        "install and unlock a Secret Service: gnome-keyring (GNOME, most desktops) or KWallet (KDE); on a "
        "headless box API tokens are kept in a 0600 file instead, or set LMSTUDIO_TRAY_TOKEN_<NAME>"
    )
    if isinstance(backend, fail_backend.Keyring):
        return CheckResult("keyring", "Keyring", Status.FAIL,
                           f"no keyring backend works here; API tokens would go to {fallback} (0600)", no_store_fix,
                           {"backend": name, "secure": False})
    try:
        # A round trip proves the store is really there and unlocked (a locked collection raises here).
        backend.get_password("lmstudio-tray", "__doctor_probe__")
    except Exception as exc:
        return CheckResult("keyring", "Keyring", Status.FAIL, f"{name} does not answer: {exc}",
                           "unlock your keyring (log out and in, or open Passwords and Keys), then run doctor again",
                           {"backend": name, "secure": secure})
    have = _tokens_present(backend, instances or [])
    tokens = f"; tokens stored for: {', '.join(have)}" if have else "; no tokens stored"
    data = {"backend": name, "secure": secure, "tokens_for": have}
    if secure is False:
        return CheckResult("keyring", "Keyring", Status.WARN,
                           f"{name} keeps secrets unencrypted or not at all{tokens}", no_store_fix, data)
    if secure is None:
        return CheckResult("keyring", "Keyring", Status.WARN,
                           f"{name} is not a backend doctor knows to be secure{tokens}",
                           "prefer the desktop's Secret Service (gnome-keyring, KWallet) or the OS keychain", data)
    return CheckResult("keyring", "Keyring", Status.OK, f"{name} (secure){tokens}", data=data)


def _tokens_present(backend: Any, instances: list[InstanceConfig]) -> list[str]:
    have: list[str] = []
    for inst in instances:
        env = "LMSTUDIO_TRAY_TOKEN_" + "".join(c if c.isalnum() else "_" for c in inst.name).upper()
        try:
            stored = backend.get_password("lmstudio-tray", inst.name)
        except Exception:
            stored = None
        if stored or os.environ.get(env):
            have.append(inst.name)  # the name only: the value never leaves the store
    return have


# ---- lms -------------------------------------------------------------------------------------------------


def check_lms() -> CheckResult:
    found = find_lms()
    if found is None:
        return CheckResult("lms", "lms command", Status.WARN,
                           "`lms` was not found: starting/stopping the server and loads with progress are off",
                           LMS_MISSING.format(home=paths.lmstudio_home()), {"path": None})
    return CheckResult("lms", "lms command", Status.OK, str(found), data={"path": str(found)})


# ---- instances -------------------------------------------------------------------------------------------

_API_VERSIONS = {
    ApiFlavor.REST_V1: "LM Studio 0.4.0 or newer (REST API v1)",
    ApiFlavor.REST_V0: "LM Studio 0.3.6 to 0.3.x (REST API v0)",
    ApiFlavor.OPENAI: "LM Studio older than 0.3.6 (OpenAI-compatible API only)",
}


async def check_instance(inst: InstanceConfig, token: str | None, timeout: float = 3.0) -> CheckResult:
    name = f"instance:{inst.name}"
    title = f"LM Studio '{inst.name}'"
    if not inst.enabled:
        return CheckResult(name, title, Status.SKIP, f"{inst.url}: disabled in the config")
    client = LMStudioClient(inst.url, token=token, timeout=inst.timeout or timeout)
    try:
        listing = await client.list_models()
        version = await _lms_version(client.base_url, token, timeout)
    except LMStudioError as exc:
        return CheckResult(name, title, Status.FAIL, f"{inst.url}: {exc.kind.value}: {exc.message}",
                           _instance_fix(inst, exc.kind), {"url": inst.url, "failure": exc.kind.value})
    finally:
        await client.aclose()
    loaded = [m.key for m in listing.models if m.loaded]
    described = f"LM Studio {version}" if version else _API_VERSIONS[listing.api]
    detail = (f"{inst.url}: reachable, {described}; {len(listing.models)} model(s) downloaded, "
              f"loaded: {', '.join(loaded) or 'none'}")
    data = {"url": inst.url, "api": listing.api.value, "version": version, "models": len(listing.models),
            "loaded": loaded}
    if listing.api is ApiFlavor.OPENAI:
        return CheckResult(name, title, Status.WARN, detail,
                           "update LM Studio (0.3.6+ lists loaded and unloaded models; 0.4+ is best)", data)
    return CheckResult(name, title, Status.OK, detail, data=data)


async def _lms_version(base_url: str, token: str | None, timeout: float) -> str | None:
    """LM Studio's own version from /lms-status when this build answers it there; None otherwise."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # Building a client loads the CA bundle (~40 ms of CPU): in a worker thread, not on the caller's loop.
    client = await asyncio.to_thread(httpx.AsyncClient, timeout=min(timeout, 1.5))
    try:
        async with client as http:
            resp = await http.get(f"{base_url}/lms-status", headers=headers)
        body = resp.json()
    except (httpx.HTTPError, ValueError):
        return None
    version = body.get("version") if isinstance(body, dict) and "error" not in body else None
    return str(version) if version else None


def _instance_fix(inst: InstanceConfig, kind: FailureKind) -> str:
    if kind is FailureKind.OFFLINE:
        return (f"start LM Studio's server (`lms server start`, or the Developer tab → Start Server), or fix the "
                f"url of '{inst.name}' in the config if {inst.url} is wrong")
    if kind is FailureKind.AUTH_FAILED:
        return (f"this server requires an API token: `lmstudio-tray token set {inst.name}` (reads it from stdin), "
                "with a token from LM Studio's Developer tab → Server Settings")
    return (f"{inst.url} answers, but not like LM Studio: check that the url points at LM Studio's server, "
            "restart LM Studio, and look at its Developer → Logs")


async def check_instances(config: Config, tokens: Mapping[str, str | None]) -> list[CheckResult]:
    if not config.instances:
        return [CheckResult("instances", "LM Studio instances", Status.FAIL, "no instances configured",
                            "add an [[instances]] table with name and url to the config")]
    return list(await asyncio.gather(*(check_instance(i, tokens.get(i.name)) for i in config.instances)))


# ---- desktop: tray host and notification daemon ----------------------------------------------------------


def dbus_names(names: tuple[str, ...], env: Mapping[str, str] | None = None) -> dict[str, bool] | str:
    """For each name: is it owned (or D-Bus-activatable) on the session bus? A string says why we cannot ask."""
    environ = env if env is not None else os.environ
    address = environ.get("DBUS_SESSION_BUS_ADDRESS")
    if not address:
        return "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"
    try:
        from jeepney import DBusAddress, new_method_call  # type: ignore[import-untyped]
        from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]
    except ImportError:
        return "cannot ask D-Bus: the jeepney package is missing"
    bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus")
    try:
        conn = open_dbus_connection(bus=address)
    except Exception as exc:
        return f"cannot connect to the session bus ({exc})"
    try:
        activatable = conn.send_and_get_reply(new_method_call(bus, "ListActivatableNames"),
                                              timeout=DBUS_TIMEOUT).body[0]
        out: dict[str, bool] = {}
        for name in names:
            reply = conn.send_and_get_reply(new_method_call(bus, "NameHasOwner", "s", (name,)), timeout=DBUS_TIMEOUT)
            out[name] = bool(reply.body[0]) or name in activatable
        return out
    except Exception as exc:
        return f"the session bus did not answer ({exc})"
    finally:
        conn.close()


def check_tray_host(env: Mapping[str, str] | None = None, platform: str | None = None) -> CheckResult:
    platform = platform or sys.platform
    environ = env if env is not None else os.environ
    if not platform.startswith("linux"):
        return CheckResult("tray", "Tray host", Status.OK, f"{platform}: the system tray is part of the desktop")
    display, wayland = environ.get("DISPLAY"), environ.get("WAYLAND_DISPLAY")
    if not display and not wayland:
        return CheckResult("tray", "Tray host", Status.FAIL,
                           "no graphical session (neither DISPLAY nor WAYLAND_DISPLAY)",
                           "run the tray inside your desktop session, or use `lmstudio-tray serve` (no icon) here")
    names = dbus_names((SNI_WATCHER,), environ)
    sni = names.get(SNI_WATCHER, False) if isinstance(names, dict) else False
    xembed = system_tray_owned(display)
    data = {"sni_watcher": sni, "xembed": xembed if isinstance(xembed, bool) else None,
            "dbus": None if isinstance(names, dict) else names}
    if sni:
        return CheckResult("tray", "Tray host", Status.OK, "StatusNotifierItem host on D-Bus", data=data)
    if xembed is True:
        return CheckResult("tray", "Tray host", Status.OK, f"XEmbed system tray on {display}", data=data)
    seen = [names if isinstance(names, str) else f"no {SNI_WATCHER} on the session bus",
            xembed if isinstance(xembed, str) else f"no XEmbed tray owns _NET_SYSTEM_TRAY on {display}"]
    return CheckResult(
        "tray", "Tray host", Status.FAIL, "; ".join(seen),
        "enable a tray: on GNOME install the 'AppIndicator and KStatusNotifierItem Support' extension; on other "
        "desktops add the system tray / status notifier panel applet (or run a tray such as trayer or "
        "stalonetray); meanwhile `lmstudio-tray run --headless` keeps monitoring with notifications only",
        data,
    )


def check_notifications(env: Mapping[str, str] | None = None, platform: str | None = None) -> CheckResult:
    platform = platform or sys.platform
    if not platform.startswith("linux"):
        return CheckResult("notifications", "Notifications", Status.OK,
                           f"{platform}: notifications go through the OS notification center")
    names = dbus_names((NOTIFICATIONS,), env)
    if isinstance(names, str):
        return CheckResult("notifications", "Notifications", Status.FAIL, names,
                           "run lmstudio-tray inside your desktop session (it needs the session D-Bus)",
                           {"daemon": False})
    if names[NOTIFICATIONS]:
        return CheckResult("notifications", "Notifications", Status.OK, f"{NOTIFICATIONS} is on the session bus",
                           data={"daemon": True})
    return CheckResult("notifications", "Notifications", Status.FAIL,
                       f"no notification daemon: nobody owns {NOTIFICATIONS} on the session bus",
                       "install or start one (your desktop's, or dunst / mako / xfce4-notifyd); until then "
                       "lmstudio-tray only logs what it would have shown", {"daemon": False})


# ---- the endpoint ----------------------------------------------------------------------------------------


def check_endpoint(path: Path | None = None, timeout: float = 2.0) -> CheckResult:
    """The discovery file names a live process, and that endpoint answers /v1/health."""
    from lmstudio_tray.core.support.endpoint_file import read_endpoint  # stdlib + psutil only: no FastAPI import

    target = path or paths.endpoint_file()
    start = "start `lmstudio-tray` (the tray) or `lmstudio-tray serve`; the OpenCode plugin needs it running"
    if not target.exists():
        return CheckResult("endpoint", "OpenCode endpoint", Status.FAIL,
                           f"not running (no discovery file at {target})", start, {"file": str(target)})
    info = read_endpoint(target, include_stale=True)
    if info is None:
        return CheckResult("endpoint", "OpenCode endpoint", Status.FAIL, f"{target} is unreadable or incomplete",
                           f"delete {target}, then {start}", {"file": str(target)})
    live = read_endpoint(target) is not None
    data = {"file": str(target), "url": info.url, "pid": info.pid, "version": info.version}
    if not live:
        return CheckResult("endpoint", "OpenCode endpoint", Status.FAIL,
                           f"{target} is left from a run that ended (pid {info.pid} is gone)", start, data)
    try:
        # our own loopback endpoint: never through a proxy, which cannot reach this machine's 127.0.0.1
        resp = httpx.get(f"{info.url}/v1/health", timeout=timeout, trust_env=False)
        body = resp.json()
        ok = resp.status_code == 200 and isinstance(body, dict) and body.get("ok") is True
    except (httpx.HTTPError, ValueError) as exc:
        return CheckResult("endpoint", "OpenCode endpoint", Status.FAIL,
                           f"pid {info.pid} is alive but {info.url}/v1/health does not answer ({exc})",
                           f"restart it: stop pid {info.pid}, then {start}", data)
    if not ok:
        return CheckResult("endpoint", "OpenCode endpoint", Status.FAIL,
                           f"{info.url}/v1/health answered HTTP {resp.status_code} without ok",
                           f"another program may hold the port: stop pid {info.pid}, then {start}", data)
    version = str(body.get("version", ""))
    data["version"] = version
    note = "" if version == __version__ else f" (this CLI is {__version__}: restart it after upgrading)"
    return CheckResult("endpoint", "OpenCode endpoint", Status.OK,
                       f"{info.url} up, version {version}, pid {body.get('pid')}{note}", data=data)


# ---- everything ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    results: list[CheckResult]
    config: Config | None
    teams: TeamProfiles = field(default_factory=TeamProfiles)  # what the config load found, for a core

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status is Status.FAIL]

    def to_json(self) -> dict[str, Any]:
        return {"version": __version__, "ok": not self.failed, "checks": [r.to_json() for r in self.results]}


def read_tokens(config: Config) -> dict[str, str | None]:
    """Instance tokens as the core would use them (env override, keyring, 0600 file), for the probes only."""
    from lmstudio_tray.core.support.logs import register_secret
    from lmstudio_tray.core.support.secrets import open_store

    try:
        store = open_store()
    except Exception:
        return {}
    tokens: dict[str, str | None] = {}
    for inst in config.instances:
        try:
            tokens[inst.name] = store.get(inst.name)
        except Exception:
            tokens[inst.name] = None
        register_secret(tokens[inst.name])
    return tokens


def run_checks(config_path: Path, *, endpoint_file: Path | None = None,
               env: Mapping[str, str] | None = None) -> Diagnosis:
    teams = TeamProfiles()
    config_result, config = check_config(config_path, teams)
    results = [config_result, check_keyring(config.instances if config else None), check_lms()]
    if config is not None:
        results.append(check_waiting_policy(config))
        results += asyncio.run(check_instances(config, read_tokens(config)))
    results += [check_tray_host(env), check_notifications(env), check_endpoint(endpoint_file)]
    return Diagnosis(results, config, teams)
