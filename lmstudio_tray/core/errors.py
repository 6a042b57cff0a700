"""Every exception the core raises across module boundaries, in one light module.

A surface decides what to do with a failure by its class (`isinstance`) or by `ActionError.kind` (an
enum), never by a class name or the words of a message: the messages are written for people and may
change. Importing this module costs nothing beyond `core.models` (no httpx, pydantic or asyncio), so the
tray presenter and the CLI can catch the core's errors without loading the code that raises them.

| Exception | Raised by | Means |
|---|---|---|
| `HTTPError` (`ConnectError`, `RequestTimeout`, `ProtocolError`) | `lmstudio.http1` | a request failed on the wire |
| `LMStudioError` | `lmstudio.client` | LM Studio could not answer; `kind` is a `FailureKind` |
| `LmsError` | `lmstudio.lms` | the `lms` command failed; `cancelled` when the load was cancelled |
| `ActionError` (`SharedBusyError`) | `control.actions` | an action failed; `kind` is an `ActionErrorKind` |
| `SharedInstanceBusy` | `control.shared_guard` | a change would cut off a shared instance's users |
| `RoutingError` | `control.routing` | the pool router cannot place a request (`status`/`kind` are its HTTP answer) |
| `SearchError` | `control.search` | a search filter that cannot be understood |
| `ConfigError` (`ConfigLocked`) | `config.*` | a config problem a person can fix |
| `TeamProfileError` | `config.team`, `config.team_fetch` | the team profile and every cached copy are unusable |
| `LockError` (`LockTimeout`) | `support.lock` | a lock file could not be created or taken in time |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmstudio_tray.core.models import FailureKind, WireEnum

# ---- talking to LM Studio ---------------------------------------------------------------------------


class HTTPError(Exception):
    """A request failed. `started`: part of the response had arrived, so it is not safe to send it again."""

    def __init__(self, message: str, *, started: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.started = started


class ConnectError(HTTPError):
    """No connection: refused, unreachable, unknown name, TLS handshake failed, or connect timed out."""


class RequestTimeout(HTTPError):
    """Connected and sent, but the response (for streams: its head) did not arrive in time."""


class ProtocolError(HTTPError):
    """The server sent a malformed response, or closed the connection before the response was complete."""


class LMStudioError(Exception):
    """A failure talking to LM Studio, as exactly one `FailureKind`, with a message for a person and the HTTP
    status when there was one. `cancelled`: a load that LM Studio reports as cancelled (someone cancelled it
    there)."""

    def __init__(self, kind: FailureKind, message: str, *, status: int | None = None,
                 cancelled: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.cancelled = cancelled


class MissingRoute(LMStudioError):
    """This LM Studio is too old for the route (REST v1 is 0.4.0+): fall back to `lms` where it can help."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureKind.SERVER_ERROR, message)


class LmsFailure(WireEnum):
    """How an `lms` command failed, read from its exit status and the words it printed."""

    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"  # `lms` itself did not finish in time
    BAD_OUTPUT = "bad_output"  # `lms` answered something this version of the tray cannot read
    NOT_INSTALLED = "not_installed"  # LM Studio is not running and there is no installation to wake
    DAEMON_TIMEOUT = "daemon_timeout"  # LM Studio (llmster) was started but never answered
    NOT_RUNNING = "not_running"  # nothing to stop
    DESKTOP_APP = "desktop_app"  # the desktop app is the service: `daemon down` does not stop it
    BIND_REFUSED = "bind_refused"  # the server did not come up where asked (port in use, address not here)
    MODEL_NOT_FOUND = "model_not_found"
    DOWNLOAD_FAILED = "download_failed"


class LmsError(Exception):
    """`lms` could not do what was asked; `kind` says how (a load cancelled with Ctrl-C through `Lms.cancel` or in
    LM Studio itself is `CANCELLED`), the message says it in words (the message is `lms`'s own error then)."""

    def __init__(self, message: str, kind: LmsFailure = LmsFailure.FAILED, *, cancelled: bool = False) -> None:
        super().__init__(message)
        self.kind = LmsFailure.CANCELLED if cancelled else kind

    @property
    def cancelled(self) -> bool:
        """The load was cancelled, not failed."""
        return self.kind is LmsFailure.CANCELLED


# ---- actions ---------------------------------------------------------------------------------------


class ActionErrorKind(WireEnum):
    """Why an action failed. The value is what the endpoint's error answers carry as `kind`."""

    FAILED = "failed"  # anything else: the message says what
    OFFLINE = "offline"  # LM Studio's server is not running
    AUTH_FAILED = "auth_failed"  # it needs an API token that is missing or wrong
    UNKNOWN_INSTANCE = "unknown_instance"  # no instance of that name is configured
    UNKNOWN_MODEL = "unknown_model"  # the model is not downloaded there
    NOT_LOADED = "not_loaded"  # an unload of a model that is not loaded
    NOT_SUPPORTED = "not_supported"  # server control turned off, or a remote server (only its machine can)
    LMS_MISSING = "lms_missing"  # server control needs the `lms` command, which was not found
    CANCELLED = "cancelled"  # the load was cancelled
    SHARED_BUSY = "shared_busy"  # refused on a shared instance: see SharedBusyError
    NOT_CONFIRMED = "not_confirmed"  # a risky change (serving the network without API tokens) was not confirmed
    BIND_REFUSED = "bind_refused"  # LM Studio could not serve on that port or address
    NOT_INSTALLED = "not_installed"  # no LM Studio or llmster installation to start
    DESKTOP_APP = "desktop_app"  # the desktop app runs LM Studio: only a person quits it
    WONT_FIT = "wont_fit"  # LM Studio's estimate says the load will not fit, and `[loads] fit_check` refuses it


class ActionError(Exception):
    """An action failed; the message is written for a person and says what to do."""

    def __init__(self, message: str, *, kind: ActionErrorKind = ActionErrorKind.FAILED) -> None:
        super().__init__(message)
        self.kind = kind


class SharedInstanceBusy(Exception):
    """A change on a shared instance would take away a model that served requests lately; the message says
    what this machine saw, what it cannot see, and how a person forces it.

    `reason` is the refusal without that hint, for surfaces whose caller may not force (the agent's tools).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}, or repeat with --force once you have checked with the team.")
        self.reason = reason


class SharedBusyError(ActionError):
    """Kind `shared_busy`: the change would cut off people using a shared instance. The message tells a
    person how to force it; `reason` is the refusal alone, for callers that may not force (an agent)."""

    def __init__(self, busy: SharedInstanceBusy) -> None:
        super().__init__(str(busy), kind=ActionErrorKind.SHARED_BUSY)
        self.reason = busy.reason


class RoutingError(Exception):
    """A request the router cannot place; `status` and `kind` become the HTTP answer."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message

    def to_json(self) -> dict[str, Any]:
        """The error body the endpoint sends."""
        # `kind` like the rest of the endpoint; `type`/`code` so OpenAI SDKs show the message as-is
        return {"error": {"kind": self.kind, "message": self.message, "type": self.kind, "code": self.kind}}


class SearchError(ValueError):
    """A filter value that cannot be understood; the message says which and how to write it."""


# ---- config and files ------------------------------------------------------------------------------


class ConfigError(Exception):
    """A config problem a person can fix; the message says where, what and how."""

    def __init__(self, path: Path | None, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        where = f"{path}: " if path else ""
        super().__init__(where + "; ".join(problems))


class ConfigLocked(ConfigError):
    """Another process kept the config's lock for longer than LOCK_TIMEOUT; nothing was changed."""


class TeamProfileError(Exception):
    """The profile (and every cached copy) is unusable; the message says why."""


class LockError(Exception):
    """A lock file could not be created or taken; the message names the file and what to do."""


class LockTimeout(LockError):
    """Another process kept the lock for longer than the caller was willing to wait."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        super().__init__(f"{path} is still locked by another process after {timeout:g} s")
