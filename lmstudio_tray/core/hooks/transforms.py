"""Pure text and message transforms the OpenCode plugin applies for LM Studio models.

Each function is cheap (linear in its input, no IO) because the plugin calls it on every step, and each
is a no-op when there is nothing to do, so callers need not check first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmstudio_tray.core.models import BenchFigures, InstanceSnapshot, InstanceState, ModelType

# OpenCode's agent prompt plus the built-in tool schemas take several thousand tokens that the
# messages transform cannot see (it runs before them); reserve room for them.
DEFAULT_SYSTEM_RESERVE = 6000
DEFAULT_OUTPUT_RESERVE = 4096
MIN_BUDGET = 256
CHARS_PER_TOKEN = 3.5


def estimate_tokens(text: str) -> int:
    """A deliberately pessimistic estimate: underestimating is what overflows LM Studio's context."""
    return int(len(text) / CHARS_PER_TOKEN) + 1 if text else 0


# ---- system context --------------------------------------------------------------------------------


# The system context goes with every request: the advice lines (loaded alternatives, measured speeds) get at most
# this many characters, and at most MAX_ALTERNATIVES models are named.
ADVICE_MAX_CHARS = 320
MAX_ALTERNATIVES = 3
ADVICE_FASTER_BY = 1.3  # a loaded alternative measured at least this much faster is worth a line


def system_context(snapshot: InstanceSnapshot | None, model: str,
                   bench: Mapping[str, tuple[BenchFigures, ...]] | None = None) -> str:
    """A short, current note for the system prompt about the local model and what to do if it goes away; when the
    model is not loaded, the chat models loaded on the same instance instead, and with `bench` (the latest bench
    figures per model) a loaded alternative measured clearly faster here."""
    if snapshot is None:
        return ""
    where = f"LM Studio '{snapshot.name}' ({snapshot.url})"
    m = snapshot.model(model)
    if m is None:
        found = snapshot.find_instance(model)
        m = found[0] if found else None
    if snapshot.state in (InstanceState.OFFLINE, InstanceState.AUTH_FAILED, InstanceState.ERROR):
        state = f"{where} is {snapshot.state.value.replace('_', ' ')}"
    elif m is not None and m.loaded:
        ctx = m.loaded_context_length
        state = f"You run as {m.key} on {where}" + (f", loaded with a context window of {ctx} tokens" if ctx else "")
    else:
        state = f"You run as {model} on {where}; it is not loaded right now"
    lines = [
        f"[lmstudio-tray] {state}.",
        "If LM Studio stops answering or the model gets unloaded, do not retry blindly: tell the user, and "
        "use lmstudio_server_status, lmstudio_server_start or lmstudio_load_model if they are available.",
    ]
    if m is not None and m.loaded_context_length and m.loaded_context_length <= 16384:
        lines.append("The context window is small: read files in ranges and keep tool output short.")
    if snapshot.state in (InstanceState.READY, InstanceState.IDLE, InstanceState.LOADING):
        lines += _advice(snapshot, m.key if m is not None else model, m is not None and m.loaded, bench or {})
    return "\n".join(lines)


def _advice(snapshot: InstanceSnapshot, chosen: str, loaded: bool,
            bench: Mapping[str, tuple[BenchFigures, ...]]) -> list[str]:
    """The loaded alternatives (when `chosen` is not loaded) and the measured advice, within ADVICE_MAX_CHARS."""
    others = [o.key for o in snapshot.loaded_models if o.key != chosen and o.type is not ModelType.EMBEDDING]
    lines: list[str] = []
    if not loaded and others:
        shown = others[:MAX_ALTERNATIVES]
        more = f" and {len(others) - len(shown)} more" if len(others) > len(shown) else ""
        lines.append(f"Loaded there instead: {', '.join(shown)}{more}. Rather than wait for a load, the user may "
                     "switch this session to one of them (/models).")
    faster = _measured_faster(chosen, others, bench, snapshot.name)
    if faster is not None:
        lines.append(faster)
    out: list[str] = []
    for line in lines:  # the budget: a line that does not fit is left out whole, never cut mid-sentence
        if sum(len(x) + 1 for x in out) + len(line) <= ADVICE_MAX_CHARS:
            out.append(line)
    return out


def _measured_faster(chosen: str, others: list[str], bench: Mapping[str, tuple[BenchFigures, ...]],
                     instance: str) -> str | None:
    """"Measured here (quick bench): X (loaded) generates 48 tok/s, 4.0× faster than Y (12 tok/s)": the fastest
    loaded alternative measured in the same suite as `chosen`, when it is at least ADVICE_FASTER_BY faster. Only
    figures of the session's `instance` compare (another machine's speeds say nothing about this one)."""
    for suite in ("quick", "coding"):
        def here(b: BenchFigures, suite: str = suite) -> bool:
            return b.suite == suite and bool(b.gen_tps) and b.measured_on(instance)

        mine = next((b for b in bench.get(chosen, ()) if here(b)), None)
        theirs = [b for o in others for b in bench.get(o, ()) if here(b)]
        if mine is None or not theirs:
            continue
        best = max(theirs, key=lambda b: (b.gen_tps or 0.0, b.model))
        mine_tps, best_tps = mine.gen_tps or 0.0, best.gen_tps or 0.0
        if best_tps < ADVICE_FASTER_BY * mine_tps:
            return None
        return (f"Measured here ({suite} bench): {best.model} (loaded) generates {best_tps:.0f} tok/s, "
                f"{best_tps / mine_tps:.1f}× faster than {chosen} ({mine_tps:.0f} tok/s).")
    return None


# ---- message budget --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageDigest:
    """What the plugin tells us about one message: enough to budget it, not its content."""

    id: str
    role: str  # system | user | assistant | tool
    tokens: int
    tool_calls: tuple[str, ...] = ()  # call ids this message makes
    tool_results: tuple[str, ...] = ()  # call ids this message answers


@dataclass(frozen=True)
class TrimResult:
    """What `trim_messages` decided: the ids of the messages to keep and to drop, the budget, and the token estimates
    before and after."""

    keep: tuple[str, ...]
    dropped: tuple[str, ...]
    budget: int
    tokens_before: int
    tokens_after: int

    @property
    def changed(self) -> bool:
        """Whether any message was dropped."""
        return bool(self.dropped)

    def to_json(self) -> dict[str, Any]:
        """The decision as JSON data (the endpoint's answer to the plugin)."""
        return {
            "keep": list(self.keep),
            "dropped": list(self.dropped),
            "budget": self.budget,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
        }


def message_budget(
    loaded_context: int,
    *,
    output_reserve: int | None = None,
    system_reserve: int = DEFAULT_SYSTEM_RESERVE,
) -> int:
    """Tokens the conversation may use inside a loaded context window."""
    out = DEFAULT_OUTPUT_RESERVE if output_reserve is None else output_reserve
    out = min(out, loaded_context // 4)
    system = min(system_reserve, loaded_context // 3)
    return max(MIN_BUDGET, loaded_context - out - system)


@dataclass
class _Unit:
    first: int
    members: list[int] = field(default_factory=list)
    tokens: int = 0
    system: bool = False


def _units(messages: Sequence[MessageDigest]) -> list[_Unit]:
    """Groups of messages that must stay together: a tool call and every message answering it."""
    parent = list(range(len(messages)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    caller: dict[str, int] = {}
    for i, m in enumerate(messages):
        for call in m.tool_calls:
            caller.setdefault(call, i)
    for i, m in enumerate(messages):
        for call in m.tool_results:
            j = caller.get(call)
            if j is not None:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    units: dict[int, _Unit] = {}
    for i, m in enumerate(messages):
        root = find(i)
        unit = units.setdefault(root, _Unit(first=root))
        unit.members.append(i)
        unit.tokens += max(0, m.tokens)
        unit.system = unit.system or m.role == "system"
    return sorted(units.values(), key=lambda u: u.first)


def trim_messages(messages: Sequence[MessageDigest], budget: int) -> TrimResult:
    """Keep system messages and the latest turns within `budget`; never split a tool call from its result.

    The newest unit is always kept, even over budget: dropping the prompt being answered is worse than an
    overflow error that names the cause. After trimming, the history starts at a user message, because
    strict chat templates (Gemma, Mistral) reject a conversation that opens with the assistant.
    """
    total = sum(max(0, m.tokens) for m in messages)
    all_ids = tuple(m.id for m in messages)
    if total <= budget or not messages:
        return TrimResult(all_ids, (), budget, total, total)
    units = _units(messages)
    system_units = [u for u in units if u.system]
    rest = [u for u in units if not u.system]
    used = sum(u.tokens for u in system_units)
    kept: list[_Unit] = []
    # Newest first by their last message: a tool result arriving late makes its whole unit recent.
    for unit in sorted(rest, key=lambda u: u.members[-1], reverse=True):
        if kept and used + unit.tokens > budget:
            break
        kept.append(unit)
        used += unit.tokens
    kept.sort(key=lambda u: u.first)
    newest = len(messages) - 1
    while len(kept) > 1 and newest not in kept[0].members and all(
        messages[i].role != "user" for i in kept[0].members
    ):
        used -= kept[0].tokens
        kept.pop(0)
    keep_idx = {i for u in (*system_units, *kept) for i in u.members}
    keep = tuple(m.id for i, m in enumerate(messages) if i in keep_idx)
    dropped = tuple(m.id for i, m in enumerate(messages) if i not in keep_idx)
    return TrimResult(keep, dropped, budget, total, used)


# ---- compaction ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelUse:
    """One model a session ran on, with its instance and loaded context length when known."""

    model: str
    instance: str | None = None
    context_length: int | None = None


def compaction_notes(current: ModelUse | None, history: Sequence[ModelUse] = ()) -> list[str]:
    """Extra context for OpenCode's compaction prompt: which local models the session ran on, and how
    small the summary has to be for the model that will read it."""
    notes: list[str] = []
    chain: list[str] = []
    for use in history:
        if not chain or chain[-1] != use.model:
            chain.append(use.model)
    if len(chain) > 1:
        notes.append(
            "[lmstudio-tray] This session switched local LM Studio models: "
            + " → ".join(chain)
            + ". Earlier turns may reflect another model's style or limits; keep facts, drop style."
        )
    if current is not None and current.context_length:
        target = max(256, current.context_length // 8)
        notes.append(
            f"[lmstudio-tray] The summary will be read by {current.model} with a loaded context window of "
            f"{current.context_length} tokens: keep it under about {target} tokens, and list file paths, "
            "decisions and open tasks rather than prose."
        )
    return notes


# ---- text-complete repairs -------------------------------------------------------------------------

_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "</s>", "<end_of_turn>", "<|endoftext|>", "<|return|>")
_TRAILING_TOKENS_RE = re.compile("(?:" + "|".join(re.escape(t) for t in _END_TOKENS) + r")+\s*$")
_EMPTY_THINK_RE = re.compile(r"^\s*<think>\s*</think>\s*", re.IGNORECASE)
_LEAKED_THINK_RE = re.compile(r"^\s*(?:<think>)?.*?</think>\s*", re.IGNORECASE | re.DOTALL)
_HARMONY_FINAL_RE = re.compile(r"<\|channel\|>\s*final\s*<\|message\|>(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Repair:
    """The text after `repair_text`, and the names of the repairs applied (none: the text is unchanged)."""

    text: str
    repairs: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether any repair applied."""
        return bool(self.repairs)


def repair_text(model: str, text: str) -> Repair:
    """Undo template leaks local models are known for. Returns the text unchanged when none apply."""
    repairs: list[str] = []
    out = text
    if "<|channel|>" in out:
        # gpt-oss harmony framing leaked into content: the answer is the `final` channel.
        final = _HARMONY_FINAL_RE.search(out)
        if final:
            out = final.group(1)
            repairs.append("harmony-final-channel")
    if _EMPTY_THINK_RE.match(out):
        out = _EMPTY_THINK_RE.sub("", out, count=1)
        repairs.append("empty-think-block")
    elif "</think>" in out[:20000] and ("<think>" in out[:200] or _thinking_model(model)):
        # Reasoning printed as content (template without reasoning parser): keep only the answer.
        stripped = _LEAKED_THINK_RE.sub("", out, count=1)
        if stripped.strip():
            out = stripped
            repairs.append("leaked-reasoning")
    trimmed = _TRAILING_TOKENS_RE.sub("", out)
    if trimmed != out:
        out = trimmed.rstrip()
        repairs.append("end-token")
    return Repair(out if repairs else text, tuple(repairs))


def _thinking_model(model: str) -> bool:
    key = model.lower()
    return any(name in key for name in ("qwen3", "deepseek-r1", "qwq", "magistral", "phi-4-reasoning"))
