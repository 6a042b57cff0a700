"""Plain data the core hands to every surface: model records, instance snapshots, states.

Everything here is immutable and JSON-friendly so a snapshot can be shared across threads (the tray's
main thread reads what the core's loop thread produced) without locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class WireEnum(str, Enum):
    """A str enum that is its value wherever it is written: JSON, `str()`, f-strings (as 3.11's StrEnum).

    For kinds and states passed between modules that also appear in output (the endpoint's JSON, the
    CLI's --json and text): the enum is the contract, the output stays the plain value.
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ModelType(WireEnum):
    """What LM Studio says a model is. LM Studio 0.4 lists a vision model as `llm` with a `vision`
    capability; older versions say `vlm`, and REST v0 says `embeddings` (read as `embedding`).

    A type this version does not know stays what LM Studio called it (its own member, equal to the text),
    so the status shows it as LM Studio does and the tray lists it under "Other models".
    """

    LLM = "llm"
    VLM = "vlm"
    EMBEDDING = "embedding"

    @classmethod
    def _missing_(cls, value: object) -> ModelType | None:
        if not isinstance(value, str):
            return None
        if value == "embeddings":
            return cls.EMBEDDING
        other = str.__new__(cls, value)
        other._name_ = value.upper()
        other._value_ = value
        return other


class InstanceState(str, Enum):
    """What a person should believe about one LM Studio server right now."""

    OFFLINE = "offline"  # the HTTP server refuses connections or does not answer in time
    AUTH_FAILED = "auth_failed"  # the server wants an API token we do not have, or rejects ours
    IDLE = "idle"  # server up, nothing loaded
    READY = "ready"  # at least one model loaded
    LOADING = "loading"  # a load we started, or one we expect (JIT), is running
    ERROR = "error"  # the server answers, but with errors or nonsense


class FailureKind(str, Enum):
    """Every failure talking to LM Studio maps to exactly one of these."""

    OFFLINE = "offline"
    AUTH_FAILED = "auth_failed"
    SERVER_ERROR = "server_error"
    BAD_RESPONSE = "bad_response"


class ApiFlavor(str, Enum):
    """Which generation of LM Studio's HTTP API answered the model listing."""

    REST_V1 = "v1"  # /api/v1/models (0.4.0+)
    REST_V0 = "v0"  # /api/v0/models (0.3.6+)
    OPENAI = "openai"  # /v1/models only: no loaded/unloaded distinction


@dataclass(frozen=True)
class LoadedInstance:
    """One loaded copy of a model; a second copy of the same key is `key:2`."""

    id: str
    context_length: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The copy as JSON data (`id`, `context_length`)."""
        return {"id": self.id, "context_length": self.context_length}


@dataclass(frozen=True)
class ModelInfo:
    """A downloaded model and the instances of it that are loaded."""

    key: str
    type: ModelType = ModelType.LLM
    display_name: str | None = None
    publisher: str | None = None
    architecture: str | None = None
    quantization: str | None = None
    format: str | None = None
    size_bytes: int | None = None
    params_string: str | None = None
    max_context_length: int | None = None
    capabilities: frozenset[str] = frozenset()  # vision, tool_use, reasoning
    variants: tuple[str, ...] = ()
    instances: tuple[LoadedInstance, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.type, ModelType):  # given as LM Studio's text: the enum from here on
            object.__setattr__(self, "type", ModelType(self.type))

    @property
    def loaded(self) -> bool:
        """Whether at least one copy of the model is loaded."""
        return bool(self.instances)

    @property
    def loaded_context_length(self) -> int | None:
        """The largest context length among the loaded copies; None when none is loaded or none reports one."""
        lengths = [i.context_length for i in self.instances if i.context_length]
        return max(lengths) if lengths else None

    def to_json(self) -> dict[str, Any]:
        """The model as JSON data: its specs, `loaded` and the loaded copies (the shape of `status --json`)."""
        return {
            "key": self.key,
            "loaded": self.loaded,
            "instances": [i.to_json() for i in self.instances],
            "type": self.type,
            "display_name": self.display_name,
            "publisher": self.publisher,
            "architecture": self.architecture,
            "quantization": self.quantization,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "params_string": self.params_string,
            "max_context_length": self.max_context_length,
            "capabilities": sorted(self.capabilities),
            "variants": list(self.variants),
        }


@dataclass(frozen=True)
class LoadProgress:
    """A load the core started or expects. `progress` is None when LM Studio gives no figure."""

    model: str
    started_at: float  # wall-clock seconds
    progress: float | None = None  # 0..1
    eta_seconds: float | None = None
    estimated: bool = True  # True: progress/eta come from our throughput model, not from LM Studio

    def to_json(self) -> dict[str, Any]:
        """The load as JSON data."""
        return {
            "model": self.model,
            "started_at": self.started_at,
            "progress": self.progress,
            "eta_seconds": self.eta_seconds,
            "estimated": self.estimated,
        }


@dataclass(frozen=True)
class InstanceSnapshot:
    """The latest known truth about one instance: the unit of the status cache."""

    name: str
    url: str
    state: InstanceState
    models: tuple[ModelInfo, ...] = ()
    api: ApiFlavor | None = None
    jit: bool | None = None  # None: not known (yet)
    failure: FailureKind | None = None
    error: str | None = None
    latency_ms: float | None = None
    updated_at: float = 0.0  # wall-clock seconds of the poll that produced it
    loads: tuple[LoadProgress, ...] = ()
    remote: bool = False
    can_control_server: bool = False  # an `lms` that can start/stop this server was found

    @property
    def loaded_models(self) -> tuple[ModelInfo, ...]:
        """The models with at least one loaded copy, in listing order."""
        return tuple(m for m in self.models if m.loaded)

    def model(self, key: str) -> ModelInfo | None:
        """The downloaded model whose key is exactly `key`, or None (see `hooks.verdict.resolve_model` for every other
        spelling)."""
        for m in self.models:
            if m.key == key:
                return m
        return None

    def find_instance(self, instance_id: str) -> tuple[ModelInfo, LoadedInstance] | None:
        """The model and the loaded copy whose instance id is `instance_id` (`key` or `key:2`), or None."""
        for m in self.models:
            for inst in m.instances:
                if inst.id == instance_id:
                    return m, inst
        return None

    def to_json(self) -> dict[str, Any]:
        """The snapshot as JSON data: one instance of `status --json` and `/v1/status`."""
        return {
            "name": self.name,
            "url": self.url,
            "state": self.state.value,
            "api": self.api.value if self.api else None,
            "jit": self.jit,
            "failure": self.failure.value if self.failure else None,
            "error": self.error,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
            "updated_at": self.updated_at,
            "remote": self.remote,
            "can_control_server": self.can_control_server,
            "loads": [load.to_json() for load in self.loads],
            "models": [m.to_json() for m in self.models],
        }


class DownloadFailure(WireEnum):
    """Why a download failed, for surfaces that act on it (the CLI's exit code, the tool's answer)."""

    FAILED = "failed"  # LM Studio (or `lms get`) reported the download as failed; the reason says why
    UNKNOWN_MODEL = "unknown_model"  # the catalog has no such model
    UNREACHABLE = "unreachable"  # LM Studio stopped answering while the core followed the download
    NO_ROUTE = "no_route"  # no REST download route (LM Studio before 0.4.0) and no `lms` to run `lms get`


@dataclass(frozen=True)
class DownloadState:
    """A download the core follows now: the model as asked, LM Studio's job (or an `lms get` run, `via_lms`),
    the bytes so far and LM Studio's speed (None where it has not said)."""

    instance: str
    model: str
    job_id: str
    downloaded_bytes: int | None = None
    total_bytes: int | None = None
    bytes_per_second: float | None = None
    paused: bool = False
    via_lms: bool = False

    @property
    def fraction(self) -> float | None:
        """How much is downloaded, 0..1; None while the size is unknown."""
        if not self.total_bytes or self.downloaded_bytes is None:
            return None
        return min(1.0, self.downloaded_bytes / self.total_bytes)

    def to_json(self) -> dict[str, Any]:
        """The download as JSON data (`status --json`, the endpoint)."""
        return {
            "instance": self.instance,
            "model": self.model,
            "job_id": self.job_id,
            "downloaded_bytes": self.downloaded_bytes,
            "total_bytes": self.total_bytes,
            "bytes_per_second": self.bytes_per_second,
            "fraction": self.fraction,
            "paused": self.paused,
            "via_lms": self.via_lms,
        }


class HubState(WireEnum):
    """Where the member side stands with the hub."""

    OFF = "off"  # the team profile names no hub
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"  # no answer: local knowledge only
    REFUSED = "refused"  # the hub or this client refused (token missing, unknown or revoked; plain HTTP)
    LIMITED = "limited"  # the hub asked this member to send less often (429): it waits as long as the hub said


@dataclass(frozen=True)
class HubStatus:
    """The last sync's outcome: the state, a sentence saying what to do, this member's name as the hub knows it."""

    state: HubState = HubState.OFF
    message: str = ""
    member: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The status as JSON data."""
        return {"state": self.state.value, "message": self.message, "member": self.member}


class BenchPhase(WireEnum):
    """What a bench does with its model now."""

    LOADING = "loading"
    RUN = "run"
    RESTORING = "restoring"  # putting back what its load changed

    @classmethod
    def read(cls, value: object) -> BenchPhase | None:
        """The phase a mark file or a message names; None for none or one this version does not know."""
        try:
            return cls(value)
        except ValueError:
            return None


@dataclass(frozen=True)
class BenchState:
    """A bench running now, in this process or another one of this user (`pid`): the model it is at, the step
    (1-based) of `total` (models × runs), the phase (None: not known)."""

    instance: str
    model: str
    step: int
    total: int
    phase: BenchPhase | None
    pid: int

    def to_json(self) -> dict[str, Any]:
        """The bench as JSON data (`status --json`, the endpoint)."""
        return {"instance": self.instance, "model": self.model, "step": self.step, "total": self.total,
                "phase": self.phase.value if self.phase else "", "pid": self.pid}


@dataclass(frozen=True)
class StatusReport:
    """All instances at once: what `status --json`, `/v1/status` and the tray show."""

    instances: tuple[InstanceSnapshot, ...] = field(default_factory=tuple)
    active: str | None = None
    profile: str | None = None
    downloads: tuple[DownloadState, ...] = ()  # downloads in progress that this process follows
    team_hub: HubStatus | None = None  # None when the team profile names no hub
    benches: tuple[BenchState, ...] = ()  # benches running now, in any lmstudio-tray process of this user

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data: the shape of `status --json` and `/v1/status`."""
        return {
            "active": self.active,
            "profile": self.profile,
            "instances": [s.to_json() for s in self.instances],
            "downloads": [d.to_json() for d in self.downloads],
            "team_hub": self.team_hub.to_json() if self.team_hub is not None else None,
            "benches": [b.to_json() for b in self.benches],
        }


@dataclass(frozen=True)
class BenchFigures:
    """The latest `lmstudio-tray bench` figures of one model in one suite, of the current suite version (older
    versions do not compare): generated tokens/s (median and spread), time to first token, load time and the
    suite's checked answers."""

    model: str
    suite: str  # quick | coding (core/control/bench.py `Suite`)
    suite_version: int
    measured_at: float  # epoch seconds
    instance: str | None = None
    gen_tps: float | None = None  # median generated tokens/s
    gen_tps_low: float | None = None
    gen_tps_high: float | None = None
    first_token_s: float | None = None  # median
    load_s: float | None = None  # None: it was loaded already
    checks_passed: int = 0
    checks: int = 0  # 0: the suite checks no answer (quick)

    def measured_on(self, instance: str) -> bool:
        """Whether these figures are `instance`'s (figures that name no instance count for any: speeds only compare
        on the machine that measured them)."""
        return self.instance is None or self.instance == instance

    @property
    def check_rate(self) -> float | None:
        """Passed / checked, or None when the suite checked nothing."""
        return self.checks_passed / self.checks if self.checks else None

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON data (`models compare --json`, the tools)."""
        return {"suite": self.suite, "suite_version": self.suite_version, "measured_at": self.measured_at,
                "instance": self.instance, "gen_tps": self.gen_tps, "gen_tps_low": self.gen_tps_low,
                "gen_tps_high": self.gen_tps_high, "first_token_s": self.first_token_s, "load_s": self.load_s,
                "checks_passed": self.checks_passed, "checks": self.checks}
