"""Verdicts for the hooks: `POST /v1/validate` (answered from the status cache) and `POST /v1/ensure`.

Runs on the core's event loop. Validation reads the status cache (no LM Studio call when warm) and never
waits on LM Studio longer than the plugin's hook budget; the slow work (loads, refreshes) belongs to the
core. `Judge.validate` is also the validate fast path's handler (see `hooks.ValidateFastPath`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, replace
from typing import Any

from lmstudio_tray.api import schemas as s
from lmstudio_tray.api.context import ApiContext, ApiError
from lmstudio_tray.core.config.schema import Policy
from lmstudio_tray.core.errors import ActionError
from lmstudio_tray.core.events import VerdictGiven
from lmstudio_tray.core.hooks.verdict import (
    ValidateRequest,
    Verdict,
    VerdictCategory,
    ensure_target,
    evaluate,
    resolve_model,
)
from lmstudio_tray.core.models import InstanceSnapshot, InstanceState, LoadProgress

# verdicts for a model that is not loaded: another lmstudio-tray process may be loading it
_NOT_LOADED = frozenset({VerdictCategory.NOT_LOADED, VerdictCategory.JIT, VerdictCategory.AMBIGUOUS})
# verdicts that let a request through for LM Studio to load the model itself (JIT)
_JIT_LOADS = frozenset({VerdictCategory.JIT, VerdictCategory.AMBIGUOUS})
_JUDGED_STATES = (InstanceState.READY, InstanceState.IDLE, InstanceState.LOADING)


@dataclass(frozen=True)
class _EnsureAnswer:
    """Builds the `/v1/ensure` answers of one request: its first category and when it started."""

    first: VerdictCategory
    started: float

    def __call__(self, ok: bool, now: VerdictCategory, message: str, text: str | None = None,
                 load: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"ok": ok, "category": self.first, "category_now": now, "message": message,
                "text": text or message, "seconds": round(time.perf_counter() - self.started, 3), "load": load}


class Judge:
    """Turns a hook's request into a verdict over the core's status, and (for ensure) a load."""

    def __init__(self, ctx: ApiContext) -> None:
        """Judges over `ctx.core`, noting what it learns in `ctx.sessions`, `ctx.router` and `ctx.metrics`."""
        self.ctx = ctx
        # held directly: validate is the hook path, every lookup counts
        self._core = ctx.core
        self._monitor = ctx.core.monitor
        self._metrics = ctx.metrics

    # ---- the status a verdict is made from --------------------------------------------------------

    async def resolve_or_adhoc(self, base_url: str | None, budget: float | None = None) -> str | None:
        """The instance for `base_url`; an unknown URL becomes an ad-hoc instance. With a `budget`, a new
        URL whose first poll takes longer (a host gone to sleep) answers None meanwhile ("no status yet")
        while the instance is added in the background."""
        name = self.ctx.resolve(base_url)
        if name is None and base_url:
            adding = asyncio.ensure_future(self._monitor.ensure_instance(base_url))
            adding.add_done_callback(lambda t: t.cancelled() or t.exception())
            try:
                name = await (asyncio.wait_for(asyncio.shield(adding), budget) if budget is not None else adding)
            except asyncio.TimeoutError:
                self._metrics.fail_open_refreshes += 1
                return None
            except ValueError as exc:
                raise ApiError(422, "invalid_request", f"base_url: {exc}") from None
        return name

    async def cached_snapshot(self, name: str) -> InstanceSnapshot | None:
        """The cache; a stale or invalidated entry is refreshed only within the hook's budget."""
        monitor = self._monitor
        mon = monitor.instance(name)
        if mon.fresh_snapshot(monitor.settings.cache_max_age) is not None:
            return await monitor.get(name)  # a hit: returns without IO
        budget = self._core.config.validation.hook_timeout_ms / 2000
        snap = mon.snapshot()
        refresh = asyncio.ensure_future(monitor.get(name))
        refresh.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(refresh), timeout=budget)
        except asyncio.TimeoutError:
            # the refresh goes on in the background; this hook answers from what is known
            self._metrics.fail_open_refreshes += 1
            return snap
        except Exception:
            return monitor.snapshot(name)

    # ---- verdicts ---------------------------------------------------------------------------------

    def verdict_for(self, name: str | None, snap: InstanceSnapshot | None, body: s.ValidateIn,
                    policy: dict[str, Policy] | None = None) -> Verdict:
        """The verdict for `body` over `snap` (of instance `name`) by `policy` (the configured one if None)."""
        core = self._core
        req = ValidateRequest(body.model, body.base_url, body.context_limit or None, session_id=body.session_id)
        eta: float | None = None
        if name is not None and snap is not None and snap.state in _JUDGED_STATES:
            m = resolve_model(snap, body.model)
            if m is not None and not m.loaded:
                eta = core.actions.estimate_load_seconds(name, m.key)
        return evaluate(snap, req, policy or core.config.validation.policy, instance_name=name, eta_seconds=eta,
                        team=core.actions.current_team(), active_instance=core.active_instance,
                        ad_hoc=name is not None and self._monitor.is_ad_hoc(name))

    async def judged(self, name: str | None, snap: InstanceSnapshot | None, body: s.ValidateIn,
                     policy: dict[str, Policy] | None = None) -> Verdict:
        """`verdict_for`, seeing loads other lmstudio-tray processes run (a terminal's `lmstudio-tray load`):
        LM Studio lists none, so they are asked for (off the loop) when the model is not loaded."""
        v = self.verdict_for(name, snap, body, policy)
        key = v.facts.model_key
        if name is None or snap is None or key is None or v.category not in _NOT_LOADED or v.facts.instance_ids:
            return v
        marks = await self._core.actions.loading_elsewhere(name, key)
        if not marks:
            return v
        first = min(marks, key=lambda m: m.started_at)
        left = None if first.eta_seconds is None else max(0.0, first.eta_seconds - (time.time() - first.started_at))
        load = LoadProgress(model=key, started_at=first.started_at, progress=None, eta_seconds=left)
        return self.verdict_for(name, replace(snap, loads=(*snap.loads, load)), body, policy)

    # ---- validate (the hook path) -------------------------------------------------------------------

    async def validate(self, body: s.ValidateIn) -> dict[str, Any]:
        """The `/v1/validate` answer; its `VerdictGiven` is published once the answer is on the wire."""
        started = time.perf_counter()
        name = await self.resolve_or_adhoc(body.base_url, self._core.config.validation.hook_timeout_ms / 2000)
        snap = await self.cached_snapshot(name) if name else None
        v = await self.judged(name, snap, body)
        if name is not None:
            self._note(name, v, body)
        data = v.to_json()
        metrics = self._metrics
        metrics.validate_count += 1
        metrics.categories[v.category] += 1
        metrics.validate_ms.append((time.perf_counter() - started) * 1000)
        # published on the next loop turn, once the answer is on the wire: logging and analytics
        # subscribers must not add to the hook's round trip
        event = VerdictGiven(name or "", model=body.model, model_key=v.facts.model_key or "",
                             category=v.category, ok=v.ok, latency_ms=metrics.validate_ms[-1],
                             session_id=body.session_id or "")
        asyncio.get_running_loop().call_soon(self._core.bus.publish, event)
        return data

    def _note(self, name: str, v: Verdict, body: s.ValidateIn) -> None:
        """What a verdict on instance `name` tells the rest: the session's model, an expected JIT load, a use."""
        facts = v.facts
        if body.session_id and facts.model_key:
            self.ctx.sessions.note_model(body.session_id, name, facts.model_key, facts.loaded_context_length,
                                         agent=body.agent)
        if v.category in _JIT_LOADS and v.ok and facts.model_key and facts.jit and not facts.instance_ids:
            # LM Studio is about to load it for this request (an ambiguous name: its default variant): show
            # it as loading meanwhile, so the next request for it waits instead of loading another copy.
            self._monitor.mark_expected_load(name, facts.model_key, facts.eta_seconds)
        if v.ok and facts.model_key:
            # the shared-instance guard's "served requests lately" (memory now, the file at most every few s)
            self.ctx.router.note_use(name, facts.model_key)

    # ---- ensure -----------------------------------------------------------------------------------

    async def ensure(self, body: s.ValidateIn) -> dict[str, Any]:
        """The `/v1/ensure` answer: load the model if needed, or wait for the load already running, time-boxed
        by validation.ensure_timeout; then whether the request may proceed."""
        self._metrics.ensures += 1
        started = time.perf_counter()
        timeout = self._core.config.validation.ensure_timeout  # read now: a config change swaps core.config
        deadline = time.monotonic() + timeout
        name = await self.resolve_or_adhoc(body.base_url)
        snap = await self._monitor.get(name, max_age=1.0) if name else None
        # the caller's policy said `ensure` for this request: make it loaded, whatever the category's policy
        policy = self._core.config.validation.policy
        v = await self.judged(name, snap, body, {**policy, **dict.fromkeys(policy, Policy.ENSURE)})
        answer = _EnsureAnswer(v.category, started)
        if name is not None:
            v, finished = await self._wait_then_judge(name, v, body, deadline)
            if not finished:
                key = v.facts.model_key or v.model
                msg = f"{key} is still loading after {timeout:g} s; it goes on in the background. Try again shortly."
                return answer(False, VerdictCategory.LOADING, msg, msg + "\n" + v.text)
        if v.category is VerdictCategory.READY:
            if answer.first is not VerdictCategory.LOADING:
                return answer(True, VerdictCategory.READY, v.message)
            ctx = f", context {v.facts.loaded_context_length}" if v.facts.loaded_context_length else ""
            waited_s = time.perf_counter() - started
            return answer(True, VerdictCategory.READY, f"{v.facts.model_key or v.model} is ready on {name} "
                                                       f"(waited {waited_s:.1f} s for its load{ctx}).")
        if name is None or v.action is not Policy.ENSURE:
            return answer(v.ok, v.category, v.message, v.text)
        return await self._ensure_load(name, v, body, deadline, answer)

    async def _wait_then_judge(self, name: str, v: Verdict, body: s.ValidateIn,
                               deadline: float) -> tuple[Verdict, bool]:
        """While `v` says a load runs (and the policy is ensure): wait for it, then judge the request again
        as if it came now, by the configured policy. Returns the last verdict, and False when the load it
        names still runs at `deadline`."""
        while v.category is VerdictCategory.LOADING and v.action is Policy.ENSURE:
            self._metrics.ensures_waiting += 1
            try:
                finished = await self._wait_loaded(name, v, deadline)
            finally:
                self._metrics.ensures_waiting -= 1
            if not finished:
                return v, False
            snap = await self._monitor.get(name, max_age=0)
            v = await self.judged(name, snap, body, self._core.config.validation.policy)
        return v, True

    async def _ensure_load(self, name: str, v: Verdict, body: s.ValidateIn, deadline: float,
                           answer: _EnsureAnswer) -> dict[str, Any]:
        actions = self._core.actions
        target = ensure_target(v, ValidateRequest(body.model, body.base_url, body.context_limit or None))
        if target is None:
            return answer(False, v.category, v.message, v.text)
        key, context = target
        old_ids = list(v.facts.instance_ids) if v.category is VerdictCategory.CONTEXT_TOO_SMALL else []
        timeout = self._core.config.validation.ensure_timeout
        try:
            result = await asyncio.wait_for(actions.load(name, key, context_length=context),
                                            timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            msg = f"{key} is still loading after {timeout:g} s; it goes on in the background. Try again shortly."
            return answer(False, VerdictCategory.LOADING, msg, msg + "\n" + v.text)
        except ActionError as exc:
            return answer(False, v.category, str(exc), f"{exc}\n{v.text}")
        for old in old_ids:
            if old != result.instance_id:
                with contextlib.suppress(ActionError):
                    await actions.unload(name, old)
        took = "already loaded" if result.already_loaded else f"loaded in {result.seconds:.1f} s"
        ctx = f", context {result.context_length}" if result.context_length else ""
        return answer(True, VerdictCategory.READY, f"{key} is ready on {name} ({took}{ctx}).",
                      load=result.to_json())

    async def _wait_loaded(self, name: str, v: Verdict, deadline: float) -> bool:
        """Wait, until `deadline`, for the load `v` found running: False if it is still running then.

        A load an action runs in this process (another request's ensure, the tray, a tool) is joined; any
        other (a JIT load the tray expects) is watched in the status until it is no longer listed."""
        actions = self._core.actions
        key = v.facts.model_key or v.model
        if actions.loading(name, key):
            try:
                await asyncio.wait_for(actions.wait_for_load(name, key),
                                       timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return False
            except ActionError:
                pass  # it failed: the request is judged again and gets that category's policy
            return True
        elsewhere = bool(await actions.loading_elsewhere(name, key))
        while time.monotonic() < deadline:
            if elsewhere:  # another process's load: over when its mark is gone
                if not await actions.loading_elsewhere(name, key):
                    return True
            else:
                snap = await self._monitor.get(name, max_age=0.5)
                if not any(ld.model in (key, v.model) for ld in snap.loads):
                    return True
            await asyncio.sleep(0.25)
        return False
