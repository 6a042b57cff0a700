"""This machine's LM Studio: its HTTP server's settings (port, who may connect, CORS) and the service itself
(llmster or the desktop app), for the CLI, the tray and the OpenCode tools alike.

What a program can see and change, from LM Studio's own files and `lms` (lmstudio-ai/lms):
- port, network interface and CORS: `.internal/http-server-config.json` shows them, `lms server start --port
  --bind --cors` changes them. `lms` sends the start to a running server as well; what LM Studio does then is
  not documented, so a running server is stopped and started again on the new settings (and on its old ones
  if LM Studio refuses the new ones).
- Just-in-Time loading: shown in that file, changeable only in LM Studio (Developer → Server Settings).
- idle TTL and auto-evict of JIT models: neither in the file nor in `lms` or the REST API; a program can only
  give a TTL per load (`lms load --ttl`) or per JIT request (`ttl`).
- "Require Authentication": not in the file either; a running server that answers a request without a token
  does not require one, a 401 says it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from lmstudio_tray.core.control.monitor import is_local_url
from lmstudio_tray.core.errors import ActionError, ActionErrorKind, LmsError, LmsFailure, LMStudioError
from lmstudio_tray.core.events import Event, EventBus, ServerSettingsRead, ServerStarted, ServerStopped
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.lmstudio.lms import LMS_MISSING, DaemonStatus, Lms
from lmstudio_tray.core.lmstudio.server_config import (
    ALL_INTERFACES,
    LOOPBACK,
    Reach,
    ServerConfig,
    ServerConfigError,
    load_server_config,
    reach_of,
)
from lmstudio_tray.core.models import FailureKind, WireEnum
from lmstudio_tray.core.support import paths

log = logging.getLogger(__name__)

# Where a person changes what no program can (LM Studio's Developer tab → Server Settings).
JIT_WHERE = "LM Studio → Developer → Server Settings → Just in Time Model Loading"
TTL_WHERE = "LM Studio → Developer → Server Settings → Auto Unload Unused JIT Models"
EVICT_WHERE = "LM Studio → Developer → Server Settings → Only Keep Last JIT Loaded Model"
AUTH_WHERE = "LM Studio → Developer → Server Settings → Require Authentication"


class AuthRequired(WireEnum):
    """Whether LM Studio's server asks for an API token ("Require Authentication"), as far as a program can tell."""

    YES = "yes"  # a request without a token got 401
    NO = "no"  # a request without a token was answered
    UNKNOWN = "unknown"  # the server is not running (LM Studio's files do not record the switch)


@dataclass(frozen=True)
class ServerSettings:
    """LM Studio's HTTP server on this machine: running or not, and the settings it runs (or last ran) with."""

    running: bool
    port: int | None  # None: LM Studio never saved a server config (its server was never started)
    bind: str  # the network interface: 127.0.0.1 (this machine only), 0.0.0.0 or an address (local network)
    cors: bool
    jit: bool | None  # Just-in-Time model loading; None when LM Studio's file does not say
    auth: AuthRequired

    @property
    def reach(self) -> Reach:
        """This machine only, or the local network."""
        return reach_of(self.bind)

    def describe(self) -> str:
        """One line for a menu or a message: `port 1234, this machine only, CORS off`."""
        where = "this machine only" if self.reach is Reach.THIS_MACHINE else f"local network ({self.bind})"
        port = f"port {self.port}" if self.port is not None else "port not set yet"
        return f"{port}, {where}, CORS {'on' if self.cors else 'off'}"

    def to_json(self) -> dict[str, Any]:
        """The settings as `server status --json` and the tools report them."""
        return {
            "running": self.running, "port": self.port, "bind": self.bind, "reach": self.reach.value,
            "cors": self.cors, "jit": self.jit, "auth_required": self.auth.value,
        }


@dataclass(frozen=True)
class ServerChange:
    """What a person asked to change; None keeps the current value."""

    port: int | None = None
    bind: str | None = None  # LOOPBACK for this machine only, ALL_INTERFACES (or an address) for the network
    cors: bool | None = None

    def __post_init__(self) -> None:
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is not a TCP port: use 1-65535")

    @property
    def empty(self) -> bool:
        """Nothing to change."""
        return self.port is None and self.bind is None and self.cors is None


@dataclass(frozen=True)
class ServerPlan:
    """What applying a change will do: the settings before and after, whether the running server restarts, and the
    risks to tell a person before doing it (serving the network without API tokens needs their yes)."""

    before: ServerSettings
    after: ServerSettings
    restart: bool
    risks: tuple[str, ...]
    needs_confirmation: bool


@dataclass(frozen=True)
class ServerApplied:
    """The change is done: the settings now in effect and what happened, in words."""

    settings: ServerSettings
    messages: tuple[str, ...]
    warnings: tuple[str, ...]  # what `lms` warned about, in its words


def network_risk(auth: AuthRequired, bind: str) -> str:
    """The warning for serving on the local network, saying what is known about API tokens."""
    head = f"LM Studio will accept connections from your local network on {bind}: anyone who can reach this machine"
    if auth is AuthRequired.YES:
        return f"{head} can reach the server; it requires an API token, so they need one to use it."
    known = ("it answers requests without an API token right now" if auth is AuthRequired.NO
             else "LM Studio's settings files do not say whether it requires an API token, and it is not running "
             "to ask")
    return (f"{head} can use your models and load or unload them, because {known}. Turn on {AUTH_WHERE} "
            "first, unless you trust everyone on this network.")


CORS_RISK = "CORS on: any website you visit can use the LM Studio server from your browser."


class ServerControl:
    """Shows and changes this machine's LM Studio server settings and starts or stops the LM Studio service,
    through `lms`. Coroutines on the core's loop; `lms` runs as a subprocess and files are read in worker threads.
    Failures are `ActionError`s with a message a person can act on."""

    def __init__(
        self,
        lms: Callable[[], Lms | None],
        bus: EventBus,
        *,
        local_instances: Callable[[], Iterable[tuple[str, str]]] = tuple,
        poke: Callable[[str], None] = lambda _name: None,
        enabled: Callable[[], bool] = lambda: True,
        probe_timeout: float = 2.0,
    ) -> None:
        """`lms`: makes the `lms` runner (None when it is not installed); `local_instances`: (name, url) of the
        instances on this machine, whose monitors `poke` asks to poll again after a change and whose events are
        published; `enabled`: whether the config allows server control (`actions.server_control`)."""
        self._lms = lms
        self.bus = bus
        self._local = local_instances
        self._poke = poke
        self._enabled = enabled
        self._probe_timeout = probe_timeout
        self.last: ServerSettings | None = None  # the settings last read, for surfaces that must not wait
        self.service: DaemonStatus | None = None  # whether LM Studio's service ran when last asked
        self._refreshing: asyncio.Task[None] | None = None
        self._again = False

    def _runner(self) -> Lms:
        lms = self._lms()
        if lms is None:
            raise ActionError(LMS_MISSING.format(home=paths.lmstudio_home()), kind=ActionErrorKind.LMS_MISSING)
        return lms

    # ---- reading -----------------------------------------------------------------------------------

    async def settings(self) -> ServerSettings:
        """The server's settings: `lms server status --json` (running, port) plus LM Studio's settings file
        (interface, CORS, JIT), and whether it requires an API token (asked without one when it runs)."""
        lms = self._runner()
        try:
            status = await lms.server_status()
        except LmsError as exc:
            raise ActionError(f"Asking LM Studio for its server's status failed: {exc}") from None
        try:
            config: ServerConfig | None = await load_server_config()
        except ServerConfigError as exc:
            log.warning("LM Studio's server settings file: %s", exc)
            config = None
        port = status.port if status.port is not None else (config.port if config else None)
        auth = await self._auth(port) if status.running and port is not None else AuthRequired.UNKNOWN
        self.last = ServerSettings(
            running=status.running,
            port=port,
            bind=config.network_interface if config else LOOPBACK,
            cors=config.cors if config else False,
            jit=config.jit if config else None,
            auth=auth,
        )
        return self.last

    async def refresh(self) -> None:
        """Read the settings and whether the service runs into `last` and `service` (for the tray's menu, which
        must not wait), then publish `ServerSettingsRead`; a failure leaves what was known."""
        try:
            self.service = await self._runner().daemon_status()
            if self.service.running:
                await self.settings()
            elif self.last is not None:
                self.last = replace(self.last, running=False, auth=AuthRequired.UNKNOWN)
        except (ActionError, LmsError) as exc:
            log.info("LM Studio's service and server settings unknown: %s", exc)
        for name, _url in self._local():
            self.bus.publish(ServerSettingsRead(name))

    def on_status_change(self, event: Event) -> None:
        """Bus subscriber (for `InstanceOnline`, `InstanceOffline`, `ServerStarted`, `ServerStopped` on the core's
        loop): a local instance came or went, so read LM Studio anew, once at a time, in a task."""
        if not any(name == event.instance for name, _url in self._local()):
            return
        if self._refreshing is not None and not self._refreshing.done():
            self._again = True  # read once more when the running read is done: it may predate this change
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh_until_current())

    async def aclose(self) -> None:
        """Cancel a read of LM Studio's settings in flight (the core is stopping): its `lms` run is killed with it,
        not left to a closed loop."""
        task, self._refreshing = self._refreshing, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _refresh_until_current(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            await self.refresh()

    async def status_of(self, status: dict[str, object]) -> dict[str, object]:
        """An instance's `Actions.server_status` plus LM Studio's settings (bind, reach, cors, jit, auth_required)
        when the instance is this machine's server; None for each where they cannot be known (a remote server,
        no `lms`)."""
        extra: dict[str, object] = dict.fromkeys(("bind", "reach", "cors", "jit", "auth_required"))
        url = status.get("url")
        if isinstance(url, str) and is_local_url(url):
            try:
                settings = await self.settings()
            except ActionError as exc:
                log.info("server settings unknown: %s", exc)
            else:
                extra = {key: value for key, value in settings.to_json().items() if key in extra}
        return {**status, **extra}

    async def _auth(self, port: int) -> AuthRequired:
        client = LMStudioClient(f"http://{LOOPBACK}:{port}", token=None, timeout=self._probe_timeout)
        try:
            await client.list_models()
        except LMStudioError as exc:
            return AuthRequired.YES if exc.kind is FailureKind.AUTH_FAILED else AuthRequired.UNKNOWN
        finally:
            await client.aclose()
        return AuthRequired.NO

    # ---- changing ----------------------------------------------------------------------------------

    async def plan(self, change: ServerChange) -> ServerPlan:
        """What `apply` would do, and the risks to tell a person first. Nothing changes yet."""
        if not self._enabled():
            raise ActionError(
                "server control is turned off in the config (actions.server_control = false, e.g. by the remote "
                "preset); set it to true to change LM Studio's server settings here.",
                kind=ActionErrorKind.NOT_SUPPORTED,
            )
        before = await self.settings()
        after = replace(
            before,
            port=change.port if change.port is not None else before.port,
            bind=change.bind if change.bind is not None else before.bind,
            cors=change.cors if change.cors is not None else before.cors,
            running=True,
        )
        risks: list[str] = []
        exposed = after.reach is Reach.LOCAL_NETWORK and before.auth is not AuthRequired.YES
        if after.reach is Reach.LOCAL_NETWORK:
            risks.append(network_risk(before.auth, after.bind))
        if after.cors and not before.cors:
            risks.append(CORS_RISK)
        return ServerPlan(before, after, restart=before.running, risks=tuple(risks), needs_confirmation=exposed)

    async def apply(self, plan: ServerPlan, *, confirmed: bool = False) -> ServerApplied:
        """Start the server on `plan.after`'s settings: a running one is stopped and started again (a refused bind
        brings it back on its old settings). Serving the network without required API tokens needs `confirmed`."""
        if plan.needs_confirmation and not confirmed:
            raise ActionError(
                "serving LM Studio on the local network without API tokens needs a confirmation; nothing was "
                "changed. " + plan.risks[0],
                kind=ActionErrorKind.NOT_CONFIRMED,
            )
        lms = self._runner()
        messages: list[str] = []
        before, after = plan.before, plan.after
        if plan.restart:
            await self._stop(lms)
            messages.append(f"Stopped LM Studio's server ({before.describe()}) to start it on the new settings; "
                            "requests it was answering were cut off.")
        try:
            started = await lms.start_server(after.port, bind=after.bind, cors=after.cors)
        except LmsError as exc:
            error = await self._refused(lms, plan, exc)
            self._changed(started=False)
            raise error from None
        self._changed(started=True)
        messages.append(f"LM Studio's server runs on {replace(after, port=started.port).describe()}.")
        return ServerApplied(await self.settings(), tuple(messages), started.warnings)

    async def _stop(self, lms: Lms) -> None:
        result = await lms.server_stop()
        if result.returncode != 0 and "not running" not in result.message:
            raise ActionError(f"Stopping LM Studio's server to apply the new settings failed: {result.error}; "
                              "nothing was changed.")
        for name, _url in self._local():
            self.bus.publish(ServerStopped(name))

    async def _refused(self, lms: Lms, plan: ServerPlan, exc: LmsError) -> ActionError:
        """The new settings were refused: say why and what to do, and bring a server that ran back as it was."""
        after = plan.after
        if exc.kind is LmsFailure.BIND_REFUSED:
            cause = await asyncio.to_thread(bind_refusal, after.bind, after.port)
            kind = ActionErrorKind.BIND_REFUSED
        else:
            cause, kind = f"Starting LM Studio's server failed: {exc}", ActionErrorKind.FAILED
        if not plan.restart:
            return ActionError(f"{cause}.", kind=kind)
        before = plan.before
        try:
            await lms.start_server(before.port, bind=before.bind, cors=before.cors)
        except LmsError as again:
            return ActionError(f"{cause}. Starting it again on its old settings failed too ({again}); the server "
                               "is stopped: start it with `lmstudio-tray server start`.", kind=kind)
        return ActionError(f"{cause}. The server runs again on its old settings ({before.describe()}).", kind=kind)

    def _changed(self, *, started: bool) -> None:
        for name, _url in self._local():
            self._poke(name)
            if started:
                self.bus.publish(ServerStarted(name))

    # ---- the LM Studio service ---------------------------------------------------------------------

    async def daemon_status(self) -> DaemonStatus:
        """Whether LM Studio's service runs: llmster (the headless daemon) or the desktop app."""
        try:
            return await self._runner().daemon_status()
        except LmsError as exc:
            raise ActionError(str(exc)) from None

    async def daemon_up(self) -> DaemonStatus:
        """Start LM Studio's service (llmster, or the desktop app where that is what is installed) unless it runs."""
        try:
            status = await self._runner().daemon_up()
        except LmsError as exc:
            raise _daemon_error(exc) from None
        for name, _url in self._local():
            self._poke(name)
        return status

    async def daemon_down(self) -> str:
        """Stop llmster. The desktop app is refused (quit it yourself); nothing running is not an error."""
        lms = self._runner()
        try:
            status = await lms.daemon_status()
            if not status.running:
                return "LM Studio's daemon is not running; nothing to stop."
            if status.is_daemon is False:
                raise ActionError(_DESKTOP_APP.format(pid=status.pid), kind=ActionErrorKind.DESKTOP_APP)
            said = await lms.daemon_down()
        except LmsError as exc:
            if exc.kind is LmsFailure.NOT_RUNNING:
                return "LM Studio's daemon is not running; nothing to stop."
            # llmster may cut `lms`'s connection while it shuts down: what counts is whether it still runs
            if exc.kind is not LmsFailure.FAILED or (await lms.daemon_status()).running:
                raise _daemon_error(exc) from None
            said = "Done."
        for name, _url in self._local():
            self._poke(name)
            self.bus.publish(ServerStopped(name))
        return f"Stopped LM Studio's daemon (llmster{f', PID {status.pid}' if status.pid else ''}): {said}"

    async def start_lmstudio(self, port: int | None = None) -> str:
        """What the tray's "Start LM Studio" does: start the service, then its HTTP server (on `port`, else the
        last one) unless it already runs. Returns what happened, in words."""
        service = await self.daemon_up()
        what = "llmster" if service.is_daemon is not False else "LM Studio"
        with contextlib.suppress(ActionError):
            if (await self.settings()).running:
                return f"{what} is running (PID {service.pid}); its server was already on."
        try:
            started = await self._runner().start_server(port)
        except LmsError as exc:
            raise ActionError(f"{what} is running, but its server did not start: {exc}",
                              kind=ActionErrorKind.BIND_REFUSED if exc.kind is LmsFailure.BIND_REFUSED
                              else ActionErrorKind.FAILED) from None
        finally:
            self._changed(started=True)
        return f"{what} is running (PID {service.pid}); its server is on port {started.port}."


def bind_refusal(bind: str, port: int | None) -> str:
    """Why LM Studio could not listen on `bind`:`port`, found out the way the system would refuse it, and what to
    do. Blocking (sockets): run it in a worker thread."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    if reach_of(bind) is Reach.LOCAL_NETWORK and bind != ALL_INTERFACES:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((bind, 0))
        except OSError:
            return (f"LM Studio could not serve at {bind}: that address is not one of this machine's. Use "
                    "`lmstudio-tray server config --lan` (all of this machine's addresses) or `--localhost`")
    if port is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            if probe.connect_ex((LOOPBACK, port)) == 0:
                return (f"LM Studio could not serve on port {port}: another program uses that port. Pick another "
                        "one with `lmstudio-tray server config --port N`, or stop that program")
    return (f"LM Studio could not serve on port {port} at {bind} (the port may be in use or reserved, or the "
            "address not available); pick another port with `lmstudio-tray server config --port N`")


_DESKTOP_APP = ("the LM Studio desktop app is running (PID {pid}), not llmster: `daemon down` stops only the "
                "daemon. Quit LM Studio from its window or its tray icon to stop it.")


def _daemon_error(exc: LmsError) -> ActionError:
    if exc.kind is LmsFailure.NOT_INSTALLED:
        return ActionError(
            "LM Studio is not installed here (`lms` found no LM Studio or llmster installation to start). Install "
            "LM Studio from https://lmstudio.ai (or llmster), start it once, then try again.",
            kind=ActionErrorKind.NOT_INSTALLED,
        )
    if exc.kind is LmsFailure.DAEMON_TIMEOUT:
        return ActionError(
            "LM Studio was started but did not answer in time; start it by hand and look at its logs "
            f"(in {paths.lmstudio_home()}/server-logs). ({exc})",
            kind=ActionErrorKind.FAILED,
        )
    if exc.kind is LmsFailure.DESKTOP_APP:
        return ActionError(_DESKTOP_APP.format(pid="?"), kind=ActionErrorKind.DESKTOP_APP)
    return ActionError(str(exc))


__all__ = [
    "ALL_INTERFACES", "LOOPBACK", "AuthRequired", "Reach", "ServerApplied", "ServerChange", "ServerControl",
    "ServerPlan", "ServerSettings", "network_risk",
]
