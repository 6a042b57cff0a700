"""The hub's members and their tokens: one token per member, stored only as its SHA-256 in the hub's state dir,
revocable. A token is shown once, when it is made, and never logged."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from lmstudio_tray.core.support.files import atomic_write

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class MemberError(ValueError):
    """A member command that cannot be done (bad name, name taken, unknown member); the message says what to do."""


@dataclass(frozen=True)
class Member:
    """One member as `hub member list` shows it (never the token or its hash)."""

    name: str
    added: float
    revoked: float | None

    @property
    def active(self) -> bool:
        return self.revoked is None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class MemberTokens:
    """`members.json` in the hub's state dir: name -> {sha256, added, revoked}. Every call re-reads the file, so a
    token revoked from the command line is refused by a running hub at its next request."""

    def __init__(self, state: Path) -> None:
        self.path = state / "members.json"

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise MemberError(f"{self.path} cannot be read ({exc}); restore it or remove it and add the "
                              "members again") from None
        return raw if isinstance(raw, dict) else {}

    def _write(self, data: dict[str, dict[str, object]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(data, indent=1), 0o600)

    def add(self, name: str) -> str:
        """A new member named `name`; returns its token (shown once). A revoked name may be added again."""
        if not NAME.match(name):
            raise MemberError(f"{name!r} is not a member name: use letters, digits, '.', '_' or '-' (at most 64)")
        data = self._read()
        if name in data and data[name].get("revoked") is None:
            raise MemberError(f"member {name!r} exists; revoke it first (`lmstudio-tray hub member revoke {name}`) "
                              "to give it a new token")
        token = secrets.token_urlsafe(32)
        data[name] = {"sha256": _digest(token), "added": time.time(), "revoked": None}
        self._write(data)
        return token

    def revoke(self, name: str) -> None:
        """Revoke `name`'s token; MemberError when there is no such active member."""
        data = self._read()
        entry = data.get(name)
        if entry is None or entry.get("revoked") is not None:
            known = ", ".join(sorted(n for n, e in data.items() if e.get("revoked") is None)) or "none"
            raise MemberError(f"no active member {name!r} (active members: {known})")
        entry["revoked"] = time.time()
        self._write(data)

    def members(self) -> list[Member]:
        """Every member, revoked ones included, by name."""
        out = []
        for name, entry in sorted(self._read().items()):
            added, revoked = entry.get("added"), entry.get("revoked")
            out.append(Member(name, float(added) if isinstance(added, (int, float)) else 0.0,
                              float(revoked) if isinstance(revoked, (int, float)) else None))
        return out

    def who(self, token: str) -> tuple[str | None, bool]:
        """(member name, active) for `token`: (None, False) when no member ever had it, (name, False) when its
        token was revoked. Compared in constant time."""
        digest = _digest(token)
        for name, entry in self._read().items():
            stored = entry.get("sha256")
            if isinstance(stored, str) and hmac.compare_digest(stored, digest):
                return name, entry.get("revoked") is None
        return None, False
