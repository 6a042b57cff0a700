"""Model search, recommendation and alternatives over the downloaded models of every instance. Pure.

Inputs are `(instance, ModelInfo)` pairs (from the snapshots) and, optionally, usage counts per model key
(how often the user ran each model: from the analytics store). Nothing here does I/O.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmstudio_tray.core.errors import SearchError
from lmstudio_tray.core.models import BenchFigures, ModelInfo, ModelType

MIN_MATCH = 0.45  # below this a fuzzy match is noise ("qwen" vs "gemma")
FUZZY_CAP = 0.75
WORD_MATCH = 0.8
USAGE_WEIGHT = 0.3  # the most used model gains at most this much over an equal match
TYPES = (ModelType.LLM, ModelType.EMBEDDING)  # what `--type` takes: vision models count as llm
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_CTX = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([km]?)\s*$", re.IGNORECASE)


Located = tuple[str, ModelInfo]  # (instance name, model)


@dataclass(frozen=True)
class Filters:
    """What a search keeps (`models search`, the tools); None means "any". A `type` other than llm or embedding is a
    SearchError."""

    type: ModelType | None = None  # LLM (vision models included) or EMBEDDING
    architecture: str | None = None  # substring, case-insensitive: "qwen" matches qwen3 and qwen2vl
    quantization: str | None = None  # prefix, ignoring case and punctuation: "q4" matches Q4_K_M
    min_size: int | None = None  # bytes
    max_size: int | None = None
    min_context: int | None = None  # the model's max context length, in tokens
    vision: bool | None = None
    tool_use: bool | None = None
    loaded: bool | None = None

    def __post_init__(self) -> None:
        if self.type is not None:
            if self.type not in TYPES:
                raise SearchError(f"type {str(self.type)!r} is not one of {', '.join(TYPES)}")
            object.__setattr__(self, "type", ModelType(self.type))  # the enum, also when given its text

    def accepts(self, m: ModelInfo) -> bool:
        """Whether `m` passes every filter (see `rejects` for why not)."""
        return not self.rejects(m)

    def rejects(self, m: ModelInfo) -> str | None:
        """Why `m` fails these filters (for "no match" messages), or None when it passes."""
        if self.type is ModelType.EMBEDDING and m.type is not ModelType.EMBEDDING:
            return "not an embedding model"
        if self.type is ModelType.LLM and m.type is ModelType.EMBEDDING:
            return "an embedding model"
        if self.architecture and self.architecture.lower() not in (m.architecture or "").lower():
            return f"architecture {m.architecture or 'unknown'}"
        if self.quantization and not _norm(m.quantization or "").startswith(_norm(self.quantization)):
            return f"quantization {m.quantization or 'unknown'}"
        if self.min_size is not None and (m.size_bytes is None or m.size_bytes < self.min_size):
            return "smaller than asked"
        if self.max_size is not None and (m.size_bytes is None or m.size_bytes > self.max_size):
            return "larger than asked"
        if self.min_context is not None and (m.max_context_length or 0) < self.min_context:
            return f"max context {m.max_context_length or 'unknown'}"
        if self.vision is not None and has_vision(m) != self.vision:
            return "no vision" if self.vision else "has vision"
        if self.tool_use is not None and has_tools(m) != self.tool_use:
            return "no tool use" if self.tool_use else "has tool use"
        if self.loaded is not None and m.loaded != self.loaded:
            return "not loaded" if self.loaded else "loaded"
        return None


@dataclass(frozen=True)
class Hit:
    """One result of `search` or `alternatives`: where the model is, `score` (what the results are ordered by), `match`
    (how well the name matched) and the reasons shown with it."""

    instance: str
    model: ModelInfo
    score: float  # what the ranking sorts by: match + usage bonus (+ a nudge for loaded models)
    match: float  # 0..1, how well the name matched the query (1 with no query)
    uses: int = 0
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The hit as JSON data: the model's fields plus score, match, uses and reasons."""
        return {
            "instance": self.instance,
            "score": round(self.score, 4),
            "match": round(self.match, 4),
            "uses": self.uses,
            "reasons": list(self.reasons),
            **self.model.to_json(),
        }


def has_vision(m: ModelInfo) -> bool:
    """Whether the model takes images (the `vision` capability, or a `vlm` type)."""
    return "vision" in m.capabilities or m.type is ModelType.VLM


def has_tools(m: ModelInfo) -> bool:
    """Whether the model was trained for tool use."""
    return "tool_use" in m.capabilities


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9.]+", text.lower()) if w]


def parse_size(text: str) -> int:
    """"8GB", "500 MB", "1.5g", "2GiB" -> bytes."""
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise SearchError(f"size {text!r} is not a size; write it like 8GB, 500MB or 1.5GiB")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_context(text: str) -> int:
    """"32768", "32k", "1m" -> tokens."""
    match = _CTX.match(text)
    if not match:
        raise SearchError(f"context length {text!r} is not a number of tokens; write it like 32768 or 32k")
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


@functools.lru_cache(maxsize=8192)
def _texts(m: ModelInfo) -> tuple[str, str, tuple[str, ...], frozenset[str]]:
    """(key, short key, every name, the words of names and specs), lowercased: computed once per model."""
    key = m.key.lower()
    short = key.rsplit("/", 1)[-1]
    names = tuple(n for n in (key, short, (m.display_name or "").lower(), *(v.lower() for v in m.variants)) if n)
    hay = " ".join([*names, m.publisher or "", m.architecture or "", m.params_string or "", m.quantization or ""])
    return key, short, names, frozenset(_words(hay))


class Matcher:
    """One query prepared for scoring many models (difflib caches its side of each comparison)."""

    def __init__(self, query: str) -> None:
        self.q = query.strip().lower()
        self.words = _words(self.q)
        self._whole = difflib.SequenceMatcher(None, "", self.q)
        self._per_word = [difflib.SequenceMatcher(None, "", w) for w in self.words]
        # Spec words (publishers, architectures, quantizations) repeat across a library: score each once.
        self._word_ratio: dict[tuple[int, str], float] = {}

    def score(self, m: ModelInfo) -> float:
        """How well the query names `m`, 0..1: exact key 1, substring ~0.9, every word present 0.8, else fuzzy."""
        q = self.q
        if not q:
            return 1.0
        key, short, names, hay_words = _texts(m)
        if q in (key, short):
            return 1.0
        best = 0.0
        for name in names:
            if q in name:
                # A query covering more of the name is a better match: "qwen3-4b" beats "qwen" for qwen3-4b-2507.
                best = max(best, 0.85 + 0.1 * len(q) / len(name))
        if best:
            return min(best, 0.99)
        if self.words and all(any(w in hw for hw in hay_words) for w in self.words):
            return WORD_MATCH
        # Typos: the fuzzy ratio against the whole name, or every query word's best ratio against a word of the
        # name, averaged (one lucky word of three must not make "nothing like this" match "nomic-embed-text").
        fuzzy = 0.0
        if self.words:
            total = 0.0
            for i, matcher in enumerate(self._per_word):
                word_best = 0.0
                for hw in hay_words:
                    ratio = self._word_ratio.get((i, hw))
                    if ratio is None:
                        matcher.set_seq1(hw)
                        ratio = matcher.ratio()
                        self._word_ratio[(i, hw)] = ratio
                    word_best = max(word_best, ratio)
                total += word_best
            fuzzy = 0.9 * total / len(self._per_word)
        # The whole query against each name: the costly part, so only where its upper bounds can beat the words.
        for name in names[1:]:  # the short key and display name; the publisher is among the words already
            floor = max(fuzzy, MIN_MATCH)  # below MIN_MATCH is no match at all: no need to know how bad
            whole = self._whole
            whole.set_seq1(name)
            if whole.real_quick_ratio() > floor and whole.quick_ratio() > floor:
                fuzzy = max(fuzzy, whole.ratio())
        # Capped below a word match: a typo is a hint, never as sure as a name that contains the query.
        return round(min(FUZZY_CAP, fuzzy), 4)


def match_score(query: str, m: ModelInfo) -> float:
    """How well `query` names `m` (see `Matcher.score`); prepare a `Matcher` to score many models."""
    return Matcher(query).score(m)


def match_tier(match: float) -> int:
    """3 exact, 2 the name contains the query (or all its words), 1 fuzzy."""
    return 3 if match >= 1.0 else 2 if match >= WORD_MATCH else 1


def usage_bonus(uses: int, most: int) -> float:
    """The score a model gains from its `uses` relative to the most used one (`most`): at most USAGE_WEIGHT, growing
    with the logarithm of the count."""
    if uses <= 0 or most <= 0:
        return 0.0
    return USAGE_WEIGHT * math.log1p(uses) / math.log1p(most)


def search(
    models: Iterable[Located],
    query: str = "",
    filters: Filters | None = None,
    *,
    usage: Mapping[str, int] | None = None,
    limit: int | None = None,
) -> list[Hit]:
    """Models matching `query` and `filters`, best first: name match, then the user's usage, then loaded."""
    filters = filters or Filters()
    usage = usage or {}
    candidates = [(inst, m) for inst, m in models if filters.accepts(m)]
    most = max((usage.get(m.key, 0) for _, m in candidates), default=0)
    matcher = Matcher(query)
    hits: list[Hit] = []
    for inst, m in candidates:
        match = matcher.score(m)
        if match < MIN_MATCH:
            continue
        uses = usage.get(m.key, 0)
        score = match + usage_bonus(uses, most) + (0.02 if m.loaded else 0.0)
        reasons = []
        if query.strip():
            reasons.append(f"name match {match:.2f}")
        if uses:
            reasons.append(f"used {uses} time{'s' if uses != 1 else ''}")
        if m.loaded:
            reasons.append("loaded")
        hits.append(Hit(inst, m, score, match, uses, tuple(reasons)))
    # Usage reorders models that match about as well; it never lifts a typo-match over a name that contains
    # the query, nor anything over the exact key.
    hits.sort(key=lambda h: (-match_tier(h.match), -h.score, h.model.key, h.instance))
    return hits[:limit] if limit else hits


# ---- recommendation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Needs:
    """What a task asks of a model, read from its words."""

    type: ModelType = ModelType.LLM
    vision: bool = False
    tool_use: bool = False
    reasoning: bool = False
    long_context: bool = False
    fast: bool = False
    words: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        """The needs in words, for messages: "llm, vision, fast"."""
        parts = [str(self.type)]
        parts += [name for name, on in (("vision", self.vision), ("tool use", self.tool_use),
                                        ("reasoning", self.reasoning), ("long context", self.long_context),
                                        ("fast", self.fast)) if on]
        return ", ".join(parts)


_TASK_WORDS: dict[str, tuple[str, ...]] = {
    "embedding": ("embed", "embedding", "embeddings", "rag", "retrieval", "vector", "semantic", "similarity"),
    "vision": ("vision", "image", "images", "photo", "screenshot", "screenshots", "ocr", "picture", "diagram",
               "visual"),
    "tool_use": ("code", "coding", "agent", "agents", "agentic", "tool", "tools", "function", "opencode",
                 "refactor", "debug", "programming"),
    "reasoning": ("reason", "reasoning", "math", "think", "thinking", "logic", "proof", "plan", "planning"),
    "long_context": ("long", "document", "documents", "book", "repo", "repository", "codebase", "summarize",
                     "summarise", "pdf"),
    "fast": ("fast", "quick", "small", "light", "lightweight", "autocomplete", "laptop", "cheap"),
}


def needs_for(task: str) -> Needs:
    """What the words of `task` ask of a model (kind, vision, tool use, reasoning, long context, speed)."""
    words = tuple(_words(task))
    hit = {need: any(w.startswith(k) or w == k for w in words for k in keys) for need, keys in _TASK_WORDS.items()}
    return Needs(
        type=ModelType.EMBEDDING if hit["embedding"] else ModelType.LLM,
        vision=hit["vision"],
        tool_use=hit["tool_use"],
        reasoning=hit["reasoning"],
        long_context=hit["long_context"],
        fast=hit["fast"],
        words=words,
    )


@dataclass(frozen=True)
class Performance:
    """Measured figures of one model from the analytics store (all optional): its use through OpenCode, and the
    latest bench figures per suite (`bench`)."""

    uses: int = 0
    success_rate: float | None = None  # 0..1
    tokens_per_second: float | None = None
    p50_latency_ms: float | None = None
    bench: tuple[BenchFigures, ...] = ()  # the latest per suite and instance

    def bench_of(self, suite: str, instance: str | None = None) -> BenchFigures | None:
        """The latest figures of `suite` (measured on `instance`; None: on any), if it was run."""
        found = [b for b in self.bench if b.suite == suite and (instance is None or b.measured_on(instance))]
        return max(found, key=lambda b: b.measured_at, default=None)

    def bench_for(self, coding: bool, instance: str | None = None) -> BenchFigures | None:
        """The figures advice uses: the coding suite's for a coding task (the quick suite's when there is none),
        else the quick suite's (else the coding suite's); measured on `instance` (None: on any)."""
        first, second = ("coding", "quick") if coding else ("quick", "coding")
        return self.bench_of(first, instance) or self.bench_of(second, instance)


def latest_per_suite(bench: Iterable[BenchFigures], instances: Iterable[str] | None = None) -> dict[str, BenchFigures]:
    """The latest figures per suite measured on one of `instances` (None: on any): what a model's row shows when it
    names the instances it is on."""
    names = None if instances is None else set(instances)
    out: dict[str, BenchFigures] = {}
    for b in bench:
        if names is not None and not any(b.measured_on(i) for i in names):
            continue
        if b.suite not in out or b.measured_at > out[b.suite].measured_at:
            out[b.suite] = b
    return out


def bench_speed(b: BenchFigures) -> str:
    """"48 tok/s in the quick bench here" (the words every piece of advice uses)."""
    return f"{b.gen_tps or 0:.0f} tok/s in the {b.suite} bench here"


MIN_CODING_MODELS = 2  # "fastest here for coding" needs a coding bench of at least this many models


def fastest_for_coding(
    bench: Iterable[BenchFigures], instances: Sequence[str] | None = None
) -> BenchFigures | None:
    """Among the latest figures, the model measured fastest in the coding suite of those that passed the most of its
    checks (a fast model whose code does not parse is no pick), compared on one instance only (speeds of two
    machines do not compare): the first of `instances` (None: every instance, by name) with a coding bench of at
    least MIN_CODING_MODELS models (one model is the fastest of nothing); None when no instance has one."""
    by_instance: dict[str | None, list[BenchFigures]] = {}
    for b in bench:
        if b.suite == "coding" and b.gen_tps:
            by_instance.setdefault(b.instance, []).append(b)
    order = list(instances) if instances is not None else sorted(by_instance, key=lambda i: i or "")
    for instance in order:
        coding = by_instance.get(instance, []) + (by_instance.get(None, []) if instance is not None else [])
        if len({b.model for b in coding}) >= MIN_CODING_MODELS:
            return max(coding, key=lambda b: (b.check_rate or 0.0, b.gen_tps or 0.0, b.model))
    return None


def coding_pick_line(b: BenchFigures, *, instance: bool = False) -> str:
    """"Fastest here for coding: X (41 tok/s, 3/3 checks)": the tray's Tips menu line and the tip's opening;
    `instance`: name where it was measured ("Fastest here for coding on local: ..."), for a view of several."""
    checks = f", {b.checks_passed}/{b.checks} checks" if b.checks else ""
    where = f" on {b.instance}" if instance and b.instance else ""
    return f"Fastest here for coding{where}: {b.model} ({b.gen_tps or 0:.0f} tok/s{checks})"


@dataclass(frozen=True)
class Recommendation:
    """One recommended model: where it is, its score and the reasons (specs and measured figures) behind it."""

    instance: str
    model: ModelInfo
    score: float
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The recommendation as JSON data: the model's fields plus score and reasons."""
        return {"instance": self.instance, "score": round(self.score, 4), "reasons": list(self.reasons),
                **self.model.to_json()}


def recommend(
    task: str,
    models: Iterable[Located],
    *,
    performance: Mapping[str, Performance] | None = None,
    limit: int = 3,
) -> tuple[Needs, list[Recommendation]]:
    """Models fit for `task`, best first, each with the reasons (specs and measured figures) behind it.

    Hard requirements (type, vision, tool use) filter; softer wishes (reasoning, long context, speed)
    and the user's own history (success rate, tokens/s, usage) rank.
    """
    needs = needs_for(task)
    perf = performance or {}
    filters = Filters(type=needs.type, vision=True if needs.vision else None,
                      tool_use=True if needs.tool_use else None)
    pool = _dedupe([(i, m) for i, m in models if filters.accepts(m)])
    if not pool:
        return needs, []
    sizes = [m.size_bytes for _, m in pool if m.size_bytes]
    biggest = max(sizes, default=1)
    longest = max((m.max_context_length or 0 for _, m in pool), default=0) or 1
    most_uses = max((perf.get(m.key, Performance()).uses for _, m in pool), default=0)
    fastest = max((p.tokens_per_second or 0.0 for p in perf.values()), default=0.0)
    # each candidate's figures of its own instance (where it would run)
    benches = {m.key: b for i, m in pool if (b := perf.get(m.key, Performance()).bench_for(needs.tool_use, i))}
    fastest_bench = max((b.gen_tps or 0.0 for b in benches.values()), default=0.0)
    out: list[Recommendation] = []
    for inst, m in pool:
        score, reasons = 1.0, [f"{m.type}" + (f", {m.params_string}" if m.params_string else "")]
        if needs.vision:
            reasons.append("vision")
        if needs.tool_use:
            reasons.append("tool use")
        if needs.reasoning and "reasoning" in m.capabilities:
            score += 0.4
            reasons.append("reasoning")
        ctx = m.max_context_length or 0
        if needs.long_context:
            score += 0.4 * ctx / longest
            reasons.append(f"max context {ctx}")
        if needs.fast and m.size_bytes:
            score += 0.4 * (1 - m.size_bytes / biggest)
            reasons.append(f"size {m.size_bytes / 1e9:.1f} GB")
        elif m.size_bytes and not needs.fast:
            # With no speed wish, a bigger model of the right kind is usually the more capable one.
            score += 0.15 * m.size_bytes / biggest
        p = perf.get(m.key)
        if p is not None and p.uses:
            # Used through OpenCode: its own record ranks it (the work it did, not a bench's prompts).
            if p.success_rate is not None:
                score += 0.5 * (p.success_rate - 0.5)
                reasons.append(f"{p.success_rate:.0%} success over {p.uses} uses")
            if p.tokens_per_second and fastest:
                score += (0.3 if needs.fast else 0.1) * p.tokens_per_second / fastest
                reasons.append(f"{p.tokens_per_second:.0f} tok/s measured")
            score += usage_bonus(p.uses, most_uses) * 0.5
        elif (b := benches.get(m.key)) is not None:
            score += _bench_score(b, needs, fastest_bench, reasons)
        if m.loaded:
            score += 0.05
            reasons.append("loaded now")
        out.append(Recommendation(inst, m, score, tuple(reasons)))
    out.sort(key=lambda r: (-r.score, r.model.key))
    return needs, out[:limit]


def _bench_score(b: BenchFigures, needs: Needs, fastest: float, reasons: list[str]) -> float:
    """What a bench adds for a model never used through OpenCode: its speed against the fastest benched candidate
    (the weight usage tokens/s has), and for a coding task its checked answers (a lighter weight than a success rate
    over real use: a few small checks say less)."""
    score = 0.0
    if b.gen_tps and fastest:
        score += (0.3 if needs.fast else 0.1) * b.gen_tps / fastest
        reasons.append(bench_speed(b))
    if needs.tool_use and b.check_rate is not None:
        score += 0.3 * (b.check_rate - 0.5)
        reasons.append(f"{b.checks_passed}/{b.checks} coding checks passed")
    return score


def alternatives(wanted: str, models: Iterable[Located], *, limit: int = 3) -> list[Hit]:
    """Downloaded models to use instead of `wanted` (missing or failing): same kind, similar size, similar name.

    When `wanted` is downloaded its own specs guide the choice; otherwise its name does.
    """
    located = list(models)
    ref = next((m for _, m in located if m.key == wanted), None)
    matcher = Matcher(wanted)
    out: list[Hit] = []
    for inst, m in located:
        if m.key == wanted:
            continue
        name = matcher.score(m)
        score, reasons = 0.5 * name, []
        if name >= MIN_MATCH:
            reasons.append(f"similar name ({name:.2f})")
        if ref is not None:
            if (ref.type is ModelType.EMBEDDING) != (m.type is ModelType.EMBEDDING):
                continue
            shared = ref.capabilities & m.capabilities
            score += 0.2 * len(shared)
            if shared:
                reasons.append("also " + ", ".join(sorted(c.replace("_", " ") for c in shared)))
            if ref.size_bytes and m.size_bytes:
                ratio = min(ref.size_bytes, m.size_bytes) / max(ref.size_bytes, m.size_bytes)
                score += 0.3 * ratio
                if ratio > 0.5:
                    reasons.append("similar size")
            if ref.architecture and ref.architecture == m.architecture:
                score += 0.2
                reasons.append(f"same architecture ({m.architecture})")
        elif m.type is ModelType.EMBEDDING and "embed" not in wanted.lower():
            continue
        if m.loaded:
            score += 0.1
            reasons.append("loaded now")
        if score > 0.2:
            out.append(Hit(inst, m, score, name, 0, tuple(reasons)))
    out.sort(key=lambda h: (-h.score, h.model.key))
    return out[:limit]


def _dedupe(models: list[Located]) -> list[Located]:
    """One entry per model key (the first instance that has it), so a model on two servers is one choice."""
    seen: set[str] = set()
    out: list[Located] = []
    for inst, m in models:
        if m.key not in seen:
            seen.add(m.key)
            out.append((inst, m))
    return out


def find(models: Iterable[Located], reference: str) -> list[Located]:
    """Every `(instance, model)` whose key (or variant, or unique fuzzy match) is `reference`."""
    located = list(models)
    exact = [(i, m) for i, m in located if m.key == reference or reference in m.variants]
    if exact:
        return exact
    matcher = Matcher(reference)
    scored = [(matcher.score(m), i, m) for i, m in located]
    best = max((s for s, _, _ in scored), default=0.0)
    if best < 0.8:
        return []
    top = {m.key for s, _, m in scored if s == best}
    return [(i, m) for s, i, m in scored if s == best] if len(top) == 1 else []


def pick(models: Iterable[Located], references: Iterable[str]) -> list[tuple[list[str], ModelInfo]]:
    """The models `references` name (see `find`), each with the instances that have it, in the order asked: what
    `models compare` and the compare tool show. SearchError names a reference that matches nothing (with the
    closest models) or a model named twice."""
    located = list(models)
    chosen: list[tuple[list[str], ModelInfo]] = []
    for ref in references:
        found = find(located, ref)
        if not found:
            alts = alternatives(ref, located)
            hint = f"; did you mean {', '.join(h.model.key for h in alts)}?" if alts else ""
            where = ", ".join(sorted({i for i, _ in located})) or "any instance"
            raise SearchError(f"no downloaded model is {ref!r} on {where}{hint}")
        if any(m.key == found[0][1].key for _, m in chosen):
            raise SearchError(f"{ref!r} names {found[0][1].key} a second time; compare different models")
        chosen.append(([i for i, _ in found], found[0][1]))
    return chosen
