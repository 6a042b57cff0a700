"""User-facing emulator settings, mirroring LM Studio's Developer -> Server Settings plus test knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lmstudio_tray.emulator.state.catalog import ModelSpec
from lmstudio_tray.emulator.state.versioning import VersionProfile, parse_version

# Settings that may change while the emulator runs (Emulator.update).
LIVE_SETTINGS = frozenset(
    {
        "version", "jit", "auto_evict", "default_ttl", "auth_token", "load_seconds", "token_delay", "fail_loads",
        "memory_bytes", "download_speed", "fail_downloads", "launch_error", "speed_scale",
    }
)
# What the resource guardrails allow by default: enough for every model of the default catalog at its
# largest context, so only a test that lowers it (or a huge model) sees "will fail to load".
DEFAULT_MEMORY_BYTES = 64 * 1024**3


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
    # The emulated process is llmster, the headless daemon (True), or the LM Studio desktop app (False).
    daemon: bool = True
    # Set: waking the service (`lms daemon up`, any `lms` command while it is down) starts nothing: the
    # executable exits with this message and `lms` times out waiting for it.
    launch_error: str | None = None
    # Memory the resource guardrails allow a model's estimate to use (`lms load --estimate-only`, loads).
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    # Models the LM Studio catalog offers for download; None = a small default set.
    download_catalog: list[ModelSpec] | None = None
    # Bytes per second every download advances by (on the emulator's monotonic clock).
    download_speed: float = 250_000_000.0
    # Model key -> fraction of its bytes after which its download fails (0.5 = halfway).
    fail_downloads: dict[str, float] = field(default_factory=dict)
    # Set: each model streams and loads at its own speed from its size and quantisation (state/speed.py),
    # every wait multiplied by this; None keeps the fixed `load_seconds` and `token_delay`.
    speed_scale: float | None = None

    def __post_init__(self) -> None:
        parse_version(self.version)
        if self.load_seconds < 0 or self.token_delay < 0:
            raise ValueError("load_seconds and token_delay must be >= 0")
        check_live(self)
        if self.home is not None:
            self.home = Path(self.home)

    @property
    def profile(self) -> VersionProfile:
        return VersionProfile(self.version)

    @property
    def auth_required(self) -> bool:
        return self.auth_token is not None and self.profile.has_auth


def check_live(settings: EmulatorSettings) -> None:
    """Reject values no LM Studio could have, whether set at start or changed live."""
    if settings.memory_bytes <= 0:
        raise ValueError("memory_bytes must be > 0")
    if settings.download_speed <= 0:
        raise ValueError("download_speed must be > 0 (bytes per second)")
    if settings.speed_scale is not None and not settings.speed_scale > 0:
        raise ValueError("speed_scale must be > 0 (a multiplier of every model's waits), or None to turn it off")
    for key, fraction in settings.fail_downloads.items():
        if not 0 <= float(fraction) < 1:
            raise ValueError(f"fail_downloads[{key!r}] must be a fraction in [0, 1), got {fraction!r}")
