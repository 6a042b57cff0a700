"""The plugin's transform routes: system context, message trimming, compaction notes, text repairs.

Each answers from the status cache and the session history (no I/O): they sit on OpenCode's request path.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from lmstudio_tray.api import schemas as s
from lmstudio_tray.api.context import ERRORS, ApiContext
from lmstudio_tray.core.hooks.transforms import (
    MessageDigest,
    ModelUse,
    compaction_notes,
    message_budget,
    repair_text,
    system_context,
    trim_messages,
)
from lmstudio_tray.core.hooks.verdict import resolve_model
from lmstudio_tray.core.models import ModelInfo


def add_transform_routes(app: FastAPI, ctx: ApiContext) -> None:
    """`/v1/transform/system`, `/v1/transform/messages`, `/v1/compaction`, `/v1/text-complete`."""
    monitor = ctx.core.monitor
    counts = ctx.metrics.transforms

    @app.post("/v1/transform/system", response_model=s.SystemOut, responses=ERRORS, tags=["transforms"])
    async def transform_system(body: s.SystemIn) -> JSONResponse:
        counts["system"] += 1
        name = ctx.resolve(body.base_url)
        if not (name and body.base_url):
            return JSONResponse({"system": []})
        # the bench figures come from the analytics' cache, like the tips: no I/O on the hook path
        text = system_context(monitor.snapshot(name), body.model, ctx.insights.bench_figures())
        # analytics tips about this model (from a cache: no I/O on the hook path), e.g. "context too small"
        tips = ctx.insights.tip_texts(body.model)
        return JSONResponse({"system": ([text] if text else []) + [f"LM Studio tip: {t}" for t in tips]})

    @app.post("/v1/transform/messages", response_model=s.MessagesOut, responses=ERRORS, tags=["transforms"])
    async def transform_messages(body: s.MessagesIn) -> JSONResponse:
        counts["messages"] += 1
        ids = [m.id for m in body.messages]
        total = sum(m.tokens for m in body.messages)
        unchanged = JSONResponse({"keep": ids, "dropped": [], "budget": None, "tokens_before": total,
                                  "tokens_after": total})
        name = ctx.resolve(body.base_url) if body.base_url else None
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
        counts["compaction"] += 1
        name = ctx.resolve(body.base_url) if body.base_url else None
        history = ctx.sessions.history(body.session_id)
        model = body.model or (history[-1].model if history else None)
        if name is None or model is None:
            return JSONResponse({"context": []})
        snap = monitor.snapshot(name)
        info: ModelInfo | None = resolve_model(snap, model) if snap else None
        current = ModelUse(info.key if info else model, name, info.loaded_context_length if info else None)
        return JSONResponse({"context": compaction_notes(current, history)})

    @app.post("/v1/text-complete", response_model=s.TextOut, responses=ERRORS, tags=["transforms"])
    async def text_complete(body: s.TextIn) -> JSONResponse:
        counts["text"] += 1
        if body.base_url and ctx.resolve(body.base_url) is None:
            return JSONResponse({"text": body.text, "changed": False, "repairs": []})
        r = repair_text(body.model, body.text)
        return JSONResponse({"text": r.text, "changed": r.changed, "repairs": list(r.repairs)})

