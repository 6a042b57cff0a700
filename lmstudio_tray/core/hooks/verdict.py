"""Should this OpenCode request reach LM Studio? Pure: snapshot + request + policy in, verdict out.

No IO and no web imports: the endpoint answers validations from the status cache, so everything here
runs on every hook call and must stay cheap (a few microseconds for a normal model list).
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz.distance import Indel

from lmstudio_tray.core.config.schema import Policy
from lmstudio_tray.core.config.team import TeamProfile
from lmstudio_tray.core.models import (
    ApiFlavor,
    InstanceSnapshot,
    InstanceState,
    LoadProgress,
    ModelInfo,
    ModelType,
    WireEnum,
)


class VerdictCategory(WireEnum):
    """What a validation found; the value is the `category` of the endpoint's answer and the key of
    `validation.policy.<category>` in the config (`not_allowed` always blocks and has no policy)."""

    READY = "ready"
    JIT = "jit"
    LOADING = "loading"
    NOT_LOADED = "not_loaded"
    UNKNOWN_MODEL = "unknown_model"
    AMBIGUOUS = "ambiguous"
    OFFLINE = "offline"
    AUTH_FAILED = "auth_failed"
    CONTEXT_TOO_SMALL = "context_too_small"
    ERROR = "error"
    NOT_ALLOWED = "not_allowed"


CATEGORIES = tuple(VerdictCategory)

# What `ensure` can fix by loading: the rest (auth, unknown model, broken server) needs a person.
ENSURABLE = frozenset({VerdictCategory.NOT_LOADED, VerdictCategory.JIT, VerdictCategory.LOADING,
                       VerdictCategory.CONTEXT_TOO_SMALL, VerdictCategory.AMBIGUOUS})

MAX_SUGGESTIONS = 5
LOADING_WAITS_COMMAND = "lmstudio-tray config set validation.policy.loading ensure"
_QUANT_RE = re.compile(r"@[^/@]+$")
_FORMAT_SUFFIX_RE = re.compile(r"[-_.](gguf|mlx|\d+bit)$", re.IGNORECASE)
_INSTANCE_SUFFIX_RE = re.compile(r":\d+$")


@dataclass(frozen=True)
class ValidateRequest:
    """What the plugin asks about before a request: the model, the provider's base URL, the context the session plans
    with (OpenCode's `limit.context`) and the session id."""

    model: str
    base_url: str | None = None
    context_limit: int | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class Suggestion:
    """A model the person probably meant: its key, whether it is loaded (and with which context), a score and why it is
    suggested."""

    key: str
    loaded: bool
    score: float
    reason: str  # "quant variant", "loaded", "similar name", "downloaded"
    context_length: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The suggestion as JSON data (part of the verdict)."""
        return {
            "key": self.key,
            "loaded": self.loaded,
            "score": round(self.score, 3),
            "reason": self.reason,
            "context_length": self.context_length,
        }


@dataclass(frozen=True)
class Facts:
    """What a verdict is based on: the instance and its state, JIT loading, the model the request resolved to with its
    copies and context lengths, what is loaded, and a load's ETA."""

    instance: str | None
    url: str | None
    state: str | None
    jit: bool | None
    model_key: str | None = None  # the downloaded model the request resolved to
    instance_ids: tuple[str, ...] = ()
    loaded_context_length: int | None = None
    max_context_length: int | None = None
    loaded_models: tuple[str, ...] = ()
    eta_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The facts as JSON data (part of the verdict)."""
        return {
            "instance": self.instance,
            "url": self.url,
            "state": self.state,
            "jit": self.jit,
            "model_key": self.model_key,
            "instance_ids": list(self.instance_ids),
            "loaded_context_length": self.loaded_context_length,
            "max_context_length": self.max_context_length,
            "loaded_models": list(self.loaded_models),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
        }


@dataclass(frozen=True)
class Verdict:
    """The answer to one validate request: its category and the action the policy gives it, `ok` (the request may go
    now), and for a person the message, suggestions, steps and warnings."""

    ok: bool  # the request may go ahead now (allow/warn); `ensure` needs the load first
    category: VerdictCategory
    action: Policy
    model: str
    message: str
    facts: Facts
    suggestions: tuple[Suggestion, ...] = ()
    steps: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    retry_after_ms: int | None = None

    @property
    def text(self) -> str:
        """Everything a person needs, multi-line: what the plugin throws or toasts."""
        lines = [self.message]
        loaded = self.facts.loaded_models
        if loaded and self.category not in (VerdictCategory.READY, VerdictCategory.LOADING, VerdictCategory.JIT):
            lines.append("Loaded now: " + ", ".join(loaded))
        if self.suggestions and self.category not in (VerdictCategory.READY, VerdictCategory.LOADING):
            lines.append("Did you mean: " + ", ".join(_suggestion_label(s) for s in self.suggestions))
        lines.extend(f"Warning: {w}" for w in self.warnings)
        if self.steps:
            lines.append("Next steps:")
            lines.extend(f"  {i}. {step}" for i, step in enumerate(self.steps, 1))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The verdict as `/v1/validate` answers it, `text` included."""
        return {
            "ok": self.ok,
            "category": self.category,
            "action": self.action.value,
            "model": self.model,
            "message": self.message,
            "text": self.text,
            "suggestions": [s.to_json() for s in self.suggestions],
            "steps": list(self.steps),
            "warnings": list(self.warnings),
            "retry_after_ms": self.retry_after_ms,
            "facts": self.facts.to_json(),
        }


@dataclass
class _Draft:
    category: VerdictCategory
    message: str
    model_info: ModelInfo | None = None
    suggestions: list[Suggestion] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    retry_after_ms: int | None = None
    eta_seconds: float | None = None


@dataclass
class _Commands:
    """The `lmstudio-tray` commands the steps name, written so that pasted as they are they act on the
    verdict's instance: `--instance NAME` unless it is the active one (the command line's default)."""

    instance: str | None
    url: str | None
    active: str | None
    ad_hoc: bool  # monitored for the endpoint only (an unknown baseURL): the command line does not know it
    targeted: bool = False  # a step names a command acting on the instance

    def __call__(self, *words: str | int, on_instance: bool = True) -> str:
        argv = ["lmstudio-tray", *(str(w) for w in words)]
        if on_instance and self.instance is not None:
            self.targeted = True
            if self.instance != self.active:
                argv += ["--instance", self.instance]
        return f"`{shlex.join(argv)}`"

    def add_step(self) -> list[str]:
        """An ad-hoc instance must be added before commands can name it."""
        if not (self.targeted and self.ad_hoc and self.instance and self.url):
            return []
        add = self("instances", "add", self.instance, self.url, on_instance=False)
        return [f"This LM Studio is not in your config; add it so the commands below can reach it: {add}"]


def _suggestion_label(s: Suggestion) -> str:
    if s.loaded:
        ctx = f", ctx {s.context_length}" if s.context_length else ""
        return f"{s.key} (loaded{ctx})"
    return f"{s.key} ({s.reason})" if s.reason == "quant variant" else s.key


def similarity(a: str, b: str) -> float:
    """0..1: twice the longest common subsequence over both lengths (difflib's ratio, exactly computed).

    rapidfuzz instead of difflib: 0.2 µs a pair against 20 µs, which made a `not_loaded` verdict over 40
    downloaded models cost ~1.1 ms of the hook's 1 ms budget (bench/verdict_bench.py).
    """
    return float(Indel.normalized_similarity(a, b))


@functools.lru_cache(maxsize=4096)  # the same downloaded keys on every verdict
def base_name(key: str) -> str:
    """The part of a model name that survives publisher, quant, format and `:N` decorations."""
    name = _INSTANCE_SUFFIX_RE.sub("", key.strip())
    name = _QUANT_RE.sub("", name)
    name = name.rsplit("/", 1)[-1]
    name = _FORMAT_SUFFIX_RE.sub("", name)
    return name.lower()


def resolve_model(snapshot: InstanceSnapshot, requested: str) -> ModelInfo | None:
    """The downloaded model `requested` names: a key, a loaded instance id (`key:2`) or a variant."""
    exact = snapshot.model(requested)
    if exact is not None:
        return exact
    found = snapshot.find_instance(requested)
    if found is not None:
        return found[0]
    for m in snapshot.models:
        if requested in m.variants:
            return m
    lowered = requested.lower()
    for m in snapshot.models:
        if m.key.lower() == lowered or any(v.lower() == lowered for v in m.variants):
            return m
    return None


def rank_suggestions(
    snapshot: InstanceSnapshot, requested: str, *, exclude: str | None = None, limit: int = MAX_SUGGESTIONS
) -> tuple[Suggestion, ...]:
    """Models a person probably meant, best first: quant variants of the same model, then similar names.

    Loaded models get a bonus because switching to them costs nothing.
    """
    want = base_name(requested)
    want_full = requested.lower()
    scored: list[Suggestion] = []
    for m in snapshot.models:
        if m.type is ModelType.EMBEDDING or m.key == exclude:
            continue
        candidates = [m.key, *m.variants]
        same_base = any(base_name(c) == want for c in candidates)
        ratio = max(similarity(want, base_name(m.key)), similarity(want_full, m.key.lower()))
        if same_base:
            score, reason = 1.0 + ratio, "quant variant"
        elif ratio >= 0.5:
            score, reason = ratio, "similar name"
        elif m.loaded:
            score, reason = ratio * 0.5, "loaded"
        else:
            continue
        if m.loaded:
            score += 0.25
            reason = reason if reason == "quant variant" else "loaded"
        scored.append(Suggestion(m.key, m.loaded, score, reason, m.loaded_context_length))
        if same_base:
            for v in m.variants:
                if v != requested and v != m.key:
                    scored.append(Suggestion(v, False, score - 0.01, "quant variant", None))
    scored.sort(key=lambda s: (-s.score, s.key))
    seen: set[str] = set()
    out: list[Suggestion] = []
    for s in scored:
        if s.key in seen:
            continue
        seen.add(s.key)
        out.append(s)
        if len(out) >= limit:
            break
    return tuple(out)


def _same_base_models(snapshot: InstanceSnapshot, requested: str) -> list[ModelInfo]:
    want = base_name(requested)
    return [m for m in snapshot.models if base_name(m.key) == want or any(base_name(v) == want for v in m.variants)]


def _load_step(cli: _Commands, key: str, context: int | None = None) -> str:
    command = cli("load", key, "-c", context) if context else cli("load", key)
    return f"Load it: {command} (or ask the agent to call lmstudio_load_model)"


def team_allows(team: TeamProfile | None, requested: str, model: ModelInfo | None) -> bool:
    """Whether the team profile allows the model a request names (its key, a variant or a loaded copy)."""
    if team is None or not team.allowed:
        return True
    if model is not None:
        return any(team.allows(name) for name in (model.key, *model.variants))
    plain = _QUANT_RE.sub("", _INSTANCE_SUFFIX_RE.sub("", requested.strip()))
    return team.allows(requested) or team.allows(plain)


def _not_allowed(snapshot: InstanceSnapshot, req: ValidateRequest, team: TeamProfile, where: str,
                 cli: _Commands) -> _Draft:
    contexts = {r.key: r.context_length for r in team.recommended}
    allowed = list(dict.fromkeys([*team.allowed, *contexts]))
    here = [m for key in allowed if (m := snapshot.model(key)) is not None and team.allows(m.key)]
    here.sort(key=lambda m: (not m.loaded, m.key not in contexts))  # loaded first, then recommended
    suggestions = [
        Suggestion(m.key, m.loaded, 1.0, "loaded" if m.loaded else "allowed by the team",
                   m.loaded_context_length if m.loaded else contexts.get(m.key))
        for m in here[:MAX_SUGGESTIONS]
    ]
    recommended = ", ".join(k + (f" (context {c})" if c else "") for k, c in contexts.items() if team.allows(k))
    steps = [f"Use a model the team allows: {', '.join(team.allowed)}"]
    if recommended:
        steps.append(f"The team recommends: {recommended}")
    steps.append(f"The list comes from the team profile ({team.source}); {cli('team', 'status', on_instance=False)} "
                 "shows it. Ask the team to add the model if you need it.")
    return _Draft(
        VerdictCategory.NOT_ALLOWED,
        f"{where}: {req.model} is not one of the models team profile {team.name!r} allows.",
        model_info=resolve_model(snapshot, req.model),
        suggestions=suggestions,
        steps=steps,
    )


_UNREACHABLE = (InstanceState.OFFLINE, InstanceState.AUTH_FAILED, InstanceState.ERROR)


def _unreachable(snapshot: InstanceSnapshot | None, where: str, cli: _Commands) -> _Draft:
    """No status yet, offline, refused token, broken server: nothing about the model can be said."""
    if snapshot is None:
        return _Draft(
            VerdictCategory.OFFLINE,
            f"{where}: no status yet; the tray has not reached this LM Studio server.",
            steps=[
                f"Check that LM Studio is running and its server is on: {cli('server', 'start')}",
                f"See what the tray knows: {cli('status', on_instance=False)}",
            ],
            retry_after_ms=2000,
        )
    if snapshot.state is InstanceState.OFFLINE:
        reason = f" ({snapshot.error})" if snapshot.error else ""
        return _Draft(
            VerdictCategory.OFFLINE,
            f"{where}: LM Studio is not reachable{reason}.",
            steps=[
                f"Start LM Studio's server: {cli('server', 'start')} (or `lms server start`, or the "
                "Developer tab in LM Studio)",
                f"Check the port: the provider's baseURL must point at {snapshot.url}/v1",
                "Then send the message again; the tray notices the server within a second",
            ],
            retry_after_ms=2000,
        )
    if snapshot.state is InstanceState.AUTH_FAILED:
        return _Draft(
            VerdictCategory.AUTH_FAILED,
            f"{where}: LM Studio refused the API token (authentication is on).",
            steps=[
                "Create a token in LM Studio: Developer → Server Settings → Manage Tokens",
                f"Store it for the tray: {cli('token', 'set', snapshot.name, on_instance=False)} (reads it from "
                "stdin or a prompt)",
                "Give OpenCode the same token: provider options.apiKey = \"{env:LM_API_TOKEN}\"",
            ],
        )
    reason = snapshot.error or "unexpected answers"
    return _Draft(
        VerdictCategory.ERROR,
        f"{where}: LM Studio answers with errors ({reason}).",
        steps=[
            "Look at LM Studio's server log (Developer tab) for the failing request",
            f"Restart the server: {cli('server', 'stop')}, then {cli('server', 'start')}",
        ],
        retry_after_ms=5000,
    )


def _classify(
    snapshot: InstanceSnapshot | None,
    req: ValidateRequest,
    *,
    cli: _Commands,
    instance_name: str | None,
    eta_seconds: float | None,
    team: TeamProfile | None = None,
) -> _Draft:
    """The category of a request over the status, with its message, suggestions and steps."""
    where = _where(snapshot, instance_name, req.base_url)
    if snapshot is None or snapshot.state in _UNREACHABLE:
        return _unreachable(snapshot, where, cli)

    model = resolve_model(snapshot, req.model)
    if team is not None and not team_allows(team, req.model, model):
        return _not_allowed(snapshot, req, team, where, cli)
    recommended = team.context_for(model.key) if team is not None and model is not None else None
    load = next(
        (ld for ld in snapshot.loads if ld.model == req.model or (model is not None and ld.model == model.key)),
        None,
    )
    if load is not None:
        return _loading(load, req, model, where, eta_seconds)
    if model is None:
        return _unknown_model(snapshot, req, where, cli)
    if model.loaded:
        return _loaded(model, req, where, cli)
    if snapshot.jit:
        return _on_demand(model, req, where, cli, eta_seconds, recommended)
    return _not_loaded(snapshot, model, req, where, cli, eta_seconds, recommended)


def _loading(load: LoadProgress, req: ValidateRequest, model: ModelInfo | None, where: str,
             eta_seconds: float | None) -> _Draft:
    """A load of the model is under way."""
    eta = load.eta_seconds if load.eta_seconds is not None else eta_seconds
    pct = f" {round(load.progress * 100)}%" if load.progress is not None else ""
    eta_text = f", about {round(eta)} s left" if eta is not None else ""
    return _Draft(
        VerdictCategory.LOADING,
        f"{where}: {req.model} is loading{pct}{eta_text}.",
        model_info=model,
        steps=["Send the message again when the load has finished" + (f" (about {round(eta)} s)" if eta else "")],
        retry_after_ms=int(max(eta or 1.0, 0.25) * 1000),
        eta_seconds=eta,
    )


def _unknown_model(snapshot: InstanceSnapshot, req: ValidateRequest, where: str, cli: _Commands) -> _Draft:
    """No downloaded model has the requested name: ambiguous between several, or unknown."""
    same = _same_base_models(snapshot, req.model)
    suggestions = list(rank_suggestions(snapshot, req.model))
    if len(same) >= 2:
        return _Draft(
            VerdictCategory.AMBIGUOUS,
            f"{where}: {req.model!r} matches {len(same)} downloaded models: "
            + ", ".join(m.key for m in same)
            + "; LM Studio may pick another one than you expect.",
            suggestions=suggestions,
            steps=[f"Name the exact model key in opencode.json ({cli('opencode', 'install', '--provider')} "
                   "writes the real keys)"],
        )
    steps = [
        f"List what LM Studio has: {cli('models', 'list')}",
        "Use an exact key in opencode.json, or rewrite the provider: "
        + cli("opencode", "install", "--provider"),
    ]
    if snapshot.jit is False and snapshot.api is not ApiFlavor.REST_V1:
        # REST v1 lists every downloaded model; the older listings show only loaded ones with JIT off
        steps.insert(1, f"JIT loading is off, so this LM Studio lists only loaded models: if {req.model} is "
                     "downloaded, load it in LM Studio first")
    return _Draft(
        VerdictCategory.UNKNOWN_MODEL,
        f"{where}: LM Studio has no model {req.model!r}.",
        suggestions=suggestions,
        steps=steps,
    )


def _loaded(model: ModelInfo, req: ValidateRequest, where: str, cli: _Commands) -> _Draft:
    """The model is loaded: ready, unless with a smaller context than OpenCode plans for."""
    loaded_ctx = model.loaded_context_length
    if req.context_limit and loaded_ctx and loaded_ctx < req.context_limit:
        wanted = min(req.context_limit, model.max_context_length or req.context_limit)
        return _Draft(
            VerdictCategory.CONTEXT_TOO_SMALL,
            f"{where}: {model.key} is loaded with a context of {loaded_ctx} tokens, but OpenCode "
            f"plans for {req.context_limit}; long sessions will fail with LM Studio's "
            "\"tokens to keep\" error.",
            model_info=model,
            steps=[
                "Reload it with a larger context: "
                + cli("switch", model.key, "-c", wanted)
                + " (loads a copy with that context, then unloads the small one and the other chat models)",
                f"Or lower limit.context of {req.model} in opencode.json to {loaded_ctx} "
                f"({cli('opencode', 'install', '--provider')} does this)",
            ],
        )
    return _Draft(VerdictCategory.READY, f"{where}: {model.key} is loaded.", model_info=model)


def _on_demand(model: ModelInfo, req: ValidateRequest, where: str, cli: _Commands, eta_seconds: float | None,
               recommended: int | None) -> _Draft:
    """Not loaded, and JIT loading is on: LM Studio loads it for the request (its default variant when the
    key has several)."""
    variants = [v for v in model.variants if v != model.key]
    eta_text = f" (about {round(eta_seconds)} s)" if eta_seconds is not None else ""
    if len(variants) >= 2 and req.model == model.key:
        return _Draft(
            VerdictCategory.AMBIGUOUS,
            f"{where}: {model.key} is not loaded and has {len(variants)} quant variants; JIT will load "
            "its default variant" + eta_text + ".",
            model_info=model,
            suggestions=[Suggestion(v, False, 1.0, "quant variant") for v in variants[:MAX_SUGGESTIONS]],
            # `load` takes model keys, not `key@quant`: a variant is chosen by the name OpenCode sends
            steps=[f"To use another variant, name it in opencode.json: {', '.join(variants[:MAX_SUGGESTIONS])}",
                   _load_step(cli, model.key, recommended)],
            eta_seconds=eta_seconds,
        )
    return _Draft(
        VerdictCategory.JIT,
        f"{where}: {model.key} is not loaded; LM Studio will load it on demand{eta_text}.",
        model_info=model,
        # on demand, LM Studio picks its own context length; the team's default needs an explicit load
        steps=[_load_step(cli, model.key, recommended)],
        retry_after_ms=None if eta_seconds is None else int(eta_seconds * 1000),
        eta_seconds=eta_seconds,
    )


def _not_loaded(snapshot: InstanceSnapshot, model: ModelInfo, req: ValidateRequest, where: str, cli: _Commands,
                eta_seconds: float | None, recommended: int | None) -> _Draft:
    """Not loaded, and JIT loading is off (or may be): LM Studio would refuse the request."""
    jit_text = "JIT loading is off" if snapshot.jit is False else "JIT loading may be off"
    return _Draft(
        VerdictCategory.NOT_LOADED,
        f"{where}: {model.key} is not loaded and {jit_text}, so LM Studio would refuse the request.",
        model_info=model,
        suggestions=list(rank_suggestions(snapshot, req.model, exclude=model.key)),
        steps=[
            _load_step(cli, model.key, (req.context_limit if model.max_context_length else None) or recommended),
            "Or switch OpenCode to a loaded model (/models)",
            "Or turn on JIT loading in LM Studio: Developer → Server Settings → Just in Time Model Loading",
        ],
        eta_seconds=eta_seconds,
    )


def _where(snapshot: InstanceSnapshot | None, instance_name: str | None, base_url: str | None) -> str:
    name = snapshot.name if snapshot else instance_name
    url = snapshot.url if snapshot else base_url
    if name and url:
        return f"LM Studio '{name}' ({url})"
    return f"LM Studio ({url or name or 'unknown'})"


def evaluate(
    snapshot: InstanceSnapshot | None,
    request: ValidateRequest,
    policy: Mapping[str, Policy],
    *,
    instance_name: str | None = None,
    eta_seconds: float | None = None,
    team: TeamProfile | None = None,
    active_instance: str | None = None,
    ad_hoc: bool = False,
) -> Verdict:
    """The verdict for one request. `eta_seconds` is the caller's load-time estimate for this model;
    `team` (the team profile in effect) limits the models to the ones it allows. The commands in the steps
    name the instance (`--instance`) unless it is `active_instance`; for an `ad_hoc` instance (monitored
    because a request named its URL, unknown to the command line) a step says how to add it first."""
    name = snapshot.name if snapshot else instance_name
    url = snapshot.url if snapshot else re.sub(r"/v1/?$", "", request.base_url or "") or None
    cli = _Commands(name, url, active_instance, ad_hoc)
    draft = _classify(snapshot, request, cli=cli, instance_name=instance_name, eta_seconds=eta_seconds, team=team)
    draft.steps[:0] = cli.add_step()
    # a team's model list is not a member's preference: no policy lets a model it does not allow pass
    action = Policy.BLOCK if draft.category is VerdictCategory.NOT_ALLOWED else policy.get(draft.category, Policy.ALLOW)
    if action is Policy.ENSURE and draft.category not in ENSURABLE:
        # Loading cannot fix a dead server or a wrong name: asking for `ensure` there means "do not pass".
        action = Policy.BLOCK
    if draft.category is VerdictCategory.LOADING:
        if action is Policy.ENSURE:
            draft.warnings.append("a load is already running; ensure waits for it")
        else:
            # with JIT off LM Studio refuses a request for a model until its load has finished
            draft.steps.append(f"Or let requests wait for a running load: `{LOADING_WAITS_COMMAND}`")
    m = draft.model_info
    loaded_models = tuple(
        f"{lm.key} (ctx {lm.loaded_context_length})" if lm.loaded_context_length else lm.key
        for lm in (snapshot.loaded_models if snapshot else ())
    )
    if snapshot is not None and snapshot.jit is None and draft.category is VerdictCategory.NOT_LOADED:
        draft.warnings.append("the tray could not tell whether JIT loading is on")
    facts = Facts(
        instance=snapshot.name if snapshot else instance_name,
        url=snapshot.url if snapshot else request.base_url,
        state=snapshot.state.value if snapshot else None,
        jit=snapshot.jit if snapshot else None,
        model_key=m.key if m else None,
        instance_ids=tuple(i.id for i in m.instances) if m else (),
        loaded_context_length=m.loaded_context_length if m else None,
        max_context_length=m.max_context_length if m else None,
        loaded_models=loaded_models,
        eta_seconds=draft.eta_seconds,
    )
    return Verdict(
        ok=action in (Policy.ALLOW, Policy.WARN),
        category=draft.category,
        action=action,
        model=request.model,
        message=draft.message,
        facts=facts,
        suggestions=tuple(draft.suggestions),
        steps=tuple(draft.steps),
        warnings=tuple(draft.warnings),
        retry_after_ms=draft.retry_after_ms,
    )


def ensure_target(verdict: Verdict, request: ValidateRequest) -> tuple[str, int | None] | None:
    """What an `ensure` must load for this verdict: (model key, context length) or None if nothing.

    The context is what the request plans with (OpenCode's limit.context), capped at the model's maximum:
    a load with LM Studio's default would make the next turn `context_too_small`. None (the request names
    no context) leaves the choice to the load: the team's recommended context, else LM Studio's default.
    """
    if verdict.category not in ENSURABLE or verdict.category is VerdictCategory.LOADING:
        return None
    key = verdict.facts.model_key or request.model
    if verdict.category is VerdictCategory.AMBIGUOUS and verdict.facts.model_key is None:
        return None
    context = request.context_limit
    if context and verdict.facts.max_context_length:
        context = min(context, verdict.facts.max_context_length)
    return key, context

