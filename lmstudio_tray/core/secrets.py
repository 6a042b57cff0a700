"""API tokens of LM Studio instances: the OS keyring, or a 0600 file when no keyring works.

Tokens never go into the config file or the logs. The keyring entry is service `lmstudio-tray`,
user = instance name, so `secret-tool lookup service lmstudio-tray username local` finds it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Protocol

from lmstudio_tray import APP_NAME
from lmstudio_tray.core import paths
from lmstudio_tray.core.config import atomic_write

log = logging.getLogger(__name__)
SERVICE = APP_NAME


class SecretStore(Protocol):
    backend: str

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, token: str) -> None: ...

    def delete(self, name: str) -> None: ...


class KeyringStore:
    def __init__(self) -> None:
        import keyring

        self._keyring = keyring
        self.backend = f"keyring ({type(keyring.get_keyring()).__name__})"

    def get(self, name: str) -> str | None:
        value = self._keyring.get_password(SERVICE, name)
        return value if isinstance(value, str) else None

    def set(self, name: str, token: str) -> None:
        self._keyring.set_password(SERVICE, name, token)

    def delete(self, name: str) -> None:
        import keyring.errors

        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            self._keyring.delete_password(SERVICE, name)


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


def _keyring_works() -> bool:
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring):
            return False
        # Only a round trip proves a Secret Service is really there and unlocked.
        keyring.get_password(SERVICE, "__probe__")
        return True
    except Exception as exc:  # any backend error means "no usable keyring"
        log.debug("keyring unusable: %s", exc)
        return False


def open_store() -> SecretStore:
    if _keyring_works():
        return EnvStore(KeyringStore())
    store = FileStore()
    log.warning(
        "no working keyring backend; API tokens are kept in %s (readable only by you). "
        "Install and unlock a Secret Service (gnome-keyring, KWallet) to keep them in the keyring.",
        store.path,
    )
    return EnvStore(store)
