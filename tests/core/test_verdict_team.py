"""The verdict with a team profile: models the team does not allow are blocked whatever the member's policy,
with the allowed/recommended models as the way out; the recommended context shows up in the load steps."""

from __future__ import annotations

import time

from lmstudio_tray.core.config.schema import Policy
from lmstudio_tray.core.config.team import RecommendedModel, TeamProfile
from lmstudio_tray.core.hooks.verdict import CATEGORIES, evaluate, team_allows
from tests.core.test_verdict import CATALOG, POLICY, model, req, snap

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-4b"
QWEN8 = "qwen/qwen3-8b"


def profile(allowed: tuple[str, ...], recommended: tuple[tuple[str, int | None], ...] = ()) -> TeamProfile:
    return TeamProfile(
        name="ml", source="/srv/team.toml", layer={}, locked=(), shared_instances=(), allowed=allowed,
        recommended=tuple(RecommendedModel(key=k, context_length=c) for k, c in recommended), busy_minutes=5,
        fetched_at=time.time(),
    )


def test_a_model_outside_the_list_is_blocked_even_when_the_policy_allows_everything() -> None:
    team = profile((GEMMA,), ((GEMMA, 16384),))
    allow_all = dict.fromkeys(CATEGORIES, Policy.ALLOW)
    v = evaluate(snap(*CATALOG), req(QWEN), allow_all, team=team)
    assert not v.ok and v.category == "not_allowed" and v.action is Policy.BLOCK
    assert "team profile 'ml'" in v.message and QWEN in v.message
    assert [s.key for s in v.suggestions] == [GEMMA]
    assert v.suggestions[0].context_length == 16384
    assert any("/srv/team.toml" in step for step in v.steps)
    assert "google/gemma-3-4b (context 16384)" in v.text
    # ensure cannot fix it either
    ensure_all = dict.fromkeys(CATEGORIES, Policy.ENSURE)
    assert evaluate(snap(*CATALOG), req(QWEN), ensure_all, team=team).action is Policy.BLOCK


def test_allowed_models_pass_under_any_name_they_go_by() -> None:
    team = profile((QWEN, QWEN8))
    s = snap(*CATALOG)
    assert evaluate(s, req(QWEN), POLICY, team=team).category == "ready"
    two = snap(model(QWEN, loaded_ctx=8192, ids=2))
    assert evaluate(two, req(QWEN + ":2"), POLICY, team=team).category == "ready"  # a loaded copy's id
    assert evaluate(s, req("qwen/qwen3-8b@q8_0"), POLICY, team=team).category != "not_allowed"  # a variant
    assert team_allows(team, "qwen/qwen3-8b@q4_k_m", None)  # not downloaded here: judged by its name
    assert not team_allows(team, GEMMA, None)
    # no list, or no team: everything goes
    assert evaluate(s, req(GEMMA), POLICY, team=profile(())).category != "not_allowed"
    assert evaluate(s, req(GEMMA), POLICY).category != "not_allowed"


def test_unreachable_instances_still_say_offline_first() -> None:
    from lmstudio_tray.core.models import InstanceState

    v = evaluate(snap(state=InstanceState.OFFLINE), req(QWEN), POLICY, team=profile((GEMMA,)))
    assert v.category == "offline"


def test_load_steps_carry_the_recommended_context() -> None:
    team = profile((), ((GEMMA, 16384),))
    v = evaluate(snap(*CATALOG, jit=False), req(GEMMA), POLICY, team=team)
    assert v.category == "not_loaded"
    assert any(f"`lmstudio-tray load {GEMMA} -c 16384 --instance local`" in step for step in v.steps)
    v = evaluate(snap(model(GEMMA), jit=True), req(GEMMA), POLICY, team=team, active_instance="local")
    assert v.category == "jit" and any(f"`lmstudio-tray load {GEMMA} -c 16384`" in step for step in v.steps)
