"""System context, message budget trimming, compaction notes and text repairs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lmstudio_tray.core.hooks.transforms import (
    MessageDigest,
    ModelUse,
    compaction_notes,
    estimate_tokens,
    message_budget,
    repair_text,
    system_context,
    trim_messages,
)
from lmstudio_tray.core.models import InstanceSnapshot, InstanceState, LoadedInstance, ModelInfo


def snapshot(state: InstanceState = InstanceState.READY, ctx: int = 8192) -> InstanceSnapshot:
    m = ModelInfo(key="qwen/qwen3-4b-2507", instances=(LoadedInstance("qwen/qwen3-4b-2507", ctx),))
    return InstanceSnapshot(name="local", url="http://127.0.0.1:1234", state=state, models=(m,))


def test_system_context_names_model_context_and_what_to_do() -> None:
    text = system_context(snapshot(), "qwen/qwen3-4b-2507")
    assert "qwen/qwen3-4b-2507" in text and "8192 tokens" in text
    assert "lmstudio_load_model" in text and "small" in text
    assert len(text) < 600
    assert "offline" in system_context(snapshot(InstanceState.OFFLINE), "qwen/qwen3-4b-2507")
    assert "not loaded" in system_context(snapshot(), "other/model")
    assert system_context(None, "x") == ""


def msg(i: int, role: str, tokens: int, calls: tuple[str, ...] = (), results: tuple[str, ...] = ()) -> MessageDigest:
    return MessageDigest(f"m{i}", role, tokens, calls, results)


def test_under_budget_is_untouched() -> None:
    msgs = [msg(0, "system", 10), msg(1, "user", 10), msg(2, "assistant", 10)]
    r = trim_messages(msgs, 100)
    assert r.keep == ("m0", "m1", "m2") and not r.changed


def test_keeps_system_and_latest_turns() -> None:
    msgs = [msg(0, "system", 50)] + [msg(i, "user" if i % 2 else "assistant", 100) for i in range(1, 11)]
    r = trim_messages(msgs, 350)
    assert r.keep[0] == "m0"
    assert r.keep[-1] == "m10"
    assert r.tokens_after <= 350
    assert "m1" in r.dropped
    # history after the system prompt starts with a user turn
    assert msgs[int(r.keep[1][1:])].role == "user"


def test_never_splits_tool_call_from_result() -> None:
    msgs = [
        msg(0, "user", 100),
        msg(1, "assistant", 50, calls=("c1",)),
        msg(2, "tool", 400, results=("c1",)),
        msg(3, "user", 100),
        msg(4, "assistant", 20, calls=("c2",)),
        msg(5, "tool", 30, results=("c2",)),
    ]
    r = trim_messages(msgs, 200)
    assert ("m1" in r.keep) == ("m2" in r.keep)
    assert {"m3", "m4", "m5"} <= set(r.keep)


def test_latest_unit_kept_even_over_budget() -> None:
    r = trim_messages([msg(0, "user", 50), msg(1, "user", 5000)], 100)
    assert r.keep == ("m1",)


def test_budget_from_loaded_context() -> None:
    assert message_budget(32768) == 32768 - 4096 - 6000
    small = message_budget(4096)
    assert 256 <= small < 4096
    assert message_budget(100) == 256


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["user", "assistant", "tool", "system"]),
                          st.integers(min_value=0, max_value=500), st.booleans()), max_size=30),
       st.integers(min_value=0, max_value=3000))
def test_trim_properties(spec: list[tuple[str, int, bool]], budget: int) -> None:
    msgs: list[MessageDigest] = []
    open_call: str | None = None
    for i, (role, tokens, call) in enumerate(spec):
        if role == "assistant" and call:
            open_call = f"c{i}"
            msgs.append(msg(i, role, tokens, calls=(open_call,)))
        elif role == "tool" and open_call:
            msgs.append(msg(i, role, tokens, results=(open_call,)))
        else:
            msgs.append(msg(i, role, tokens))
    r = trim_messages(msgs, budget)
    kept = set(r.keep)
    assert kept | set(r.dropped) == {m.id for m in msgs} and not kept & set(r.dropped)
    assert all(m.id in kept for m in msgs if m.role == "system")
    if msgs:
        assert msgs[-1].id in kept
    # kept order preserved
    assert list(r.keep) == [m.id for m in msgs if m.id in kept]
    # a tool call and its results are kept or dropped together
    by_call: dict[str, set[bool]] = {}
    for m in msgs:
        for c in (*m.tool_calls, *m.tool_results):
            by_call.setdefault(c, set()).add(m.id in kept)
    assert all(len(v) == 1 for v in by_call.values())


def test_compaction_notes() -> None:
    history = [ModelUse("a/one"), ModelUse("a/one"), ModelUse("b/two")]
    notes = compaction_notes(ModelUse("b/two", "local", 8192), history)
    assert "a/one → b/two" in notes[0]
    assert "8192" in notes[1] and "1024" in notes[1]
    assert compaction_notes(None, []) == []


def test_repairs() -> None:
    assert repair_text("m", "hello").repairs == ()
    r = repair_text("m", "hello<|im_end|>")
    assert (r.text, r.repairs) == ("hello", ("end-token",))
    assert repair_text("qwen/qwen3-8b", "<think>\n\n</think>\n\nAnswer").text == "Answer"
    assert repair_text("qwen/qwen3-8b", "<think>hmm let me see</think>Answer").text == "Answer"
    assert repair_text("qwen/qwen3-8b", "reasoning...</think>\nAnswer").text == "Answer"
    harmony = "<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>Hi!<|return|>"
    r = repair_text("openai/gpt-oss-20b", harmony)
    assert r.text == "Hi!" and "harmony-final-channel" in r.repairs
    # a literal </think> in ordinary output of a non-thinking model is left alone
    assert repair_text("google/gemma-3-4b", "use the </think> tag").text == "use the </think> tag"


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("x" * 350) == 101
