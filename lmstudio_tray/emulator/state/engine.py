"""Loaded-model state of the emulated LM Studio: instances, loads in progress, idle TTL and JIT eviction."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from lmstudio_tray.emulator.state.catalog import Catalog, ModelSpec

LoadStatus = Literal["loading", "loaded", "failed", "aborted", "cancelled"]
CANCELLED_MESSAGE = "Model loading was cancelled."
DEFAULT_PARALLEL = 4
DEFAULT_EVAL_BATCH = 512


class LoadError(Exception):
    """A load that LM Studio refuses or that crashes (guardrails, engine failure, identifier clash)."""


class LoadAborted(Exception):
    """The emulated LM Studio process died while the load was running."""


@dataclass(frozen=True)
class LoadOptions:
    """What a load asked for beyond the context length: `lms load --gpu/--parallel` and the REST v1 load
    fields. None = LM Studio's default (see `resolved`)."""

    gpu: float | None = None  # offload ratio 0..1 (`--gpu off|max|0.5`); None = LM Studio decides
    parallel: int | None = None
    eval_batch_size: int | None = None
    flash_attention: bool | None = None
    num_experts: int | None = None
    offload_kv_cache_to_gpu: bool | None = None

    def resolved(self, spec: ModelSpec) -> LoadOptions:
        """The configuration the instance ends up with: llama.cpp knobs only for GGUF LLMs, experts only for
        mixture-of-experts models, no parallel slots for embeddings."""
        if spec.is_embedding:
            return LoadOptions(gpu=self.gpu)
        gguf = spec.format == "gguf"
        return LoadOptions(
            gpu=self.gpu,
            parallel=self.parallel or DEFAULT_PARALLEL,
            eval_batch_size=(self.eval_batch_size or DEFAULT_EVAL_BATCH) if gguf else None,
            flash_attention=(True if self.flash_attention is None else self.flash_attention) if gguf else None,
            num_experts=(self.num_experts or spec.experts) if gguf and spec.experts else None,
            offload_kv_cache_to_gpu=(
                (True if self.offload_kv_cache_to_gpu is None else self.offload_kv_cache_to_gpu) if gguf else None
            ),
        )


@dataclass
class Instance:
    identifier: str
    spec: ModelSpec
    context_length: int
    ttl: float | None
    jit: bool
    loaded_at: float
    last_used: float
    load_time: float
    variant: str | None = None
    options: LoadOptions = field(default_factory=LoadOptions)
    # Requests currently being served: drives `lms ps` status/queued.
    active: int = 0

    @property
    def parallel(self) -> int | None:
        return self.options.parallel

    def expired(self, now: float) -> bool:
        return self.ttl is not None and self.active == 0 and now - self.last_used >= self.ttl


@dataclass
class LoadJob:
    job_id: str
    spec: ModelSpec
    identifier: str
    context_length: int
    ttl: float | None
    jit: bool
    duration: float
    fail_message: str | None
    variant: str | None
    options: LoadOptions = field(default_factory=LoadOptions)
    started: float = field(default_factory=time.monotonic)
    progress: float = 0.0
    status: LoadStatus = "loading"
    error: str | None = None
    instance: Instance | None = None
    done: threading.Event = field(default_factory=threading.Event)
    # Set by the client that owns the load (Ctrl-C in `lms load`).
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Engine:
    """All mutations happen under one lock; waiting for load time happens outside it."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.RLock()
        self._instances: dict[str, Instance] = {}
        self._jobs: dict[str, LoadJob] = {}
        self._job_ids = itertools.count(1)
        self.abort = threading.Event()

    # --- queries -------------------------------------------------------------------------------------
    def loaded(self) -> list[Instance]:
        with self._lock:
            return list(self._instances.values())

    def instance(self, identifier: str) -> Instance | None:
        with self._lock:
            return self._instances.get(identifier)

    def find_loaded(self, name: str) -> Instance | None:
        """An instance by identifier, else the first instance of that model key (or key@variant)."""
        with self._lock:
            if name in self._instances:
                return self._instances[name]
            spec = self.catalog.find(name)
            if spec is None:
                return None
            for inst in self._instances.values():
                if inst.spec.key == spec.key:
                    return inst
            return None

    def job(self, job_id: str) -> LoadJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def pending_jobs(self) -> list[LoadJob]:
        with self._lock:
            return [j for j in self._jobs.values() if j.status == "loading"]

    def pending_jit_job(self, key: str) -> LoadJob | None:
        with self._lock:
            for job in self._jobs.values():
                if job.status == "loading" and job.jit and job.spec.key == key:
                    return job
            return None

    # --- loading -------------------------------------------------------------------------------------
    def _taken(self) -> set[str]:
        reserved = {j.identifier for j in self._jobs.values() if j.status == "loading"}
        return set(self._instances) | reserved

    def _next_identifier(self, key: str) -> str:
        taken = self._taken()
        if key not in taken:
            return key
        for n in itertools.count(2):
            candidate = f"{key}:{n}"
            if candidate not in taken:
                return candidate
        raise AssertionError("unreachable")

    def start_load(
        self,
        spec: ModelSpec,
        *,
        duration: float,
        identifier: str | None = None,
        context_length: int | None = None,
        ttl: float | None = None,
        jit: bool = False,
        fail_message: str | None = None,
        variant: str | None = None,
        options: LoadOptions | None = None,
    ) -> LoadJob:
        """Reserve an identifier (key, key:2, ...) and register a load; run it with `run_load`."""
        with self._lock:
            if identifier is not None and identifier in self._taken():
                raise LoadError(f'A model with the identifier "{identifier}" is already loaded.')
            ctx = context_length or spec.default_context_length
            if ctx > spec.max_context_length or ctx < 1:
                raise LoadError(
                    f"Invalid context length {ctx}: {spec.key} supports at most {spec.max_context_length} tokens."
                )
            job = LoadJob(
                job_id=f"load-{next(self._job_ids)}",
                spec=spec,
                identifier=identifier or self._next_identifier(spec.key),
                context_length=ctx,
                ttl=ttl,
                jit=jit,
                duration=max(0.0, duration),
                fail_message=fail_message,
                variant=variant or spec.selected_variant,
                options=(options or LoadOptions()).resolved(spec),
            )
            self._jobs[job.job_id] = job
            self._forget_old_jobs()
            return job

    def _forget_old_jobs(self) -> None:
        finished = [j for j in self._jobs.values() if j.status != "loading"]
        for job in finished[:-100]:
            del self._jobs[job.job_id]

    def run_load(self, job: LoadJob) -> Iterator[float]:
        """Advance the load in real time, yielding progress in [0, 1]; the instance appears only at the end."""
        abort = self.abort
        yield 0.0
        if job.fail_message is not None:
            # Guardrails refuse before any weights are read; engine crashes happen a moment in.
            abort.wait(min(job.duration, 0.05))
            self._finish(job, "failed", job.fail_message)
            raise LoadError(job.fail_message)
        step = max(0.01, min(0.05, job.duration / 10)) if job.duration > 0 else 0.0
        while (remaining := job.duration - job.elapsed) > 0:
            if abort.wait(min(step, remaining)):
                self._finish(job, "aborted", "LM Studio exited while loading the model.")
                raise LoadAborted(job.identifier)
            if job.cancel_requested.is_set():
                self._finish(job, "cancelled", CANCELLED_MESSAGE)
                raise LoadError(CANCELLED_MESSAGE)
            job.progress = min(0.99, job.elapsed / job.duration)
            yield job.progress
        if abort.is_set():
            self._finish(job, "aborted", "LM Studio exited while loading the model.")
            raise LoadAborted(job.identifier)
        now = time.time()
        instance = Instance(
            identifier=job.identifier,
            spec=job.spec,
            context_length=job.context_length,
            ttl=job.ttl,
            jit=job.jit,
            loaded_at=now,
            last_used=now,
            load_time=job.elapsed,
            variant=job.variant,
            options=job.options,
        )
        with self._lock:
            self._instances[instance.identifier] = instance
            job.instance = instance
            job.progress = 1.0
        self._finish(job, "loaded", None)
        yield 1.0

    def _finish(self, job: LoadJob, status: LoadStatus, error: str | None) -> None:
        with self._lock:
            job.status = status
            job.error = error
        job.done.set()

    def wait_for(self, job: LoadJob) -> Iterator[float]:
        """Follow a load someone else runs (a second JIT request for the same model)."""
        while not job.done.wait(0.02):
            if self.abort.is_set():
                raise LoadAborted(job.identifier)
            yield job.progress
        if job.status in ("failed", "cancelled"):
            raise LoadError(job.error or "load failed")
        if job.status == "aborted":
            raise LoadAborted(job.identifier)
        yield 1.0

    def finish_loads(self) -> int:
        """Let every load in progress complete now; how many there were. A test control: with a long
        `load_seconds` a load stays in progress until the test has seen what it wanted."""
        with self._lock:
            pending = [j for j in self._jobs.values() if j.status == "loading"]
            for job in pending:
                job.duration = min(job.duration, job.elapsed)  # the time it has taken: done, no 0 to divide by
            return len(pending)

    def load_now(self, job: LoadJob) -> Instance:
        for _ in self.run_load(job):
            pass
        assert job.instance is not None
        return job.instance

    # --- unloading -----------------------------------------------------------------------------------
    def unload(self, identifier: str) -> Instance | None:
        with self._lock:
            return self._instances.pop(identifier, None)

    def unload_all(self) -> list[str]:
        with self._lock:
            ids = list(self._instances)
            self._instances.clear()
            return ids

    def evict_jit(self, keep: str | None = None) -> list[str]:
        """Auto-evict: drop JIT-loaded instances before the next JIT load."""
        with self._lock:
            victims = [i for i, inst in self._instances.items() if inst.jit and i != keep]
            for ident in victims:
                del self._instances[ident]
            return victims

    def expire(self, now: float | None = None) -> list[str]:
        moment = time.time() if now is None else now
        with self._lock:
            victims = [i for i, inst in self._instances.items() if inst.expired(moment)]
            for ident in victims:
                del self._instances[ident]
            return victims

    # --- request accounting --------------------------------------------------------------------------
    def begin_use(self, instance: Instance) -> None:
        with self._lock:
            instance.active += 1
            instance.last_used = time.time()

    def end_use(self, instance: Instance) -> None:
        with self._lock:
            instance.active = max(0, instance.active - 1)
            instance.last_used = time.time()

    def kill(self) -> None:
        """The process died: loads in progress abort and every instance is gone."""
        with self._lock:
            self.abort.set()
            self._instances.clear()

    def revive(self) -> None:
        with self._lock:
            self.abort = threading.Event()
