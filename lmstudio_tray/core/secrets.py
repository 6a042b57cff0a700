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
from typing import TYPE_CHECKING, Protocol

from lmstudio_tray import APP_NAME
from lmstudio_tray.core import paths
from lmstudio_tray.core.config import atomic_write

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)
SERVICE = APP_NAME


class SecretStore(Protocol):
    backend: str

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, token: str) -> None: ...

    def delete(self, name: str) -> None: ...


class KeyringStore:
    def __init__(self, keyring_backend: KeyringBackend | None = None) -> None:
        self._keyring = keyring_backend if keyring_backend is not None else choose_keyring()
        self.backend = f"keyring ({backend_name(self._keyring)})"

    def get(self, name: str) -> str | None:
        value = self._keyring.get_password(SERVICE, name)
        return value if isinstance(value, str) else None

    def set(self, name: str, token: str) -> None:
        self._keyring.set_password(SERVICE, name, token)

    def delete(self, name: str) -> None:
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
    import keyring.core

    env = os.environ if env is None else env
    platform = platform or sys.platform
    # keyring keeps the chosen backend in this module global; there is no public "was one chosen?"
    if getattr(keyring.core, "_keyring_backend", None) is not None or env.get("PYTHON_KEYRING_BACKEND"):
        return keyring.get_keyring()
    if platform in ("darwin", "win32") or platform.startswith(("cygwin", "emscripten")):
        return keyring.get_keyring()
    if "KDE" in env.get("XDG_CURRENT_DESKTOP", "").upper().split(":") or _keyring_config_exists():
        return keyring.get_keyring()
    secret_service = _secret_service()
    if secret_service is None:
        return keyring.get_keyring()
    keyring.set_keyring(secret_service)  # so every keyring call in this process agrees with the tray's
    return secret_service


def _keyring_config_exists() -> bool:
    try:
        from keyring.util import platform_

        return (Path(platform_.config_root()) / "keyringrc.cfg").exists()
    except Exception:  # an odd keyring version: let its own discovery read whatever config it has
        return True


def _secret_service() -> KeyringBackend | None:
    try:
        from keyring.backends import SecretService

        backend = SecretService.Keyring()  # type: ignore[no-untyped-call]
        backend.priority  # noqa: B018 - raises unless secretstorage imports and the daemon answers on D-Bus
        return backend
    except Exception as exc:
        log.debug("Secret Service keyring not usable directly (%s); asking keyring to discover one", exc)
        return None


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
        return self._read().get(name)

    def set(self, name: str, token: str) -> None:
        data = self._read()
        data[name] = token
        atomic_write(self.path, json.dumps(data, indent=1), mode=0o600)

    def delete(self, name: str) -> None:
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
        return os.environ.get(self._var(name)) or self.inner.get(name)

    def set(self, name: str, token: str) -> None:
        self.inner.set(name, token)

    def delete(self, name: str) -> None:
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
