"""Shared state behind both ports, and the model-resolution rules of inference requests (JIT, #619)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from lmstudio_tray.emulator.state import errors
from lmstudio_tray.emulator.state.catalog import Catalog, ModelSpec, default_catalog, default_download_catalog
from lmstudio_tray.emulator.state.downloads import DownloadJob, Downloads
from lmstudio_tray.emulator.state.engine import Engine, Instance, LoadAborted, LoadError, LoadJob, LoadOptions
from lmstudio_tray.emulator.state.faults import FaultBook
from lmstudio_tray.emulator.state.records import RequestLog
from lmstudio_tray.emulator.state.resources import Estimate, estimate
from lmstudio_tray.emulator.state.settings import EmulatorSettings
from lmstudio_tray.emulator.state.speed import speed_of

ModelKind = Literal["llm", "embedding"]


class ConnectionLost(Exception):
    """The emulated process died mid-request: the client must see a dropped connection."""


@dataclass
class Target:
    """The instance that will serve a request, possibly after a load this request triggers or joins."""

    instance: Instance | None = None
    job: LoadJob | None = None
    owns_job: bool = False

    @property
    def needs_load(self) -> bool:
        return self.instance is None

    @property
    def identifier(self) -> str:
        if self.instance is not None:
            return self.instance.identifier
        assert self.job is not None
        return self.job.identifier


class EmulatorState:
    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.catalog = Catalog(list(settings.catalog) if settings.catalog is not None else default_catalog())
        self.engine = Engine(self.catalog)
        offered = settings.download_catalog if settings.download_catalog is not None else default_download_catalog()
        self.downloads = Downloads(self.catalog, list(offered))
        self.faults = FaultBook()
        self.log = RequestLog()
        # Set when the process "dies" (kill/close): releases hung requests.
        self.dead = threading.Event()
        self.cors = False
        # The address the HTTP server was asked to bind (`lms server start --bind`); it always listens on
        # loopback (see docs/emulator.md).
        self.network_interface = "127.0.0.1"
        # LM Studio's log entry for the last refused server start, e.g. {"code": "EADDRINUSE", ...}.
        self.server_error: dict[str, object] | None = None
        self.control_port = 0
        # One JIT decision at a time: "is it loaded, is a JIT load of it running, else start one" must not
        # interleave between two requests, or both start a load (LM Studio joins the second to the first).
        self._jit_lock = threading.Lock()

    @property
    def jit_active(self) -> bool:
        return self.settings.jit and self.settings.profile.has_jit

    # --- per-model settings --------------------------------------------------------------------------
    def load_seconds(self, spec: ModelSpec) -> float:
        if spec.load_seconds is not None:
            return spec.load_seconds
        scale = self.settings.speed_scale
        return speed_of(spec).load_seconds * scale if scale is not None else self.settings.load_seconds

    def first_token_wait(self, spec: ModelSpec, prompt_tokens: int) -> float:
        """Seconds before the first token of a streamed reply: none without per-model speeds."""
        scale = self.settings.speed_scale
        return speed_of(spec).first_token_seconds(prompt_tokens) * scale if scale is not None else 0.0

    def token_wait(self, spec: ModelSpec) -> float:
        """Seconds after each streamed token."""
        scale = self.settings.speed_scale
        return scale / speed_of(spec).generated_tokens_per_s if scale is not None else self.settings.token_delay

    def fail_message(self, spec: ModelSpec, context_length: int | None, gpu: float | None) -> str | None:
        """Why a load of `spec` fails: a configured failure, else the guardrails when the estimate does not fit."""
        configured = self.settings.fail_loads.get(spec.key, spec.fail_load)
        if configured is not None:
            return configured
        needs = self.estimate(spec, context_length=context_length, gpu=gpu)
        return None if needs.passes_guardrails else spec.guardrail_message(needs.total_bytes)

    def estimate(self, spec: ModelSpec, *, context_length: int | None, gpu: float | None) -> Estimate:
        return estimate(spec, context_length=context_length, gpu=gpu, memory_bytes=self.settings.memory_bytes)

    # --- downloads -----------------------------------------------------------------------------------
    def tick_downloads(self) -> None:
        self.downloads.tick(self.settings.download_speed)

    def start_download(self, spec: ModelSpec) -> DownloadJob:
        fraction = self.settings.fail_downloads.get(spec.key)
        return self.downloads.start(
            spec, fail_fraction=float(fraction) if fraction is not None else None, speed=self.settings.download_speed
        )

    def start_load(
        self,
        spec: ModelSpec,
        *,
        identifier: str | None = None,
        context_length: int | None = None,
        ttl: float | None = None,
        jit: bool = False,
        variant: str | None = None,
        options: LoadOptions | None = None,
    ) -> LoadJob:
        return self.engine.start_load(
            spec,
            duration=self.load_seconds(spec),
            identifier=identifier,
            context_length=context_length,
            ttl=ttl,
            jit=jit,
            fail_message=self.fail_message(spec, context_length, options.gpu if options else None),
            variant=variant,
            options=options,
        )

    def listed_names(self) -> list[str]:
        """What a JIT-aware error message offers as valid models."""
        if self.jit_active:
            return self.catalog.model_keys()
        return [i.identifier for i in self.engine.loaded()]

    # --- inference resolution ------------------------------------------------------------------------
    def resolve(
        self, name: str | None, *, kind: ModelKind, jit: bool, ttl: float | None = None,
        context_length: int | None = None,
    ) -> Target:
        """Pick or JIT-load the serving instance, raising LM Studio's OpenAI-style errors."""
        profile = self.settings.profile
        self.engine.expire()
        if name:
            with self._jit_lock:
                found = self.engine.find_loaded(name)
                if found is not None:
                    return Target(instance=found)
                spec = self.catalog.find(name)
                if spec is not None and jit:
                    return self.jit_target(spec, ttl, variant=name if "@" in name else None,
                                           context_length=context_length)
        loaded = [i for i in self.engine.loaded() if i.spec.is_embedding == (kind == "embedding")]
        if len(loaded) == 1:
            # Quirk #619: with exactly one model loaded, any model name is served by it.
            return Target(instance=loaded[0])
        if not self.engine.loaded() and (not self.jit_active or not name):
            raise errors.no_models_loaded(profile)
        raise errors.unknown_model(profile, name or "", self.listed_names())

    def jit_target(
        self, spec: ModelSpec, ttl: float | None, variant: str | None = None, context_length: int | None = None
    ) -> Target:
        """A second JIT request for a model JIT is loading joins that load. A load someone asked for
        explicitly (`lms load`, REST, SDK) is not joined: LM Studio lists no loading state and shows a
        load's progress only to the client that started it, and JIT with several clients has stacked
        `key:2` instances (LM Studio issue #168). Nothing documents a JIT request waiting for an explicit
        load, so the emulator takes the conservative reading: the request starts its own JIT load, a second
        instance with the default context (and auto-evict applies)."""
        pending = self.engine.pending_jit_job(spec.key)
        if pending is not None:
            return Target(job=pending)
        if self.settings.auto_evict:
            self.engine.evict_jit()
        effective_ttl = ttl if ttl is not None else self.settings.default_ttl
        job = self.start_load(spec, ttl=effective_ttl, jit=True, variant=variant, context_length=context_length)
        return Target(job=job, owns_job=True)

    def progress(self, target: Target) -> Iterator[float]:
        """Drive (or follow) the target's load; raises LoadError, or ConnectionLost if the process died."""
        if target.instance is not None:
            return
        assert target.job is not None
        steps = self.engine.run_load(target.job) if target.owns_job else self.engine.wait_for(target.job)
        try:
            yield from steps
        except LoadAborted as exc:
            raise ConnectionLost(str(exc)) from exc
        target.instance = target.job.instance

    def ready(self, target: Target) -> Instance:
        for _ in self.progress(target):
            pass
        assert target.instance is not None
        return target.instance

    def ready_or_error(self, target: Target) -> Instance:
        """`ready` with a JIT load failure mapped to LM Studio's 400 error."""
        try:
            return self.ready(target)
        except LoadError as exc:
            assert target.job is not None
            raise errors.jit_load_failed(target.job.spec.key, str(exc)) from exc
