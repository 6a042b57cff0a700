"""The loopback endpoint the OpenCode plugin talks to: routes over the core, answered from its cache.

Handlers run on the core's event loop. Validation reads the status cache (no LM Studio call when warm)
and never waits on LM Studio longer than the plugin's hook budget; the slow work (loads, refreshes)
belongs to the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmstudio_tray import __version__
from lmstudio_tray.analytics import tips_for
from lmstudio_tray.api import schemas as s
from lmstudio_tray.api.dashboard import mount_dashboard
from lmstudio_tray.api.router import mount_router
from lmstudio_tray.api.security import LoopbackGuard, Message, Receive, Scope, Send
from lmstudio_tray.core.config.schema import Policy
from lmstudio_tray.core.control.actions import UnloadResult
from lmstudio_tray.core.control.routing import Router
from lmstudio_tray.core.control.search import search as search_models
from lmstudio_tray.core.errors import ActionError, SharedBusyError
from lmstudio_tray.core.events import VerdictGiven
from lmstudio_tray.core.hooks.sessions import ForwardedEvent, SessionTracker
from lmstudio_tray.core.hooks.transforms import (
    MessageDigest,
    ModelUse,
    compaction_notes,
    message_budget,
    repair_text,
    system_context,
    trim_messages,
)
from lmstudio_tray.core.hooks.verdict import (
    ValidateRequest,
    Verdict,
    VerdictCategory,
    ensure_target,
    evaluate,
    resolve_model,
)
from lmstudio_tray.core.models import InstanceSnapshot, InstanceState, LoadProgress, ModelInfo
from lmstudio_tray.core.runtime import Core

log = logging.getLogger(__name__)
T = TypeVar("T")

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": s.ErrorOut, "description": "missing or wrong bearer token"},
    403: {"model": s.ErrorOut, "description": "request carried an Origin header"},
    413: {"model": s.ErrorOut, "description": "body too large"},
    421: {"model": s.ErrorOut, "description": "Host is not 127.0.0.1/localhost with this port"},
    422: {"model": s.ErrorOut, "description": "invalid body; the message names each field"},
}
TOOL_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": s.ErrorOut, "description": "no such instance"},
    409: {"model": s.ErrorOut, "description": "the action failed; the message says why and what to do"},
}
LATENCY_SAMPLES = 10_000
# verdicts for a model that is not loaded: another lmstudio-tray process may be loading it
_NOT_LOADED = frozenset({VerdictCategory.NOT_LOADED, VerdictCategory.JIT, VerdictCategory.AMBIGUOUS})
# verdicts that let a request through for LM Studio to load the model itself (JIT)
_JIT_LOADS = frozenset({VerdictCategory.JIT, VerdictCategory.AMBIGUOUS})


def _error(status: int, kind: str, message: str, detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"kind": kind, "message": message}}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass
class Metrics:
    validate_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    validate_count: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    ensures: int = 0
    ensures_waiting: int = 0  # ensures waiting for a load that was already running (now)
    transforms: Counter[str] = field(default_factory=Counter)
    fail_open_refreshes: int = 0

    def percentile(self, q: float) -> float | None:
        if not self.validate_ms:
            return None
        data = sorted(self.validate_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


@dataclass
class ApiState:
    core: Core
    sessions: SessionTracker
    metrics: Metrics = field(default_factory=Metrics)
    guard: LoopbackGuard | None = None
    router: Router | None = None
    validate: Callable[[s.ValidateIn], Awaitable[dict[str, Any]]] | None = None


class ValidateFastPath:
    """`POST /v1/validate` straight to its handler: no route matching, dependency solving or exception
    middleware, which cost more than the validation itself on the hook path. The answer is the same as the
    route's; a body that is not JSON-typed or does not validate takes the normal route, for its standard
    answer (422)."""

    def __init__(self, app: FastAPI, state: ApiState) -> None:
        self.app = app
        self.state = state

    def __getattr__(self, name: str) -> Any:
        # stands where the FastAPI app stood (`guard.app`): openapi(), state, routes... are the app's
        if name == "app":  # not set yet (copy/pickle): no endless recursion
            raise AttributeError(name)
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handle = self.state.validate
        if scope["type"] != "http" or scope["path"] != "/v1/validate" or scope["method"] != "POST" or handle is None:
            await self.app(scope, receive, send)
            return
        message = await receive()  # the guard hands over the whole body in one message
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return message
            return await receive()

        json_body = any(k == b"content-type" and v.split(b";", 1)[0].strip().lower() == b"application/json"
                        for k, v in scope["headers"])
        if not json_body or message.get("type") != "http.request" or message.get("more_body"):
            await self.app(scope, replay, send)
            return
        try:
            body = s.ValidateIn.model_validate_json(message.get("body") or b"{}")
        except ValidationError:
            await self.app(scope, replay, send)
            return
        try:
            status, data = 200, await handle(body)
        except ApiError as exc:
            status, data = exc.status, {"error": {"kind": exc.kind, "message": exc.message}}
        payload = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def create_app(
    core: Core,
    *,
    token: str,
    port: Callable[[], int] | int,
    sessions: SessionTracker | None = None,
) -> LoopbackGuard:
    """The ASGI app: FastAPI routes behind the loopback guard. `.app` is the FastAPI instance (behind the
    validate fast path, which passes attribute access through)."""
    tracker = sessions or SessionTracker(
        core.bus, invalidate=core.monitor.invalidate, instance_for_url=core.monitor.instance_for_url
    )
    state = ApiState(core=core, sessions=tracker)
    app = FastAPI(
        title="lmstudio-tray endpoint",
        version=__version__,
        description="Loopback API of lmstudio-tray for the OpenCode plugin. Every route but /v1/health needs "
        "`Authorization: Bearer <token>` (the token is in the endpoint.json discovery file).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, built off the loop
    )
    app.state.api = state
    _install_handlers(app)
    _routes(app, state)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        # walking every route's models takes ~0.1 s of CPU the first time (kept afterwards): not on the loop
        return JSONResponse(await asyncio.to_thread(app.openapi))

    state.router = mount_router(app, core)
    port_fn: Callable[[], int] = port if callable(port) else (lambda p=port: p)  # type: ignore[misc]
    # the fast path sits in front of FastAPI itself: its per-request telemetry and body-limit layers
    # cost more than the validation does
    guard = LoopbackGuard(ValidateFastPath(app, state), token=token, port=port_fn,
                          max_body_bytes=core.config.endpoint.max_body_bytes)
    state.guard = guard
    return mount_dashboard(app, core, tracker, guard)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{loc}: {err.get('msg', 'invalid')}")
        detail = jsonable_encoder(
            [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        )
        return _error(422, "invalid_request", "; ".join(problems) or "invalid request body", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, kind, str(exc.detail))

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.kind, exc.message)

    @app.exception_handler(ActionError)
    async def action_error(_request: Request, exc: ActionError) -> JSONResponse:
        return _error(409, exc.kind, str(exc))


def _routes(app: FastAPI, st: ApiState) -> None:
    core = st.core
    monitor = core.monitor
    # Settings are read from `core.config` at each use: a profile switch or an edited file replaces the
    # whole config object while the endpoint runs. A handler that reads several takes it once.

    def resolve(base_url: str | None, instance: str | None = None) -> str | None:
        if instance:
            if instance not in monitor.names:
                known = ", ".join(monitor.names) or "none"
                raise ApiError(404, "unknown_instance", f"no instance named {instance!r} (monitored: {known})")
            return instance
        if base_url:
            return monitor.instance_for_url(base_url)
        return core.active_instance

    async def resolve_or_adhoc(base_url: str | None, budget: float | None = None) -> str | None:
        """The instance for `base_url`; an unknown URL becomes an ad-hoc instance. With a `budget`, a new
        URL whose first poll takes longer (a host gone to sleep) answers None meanwhile ("no status yet")
        while the instance is added in the background."""
        name = resolve(base_url)
        if name is None and base_url:
            adding = asyncio.ensure_future(monitor.ensure_instance(base_url))
            adding.add_done_callback(lambda t: t.cancelled() or t.exception())
            try:
                name = await (asyncio.wait_for(asyncio.shield(adding), budget) if budget is not None else adding)
            except asyncio.TimeoutError:
                st.metrics.fail_open_refreshes += 1
                return None
            except ValueError as exc:
                raise ApiError(422, "invalid_request", f"base_url: {exc}") from None
        return name

    async def cached_snapshot(name: str) -> InstanceSnapshot | None:
        """The cache; a stale or invalidated entry is refreshed only within the hook's budget."""
        mon = monitor.instance(name)
        if mon.fresh_snapshot(monitor.settings.cache_max_age) is not None:
            return await monitor.get(name)  # a hit: returns without IO
        budget = core.config.validation.hook_timeout_ms / 2000
        snap = mon.snapshot()
        refresh = asyncio.ensure_future(monitor.get(name))
        refresh.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(refresh), timeout=budget)
        except asyncio.TimeoutError:
            # the refresh goes on in the background; this hook answers from what is known
            st.metrics.fail_open_refreshes += 1
            return snap
        except Exception:
            return monitor.snapshot(name)

    def verdict_for(name: str | None, snap: InstanceSnapshot | None, body: s.ValidateIn,
                    policy: dict[str, Policy] | None = None) -> Verdict:
        req = ValidateRequest(body.model, body.base_url, body.context_limit or None, session_id=body.session_id)
        eta: float | None = None
        if name is not None and snap is not None and snap.state in (InstanceState.READY, InstanceState.IDLE,
                                                                    InstanceState.LOADING):
            m = resolve_model(snap, body.model)
            if m is not None and not m.loaded:
                eta = core.actions.estimate_load_seconds(name, m.key)
        return evaluate(snap, req, policy or core.config.validation.policy, instance_name=name, eta_seconds=eta,
                        team=core.actions.current_team(), active_instance=core.active_instance,
                        ad_hoc=name is not None and monitor.is_ad_hoc(name))

    async def judged(name: str | None, snap: InstanceSnapshot | None, body: s.ValidateIn,
                     policy: dict[str, Policy] | None = None) -> Verdict:
        """`verdict_for`, seeing loads other lmstudio-tray processes run (a terminal's `lmstudio-tray load`):
        LM Studio lists none, so they are asked for (off the loop) when the model is not loaded."""
        v = verdict_for(name, snap, body, policy)
        key = v.facts.model_key
        if name is None or snap is None or key is None or v.category not in _NOT_LOADED or v.facts.instance_ids:
            return v
        marks = await core.actions.loading_elsewhere(name, key)
        if not marks:
            return v
        first = min(marks, key=lambda m: m.started_at)
        left = None if first.eta_seconds is None else max(0.0, first.eta_seconds - (time.time() - first.started_at))
        load = LoadProgress(model=key, started_at=first.started_at, progress=None, eta_seconds=left)
        return verdict_for(name, replace(snap, loads=(*snap.loads, load)), body, policy)

    @app.get("/v1/health", response_model=s.HealthOut, tags=["meta"])
    async def health() -> JSONResponse:
        return JSONResponse({"ok": True, "version": __version__, "pid": os.getpid()})

    @app.get("/v1/status", responses=ERRORS, tags=["meta"],
             description="All instances from the status cache; the same shape as `lmstudio-tray status --json`.")
    async def status() -> JSONResponse:
        st.metrics.requests["status"] += 1
        data = core.status().to_json()
        if st.router is not None:
            data["router"] = st.router.to_json()
        return JSONResponse(data)

    @app.get("/v1/plugin", response_model=s.PluginSettingsOut, responses=ERRORS, tags=["meta"])
    async def plugin_settings() -> JSONResponse:
        cfg = core.config
        n = cfg.notifications
        return JSONResponse({
            "hook_timeout_ms": cfg.validation.hook_timeout_ms,
            "ensure_timeout_ms": int(cfg.validation.ensure_timeout * 1000),
            "instances": [{"name": name, "url": monitor.instance(name).config.url} for name in monitor.names],
            "toasts": {"enabled": n.enabled, "quiet": n.quiet, "categories": dict(n.categories)},
            "policy": {k: v.value for k, v in cfg.validation.policy.items()},
        })

    @app.get("/v1/metrics", responses=ERRORS, tags=["meta"])
    async def metrics() -> JSONResponse:
        m = st.metrics
        p50, p99 = m.percentile(0.5), m.percentile(0.99)
        return JSONResponse({
            "cache": monitor.stats.to_json(),
            "lmstudio_calls": monitor.lmstudio_calls,
            "validate": {
                "count": m.validate_count,
                "p50_ms": None if p50 is None else round(p50, 4),
                "p99_ms": None if p99 is None else round(p99, 4),
                "categories": dict(m.categories),
                "answered_from_stale_cache": m.fail_open_refreshes,
            },
            "ensures": m.ensures,
            "ensures_waiting": m.ensures_waiting,
            "transforms": dict(m.transforms),
            "requests": dict(m.requests),
            "refused": st.guard.refused if st.guard else 0,
            "events": st.sessions.events_seen,
            "sessions": len(st.sessions.sessions),
            "invalidations": st.sessions.invalidations,
        })

    @app.get("/v1/sessions", responses=ERRORS, tags=["meta"],
             description="Session health and model usage gathered from forwarded OpenCode events.")
    async def sessions() -> JSONResponse:
        return JSONResponse(st.sessions.to_json())

    @app.post("/v1/validate", response_model=s.VerdictOut, responses=ERRORS, tags=["hooks"])
    async def validate(body: s.ValidateIn) -> JSONResponse:
        return JSONResponse(await validate_verdict(body))

    async def validate_verdict(body: s.ValidateIn) -> dict[str, Any]:
        started = time.perf_counter()
        name = await resolve_or_adhoc(body.base_url, core.config.validation.hook_timeout_ms / 2000)
        snap = await cached_snapshot(name) if name else None
        v = await judged(name, snap, body)
        if name is not None and body.session_id and v.facts.model_key:
            st.sessions.note_model(body.session_id, name, v.facts.model_key, v.facts.loaded_context_length,
                                   agent=body.agent)
        if name is not None and v.category in _JIT_LOADS and v.ok and v.facts.model_key and (
            v.facts.jit and not v.facts.instance_ids
        ):
            # LM Studio is about to load it for this request (an ambiguous name: its default variant): show
            # it as loading meanwhile, so the next request for it waits instead of loading another copy.
            monitor.mark_expected_load(name, v.facts.model_key, v.facts.eta_seconds)
        if name is not None and v.ok and v.facts.model_key and st.router is not None:
            # the shared-instance guard's "served requests lately" (memory now, the file at most every few s)
            st.router.note_use(name, v.facts.model_key)
        data = v.to_json()
        st.metrics.validate_count += 1
        st.metrics.categories[v.category] += 1
        st.metrics.validate_ms.append((time.perf_counter() - started) * 1000)
        # published on the next loop turn, once the answer is on the wire: logging and analytics
        # subscribers must not add to the hook's round trip
        event = VerdictGiven(name or "", model=body.model, model_key=v.facts.model_key or "",
                             category=v.category, ok=v.ok, latency_ms=st.metrics.validate_ms[-1],
                             session_id=body.session_id or "")
        asyncio.get_running_loop().call_soon(core.bus.publish, event)
        return data

    st.validate = validate_verdict

    @app.post("/v1/ensure", response_model=s.EnsureOut, responses=ERRORS, tags=["hooks"],
              description="Load the model if needed (single-flight across sessions, with the context the request "
              "plans for), or wait for the load already running, time-boxed by validation.ensure_timeout; then "
              "answer whether the request may proceed.")
    async def ensure(body: s.ValidateIn) -> JSONResponse:
        st.metrics.ensures += 1
        started = time.perf_counter()
        timeout = core.config.validation.ensure_timeout  # read now: a config change swaps core.config
        deadline = time.monotonic() + timeout
        name = await resolve_or_adhoc(body.base_url)
        snap = await monitor.get(name, max_age=1.0) if name else None
        # the caller's policy said `ensure` for this request: make it loaded, whatever the category's policy
        policy = core.config.validation.policy
        v = await judged(name, snap, body, {**policy, **dict.fromkeys(policy, Policy.ENSURE)})
        first = v.category

        def answer(ok: bool, now: VerdictCategory, message: str, text: str | None = None,
                   load: dict[str, Any] | None = None) -> JSONResponse:
            return JSONResponse({"ok": ok, "category": first, "category_now": now, "message": message,
                                 "text": text or message, "seconds": round(time.perf_counter() - started, 3),
                                 "load": load})

        while name is not None and v.category is VerdictCategory.LOADING and v.action is Policy.ENSURE:
            st.metrics.ensures_waiting += 1
            try:
                finished = await wait_loaded(name, v, deadline)
            finally:
                st.metrics.ensures_waiting -= 1
            if not finished:
                key = v.facts.model_key or v.model
                msg = f"{key} is still loading after {timeout:g} s; it goes on in the background. Try again shortly."
                return answer(False, VerdictCategory.LOADING, msg, msg + "\n" + v.text)
            # the situation changed: judged again as if the request came now, by the configured policy
            snap = await monitor.get(name, max_age=0)
            v = await judged(name, snap, body, core.config.validation.policy)
        if v.category is VerdictCategory.READY:
            if first is not VerdictCategory.LOADING:
                return answer(True, VerdictCategory.READY, v.message)
            ctx = f", context {v.facts.loaded_context_length}" if v.facts.loaded_context_length else ""
            waited = time.perf_counter() - started
            return answer(True, VerdictCategory.READY, f"{v.facts.model_key or v.model} is ready on {name} "
                                                       f"(waited {waited:.1f} s for its load{ctx}).")
        if name is None or v.action is not Policy.ENSURE:
            return answer(v.ok, v.category, v.message, v.text)
        return await ensure_load(name, v, body, deadline, answer)

    async def ensure_load(name: str, v: Verdict, body: s.ValidateIn, deadline: float,
                          answer: Callable[..., JSONResponse]) -> JSONResponse:
        target = ensure_target(v, ValidateRequest(body.model, body.base_url, body.context_limit or None))
        if target is None:
            return answer(False, v.category, v.message, v.text)
        key, context = target
        old_ids = list(v.facts.instance_ids) if v.category is VerdictCategory.CONTEXT_TOO_SMALL else []
        timeout = core.config.validation.ensure_timeout
        try:
            result = await asyncio.wait_for(core.actions.load(name, key, context_length=context),
                                            timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            msg = f"{key} is still loading after {timeout:g} s; it goes on in the background. Try again shortly."
            return answer(False, VerdictCategory.LOADING, msg, msg + "\n" + v.text)
        except ActionError as exc:
            return answer(False, v.category, str(exc), f"{exc}\n{v.text}")
        for old in old_ids:
            if old != result.instance_id:
                with contextlib.suppress(ActionError):
                    await core.actions.unload(name, old)
        took = "already loaded" if result.already_loaded else f"loaded in {result.seconds:.1f} s"
        ctx = f", context {result.context_length}" if result.context_length else ""
        return answer(True, VerdictCategory.READY, f"{key} is ready on {name} ({took}{ctx}).", load=result.to_json())

    async def wait_loaded(name: str, v: Verdict, deadline: float) -> bool:
        """Wait, until `deadline`, for the load `v` found running: False if it is still running then.

        A load an action runs in this process (another request's ensure, the tray, a tool) is joined; any
        other (a JIT load the tray expects) is watched in the status until it is no longer listed."""
        key = v.facts.model_key or v.model
        if core.actions.loading(name, key):
            try:
                await asyncio.wait_for(core.actions.wait_for_load(name, key),
                                       timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return False
            except ActionError:
                pass  # it failed: the request is judged again and gets that category's policy
            return True
        elsewhere = bool(await core.actions.loading_elsewhere(name, key))
        while time.monotonic() < deadline:
            if elsewhere:  # another process's load: over when its mark is gone
                if not await core.actions.loading_elsewhere(name, key):
                    return True
            else:
                snap = await monitor.get(name, max_age=0.5)
                if not any(ld.model in (key, v.model) for ld in snap.loads):
                    return True
            await asyncio.sleep(0.25)
        return False

    @app.post("/v1/events", response_model=s.EventsOut, responses=ERRORS, tags=["hooks"])
    async def events(body: s.EventsIn) -> JSONResponse:
        for e in body.events:
            instance = monitor.instance_for_url(e.base_url) if e.base_url else None
            st.sessions.record(ForwardedEvent(e.type, e.properties, instance=instance, base_url=e.base_url,
                                              provider_id=e.provider_id, model=e.model, time=e.time or time.time()))
        return JSONResponse({"accepted": len(body.events)})

    @app.post("/v1/transform/system", response_model=s.SystemOut, responses=ERRORS, tags=["transforms"])
    async def transform_system(body: s.SystemIn) -> JSONResponse:
        st.metrics.transforms["system"] += 1
        name = resolve(body.base_url)
        if not (name and body.base_url):
            return JSONResponse({"system": []})
        text = system_context(monitor.snapshot(name), body.model)
        # analytics tips about this model (from a cache: no I/O on the hook path), e.g. "context too small"
        tips = tips_for(core, body.model)
        return JSONResponse({"system": ([text] if text else []) + [f"LM Studio tip: {t}" for t in tips]})

    @app.post("/v1/transform/messages", response_model=s.MessagesOut, responses=ERRORS, tags=["transforms"])
    async def transform_messages(body: s.MessagesIn) -> JSONResponse:
        st.metrics.transforms["messages"] += 1
        ids = [m.id for m in body.messages]
        total = sum(m.tokens for m in body.messages)
        unchanged = JSONResponse({"keep": ids, "dropped": [], "budget": None, "tokens_before": total,
                                  "tokens_after": total})
        name = resolve(body.base_url) if body.base_url else None
        snap = monitor.snapshot(name) if name else None
        m = resolve_model(snap, body.model) if snap else None
        if m is None or not m.loaded_context_length:
            return unchanged
        # OpenCode plans with limit.context: when the person set it below the loaded window, fit that
        window = min(m.loaded_context_length, body.context_limit or m.loaded_context_length)
        budget = message_budget(window)
        digests = [MessageDigest(d.id, d.role, d.tokens, tuple(d.tool_calls), tuple(d.tool_results))
                   for d in body.messages]
        return JSONResponse(trim_messages(digests, budget).to_json())

    @app.post("/v1/compaction", response_model=s.CompactionOut, responses=ERRORS, tags=["transforms"])
    async def compaction(body: s.CompactionIn) -> JSONResponse:
        st.metrics.transforms["compaction"] += 1
        name = resolve(body.base_url) if body.base_url else None
        history = st.sessions.history(body.session_id)
        model = body.model or (history[-1].model if history else None)
        if name is None or model is None:
            return JSONResponse({"context": []})
        snap = monitor.snapshot(name)
        info: ModelInfo | None = resolve_model(snap, model) if snap else None
        current = ModelUse(info.key if info else model, name, info.loaded_context_length if info else None)
        return JSONResponse({"context": compaction_notes(current, history)})

    @app.post("/v1/text-complete", response_model=s.TextOut, responses=ERRORS, tags=["transforms"])
    async def text_complete(body: s.TextIn) -> JSONResponse:
        st.metrics.transforms["text"] += 1
        if body.base_url and resolve(body.base_url) is None:
            return JSONResponse({"text": body.text, "changed": False, "repairs": []})
        r = repair_text(body.model, body.text)
        return JSONResponse({"text": r.text, "changed": r.changed, "repairs": list(r.repairs)})

    # ---- tools ----------------------------------------------------------------------------------

    def target(body: s.TargetIn) -> str:
        name = resolve(body.base_url, body.instance)
        if name is None:
            name = core.active_instance
        if name is None:
            raise ApiError(404, "unknown_instance", "no LM Studio instance is configured")
        return name

    def tool(ok: bool, name: str, text: str, data: Any = None, kept: Sequence[str] = ()) -> JSONResponse:
        return JSONResponse({"ok": ok, "instance": name, "text": text, "data": data, "kept": list(kept)})

    def session_keep(body: s.SessionTargetIn, name: str) -> list[str]:
        """The model the calling OpenCode session runs on, if that is on instance `name`: what validate last
        saw for the session, and what the plugin says. A tool must not take it away: the session's next turn
        would be blocked before the agent even read the tool's answer."""
        keep: list[str] = []
        use = st.sessions.current(body.session_id) if body.session_id else None
        if use is not None and use.instance in (None, name):
            keep.append(use.model)
        if body.session_model:
            # the plugin sends the session's own base_url; a URL no instance has may still be this server
            where = resolve(body.base_url) if body.base_url else None
            if where in (None, name):
                keep.append(body.session_model)
        return list(dict.fromkeys(keep))

    def kept_text(kept: Sequence[str]) -> str:
        names = ", ".join(kept)
        return (f"Kept {names} loaded: this OpenCode session runs on it, and unloading it would stop the session "
                "before it reads this answer. Only the person can move the session to another model: with "
                f"/models in OpenCode. After that, {names} can be unloaded.")

    def as_cli(name: str, command: str) -> str:
        where = f" --instance {name}" if len(monitor.names) > 1 else ""
        return f"`lmstudio-tray {command}{where} --force`"

    async def by_agent(action: Awaitable[T], person_command: str) -> T:
        """An action an agent asked for. On an instance the team shares, an agent cannot push a change
        through (no `force` here): the refusal says so and names the command a person would use."""
        try:
            return await action
        except SharedBusyError as exc:
            raise ApiError(409, "shared_busy", f"{exc.reason}. An agent cannot force a change on an instance "
                           f"the team shares; if the team agrees, the person can run {person_command}.") from None

    @app.post("/v1/tools/list", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_list(body: s.TargetIn) -> JSONResponse:
        name = target(body)
        snap = await monitor.get(name, max_age=2.0)
        lines = [f"LM Studio '{name}' ({snap.url}): {snap.state.value}, JIT "
                 + {True: "on", False: "off", None: "unknown"}[snap.jit]]
        for m in snap.models:
            if m.loaded:
                ids = ", ".join(f"{i.id} (ctx {i.context_length})" for i in m.instances)
                lines.append(f"- {m.key} [{m.type}] loaded: {ids}")
            else:
                lines.append(f"- {m.key} [{m.type}] not loaded, max ctx {m.max_context_length}")
        if not snap.models:
            lines.append("(no models listed)")
        return tool(True, name, "\n".join(lines), [m.to_json() for m in snap.models])

    @app.post("/v1/tools/load", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_load(body: s.LoadIn) -> JSONResponse:
        name = target(body)
        keys = [k for k in [body.model, *body.models] if k]
        if not keys:
            raise ApiError(422, "invalid_request", "model: give a model key (or models: [...])")
        results, lines, ok = [], [], True
        for key in dict.fromkeys(keys):
            try:
                r = await core.actions.load(name, key, context_length=body.context_length)
            except ActionError as exc:
                ok = False
                lines.append(f"{key}: failed: {exc}")
                continue
            results.append(r.to_json())
            how = "was already loaded" if r.already_loaded else f"loaded in {r.seconds:.1f} s"
            lines.append(f"{r.model} {how} as {r.instance_id} (context {r.context_length or 'default'})")
        if not ok and len(keys) == 1:
            raise ApiError(409, "failed", lines[0].split(": failed: ", 1)[-1])
        return tool(ok, name, "\n".join(lines), results)

    @app.post("/v1/tools/unload", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"],
              description="Unload models, never the one the calling session runs on (listed in `kept`).")
    async def tool_unload(body: s.UnloadIn) -> JSONResponse:
        name = target(body)
        keep = session_keep(body, name)
        results: list[UnloadResult] = []
        if body.all:
            results.append(await by_agent(core.actions.unload_all(name, keep=keep), as_cli(name, "unload --all")))
        else:
            keys = [k for k in [body.model, *body.models] if k]
            if not keys:
                raise ApiError(422, "invalid_request", "model: give a model key, models: [...], or all: true")
            for key in dict.fromkeys(keys):
                results.append(await by_agent(core.actions.unload(name, key, keep=keep),
                                              as_cli(name, f"unload {key}")))
        done = [i for r in results for i in r.unloaded]
        kept = list(dict.fromkeys(i for r in results for i in r.kept))
        if done:
            text = f"Unloaded {', '.join(done)} on {name}."
        else:
            text = f"Nothing was unloaded on {name}." if kept else f"Nothing was loaded on {name}."
        if kept:
            text += " " + kept_text(kept)
        return tool(not kept, name, text, done, kept)

    @app.post("/v1/tools/switch", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"],
              description="Load a model, then unload the other chat models except the one the calling session "
              "runs on (listed in `kept`).")
    async def tool_switch(body: s.SwitchIn) -> JSONResponse:
        name = target(body)
        r = await by_agent(core.actions.switch(name, body.model, context_length=body.context_length,
                                               keep=session_keep(body, name)),
                           as_cli(name, f"switch {body.model}"))
        how = f"{r.model} ({r.instance_id}, context {r.context_length or 'default'})"
        text = f"Loaded {how} on {name}" if r.kept else f"Switched {name} to {how}"
        text += f"; unloaded {', '.join(r.unloaded)}." if r.unloaded else "; no other chat model was loaded."
        if r.kept:
            text += " " + kept_text(r.kept)
        return tool(not r.kept, name, text, r.to_json(), r.kept)

    @app.post("/v1/tools/server/start", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_server_start(body: s.TargetIn) -> JSONResponse:
        name = target(body)
        msg = await core.actions.server_start(name)
        return tool(True, name, msg or f"Started the server of {name}.")

    @app.post("/v1/tools/server/stop", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"],
              description="Stop LM Studio's server; refused (409 in_use_by_session) on the instance the calling "
              "session runs on.")
    async def tool_server_stop(body: s.SessionTargetIn) -> JSONResponse:
        name = target(body)
        keep = session_keep(body, name)
        if keep:
            # there is no keeping a model loaded on a stopped server: refuse, the session would stop with it
            where = f" --instance {name}" if len(monitor.names) > 1 else ""
            raise ApiError(409, "in_use_by_session", f"Not stopping the server of {name}: this OpenCode session "
                           f"runs on {keep[0]} there and would stop before it reads this answer. Only the person "
                           f"can move the session to another model: with /models in OpenCode; the person can "
                           f"then stop the server with `lmstudio-tray server stop{where}`.")
        msg = await core.actions.server_stop(name)
        return tool(True, name, msg or f"Stopped the server of {name}.")

    @app.post("/v1/tools/server/status", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_server_status(body: s.TargetIn) -> JSONResponse:
        name = target(body)
        info = await core.actions.server_status(name)
        snap = monitor.snapshot(name)
        loaded = ", ".join(m.key for m in snap.loaded_models) if snap else ""
        text = (f"LM Studio '{name}' at {info['url']} is {'running' if info['running'] else 'not running'} "
                f"({info['state']}); loaded: {loaded or 'nothing'}.")
        return tool(True, name, text, info)

    @app.post("/v1/tools/search", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_search(body: s.SearchIn) -> JSONResponse:
        name = target(body)
        snap = await monitor.get(name, max_age=5.0)
        # Fuzzy name match ranked with a nudge for loaded models: the same ranking as `models search`.
        hits = [h.model for h in search_models([(name, m) for m in snap.models], body.query, limit=body.limit)]
        if not hits:
            text = f"No downloaded model on {name} matches {body.query!r}."
        else:
            text = "\n".join(
                f"- {m.key}" + (" (loaded)" if m.loaded else "")
                + (f", {m.quantization}" if m.quantization else "")
                + (f", max ctx {m.max_context_length}" if m.max_context_length else "")
                for m in hits
            )
        return tool(True, name, text, [m.to_json() for m in hits])
