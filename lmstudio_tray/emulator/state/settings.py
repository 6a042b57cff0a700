"""User-facing emulator settings, mirroring LM Studio's Developer -> Server Settings plus test knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lmstudio_tray.emulator.state.catalog import ModelSpec
from lmstudio_tray.emulator.state.versioning import VersionProfile, parse_version

# Settings that may change while the emulator runs (Emulator.update).
LIVE_SETTINGS = frozenset(
    {"version", "jit", "auto_evict", "default_ttl", "auth_token", "load_seconds", "token_delay", "fail_loads"}
)


@dataclass
class EmulatorSettings:
    version: str = "0.4.8"
    jit: bool = True
    auto_evict: bool = True
    # Idle TTL in seconds for JIT-loaded instances; None turns "Auto Unload Unused JIT Models" off.
    default_ttl: float | None = 3600.0
    auth_token: str | None = None
    load_seconds: float = 0.2
    port: int = 0
    server_running: bool = True
    home: Path | None = None
    catalog: list[ModelSpec] | None = None
    token_delay: float = 0.0
    # Model key -> error message: loads of that key fail (guardrail refusal, engine crash...).
    fail_loads: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parse_version(self.version)
        if self.load_seconds < 0 or self.token_delay < 0:
            raise ValueError("load_seconds and token_delay must be >= 0")
        if self.home is not None:
            self.home = Path(self.home)

    @property
    def profile(self) -> VersionProfile:
        return VersionProfile(self.version)

    @property
    def auth_required(self) -> bool:
        return self.auth_token is not None and self.profile.has_auth
