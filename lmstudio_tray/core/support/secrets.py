"""API tokens of LM Studio instances: the OS keyring, or a 0600 file when no keyring works.

Tokens never go into the config file or the logs. The keyring entry is service `lmstudio-tray`,
user = instance name, so `secret-tool lookup service lmstudio-tray username local` finds it.

The backend is picked without `keyring.get_keyring()` where that is safe: its discovery imports every
installed backend (macOS, Windows, KWallet, keyrings.alt, ...) to rank them, which costs the long-running
tray ~6 MB of memory and ~100 ms of start-up for modules it never uses. See `choose_keyring`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import platformdirs

from lmstudio_tray import APP_NAME
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_write

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)
SERVICE = APP_NAME


class SecretStore(Protocol):
    """Where API tokens are kept, by instance name; `backend` says where, for messages. Every method may block (keyring,
    D-Bus, disk): never call them on the core's loop."""

    backend: str

    def get(self, name: str) -> str | None:
        """The token of `name`, or None."""

    def set(self, name: str, token: str) -> None:
        """Store `token` for `name`, replacing an earlier one."""

    def delete(self, name: str) -> None:
        """Forget the token of `name`; no error when there is none."""


class KeyringStore:
    """Tokens in a keyring backend: service `lmstudio-tray`, user = the instance name."""

    def __init__(self, keyring_backend: KeyringBackend | None = None) -> None:
        self._keyring = keyring_backend if keyring_backend is not None else choose_keyring()
        self.backend = f"keyring ({backend_name(self._keyring)})"

    def get(self, name: str) -> str | None:
        """The token of `name` from the keyring, or None."""
        value = self._keyring.get_password(SERVICE, name)
        return value if isinstance(value, str) else None

    def set(self, name: str, token: str) -> None:
        """Store `token` for `name` in the keyring."""
        self._keyring.set_password(SERVICE, name, token)

    def delete(self, name: str) -> None:
        """Remove the token of `name` from the keyring; no error when there is none."""
        import keyring.errors

        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            self._keyring.delete_password(SERVICE, name)


def backend_name(backend: KeyringBackend) -> str:
    """`SecretService`, `ChainerBackend`, ...: most backend classes are called just `Keyring`."""
    cls = type(backend)
    return cls.__module__.rsplit(".", 1)[-1] if cls.__name__ == "Keyring" else cls.__name__


def choose_keyring(env: Mapping[str, str] | None = None, platform: str | None = None) -> KeyringBackend:
    """The keyring backend `keyring.get_keyring()` would choose, found more cheaply where that is safe.

    Full discovery whenever the user or the program chose: a backend already set in this process
    (`keyring.set_keyring`, tests), `PYTHON_KEYRING_BACKEND`, or keyring's own config file. On a KDE
    session KWallet outranks the Secret Service in keyring's ranking, so that keeps full discovery too.
    Elsewhere on Linux/BSD the Secret Service is what discovery would rank first; it is tried alone,
    and anything wrong with it (no D-Bus, no daemon, secretstorage missing) falls back to full discovery.
    """
    import keyring

    if not secret_service_first(env, platform):
        return keyring.get_keyring()
    secret_service = _secret_service()
    if secret_service is None:
        return keyring.get_keyring()
    keyring.set_keyring(secret_service)  # so every keyring call in this process agrees with the tray's
    return secret_service


def secret_service_first(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Would keyring's discovery pick the Secret Service here, unless it is missing? (See `choose_keyring`.)"""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    # keyring keeps the chosen backend in a global of keyring.core (there is no public "was one chosen?");
    # not imported yet means nobody chose. Importing keyring only to ask would cost the tray ~1.7 MiB.
    chosen = getattr(sys.modules.get("keyring.core"), "_keyring_backend", None)
    if chosen is not None or env.get("PYTHON_KEYRING_BACKEND"):
        return False
    if platform in ("darwin", "win32") or platform.startswith(("cygwin", "emscripten")):
        return False
    return "KDE" not in env.get("XDG_CURRENT_DESKTOP", "").upper().split(":") and not _keyring_config_exists()


def _keyring_config_exists() -> bool:
    # keyring's own config root on Linux/BSD ($XDG_CONFIG_HOME/python_keyring), found without importing it
    return (platformdirs.user_config_path("python_keyring") / "keyringrc.cfg").exists()


def _secret_service() -> KeyringBackend | None:
    try:
        from keyring.backends import SecretService

        backend = SecretService.Keyring()  # type: ignore[no-untyped-call]
        backend.priority  # noqa: B018 - raises unless secretstorage imports and the daemon answers on D-Bus
        return backend
    except Exception as exc:
        log.debug("Secret Service keyring not usable directly (%s); asking keyring to discover one", exc)
        return None


class NeedsKeyring(Exception):
    """The plain lookup cannot answer (locked item, no default collection, D-Bus error): ask keyring."""


class SecretServiceStore:
    """The Secret Service as keyring uses it, read without keyring's SecretService backend.

    That backend (secretstorage) encrypts each transfer with `cryptography`, ~7 MiB of native code kept
    for the whole life of the tray to read a token or two at start-up. This reads over a `plain` session
    with jeepney (which secretstorage is built on) instead: the session bus is a socket only this user's
    processes can connect to, and any of them may ask the Secret Service for the same item anyway.
    The items are keyring's: default collection, attributes service + username, the first match.
    Writes, deletes and whatever the plain lookup cannot answer (a locked item needs keyring's unlock
    prompt) go through keyring's SecretService backend, loaded then.
    """

    backend = "keyring (SecretService)"

    def __init__(self) -> None:
        self._keyring: KeyringStore | None = None

    def _full(self) -> KeyringStore:
        if self._keyring is None:
            from keyring.backends import SecretService

            self._keyring = KeyringStore(SecretService.Keyring())  # type: ignore[no-untyped-call]
        return self._keyring

    def get(self, name: str) -> str | None:
        """The token of `name`, read over a plain Secret Service session; through keyring when that cannot tell (a
        locked item, no default collection)."""
        try:
            return plain_lookup({"service": SERVICE, "username": name})
        except NeedsKeyring as exc:
            log.debug("plain Secret Service lookup of %s: %s; asking keyring", name, exc)
            return self._full().get(name)

    def set(self, name: str, token: str) -> None:
        """Store `token` through keyring's SecretService backend (loaded on first use)."""
        self._full().set(name, token)

    def delete(self, name: str) -> None:
        """Remove the token of `name` through keyring's SecretService backend (loaded on first use)."""
        self._full().delete(name)


_BUS_NAME = "org.freedesktop.secrets"
_DBUS_TIMEOUT_S = 10.0


def plain_lookup(attributes: dict[str, str]) -> str | None:
    """The secret of the first unlocked item in the default collection matching `attributes`, or None.

    Raises NeedsKeyring when this cannot tell (no Secret Service, no default collection, a locked item).
    """
    try:
        # keyring itself depends on jeepney on Linux (no type hints there)
        from jeepney import DBusAddress, MessageType, Properties, new_method_call  # type: ignore[import-untyped]
        from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]
        from jeepney.wrappers import unwrap_msg  # type: ignore[import-untyped]
    except ImportError as exc:
        raise NeedsKeyring(f"jeepney is not installed ({exc})") from None
    service = DBusAddress("/org/freedesktop/secrets", bus_name=_BUS_NAME,
                          interface="org.freedesktop.Secret.Service")
    collection = DBusAddress("/org/freedesktop/secrets/aliases/default", bus_name=_BUS_NAME,
                             interface="org.freedesktop.Secret.Collection")
    try:
        with open_dbus_connection(bus="SESSION") as conn:

            def call(message: Any) -> Any:
                reply = conn.send_and_get_reply(message, timeout=_DBUS_TIMEOUT_S)
                if reply.header.message_type is MessageType.error:
                    unwrap_msg(reply)  # raises DBusErrorResponse with the service's message
                return reply.body

            _, session = call(new_method_call(service, "OpenSession", "sv", ("plain", ("s", ""))))
            try:
                (items,) = call(new_method_call(collection, "SearchItems", "a{ss}", (attributes,)))
                if not items:
                    return None
                item = DBusAddress(items[0], bus_name=_BUS_NAME, interface="org.freedesktop.Secret.Item")
                ((_, locked),) = call(Properties(item).get("Locked"))
                if locked:
                    raise NeedsKeyring("the item is locked")
                (secrets_by_item,) = call(new_method_call(service, "GetSecrets", "aoo", ([items[0]], session)))
                _, _, value, _ = secrets_by_item[items[0]]
                return bytes(value).decode("utf-8")
            finally:
                with contextlib.suppress(Exception):
                    session_addr = DBusAddress(session, bus_name=_BUS_NAME,
                                               interface="org.freedesktop.Secret.Session")
                    conn.send(new_method_call(session_addr, "Close"))
    except NeedsKeyring:
        raise
    except Exception as exc:  # no bus, no daemon, an odd reply: keyring knows what to do, or says why not
        raise NeedsKeyring(f"{type(exc).__name__}: {exc}") from None


def _plain_secret_service_works() -> bool:
    try:
        plain_lookup({"service": SERVICE, "username": "__probe__"})
        return True
    except NeedsKeyring as exc:
        log.debug("no plain Secret Service lookup here: %s", exc)
        return False


class FileStore:
    """Plain JSON readable only by the user: the fallback when no keyring backend works."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or (paths.data_dir() / "secrets.json")
        self.backend = f"file {self.path} (0600)"

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("secrets file %s is unreadable; treating it as empty", self.path)
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def get(self, name: str) -> str | None:
        """The token of `name` from the file, or None (also when the file is unreadable: a warning is logged)."""
        return self._read().get(name)

    def set(self, name: str, token: str) -> None:
        """Store `token` for `name`; the file is rewritten atomically with mode 0600."""
        data = self._read()
        data[name] = token
        atomic_write(self.path, json.dumps(data, indent=1), mode=0o600)

    def delete(self, name: str) -> None:
        """Remove the token of `name`; the file is rewritten (atomically, 0600) only when it had one."""
        data = self._read()
        if data.pop(name, None) is not None:
            atomic_write(self.path, json.dumps(data, indent=1), mode=0o600)


class EnvStore:
    """Read-only: `LMSTUDIO_TRAY_TOKEN_<NAME>` beats the stores (handy for CI and containers)."""

    def __init__(self, inner: SecretStore) -> None:
        self.inner = inner
        self.backend = inner.backend

    @staticmethod
    def _var(name: str) -> str:
        return "LMSTUDIO_TRAY_TOKEN_" + "".join(c if c.isalnum() else "_" for c in name).upper()

    def get(self, name: str) -> str | None:
        """`$LMSTUDIO_TRAY_TOKEN_<NAME>` (the name upper-cased, other characters as `_`) when set, else the inner
        store's token."""
        return os.environ.get(self._var(name)) or self.inner.get(name)

    def set(self, name: str, token: str) -> None:
        """Store `token` in the inner store (a set variable still wins when reading)."""
        self.inner.set(name, token)

    def delete(self, name: str) -> None:
        """Forget the token in the inner store (a set variable still wins when reading)."""
        self.inner.delete(name)


def _working_keyring() -> KeyringBackend | None:
    try:
        from keyring.backends import fail

        backend = choose_keyring()
        if isinstance(backend, fail.Keyring):
            return None
        # Only a round trip proves a Secret Service is really there and unlocked.
        backend.get_password(SERVICE, "__probe__")
        return backend
    except Exception as exc:  # any backend error means "no usable keyring"
        log.debug("keyring unusable: %s", exc)
        return None


def open_store() -> SecretStore:
    """The token store for this machine: the plain Secret Service reader where keyring would pick the Secret Service and
    it answers, else a keyring backend that works, else the 0600 file (with a warning); the environment's variables win
    over each. Blocking (D-Bus probes): not on the core's loop."""
    if secret_service_first() and _plain_secret_service_works():
        return EnvStore(SecretServiceStore())
    backend = _working_keyring()
    if backend is not None:
        return EnvStore(KeyringStore(backend))
    store = FileStore()
    log.warning(
        "no working keyring backend; API tokens are kept in %s (readable only by you). "
        "Install and unlock a Secret Service (gnome-keyring, KWallet) to keep them in the keyring.",
        store.path,
    )
    return EnvStore(store)
