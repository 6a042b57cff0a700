"""Model benchmarks: a fixed, versioned suite of prompts streamed through LM Studio's OpenAI-compatible API, timed
per model (load, time to first token, prompt and generated tokens/s) over N runs, reported as median and spread.

A model that is not loaded is loaded for its run, and what was loaded before (the same models, with the same
contexts) is put back afterwards, also when the run fails or is cancelled. Everything here is awaited on the
caller's loop and only does network I/O through `LMStudioClient`; nothing blocks it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import re
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from lmstudio_tray.core.control.bench_marks import BenchTracker
from lmstudio_tray.core.control.monitor import InstanceMonitor, is_local_url
from lmstudio_tray.core.errors import ActionError, LMStudioError
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.lmstudio.discovery import local_version
from lmstudio_tray.core.models import BenchPhase, ModelInfo, ModelType
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.lock import SingleInstance

# Raise it whenever a prompt, a limit or a check of a suite changes: figures of different versions do not compare.
SUITE_VERSION = 1

_LONG_TEXT = " ".join(
    f"Paragraph {n}: a lighthouse keeper logs the weather, the passing ships and the state of the lamp every hour."
    for n in range(1, 41)
)


class Suite(str, Enum):
    """The standard suites; their prompts are in `SUITES`, their version is `SUITE_VERSION`."""

    QUICK = "quick"
    CODING = "coding"


@dataclass(frozen=True)
class BenchPrompt:
    """One prompt of a suite: its text, the most tokens the reply may have, and the check of its answer."""

    name: str
    text: str
    max_tokens: int
    # A checked answer: the reply passes when this returns True (None: not checked).
    check: Callable[[str], bool] | None = None


def python_defines(reply: str, function: str) -> bool:
    """Whether the reply's code (its first fenced block, else all of it) parses as Python and defines
    `function`. The code is parsed, never run."""
    fenced = re.search(r"```(?:python|py)?\s*\n(.*?)```", reply, re.DOTALL)
    code = fenced.group(1) if fenced else reply
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == function for node in ast.walk(tree))


SUITES: dict[Suite, tuple[BenchPrompt, ...]] = {
    Suite.QUICK: (
        BenchPrompt("short", "Name three primary colours.", 64),
        BenchPrompt("long", _LONG_TEXT + "\n\nSummarise the keeper's log in two sentences.", 128),
    ),
    Suite.CODING: (
        BenchPrompt("short", "Name three primary colours.", 64),
        BenchPrompt(
            "code",
            "Write a Python function `is_palindrome(text: str) -> bool` that ignores case and spaces. "
            "Reply with the code only, in one ```python block.",
            256,
            lambda reply: python_defines(reply, "is_palindrome"),
        ),
        BenchPrompt("long", _LONG_TEXT + "\n\nSummarise the keeper's log in two sentences.", 128),
    ),
}


@dataclass(frozen=True)
class Spread:
    """Median, lowest and highest of a figure over the runs."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        """The spread of `values`; None when there are none (a figure no run could measure)."""
        return cls(statistics.median(values), min(values), max(values)) if values else None

    def to_json(self) -> dict[str, float]:
        """`median`, `low`, `high`, rounded for output."""
        return {"median": round(self.median, 4), "low": round(self.low, 4), "high": round(self.high, 4)}


@dataclass(frozen=True)
class RunSample:
    """One run of the suite on one model."""

    first_token_seconds: float
    prompt_tokens_per_s: float | None
    generated_tokens_per_s: float | None
    checks_passed: int
    checks: int


@dataclass(frozen=True)
class ModelBench:
    """The figures of one model over all runs of a bench."""

    model: str
    quantization: str | None
    context_length: int | None
    memory_bytes: int | None  # the model's size as LM Studio reports it
    loaded_for_bench: bool
    load_seconds: float | None
    first_token_seconds: Spread | None
    prompt_tokens_per_s: Spread | None
    generated_tokens_per_s: Spread | None
    checks_passed: int
    checks: int
    runs: int

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON data (`bench --json`)."""

        def spread(value: Spread | None) -> dict[str, float] | None:
            return value.to_json() if value else None

        return {
            "model": self.model, "quantization": self.quantization, "context_length": self.context_length,
            "memory_bytes": self.memory_bytes, "loaded_for_bench": self.loaded_for_bench,
            "load_seconds": self.load_seconds, "first_token_seconds": spread(self.first_token_seconds),
            "prompt_tokens_per_s": spread(self.prompt_tokens_per_s),
            "generated_tokens_per_s": spread(self.generated_tokens_per_s),
            "checks_passed": self.checks_passed, "checks": self.checks, "runs": self.runs,
        }


@dataclass(frozen=True)
class BenchReport:
    """A whole bench: the suite, its version, LM Studio's version when known, the models fastest first.

    `lmstudio_version` is LM Studio's own version (`0.4.12`, from its internal API server on this machine), else
    the inference runtime a remote server names (`runtime llama.cpp-linux-x86_64-avx2 1.50.2`), else None with
    `version_note` saying why."""

    suite: Suite
    suite_version: int
    lmstudio_version: str | None
    results: tuple[ModelBench, ...]  # fastest generation first
    version_note: str | None = None  # why `lmstudio_version` is None

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data (`bench --json`)."""
        return {
            "suite": self.suite.value, "suite_version": self.suite_version,
            "lmstudio_version": self.lmstudio_version, "lmstudio_version_note": self.version_note,
            "results": [r.to_json() for r in self.results],
        }


@dataclass(frozen=True)
class BenchProgress:
    """What the bench is doing now, for a progress display."""

    model: str
    step: str  # "loading", "run 2/3", "restoring"


class BenchError(Exception):
    """A bench could not run; the message says what to do."""


@dataclass
class _Timing:
    started: float
    first: float | None = None
    last: float | None = None
    text: list[str] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


Loaded = tuple[tuple[str, str, int | None], ...]  # (instance id, model key, context length)


def loaded_state(models: Sequence[ModelInfo]) -> Loaded:
    """What is loaded in a listing, as comparable data."""
    return tuple(sorted((i.id, m.key, i.context_length) for m in models for i in m.instances))


class BenchLoads(Protocol):
    """How a bench loads and unloads models: straight through the client (`lmstudio-tray bench`, a person's
    command), or through the core's `Actions` (an agent's tool: single-flight with other loads, the fit check,
    and the shared-instance guard on the unloads that put the instance back)."""

    async def load(self, key: str, context_length: int | None) -> tuple[str, int | None, float | None]:
        """Load `key`; (instance id, context length, seconds LM Studio reported or None)."""
        ...

    async def unload(self, instance_id: str) -> None:
        """Unload one loaded copy."""
        ...


class ClientLoads:
    """`BenchLoads` straight through an `LMStudioClient`."""

    def __init__(self, client: LMStudioClient) -> None:
        self._client = client

    async def load(self, key: str, context_length: int | None) -> tuple[str, int | None, float | None]:
        """`LMStudioClient.load`."""
        loaded = await self._client.load(key, context_length=context_length)
        return loaded.instance_id, loaded.context_length, loaded.seconds

    async def unload(self, instance_id: str) -> None:
        """`LMStudioClient.unload`."""
        await self._client.unload(instance_id)


class Bench:
    """Benchmarks models of one LM Studio server through `client` (loads and unloads through `loads`: the client
    itself by default)."""

    def __init__(
        self,
        client: LMStudioClient,
        *,
        clock: Callable[[], float] = time.perf_counter,
        progress: Callable[[BenchProgress], None] | None = None,
        lmstudio_version: str | None = None,
        loads: BenchLoads | None = None,
        local_version: Callable[[], Awaitable[str | None]] | None = None,
        tracker: BenchTracker | None = None,
    ) -> None:
        """`progress`: each step in words (the terminal); `tracker`: the steps as bus events and a mark other
        processes read (`bench_marks.py`); `loads`: how models are loaded and unloaded (`BenchLoads`).
        `local_version`: how to ask this machine's LM Studio its version (a local server only); without an answer
        the bench records the runtime the server names for the first model."""
        self._client = client
        self._loads: BenchLoads = loads or ClientLoads(client)
        self._clock = clock
        self._progress = progress or (lambda _p: None)
        self._version = lmstudio_version
        self._local_version = local_version
        self._tracker = tracker
        self._probe_failed: str | None = None  # why the runtime probe failed, when it did
        # why putting back what a load changed failed; None: all was put back (or nothing had to be)
        self.restore_failure: str | None = None

    async def run(self, models: Sequence[str], suite: Suite = Suite.QUICK, runs: int = 3) -> BenchReport:
        """Bench `models` (none: the chat models loaded now) one after the other. BenchError for bad input
        (before anything is loaded), LMStudioError when LM Studio fails; either way, and when cancelled, what
        was loaded is put back first."""
        if runs < 1:
            raise BenchError(f"--runs must be at least 1, got {runs}")
        listing = (await self._client.list_models()).models
        infos = {m.key: m for m in listing}
        chosen = list(models) or [m.key for m in listing if m.instances and m.type is ModelType.LLM]
        if not chosen:
            raise BenchError("no model is loaded: name the models to bench")
        unknown = [key for key in chosen if key not in infos]
        if unknown:
            raise BenchError(f"not downloaded: {', '.join(unknown)}; see `lmstudio-tray models list`")
        if self._tracker is not None:
            await self._tracker.started(tuple(chosen), suite.value, len(chosen) * runs)
        try:
            ranked = await self._bench_all([infos[key] for key in chosen], listing, suite, runs)
        except BaseException as exc:
            if self._tracker is not None:
                cancelled = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
                reason = "stopped" if cancelled else getattr(exc, "message", None) or str(exc) or type(exc).__name__
                await _shielded(self._tracker.failed(reason, cancelled=cancelled))
            raise
        if self._tracker is not None:
            best = ranked[0].generated_tokens_per_s
            await self._tracker.finished(ranked[0].model, best.median if best else None)
        return BenchReport(suite, SUITE_VERSION, self._version, tuple(ranked), self._version_note())

    def _version_note(self) -> str | None:
        """Why the report names no version (None when it does)."""
        if self._version:
            return None
        runtime = (f"asking the server for its runtime failed ({self._probe_failed})" if self._probe_failed
                   else "the server named no runtime")
        return ("LM Studio's internal API server did not answer /lms-status here"
                if self._local_version is not None else "a remote server does not tell LM Studio's version"
                ) + f" and {runtime} (REST v0 /api/v0/chat/completions)"

    async def _probe_runtime(self, target: str) -> None:
        """Name the runtime serving `target` as the version. The probe only names it: its failure leaves the version
        unknown with the reason, and the figures stand."""
        try:
            runtime = await self._client.runtime(target)
        except LMStudioError as exc:
            self._probe_failed = exc.message
            return
        self._version = f"runtime {runtime[0]} {runtime[1]}" if runtime else None

    async def _bench_all(
        self, infos: Sequence[ModelInfo], listing: Sequence[ModelInfo], suite: Suite, runs: int
    ) -> list[ModelBench]:
        """Bench each model in turn; the results fastest generation first."""
        if self._version is None and self._local_version is not None:
            self._version = await self._local_version()
        results = []
        for n, info in enumerate(infos):
            results.append(await self._bench_model(info, listing, suite, runs, done=n * runs))
        return sorted(results, key=lambda r: -(r.generated_tokens_per_s.median if r.generated_tokens_per_s else 0))

    async def _step(self, model: str, step: int, phase: BenchPhase, words: str) -> None:
        """Report a step: in words (`progress`) and to the tracker."""
        self._progress(BenchProgress(model, words))
        if self._tracker is not None:
            await self._tracker.progressed(model, step, phase)

    async def _bench_model(
        self, info: ModelInfo, listing: Sequence[ModelInfo], suite: Suite, runs: int, *, done: int = 0
    ) -> ModelBench:
        """One model's runs; `done`: the steps of the bench before this model's."""
        load_seconds: float | None = None
        # what was loaded just before and just after the bench's own load: the difference is what the load pushed
        # out, the only thing to load again (a model a person unloads meanwhile stays unloaded)
        before: Loaded | None = None  # None: the bench loaded nothing, there is nothing to put back
        after: Loaded | None = None
        try:
            if info.instances:
                target, context = info.instances[0].id, info.instances[0].context_length
            else:
                await self._step(info.key, done + 1, BenchPhase.LOADING, "loading")
                before = loaded_state((await self._client.list_models()).models)
                started = self._clock()
                target, context, seconds = await self._loads.load(info.key, None)
                load_seconds = seconds if seconds is not None else self._clock() - started
                after = loaded_state((await self._client.list_models()).models)
            samples = []
            for n in range(runs):
                await self._step(info.key, done + n + 1, BenchPhase.RUN, f"run {n + 1}/{runs}")
                samples.append(await self._run_suite(target, SUITES[suite]))
            if self._version is None and self._probe_failed is None:  # after the runs: this token is not timed
                await self._probe_runtime(target)
        except BaseException:
            await self._put_back(info.key, done + runs, before, after, failing=True)
            raise
        await self._put_back(info.key, done + runs, before, after, failing=False)
        return ModelBench(
            model=info.key, quantization=info.quantization, context_length=context, memory_bytes=info.size_bytes,
            loaded_for_bench=not info.instances, load_seconds=load_seconds,
            first_token_seconds=Spread.of([s.first_token_seconds for s in samples]),
            prompt_tokens_per_s=Spread.of([s.prompt_tokens_per_s for s in samples if s.prompt_tokens_per_s]),
            generated_tokens_per_s=Spread.of(
                [s.generated_tokens_per_s for s in samples if s.generated_tokens_per_s]
            ),
            checks_passed=sum(s.checks_passed for s in samples), checks=sum(s.checks for s in samples), runs=runs,
        )

    async def _run_suite(self, target: str, prompts: Sequence[BenchPrompt]) -> RunSample:
        timings = [await self._send(target, p) for p in prompts]
        first = timings[0]
        longest = max(timings, key=lambda t: t.prompt_tokens or 0)
        prompt_tps = (
            longest.prompt_tokens / (longest.first - longest.started)
            if longest.prompt_tokens and longest.first is not None and longest.first > longest.started else None
        )
        generated = sum(max(0, (t.completion_tokens or len(t.text)) - 1) for t in timings)
        generating = sum(t.last - t.first for t in timings if t.first is not None and t.last is not None)
        checked = [(p, t) for p, t in zip(prompts, timings, strict=True) if p.check is not None]
        return RunSample(
            first_token_seconds=(first.first if first.first is not None else self._clock()) - first.started,
            prompt_tokens_per_s=prompt_tps,
            generated_tokens_per_s=generated / generating if generating > 0 and generated else None,
            checks_passed=sum(1 for p, t in checked if p.check is not None and p.check("".join(t.text))),
            checks=len(checked),
        )

    async def _send(self, target: str, prompt: BenchPrompt) -> _Timing:
        timing = _Timing(self._clock())
        messages = [{"role": "user", "content": prompt.text}]
        async for chunk in self._client.chat_stream(target, messages, max_tokens=prompt.max_tokens):
            if chunk.text:
                now = self._clock()
                timing.first = now if timing.first is None else timing.first
                timing.last = now
                timing.text.append(chunk.text)
            if chunk.prompt_tokens is not None:
                timing.prompt_tokens, timing.completion_tokens = chunk.prompt_tokens, chunk.completion_tokens
        return timing

    async def _put_back(
        self, benched: str, step: int, before: Loaded | None, after: Loaded | None, *, failing: bool
    ) -> None:
        """Restore after `benched`'s runs (`before` None: it loaded nothing, there is nothing to do); `step`: its last.
        While the bench is `failing` its own error is what the caller hears; a failed restore is then only kept in
        `restore_failure`."""
        if before is None:
            return
        await self._step(benched, step, BenchPhase.RESTORING, "restoring")
        try:
            await _shielded(self._restore(before, after, benched))
        except (LMStudioError, ActionError):
            if not failing:
                raise

    async def _restore(self, before: Loaded, after: Loaded | None, benched: str) -> None:
        try:
            await self._restore_loads(before, after, benched)
        except LMStudioError as exc:
            self.restore_failure = exc.message
            raise
        except ActionError as exc:  # `Actions` (an agent's bench) words the client's failure for a person
            self.restore_failure = str(exc)
            raise

    async def _restore_loads(self, before: Loaded, after: Loaded | None, benched: str) -> None:
        """Put back what the bench's load changed: unload the copies of `benched` it added, load again (same context)
        what went away between `before` and `after` its load (None: the load failed or was stopped, so up to now) and
        is still missing. Anything loaded or unloaded meanwhile by someone else (a session, a person) stays so."""
        now = loaded_state((await self._client.list_models()).models)
        was = {(key, ctx) for _id, key, ctx in before}
        is_ = {(key, ctx) for _id, key, ctx in now}
        still = {(key, ctx) for _id, key, ctx in (now if after is None else after)}
        for instance_id, key, ctx in now:
            if key == benched and (key, ctx) not in was:
                await self._loads.unload(instance_id)
        for _id, key, ctx in before:
            if (key, ctx) not in still and (key, ctx) not in is_:
                await self._loads.load(key, ctx)


def instance_bench(
    monitor: InstanceMonitor, tracker: BenchTracker, *, progress: Callable[[BenchProgress], None] | None = None,
    loads: BenchLoads | None = None,
) -> Bench:
    """A bench of one monitored instance as `lmstudio-tray bench` and the agent's tool run it: its steps go to
    `tracker` (the tray's line and the notification), and LM Studio's own version is asked of this machine's LM
    Studio only (a remote server is another install)."""
    local = local_version if is_local_url(monitor.config.url) else None
    return Bench(monitor.client, progress=progress, loads=loads, local_version=local, tracker=tracker)


async def _shielded(work: Awaitable[None]) -> None:
    """Finish `work` even when the caller is cancelled meanwhile (Ctrl-C must still put the models back),
    then let the cancellation through."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # a failed restore is not reported over the cancellation, which is what the caller hears about
        with contextlib.suppress(LMStudioError, ActionError):
            await task
        raise


class BenchBusy(BenchError):
    """Another bench runs on this machine (any lmstudio-tray process): two at once would measure each other."""


def bench_lock_file() -> Path:
    """The lock every bench of this user holds while it runs (in the state dir)."""
    return paths.state_dir() / "bench.lock"


@contextlib.asynccontextmanager
async def bench_slot(lock_file: Path) -> AsyncIterator[None]:
    """Hold the one bench slot of this user's lmstudio-tray processes for the block (`lmstudio-tray bench`, the
    agent's tool); BenchBusy, at once, while another holds it. The lock file is an OS lock (dropped when its holder
    dies); taking it runs in a worker thread."""
    lock = SingleInstance(lock_file)
    holder = await asyncio.to_thread(lock.acquire)
    if holder is not None:
        who = f" (process {holder})" if holder else ""
        raise BenchBusy(f"another benchmark is running on this machine{who}: wait until it is done and ask again. "
                        "Two at once would slow each other down and measure nothing useful")
    try:
        yield
    finally:
        await asyncio.to_thread(lock.release)
