"""Request and response bodies of the endpoint; they are what `/openapi.json` describes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ModelKey = Field(min_length=1, max_length=512, description="LM Studio model key, instance id (`key:2`) or variant")
BaseUrl = Field(
    None, max_length=2048, description="The OpenCode provider's baseURL (…/v1); picks the LM Studio instance"
)


class In(BaseModel):
    # The plugin may be newer (or older) than the tray: unknown fields are ignored rather than refused.
    # Every field declared here is used for something; a field nothing uses is removed, not kept for show.
    model_config = ConfigDict(extra="ignore")


class ErrorDetail(BaseModel):
    kind: str = Field(description="machine-readable reason, e.g. invalid_request, unauthorized, offline")
    message: str = Field(description="what went wrong and what to do, for a person")


class ErrorOut(BaseModel):
    error: ErrorDetail
    detail: list[dict[str, Any]] | None = Field(None, description="per-field problems of an invalid body")


class HealthOut(BaseModel):
    ok: bool
    version: str
    pid: int


class PluginSettingsOut(BaseModel):
    hook_timeout_ms: int
    ensure_timeout_ms: int
    instances: list[dict[str, str]] = Field(description="monitored LM Studio instances: name and url")
    toasts: dict[str, Any] = Field(description="the user's notification preferences: enabled, quiet, categories")
    policy: dict[str, str]


# ---- validate / ensure -----------------------------------------------------------------------------


class ValidateIn(In):
    model: str = ModelKey
    base_url: str | None = BaseUrl
    context_limit: int | None = Field(None, ge=0, le=100_000_000, description="limit.context OpenCode plans with")
    agent: str | None = Field(
        None, max_length=256, description="the OpenCode agent asking: a request of the `title` or `summary` "
        "agent runs on small_model and does not change the model the session is noted as running on")
    session_id: str | None = Field(
        None, max_length=256, description="the OpenCode session: remembered with the model it runs on, for "
        "compaction notes and so the tools never unload that model from under it")


class SuggestionOut(BaseModel):
    key: str
    loaded: bool
    score: float
    reason: str
    context_length: int | None


class FactsOut(BaseModel):
    instance: str | None
    url: str | None
    state: str | None
    jit: bool | None
    model_key: str | None
    instance_ids: list[str]
    loaded_context_length: int | None
    max_context_length: int | None
    loaded_models: list[str]
    eta_seconds: float | None


class VerdictOut(BaseModel):
    ok: bool = Field(description="the request may go ahead now (allow or warn)")
    category: Literal[
        "ready", "jit", "loading", "not_loaded", "unknown_model", "ambiguous", "offline", "auth_failed",
        "context_too_small", "error", "not_allowed",
    ]
    action: Literal["allow", "warn", "block", "ensure"]
    model: str
    message: str
    text: str = Field(description="message, suggestions and numbered steps, multi-line")
    suggestions: list[SuggestionOut]
    steps: list[str]
    warnings: list[str]
    retry_after_ms: int | None
    facts: FactsOut


class EnsureOut(BaseModel):
    ok: bool
    category: str = Field(description="the verdict category before the ensure")
    category_now: str = Field(description="the category the answer is for: `ready` after a load, else what "
                              "the request found (after waiting for a running load: judged by its policy)")
    message: str
    text: str
    seconds: float
    load: dict[str, Any] | None = Field(None, description="the load that ran (or was joined), if any")


# ---- events ----------------------------------------------------------------------------------------


class EventIn(In):
    type: str = Field(min_length=1, max_length=128)
    properties: dict[str, Any] = Field(default_factory=dict)
    base_url: str | None = BaseUrl
    provider_id: str | None = Field(None, max_length=256)
    model: str | None = Field(None, max_length=512)
    time: float | None = None


class EventsIn(In):
    events: list[EventIn] = Field(max_length=500)


class EventsOut(BaseModel):
    accepted: int


# ---- transforms ------------------------------------------------------------------------------------


class SystemIn(In):
    model: str = ModelKey
    base_url: str | None = BaseUrl


class SystemOut(BaseModel):
    system: list[str]


class MessageDigestIn(In):
    id: str = Field(min_length=1, max_length=256)
    role: str = Field(max_length=32)
    tokens: int = Field(ge=0, le=100_000_000)
    tool_calls: list[str] = Field(default_factory=list, max_length=1000)
    tool_results: list[str] = Field(default_factory=list, max_length=1000)


class MessagesIn(In):
    model: str = ModelKey
    base_url: str | None = BaseUrl
    context_limit: int | None = Field(
        None, ge=0, le=100_000_000, description="limit.context OpenCode plans with: when smaller than the "
        "loaded context window, the messages are trimmed to fit it instead")
    messages: list[MessageDigestIn] = Field(max_length=100_000)


class MessagesOut(BaseModel):
    keep: list[str]
    dropped: list[str]
    budget: int | None
    tokens_before: int
    tokens_after: int


class CompactionIn(In):
    session_id: str = Field(min_length=1, max_length=256)
    model: str | None = Field(None, max_length=512)
    base_url: str | None = BaseUrl


class CompactionOut(BaseModel):
    context: list[str]


class TextIn(In):
    model: str = ModelKey
    base_url: str | None = BaseUrl
    text: str = Field(max_length=10_000_000)


class TextOut(BaseModel):
    text: str
    changed: bool
    repairs: list[str]


# ---- tools -----------------------------------------------------------------------------------------


class TargetIn(In):
    instance: str | None = Field(None, max_length=64, description="instance name (default: from base_url, else active)")
    base_url: str | None = BaseUrl


class LoadIn(TargetIn):
    model: str | None = Field(None, min_length=1, max_length=512)
    models: list[str] = Field(default_factory=list, max_length=20, description="batch form")
    context_length: int | None = Field(None, ge=1, le=10_000_000)


class SessionTargetIn(TargetIn):
    """A tool that could take the model away from the OpenCode session calling it. There is no `force`: an
    agent cannot push a change through on an instance the team shares (only a person can, with the CLI or
    the tray), and a `force` sent anyway is ignored like any unknown field."""

    session_id: str | None = Field(None, max_length=256, description="the calling OpenCode session: the model "
                                   "it runs on (as validate last saw it) stays loaded")
    session_model: str | None = Field(None, max_length=512, description="the model the calling session runs on, "
                                      "as the plugin knows it: stays loaded too")


class UnloadIn(SessionTargetIn):
    model: str | None = Field(None, min_length=1, max_length=512)
    models: list[str] = Field(default_factory=list, max_length=50, description="batch form")
    all: bool = False


class SwitchIn(SessionTargetIn):
    model: str = ModelKey
    context_length: int | None = Field(None, ge=1, le=10_000_000)


class SearchIn(TargetIn):
    query: str = Field(min_length=1, max_length=256)
    limit: int = Field(10, ge=1, le=100)


class ToolOut(BaseModel):
    ok: bool = Field(description="everything asked was done (false when a model was kept for the session)")
    instance: str
    text: str = Field(description="the answer as the agent sees it")
    data: Any = None
    kept: list[str] = Field(default_factory=list, description="loaded instance ids left in place because the "
                            "calling OpenCode session runs on them")
