"""The verdict: every category, policies, suggestions and the text a person sees."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from lmstudio_tray.core.config.schema import Policy, ValidationConfig
from lmstudio_tray.core.hooks.verdict import (
    CATEGORIES,
    ValidateRequest,
    VerdictCategory,
    base_name,
    ensure_target,
    evaluate,
    rank_suggestions,
    resolve_model,
)
from lmstudio_tray.core.models import InstanceSnapshot, InstanceState, LoadedInstance, LoadProgress, ModelInfo

POLICY = ValidationConfig().policy
URL = "http://127.0.0.1:1234"


def model(key: str, *, loaded_ctx: int | None = None, variants: tuple[str, ...] = (), ids: int = 1,
          max_ctx: int = 32768, type_: str = "llm") -> ModelInfo:
    instances: tuple[LoadedInstance, ...] = ()
    if loaded_ctx is not None:
        instances = tuple(
            LoadedInstance(key if n == 1 else f"{key}:{n}", loaded_ctx) for n in range(1, ids + 1)
        )
    return ModelInfo(key=key, type=type_, max_context_length=max_ctx, variants=variants, instances=instances)


def snap(*models: ModelInfo, state: InstanceState = InstanceState.READY, jit: bool | None = False,
         loads: tuple[LoadProgress, ...] = (), error: str | None = None) -> InstanceSnapshot:
    return InstanceSnapshot(name="local", url=URL, state=state, models=models, jit=jit, loads=loads, error=error)


CATALOG = (
    model("qwen/qwen3-4b-2507", loaded_ctx=8192),
    model("google/gemma-3-4b"),
    model("qwen/qwen3-8b", variants=("qwen/qwen3-8b@q4_k_m", "qwen/qwen3-8b@q8_0")),
    model("text-embedding-nomic-embed-text-v1.5", type_="embedding"),
)


def req(m: str, **kw: object) -> ValidateRequest:
    return ValidateRequest(model=m, base_url=URL + "/v1", **kw)  # type: ignore[arg-type]


def test_ready_proceeds_with_facts() -> None:
    v = evaluate(snap(*CATALOG), req("qwen/qwen3-4b-2507"), POLICY)
    assert (v.category, v.ok, v.action) == ("ready", True, Policy.ALLOW)
    assert v.facts.instance_ids == ("qwen/qwen3-4b-2507",)
    assert v.facts.loaded_context_length == 8192 and v.facts.max_context_length == 32768
    assert v.facts.jit is False and v.facts.instance == "local"


def test_the_category_is_an_enum_and_plain_text_in_the_answer() -> None:
    v = evaluate(snap(*CATALOG), req("google/gemma-3-4b"), POLICY)
    assert v.category is VerdictCategory.NOT_LOADED
    assert json.dumps(v.to_json()["category"]) == '"not_loaded"' and f"{v.category}" == "not_loaded"
    # the config's policy is keyed by the category's text: every category but not_allowed has one
    assert set(POLICY) == {c.value for c in VerdictCategory} - {"not_allowed"}


def test_second_instance_id_resolves_to_its_model() -> None:
    s = snap(model("qwen/qwen3-4b-2507", loaded_ctx=4096, ids=2))
    v = evaluate(s, req("qwen/qwen3-4b-2507:2"), POLICY)
    assert v.category == "ready"
    assert v.facts.instance_ids == ("qwen/qwen3-4b-2507", "qwen/qwen3-4b-2507:2")


def test_not_loaded_with_jit_off_blocks_with_steps_and_suggestions() -> None:
    v = evaluate(snap(*CATALOG), req("google/gemma-3-4b"), POLICY, active_instance="local")
    assert (v.category, v.ok, v.action) == ("not_loaded", False, Policy.BLOCK)
    assert "JIT loading is off" in v.message
    assert v.steps[0].startswith("Load it: `lmstudio-tray load google/gemma-3-4b` (")
    text = v.text
    assert "Next steps:\n  1. " in text and "  2. " in text
    assert "Loaded now: qwen/qwen3-4b-2507 (ctx 8192)" in text


def test_not_loaded_with_jit_on_is_jit_with_eta() -> None:
    v = evaluate(snap(*CATALOG, jit=True), req("google/gemma-3-4b"), POLICY, eta_seconds=12.4)
    assert (v.category, v.ok) == ("jit", True)
    assert v.facts.eta_seconds == 12.4 and "about 12 s" in v.message
    assert v.retry_after_ms == 12400


def test_unknown_jit_state_blocks_but_says_so() -> None:
    v = evaluate(snap(*CATALOG, jit=None), req("google/gemma-3-4b"), POLICY)
    assert v.category == "not_loaded"
    assert any("JIT" in w for w in v.warnings)


LOADING = (LoadProgress("google/gemma-3-4b", started_at=0.0, progress=0.4, eta_seconds=3.0),)


def test_loading_waits_for_the_load_by_default() -> None:
    # with JIT off, LM Studio refuses a request for a model until its load has finished
    v = evaluate(snap(*CATALOG, state=InstanceState.LOADING, loads=LOADING), req("google/gemma-3-4b"), POLICY)
    assert (v.category, v.action, v.ok, v.retry_after_ms) == ("loading", Policy.ENSURE, False, 3000)
    assert "40%" in v.message and "about 3 s left" in v.message
    assert v.warnings == ("a load is already running; ensure waits for it",)
    assert ensure_target(v, req("google/gemma-3-4b", context_limit=16384)) is None  # it waits, it loads nothing


def test_loading_with_allow_proceeds_with_retry_after() -> None:
    policy = {**POLICY, "loading": Policy.ALLOW}
    v = evaluate(snap(*CATALOG, state=InstanceState.LOADING, loads=LOADING), req("google/gemma-3-4b"), policy)
    assert (v.category, v.ok, v.retry_after_ms) == ("loading", True, 3000)


def test_loading_blocked_says_when_to_retry_and_how_to_wait_instead() -> None:
    from lmstudio_tray.cli import build_parser
    from lmstudio_tray.core.config.schema import Config
    from lmstudio_tray.core.hooks.verdict import LOADING_WAITS_COMMAND

    policy = {**POLICY, "loading": Policy.BLOCK}
    v = evaluate(snap(*CATALOG, state=InstanceState.LOADING, loads=LOADING), req("google/gemma-3-4b"), policy)
    assert (v.action, v.ok) == (Policy.BLOCK, False)
    assert v.steps == ("Send the message again when the load has finished (about 3 s)",
                       f"Or let requests wait for a running load: `{LOADING_WAITS_COMMAND}`")
    # the command is real, and the value it sets is one the config accepts
    argv = LOADING_WAITS_COMMAND.split()[1:]
    args = build_parser().parse_args(argv)
    assert (args.key, args.value) == ("validation.policy.loading", "ensure")
    assert Config.model_validate({"validation": {"policy": {"loading": args.value}}}).validation.policy[
        "loading"] is Policy.ENSURE


def test_ensure_loads_the_context_the_request_plans_for() -> None:
    """Not only for context_too_small: a load with LM Studio's default context would make the next turn
    context_too_small. Capped at the model's maximum; no context named leaves the choice to the load."""
    jit_snap = snap(*CATALOG, jit=True)
    for s, model_key in ((snap(*CATALOG), "google/gemma-3-4b"), (jit_snap, "google/gemma-3-4b")):
        v = evaluate(s, req(model_key, context_limit=16384), dict.fromkeys(CATEGORIES, Policy.ENSURE))
        assert v.category in ("not_loaded", "jit")
        assert ensure_target(v, req(model_key, context_limit=16384)) == (model_key, 16384), v.category
        assert ensure_target(v, req(model_key, context_limit=10**6)) == (model_key, 32768)  # the model's max
        assert ensure_target(v, req(model_key)) == (model_key, None)


def test_unknown_model_suggests_similar_and_loaded_first() -> None:
    v = evaluate(snap(*CATALOG), req("qwen/qwen3-4b"), POLICY)
    assert (v.category, v.ok) == ("unknown_model", False)
    keys = [s.key for s in v.suggestions]
    assert keys[0] == "qwen/qwen3-4b-2507"  # loaded and closest
    assert "text-embedding-nomic-embed-text-v1.5" not in keys
    assert "Did you mean: qwen/qwen3-4b-2507 (loaded, ctx 8192)" in v.text


def test_quant_variant_suggestions_for_wrong_quant() -> None:
    v = evaluate(snap(*CATALOG, jit=True), req("qwen/qwen3-8b@q6_k"), POLICY)
    assert v.category == "unknown_model"
    assert {"qwen/qwen3-8b", "qwen/qwen3-8b@q4_k_m", "qwen/qwen3-8b@q8_0"} <= {s.key for s in v.suggestions}
    assert all(s.reason == "quant variant" for s in v.suggestions[:3])


def test_variant_key_resolves_to_model() -> None:
    s = snap(*CATALOG)
    m = resolve_model(s, "qwen/qwen3-8b@q8_0")
    assert m is not None and m.key == "qwen/qwen3-8b"
    assert resolve_model(s, "QWEN/Qwen3-4B-2507") is not None


def test_ambiguous_when_several_models_share_a_name() -> None:
    s = snap(
        model("lmstudio-community/qwen3-4b-2507-GGUF", loaded_ctx=4096),
        model("mlx-community/qwen3-4b-2507-mlx"),
    )
    v = evaluate(s, req("qwen3-4b-2507"), POLICY)
    assert (v.category, v.ok, v.action) == ("ambiguous", True, Policy.WARN)
    assert len(v.suggestions) == 2


def test_ambiguous_when_jit_would_pick_among_quant_variants() -> None:
    v = evaluate(snap(*CATALOG, jit=True), req("qwen/qwen3-8b"), POLICY)
    assert v.category == "ambiguous" and v.ok
    assert [s.key for s in v.suggestions] == ["qwen/qwen3-8b@q4_k_m", "qwen/qwen3-8b@q8_0"]


def test_context_too_small_warns() -> None:
    v = evaluate(snap(*CATALOG), req("qwen/qwen3-4b-2507", context_limit=32768), POLICY)
    assert (v.category, v.ok, v.action) == ("context_too_small", True, Policy.WARN)
    assert "8192" in v.message and "32768" in v.message
    assert ensure_target(v, req("qwen/qwen3-4b-2507", context_limit=32768)) == ("qwen/qwen3-4b-2507", 32768)


def test_context_large_enough_is_ready() -> None:
    v = evaluate(snap(*CATALOG), req("qwen/qwen3-4b-2507", context_limit=8192), POLICY)
    assert v.category == "ready"


def test_offline_auth_error_and_no_snapshot() -> None:
    off = evaluate(snap(state=InstanceState.OFFLINE, error="connection refused"), req("x"), POLICY)
    assert (off.category, off.ok, off.retry_after_ms) == ("offline", False, 2000)
    assert "connection refused" in off.message and "server start" in off.text
    auth = evaluate(snap(state=InstanceState.AUTH_FAILED), req("x"), POLICY)
    assert (auth.category, auth.ok) == ("auth_failed", False)
    err = evaluate(snap(state=InstanceState.ERROR, error="HTTP 500"), req("x"), POLICY)
    assert (err.category, err.ok) == ("error", False)
    none = evaluate(None, req("x"), POLICY, instance_name="adhoc")
    assert none.category == "offline" and none.facts.instance == "adhoc"


def test_step_commands_can_be_pasted_as_they_are() -> None:
    s = snap(*CATALOG)
    # the active instance is the command line's default; any other one is named
    assert "`lmstudio-tray load google/gemma-3-4b`" in evaluate(s, req("google/gemma-3-4b"), POLICY,
                                                               active_instance="local").text
    other = evaluate(s, req("google/gemma-3-4b"), POLICY, active_instance="gpu-box")
    assert "`lmstudio-tray load google/gemma-3-4b --instance local`" in other.text
    small = evaluate(s, req("qwen/qwen3-4b-2507", context_limit=32768), POLICY, active_instance="local")
    assert "`lmstudio-tray switch qwen/qwen3-4b-2507 -c 32768`" in small.steps[0]
    unknown = evaluate(s, req("qwen/qwen3-4b"), POLICY, active_instance="gpu-box")
    assert "`lmstudio-tray models list --instance local`" in unknown.steps[0]
    assert "<key>" not in unknown.text
    auth = evaluate(snap(state=InstanceState.AUTH_FAILED), req("x"), POLICY, active_instance="local")
    assert "`lmstudio-tray token set local`" in auth.text and "Manage Tokens" in auth.text
    error = evaluate(snap(state=InstanceState.ERROR), req("x"), POLICY, active_instance="gpu-box")
    assert ("`lmstudio-tray server stop --instance local`, then `lmstudio-tray server start --instance local`"
            in error.text)
    # an instance only the endpoint monitors (an unknown baseURL) is added before anything names it
    adhoc = evaluate(s, req("google/gemma-3-4b"), POLICY, active_instance="gpu-box", ad_hoc=True)
    assert adhoc.steps[0].endswith(f"`lmstudio-tray instances add local {URL}`")
    assert "--instance local" in adhoc.steps[1]
    # quant variants: `load` takes a model key, a variant is chosen by the name OpenCode sends
    jit = evaluate(snap(*CATALOG, jit=True), req("qwen/qwen3-8b"), POLICY, active_instance="local")
    assert jit.steps == ("To use another variant, name it in opencode.json: qwen/qwen3-8b@q4_k_m, qwen/qwen3-8b@q8_0",
                         "Load it: `lmstudio-tray load qwen/qwen3-8b` (or ask the agent to call lmstudio_load_model)")


def test_policies_change_the_action() -> None:
    policy = {**POLICY, "not_loaded": Policy.ENSURE, "ready": Policy.WARN, "offline": Policy.ENSURE}
    v = evaluate(snap(*CATALOG), req("google/gemma-3-4b"), policy)
    assert (v.action, v.ok) == (Policy.ENSURE, False)
    assert ensure_target(v, req("google/gemma-3-4b")) == ("google/gemma-3-4b", None)
    assert evaluate(snap(*CATALOG), req("qwen/qwen3-4b-2507"), policy).action is Policy.WARN
    # a load cannot fix a dead server: ensure there degrades to block
    off = evaluate(snap(state=InstanceState.OFFLINE), req("x"), policy)
    assert (off.action, off.ok) == (Policy.BLOCK, False)
    allow_all = dict.fromkeys(CATEGORIES, Policy.ALLOW)
    assert evaluate(snap(*CATALOG), req("nope"), allow_all).ok


def test_to_json_is_complete() -> None:
    data = evaluate(snap(*CATALOG), req("google/gemma-3-4b"), POLICY).to_json()
    assert set(data) >= {"ok", "category", "action", "message", "text", "suggestions", "steps", "warnings",
                         "retry_after_ms", "facts"}
    assert data["facts"]["loaded_models"] == ["qwen/qwen3-4b-2507 (ctx 8192)"]


def test_base_name_strips_decorations() -> None:
    assert base_name("lmstudio-community/Qwen3-4B-2507-GGUF") == "qwen3-4b-2507"
    assert base_name("qwen/qwen3-8b@q4_k_m") == "qwen3-8b"
    assert base_name("qwen/qwen3-8b:2") == "qwen3-8b"


def test_suggestions_are_bounded_and_unique() -> None:
    many = tuple(model(f"pub/model-{i}") for i in range(50))
    out = rank_suggestions(snap(*many), "pub/model-1")
    assert len(out) <= 5 and len({s.key for s in out}) == len(out)


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(min_size=0, max_size=40),
    ctx=st.one_of(st.none(), st.integers(min_value=0, max_value=10**7)),
    state=st.sampled_from(list(InstanceState)),
    jit=st.sampled_from([True, False, None]),
)
def test_any_input_gives_a_known_category(name: str, ctx: int | None, state: InstanceState,
                                          jit: bool | None) -> None:
    v = evaluate(snap(*CATALOG, state=state, jit=jit), ValidateRequest(model=name, context_limit=ctx), POLICY)
    assert v.category in CATEGORIES
    assert v.message and isinstance(v.text, str)
    assert v.ok == (POLICY[v.category] in (Policy.ALLOW, Policy.WARN))
