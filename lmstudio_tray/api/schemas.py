"""Request and response bodies of the endpoint; they are what `/openapi.json` describes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ModelKey = Field(min_length=1, max_length=512, description="LM Studio model key, instance id (`key:2`) or variant")
BaseUrl = Field(
    None, max_length=2048, description="The OpenCode provider's baseURL (…/v1); picks the LM Studio instance"
)


class In(BaseModel):
    """A request body: fields it does not declare are ignored."""

    # The plugin may be newer (or older) than the tray: unknown fields are ignored rather than refused.
    # Every field declared here is used for something; a field nothing uses is removed, not kept for show.
    model_config = ConfigDict(extra="ignore")


class ErrorDetail(BaseModel):
    """What went wrong, for a program (`kind`) and for a person (`message`)."""

    kind: str = Field(description="machine-readable reason, e.g. invalid_request, unauthorized, offline")
    message: str = Field(description="what went wrong and what to do, for a person")


class ErrorOut(BaseModel):
    """Every error answer of the endpoint."""

    error: ErrorDetail
    detail: list[dict[str, Any]] | None = Field(None, description="per-field problems of an invalid body")


class TokenReloadIn(In):
    """`POST /v1/tokens/reload`: which token to read again from the keyring (never the token itself)."""

    name: str = Field(min_length=1, max_length=200, description="An instance's name, or team-hub")


class TokenReloadOut(BaseModel):
    """`POST /v1/tokens/reload`'s answer: the name, and whether anything here uses a token of that name."""

    name: str
    used: bool = Field(description="Whether this lmstudio-tray uses a token of that name (an instance, the hub)")


class HealthOut(BaseModel):
    """`GET /v1/health`: the endpoint runs (no token needed)."""

    ok: bool
    version: str
    pid: int


class PluginSettingsOut(BaseModel):
    """`GET /v1/plugin`: the settings the plugin follows (hook budgets, instances, toasts, policy)."""

    hook_timeout_ms: int
    ensure_timeout_ms: int
    instances: list[dict[str, str]] = Field(description="monitored LM Studio instances: name and url")
    toasts: dict[str, Any] = Field(description="the toasts the user wants ([opencode.toasts], unset keys as "
                                   "[notifications]): enabled, quiet, categories")
    policy: dict[str, str]


# ---- validate / ensure -----------------------------------------------------------------------------


class ValidateIn(In):
    """`POST /v1/validate` and `/v1/ensure`: the request OpenCode is about to send."""

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
    """A model to use instead, and why."""

    key: str
    loaded: bool
    score: float
    reason: str
    context_length: int | None


class FactsOut(BaseModel):
    """What the verdict was made from: the instance, its state and the model as LM Studio lists them."""

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
    """`POST /v1/validate`: may the request go ahead, and if not, why and what to do."""

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
    """`POST /v1/ensure`: the model loaded (or its load waited for), and whether the request may go ahead."""

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
    """One OpenCode event as the plugin forwards it."""

    type: str = Field(min_length=1, max_length=128)
    properties: dict[str, Any] = Field(default_factory=dict)
    base_url: str | None = BaseUrl
    provider_id: str | None = Field(None, max_length=256)
    model: str | None = Field(None, max_length=512)
    time: float | None = None


class EventsIn(In):
    """`POST /v1/events`: a batch of forwarded OpenCode events."""

    events: list[EventIn] = Field(max_length=500)


class EventsOut(BaseModel):
    """How many events were taken."""

    accepted: int


# ---- transforms ------------------------------------------------------------------------------------


class SystemIn(In):
    """`POST /v1/transform/system`: the model a request goes to."""

    model: str = ModelKey
    base_url: str | None = BaseUrl


class SystemOut(BaseModel):
    """Lines to add to the system prompt (LM Studio context, analytics tips)."""

    system: list[str]


class MessageDigestIn(In):
    """One message of the conversation, as its size and tool links (never its text)."""

    id: str = Field(min_length=1, max_length=256)
    role: str = Field(max_length=32)
    tokens: int = Field(ge=0, le=100_000_000)
    tool_calls: list[str] = Field(default_factory=list, max_length=1000)
    tool_results: list[str] = Field(default_factory=list, max_length=1000)


class MessagesIn(In):
    """`POST /v1/transform/messages`: the conversation to fit into the loaded context window."""

    model: str = ModelKey
    base_url: str | None = BaseUrl
    context_limit: int | None = Field(
        None, ge=0, le=100_000_000, description="limit.context OpenCode plans with: when smaller than the "
        "loaded context window, the messages are trimmed to fit it instead")
    messages: list[MessageDigestIn] = Field(max_length=100_000)


class MessagesOut(BaseModel):
    """The messages to keep and to drop, and the token budget they were fitted to."""

    keep: list[str]
    dropped: list[str]
    budget: int | None
    tokens_before: int
    tokens_after: int


class CompactionIn(In):
    """`POST /v1/compaction`: the session being compacted."""

    session_id: str = Field(min_length=1, max_length=256)
    model: str | None = Field(None, max_length=512)
    base_url: str | None = BaseUrl


class CompactionOut(BaseModel):
    """Notes for the compaction summary (the models the session ran on)."""

    context: list[str]


class TextIn(In):
    """`POST /v1/text-complete`: a model answer to repair (leaked chat-template tokens)."""

    model: str = ModelKey
    base_url: str | None = BaseUrl
    text: str = Field(max_length=10_000_000)


class TextOut(BaseModel):
    """The repaired text and what was repaired."""

    text: str
    changed: bool
    repairs: list[str]


# ---- tools -----------------------------------------------------------------------------------------


class TargetIn(In):
    """A tool call: the LM Studio instance it acts on."""

    instance: str | None = Field(None, max_length=64, description="instance name (default: from base_url, else active)")
    base_url: str | None = BaseUrl


class LoadIn(TargetIn):
    """`POST /v1/tools/load`: one model or several, with the load options (each optional; GPU offload, parallel
    and identifier need `lms`, this machine's LM Studio)."""

    model: str | None = Field(None, min_length=1, max_length=512)
    models: list[str] = Field(default_factory=list, max_length=20, description="batch form")
    context_length: int | None = Field(None, ge=1, le=10_000_000)
    gpu: str | None = Field(None, max_length=16, description="GPU offload: off, max or a ratio between 0 and 1")
    ttl: int | None = Field(None, ge=1, le=10_000_000, description="unload after this many idle seconds")
    parallel: int | None = Field(None, ge=1, le=1024, description="requests the loaded model serves at once")
    identifier: str | None = Field(None, min_length=1, max_length=256, description="the loaded copy's name in the "
                                   "API (one model only)")


class SessionTargetIn(TargetIn):
    """A tool that could take the model away from the OpenCode session calling it. There is no `force`: an
    agent cannot push a change through on an instance the team shares (only a person can, with the CLI or
    the tray), and a `force` sent anyway is ignored like any unknown field."""

    session_id: str | None = Field(None, max_length=256, description="the calling OpenCode session: the model "
                                   "it runs on (as validate last saw it) stays loaded")
    session_model: str | None = Field(None, max_length=512, description="the model the calling session runs on, "
                                      "as the plugin knows it: stays loaded too")


class UnloadIn(SessionTargetIn):
    """`POST /v1/tools/unload`: models (or all) to unload; the session's own stays."""

    model: str | None = Field(None, min_length=1, max_length=512)
    models: list[str] = Field(default_factory=list, max_length=50, description="batch form")
    all: bool = False


class SwitchIn(SessionTargetIn):
    """`POST /v1/tools/switch`: the model to load before the other chat models are unloaded."""

    model: str = ModelKey
    context_length: int | None = Field(None, ge=1, le=10_000_000)


class SearchIn(TargetIn):
    """`POST /v1/tools/search`: a fuzzy query over the downloaded models, with the filters of `models search`; the
    results are ranked by name match, then by how often each model was used."""

    query: str = Field("", max_length=256, description="part of a model name (typos are fine); empty: all")
    limit: int = Field(10, ge=1, le=100)
    type: Literal["llm", "embedding"] | None = Field(None, description="llm (vision models included) or embedding")
    vision: bool | None = Field(None, description="true: only models that take images; false: only those that do not")
    tool_use: bool | None = Field(None, description="true: only models trained for tool use; false: only others")
    min_size: str | None = Field(None, max_length=32, description="smallest file size, e.g. 2GB")
    max_size: str | None = Field(None, max_length=32, description="largest file size, e.g. 8GB")
    min_context: str | None = Field(None, max_length=32, description="smallest max context length, e.g. 32768 or 32k")


class DownloadIn(TargetIn):
    """`POST /v1/tools/download`: a model to download; only what `[opencode.tools]` in the config allows."""

    model: str = Field(min_length=1, max_length=512, description="a catalog name (`ibm/granite-4-micro`) or a "
                       "Hugging Face URL")
    quantization: str | None = Field(None, min_length=1, max_length=64, description="e.g. Q4_K_M (Hugging Face)")


class BenchIn(SessionTargetIn):
    """`POST /v1/tools/benchmark`: the quick suite on one model (default: the calling session's)."""

    model: str | None = Field(None, min_length=1, max_length=512, description="model key (default: the model the "
                              "calling session runs on)")
    runs: int = Field(3, ge=1, le=5, description="runs of the suite (median and spread over them)")


class RecommendIn(TargetIn):
    """`POST /v1/tools/recommend`: a task in words; every instance's models unless `instance` names one."""

    task: str = Field(min_length=1, max_length=1000, description='what the model is for, e.g. "coding agent"')
    limit: int = Field(3, ge=1, le=20)


class CompareIn(TargetIn):
    """`POST /v1/tools/compare`: two or more models side by side (every instance's unless `instance` names one)."""

    models: list[str] = Field(min_length=2, max_length=10, description="model keys (or unambiguous parts of them)")
    since: str = Field("30d", max_length=16, description="window of the usage figures: 7d, 24h, 2w, all")


class StatsIn(TargetIn):
    """`POST /v1/tools/stats`: the usage summary of `lmstudio-tray stats` for a window."""

    since: str = Field("7d", max_length=16, description="time window: 30m, 12h, 7d, 2w or all")


class ToolOut(BaseModel):
    """Every tool's answer."""

    ok: bool = Field(description="everything asked was done (false when a model was kept for the session)")
    instance: str
    text: str = Field(description="the answer as the agent sees it")
    data: Any = None
    kept: list[str] = Field(default_factory=list, description="loaded instance ids left in place because the "
                            "calling OpenCode session runs on them")
