"""Load balancing over a pool of LM Studio instances: choose one, forward, fail over, stream back.

The router answers from the monitor's status cache, never from a probe of its own: an instance is a
candidate when its last poll saw it up with the requested model loaded. Among candidates it prefers the
fewest requests in flight (counted here), then the lowest poll latency. A connection error before the
response starts moves the request to the next candidate; once bytes flow they pass through unchanged.

GUI- and web-free: the endpoint's `api/router.py` only turns ASGI into `Router.open` calls and back.
The upstream side is `lmstudio.http1` (asyncio + httptools) instead of httpx: httpx costs about 2 ms of CPU
per streamed completion, http1 about 0.3 ms, and the router's budget is 2 ms in total.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lmstudio_tray.core.config.schema import PoolConfig
from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.core.control.monitor import Monitor
from lmstudio_tray.core.errors import HTTPError, RoutingError
from lmstudio_tray.core.hooks.verdict import resolve_model
from lmstudio_tray.core.lmstudio import http1
from lmstudio_tray.core.models import InstanceSnapshot, InstanceState

log = logging.getLogger(__name__)

# OpenAI routes a pool serves; `models` is answered from the cache, the rest are forwarded.
FORWARDED = frozenset({"chat/completions", "completions", "embeddings"})
SERVED_STATES = (InstanceState.READY, InstanceState.LOADING)
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"host", b"content-length", b"authorization",
})
RECENT_FAILURES = 20
INSTANCE_HEADER = "x-lmstudio-tray-instance"
IDLE_PER_INSTANCE = 32
IDLE_EXPIRY = 30.0
OVERHEAD_SAMPLES = 10_000


@dataclass
class InstanceUsage:
    """What the router knows about one instance beyond the status cache."""

    outstanding: int = 0
    served: int = 0
    failovers: int = 0
    failed_at: float | None = None  # wall time of the last connection failure
    failures: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=RECENT_FAILURES))
    last_model_use: dict[str, float] = field(default_factory=dict)  # model -> wall time of its last request

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON data (part of `Router.to_json`)."""
        return {
            "outstanding": self.outstanding,
            "served": self.served,
            "failovers": self.failovers,
            "recent_failures": [{"time": t, "reason": r} for t, r in self.failures],
            "last_model_use": dict(self.last_model_use),
        }


@dataclass
class Upstream:
    """An instance's response that has started: status and headers known, body still to stream."""

    instance: str
    status: int
    headers: list[tuple[bytes, bytes]]
    _resp: http1.Response
    _usage: InstanceUsage
    _overhead: deque[float]
    received_at: float = 0.0  # perf_counter when the router got the request
    _done: bool = False
    _first: bool = True

    async def body(self) -> AsyncIterator[bytes]:
        """The body bytes as the instance sends them (no decoding); raises HTTPError if it breaks off."""
        resp = self._resp
        async for chunk in resp.body():
            yield chunk
            if self._first:
                # what the router itself added before the first byte: before the request went out, and
                # between the instance's first body byte and the client's (the instance's own time excluded)
                self._first = False
                if self.received_at and resp.body_at:
                    self._overhead.append(
                        (resp.sent_at - self.received_at + time.perf_counter() - resp.body_at) * 1000
                    )

    async def close(self) -> None:
        """Finish with the response (only the first call counts): a completely read keep-alive connection goes back to
        the pool, one closed mid-stream stops LM Studio's generation."""
        if self._done:
            return
        self._done = True
        self._usage.outstanding -= 1
        self._resp.close()  # kept alive when complete; mid-stream, closing stops LM Studio's generation


def request_model(body: bytes) -> str:
    """The `model` of an OpenAI request body, or a RoutingError saying what is wrong with it."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        raise RoutingError(400, "invalid_request", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise RoutingError(400, "invalid_request", "the request body must be a JSON object with a `model`")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise RoutingError(
            400, "invalid_request",
            "model: the router needs the model name to pick an instance; set `model` in the request",
        )
    return model.strip()


def serves(snap: InstanceSnapshot | None, model: str) -> bool:
    """The last poll saw this instance up with `model` (a key, `key:2` or a variant) loaded."""
    if snap is None or snap.state not in SERVED_STATES:
        return False
    if snap.find_instance(model) is not None:
        return True
    m = resolve_model(snap, model)
    return m is not None and m.loaded


class Router:
    """The pool router: picks the instance for each OpenAI request from the status cache, forwards it over `http1`,
    fails over on connection errors before the response starts, and records which model served requests where (for the
    shared-instance guard). Runs on the core's loop."""

    def __init__(
        self,
        pools: Iterable[PoolConfig] | Callable[[], Iterable[PoolConfig]],
        monitor: Monitor,
        *,
        connect_timeout: float = 2.0,
        uses: ModelUseLog | None = None,
    ) -> None:
        """`pools` may be a callable: the config's current pools, so edits apply without a restart."""
        self._pools = pools
        self.monitor = monitor
        self.connect_timeout = connect_timeout
        self.usage: dict[str, InstanceUsage] = {}
        self._http = http1.Pool(connect_timeout=connect_timeout, max_idle=IDLE_PER_INSTANCE, idle_expiry=IDLE_EXPIRY)
        self.overhead_ms: deque[float] = deque(maxlen=OVERHEAD_SAMPLES)
        self.uses = uses if uses is not None else ModelUseLog()
        self.uses_writes = 0  # how often model-use.json was written (throttled; tests and status show it)
        self._trailing: asyncio.TimerHandle | None = None

    @property
    def pools(self) -> dict[str, PoolConfig]:
        """The configured pools by name, as the config has them now."""
        source = self._pools() if callable(self._pools) else self._pools
        return {p.name: p for p in source}

    async def aclose(self) -> None:
        """Close the idle upstream connections; a model-use write still due is made first (on the calling thread)."""
        if self._trailing is not None:  # the last uses must reach the file before the tray goes
            self._trailing.cancel()
            self._trailing = None
            try:
                self.uses.flush()
            except OSError as exc:
                log.warning("could not record model use in %s: %s", self.uses.path, exc)
        await self._http.aclose()

    def usage_of(self, instance: str) -> InstanceUsage:
        """The router's figures for `instance`, created empty on first use."""
        usage = self.usage.get(instance)
        if usage is None:
            usage = self.usage[instance] = InstanceUsage()
        return usage

    def last_used(self, instance: str, model: str) -> float | None:
        """Wall time of the last request for `model` routed to `instance` (for the shared-instance guard)."""
        usage = self.usage.get(instance)
        return usage.last_model_use.get(model) if usage else None

    # ---- choosing ---------------------------------------------------------------------------------

    def pool(self, name: str) -> PoolConfig:
        """The pool `name`; RoutingError 404 (`unknown_pool`) naming the configured pools when there is none."""
        try:
            return self.pools[name]
        except KeyError:
            known = ", ".join(sorted(self.pools)) or "none (add a [[pools]] table with name and instances)"
            raise RoutingError(404, "unknown_pool", f"no pool named {name!r}; configured pools: {known}") from None

    def _snapshot(self, name: str) -> InstanceSnapshot | None:
        return self.monitor.snapshot(name)

    def candidates(self, pool_name: str, model: str) -> list[str]:
        """Pool members that serve `model`, best first; a RoutingError naming the situation if none."""
        pool = self.pool(pool_name)
        scored: list[tuple[bool, int, float, int, str]] = []
        for order, name in enumerate(pool.instances):
            snap = self._snapshot(name)
            if not serves(snap, model):
                continue
            assert snap is not None
            usage = self.usage_of(name)
            # failed since its last poll: try it last, until the monitor has seen it answer again
            suspect = usage.failed_at is not None and snap.updated_at <= usage.failed_at
            latency = snap.latency_ms if snap.latency_ms is not None else float("inf")
            scored.append((suspect, usage.outstanding, latency, order, name))
        if not scored:
            raise self._nowhere(pool, model)
        scored.sort()
        return [s[-1] for s in scored]

    def _nowhere(self, pool: PoolConfig, model: str) -> RoutingError:
        lines: list[str] = []
        up = 0
        downloaded_on: list[str] = []
        loaded: set[str] = set()
        for name in pool.instances:
            snap = self._snapshot(name)
            if snap is None:
                lines.append(f"{name}: not monitored")
                continue
            if snap.state not in SERVED_STATES and snap.state is not InstanceState.IDLE:
                lines.append(f"{name}: {snap.state.value}")
                continue
            up += 1
            names = [m.key for m in snap.loaded_models]
            loaded.update(names)
            lines.append(f"{name}: {', '.join(names) or 'nothing loaded'}")
            m = resolve_model(snap, model)
            if m is not None:
                downloaded_on.append(name)
        where = "; ".join(lines)
        if up == 0:
            return RoutingError(
                503, "pool_unavailable",
                f"no instance of pool {pool.name!r} is reachable ({where}); start LM Studio on one of them",
            )
        hint = (
            f"load it on {' or '.join(downloaded_on)} (e.g. `lmstudio-tray load {model} --instance "
            f"{downloaded_on[0]}`)" if downloaded_on else "download it in LM Studio first"
        )
        other = f", or use a loaded model: {', '.join(sorted(loaded))}" if loaded else ""
        return RoutingError(
            404, "model_not_loaded",
            f"model {model!r} is not loaded on any instance of pool {pool.name!r} ({where}); {hint}{other}",
        )

    # ---- forwarding -------------------------------------------------------------------------------

    async def open(
        self,
        pool_name: str,
        method: str,
        path: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        query: bytes = b"",
        received_at: float = 0.0,
    ) -> Upstream:
        """Send the request to the best candidate; the next one on a connection error before a response."""
        if path not in FORWARDED:
            self.pool(pool_name)
            raise RoutingError(
                404, "not_found",
                f"the router forwards v1/{', v1/'.join(sorted(FORWARDED))} and answers v1/models; not v1/{path}",
            )
        model = request_model(body)
        order = self.candidates(pool_name, model)
        forwarded = b"".join(k + b": " + v + b"\r\n" for k, v in headers if k.lower() not in HOP_BY_HOP)
        target = f"/v1/{path}" + (f"?{query.decode('latin-1')}" if query else "")
        errors: list[str] = []
        for name in order:
            mon = self.monitor.instance(name)
            token = mon.client.token  # the instance's own LM Studio token (from the secret store)
            origin, prefix = http1.split_url(mon.config.url)
            head = (
                f"host: {origin.netloc}\r\ncontent-length: {len(body)}\r\n"
                + (f"authorization: Bearer {token}\r\n" if token else "")
            ).encode("latin-1")
            request = http1.Request(method, prefix + target, head + forwarded, body)
            usage = self.usage_of(name)
            usage.outstanding += 1
            try:
                resp = await self._http.request(origin, request, stream=True)
            except HTTPError as exc:
                usage.outstanding -= 1
                reason = exc.message
                self._failed(name, reason)
                errors.append(f"{name} ({reason})")
                continue
            except BaseException:
                usage.outstanding -= 1
                raise
            usage.served += 1
            self._note_use(usage, name, self._key(name, model))
            out = [(k, v) for k, v in resp.headers if k not in HOP_BY_HOP or k == b"content-length"]
            out.append((INSTANCE_HEADER.encode(), name.encode()))
            return Upstream(name, resp.status, out, resp, usage, self.overhead_ms, received_at)
        raise RoutingError(
            502, "upstream_unreachable",
            f"every instance of pool {pool_name!r} with {model!r} loaded failed to connect: {'; '.join(errors)}",
        )

    def note_use(self, instance: str, model_key: str) -> None:
        """Record that `model_key` serves requests on `instance` (validate calls for direct providers)."""
        self._note_use(self.usage_of(instance), instance, model_key)

    def _note_use(self, usage: InstanceUsage, name: str, key: str) -> None:
        now = usage.last_model_use[key] = time.time()
        # for the shared-instance guard in other processes (`models unload` asks before cutting people off):
        # written at most every `uses.every` seconds, off the loop; a use between writes goes out with
        # the next write, or with a trailing one so the file is never more than that behind
        loop = asyncio.get_running_loop()
        if self.uses.record(name, key, now):
            self._flush_uses(loop)
        elif self._trailing is None:
            self._trailing = loop.call_later(self.uses.every, self._flush_uses, loop)

    def _flush_uses(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._trailing is not None:
            self._trailing.cancel()
            self._trailing = None
        data = self.uses.pending()
        self.uses_writes += 1
        loop.run_in_executor(None, self._write_uses, data)

    def _write_uses(self, data: dict[str, dict[str, float]]) -> None:
        try:
            self.uses.write(data)
        except OSError as exc:
            log.warning("could not record model use in %s: %s", self.uses.path, exc)

    def _key(self, name: str, model: str) -> str:
        snap = self._snapshot(name)
        m = resolve_model(snap, model) if snap is not None else None
        return m.key if m is not None else model

    def _failed(self, name: str, reason: str) -> None:
        usage = self.usage_of(name)
        now = time.time()
        usage.failed_at = now
        usage.failovers += 1
        usage.failures.append((now, reason))
        log.info("router: %s failed before answering (%s); trying the next instance", name, reason)
        self.monitor.invalidate(name)  # the poll loop re-checks it now instead of at its next interval

    # ---- the pool's model list --------------------------------------------------------------------

    def models(self, pool_name: str) -> dict[str, Any]:
        """`/v1/models` of the pool: every model loaded on a reachable member, once."""
        pool = self.pool(pool_name)
        ids: dict[str, None] = {}
        for name in pool.instances:
            snap = self._snapshot(name)
            if snap is None or snap.state not in SERVED_STATES:
                continue
            for m in snap.loaded_models:
                ids[m.key] = None
        return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "organization_owner"}
                                           for i in ids]}

    def to_json(self) -> dict[str, Any]:
        """The router's own figures as JSON data: pools, per-instance usage and failures, and its overhead (p50/p99
        ms)."""
        data = sorted(self.overhead_ms)

        def pct(q: float) -> float | None:
            return round(data[min(len(data) - 1, int(q * len(data)))], 3) if data else None

        return {
            "pools": {name: list(p.instances) for name, p in self.pools.items()},
            "instances": {name: u.to_json() for name, u in self.usage.items()},
            "overhead_ms": {"count": len(data), "p50": pct(0.5), "p99": pct(0.99)},
        }

