"""Reports and suggestions on recorded streams, and the `stats` command that prints them."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from lmstudio_tray.analytics.reports import ModelStats, build_report, parse_since, percentile, series
from lmstudio_tray.analytics.store import default_path, reading
from lmstudio_tray.analytics.suggestions import Suggestion, suggest
from lmstudio_tray.cli import main
from lmstudio_tray.core import events as ev
from tests.analytics import streams as s
from tests.analytics.helpers import BASE, ingest

NOW = time.time()
SLOW, FAST = "google/gemma-3-12b", "qwen/qwen3-4b-2507"


def report_of(db: Path, since: float = NOW - 86400) -> dict[str, ModelStats]:
    with reading(db) as conn:
        return {m.model: m for m in build_report(conn, since, NOW).models}


def tips(db: Path, kind: str, known: tuple[str, ...] = ()) -> list[Suggestion]:
    with reading(db) as conn:
        return [t for t in suggest(conn, NOW, known_models=known) if t.kind == kind]


@pytest.fixture
def usage_db(tmp_path: Path) -> Path:
    """A day of use: a slow model (20 tokens/s) with a failed session, a fast one (60 tokens/s), loads,
    verdicts and an instance that was down for a quarter of the observed time."""
    db = tmp_path / "usage.sqlite3"
    t0 = NOW - 4 * 3600
    stream = [
        *s.turns(BASE, SLOW, t0, 10, session="slow1", seconds=2.0, output=40, input_tokens=1000),
        *s.turns(BASE, FAST, t0, 10, session="fast1", seconds=1.0, output=60, input_tokens=500),
        *s.failed_turn(BASE, SLOW, t0 + 100, "slow2", "e1", s.api_error("Model crashed", BASE)),
    ]
    bus = [
        (t0, ev.StateChanged("local", old=None, new="ready")),
        (t0 + 3 * 3600, ev.StateChanged("local", old="ready", new="offline")),
        (t0 + 3 * 3600, ev.InstanceOffline("local", reason="connection refused")),
        (t0 + 3.5 * 3600, ev.StateChanged("local", old="offline", new="ready")),
        (t0 + 3.75 * 3600, ev.StateChanged("local", old="ready", new="offline")),
        (t0 + 1, ev.LoadFinished("local", model=SLOW, instance_id=SLOW, seconds=8.0, size_bytes=8_000_000_000)),
        (t0 + 2, ev.LoadFinished("local", model=SLOW, instance_id=SLOW, seconds=4.0, size_bytes=8_000_000_000)),
        (t0 + 3, ev.LoadFailed("local", model=SLOW, reason="out of memory")),
        *[(t0 + 5, ev.VerdictGiven("local", model=FAST, model_key=FAST, category="ready", latency_ms=0.3 + i / 10))
          for i in range(3)],
    ]
    ingest(db, stream, bus)
    return db


def test_per_model_figures(usage_db: Path) -> None:
    models = report_of(usage_db)
    slow, fast = models[SLOW], models[FAST]
    assert (fast.turns, fast.turn_errors, fast.verdicts) == (10, 0, 3)
    assert fast.tokens_per_s == pytest.approx(60.0) and slow.tokens_per_s == pytest.approx(20.0)
    assert slow.latency_p50_s == pytest.approx(2.0) and slow.latency_p95_s == pytest.approx(2.0)
    assert fast.output_per_input == pytest.approx(60 / 500)
    assert (slow.turns, slow.turn_errors) == (11, 1)
    assert (slow.sessions, slow.sessions_ok, slow.sessions_failed) == (2, 1, 1)
    assert slow.session_success_rate == pytest.approx(0.5) and fast.session_success_rate == 1.0
    assert (slow.loads, slow.load_failures, slow.load_total_s) == (2, 1, 12.0)
    assert slow.load_p50_s == 4.0 and slow.size_bytes == 8_000_000_000
    assert slow.context_used_max == 1040  # input + output of its largest turn


def test_per_instance_uptime_and_failures(usage_db: Path) -> None:
    with reading(usage_db) as conn:
        inst = build_report(conn, NOW - 4 * 3600, NOW).instances[0]
    assert inst.instance == "local" and inst.state == "offline"
    # up 3 h, down 0.5 h, up 0.25 h, down 0.25 h
    assert inst.uptime == pytest.approx(3.25 / 4, abs=0.001)
    assert inst.failures == 1 and inst.load_failures == 1 and inst.session_errors == 1
    assert inst.validate_p50_ms == pytest.approx(0.4)


def test_the_window_limits_what_counts(usage_db: Path) -> None:
    assert report_of(usage_db, since=NOW - 60) == {}


def test_series_buckets_usage_over_time(usage_db: Path) -> None:
    with reading(usage_db) as conn:
        data = series(conn, NOW - 4 * 3600, NOW, buckets=4)
    buckets = data["buckets"]
    assert len(buckets) == 4 and data["bucket_s"] == pytest.approx(3600)
    assert sum(b["turns"] for b in buckets) == 21 and sum(b["turn_errors"] for b in buckets) == 1
    assert buckets[0]["verdicts"] == 3 and buckets[0]["loads"] == 2
    assert buckets[0]["tokens_per_s_p50"] in (20.0, 60.0)


def test_parse_since() -> None:
    assert parse_since("7d") == 7 * 86400 and parse_since("12h") == 43200 and parse_since("2w") == 14 * 86400
    assert parse_since("all") == math.inf
    with pytest.raises(ValueError, match="use a number with a unit"):
        parse_since("yesterday")
    assert percentile([3.0, 1.0, 2.0, 10.0], 0.95) == 10.0 and percentile([], 0.5) is None


# ---- suggestions, one per kind, each with the numbers behind it and a case that must not trigger it ----


def test_prefer_a_faster_model_of_similar_success(usage_db: Path) -> None:
    [tip] = tips(usage_db, "faster_model")  # 60 vs 20 tokens/s, and 100% vs 91% of turns succeeded
    assert tip.model == SLOW and tip.numbers["alternative"] == FAST
    assert (tip.numbers["tokens_per_s"], tip.numbers["alternative_tokens_per_s"]) == (20.0, 60.0)
    assert (tip.numbers["success_rate"], tip.numbers["alternative_success_rate"]) == (0.909, 1.0)
    assert "Prefer qwen/qwen3-4b-2507 over google/gemma-3-12b: 60.0 vs 20.0 tokens/s" in tip.message


def test_a_faster_model_that_fails_more_is_not_suggested(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    crash = s.api_error("Model crashed", BASE)
    failures = [e for i in range(4) for e in s.failed_turn(BASE, FAST, NOW - 100 + i, f"f{i}", f"x{i}", crash)]
    ingest(db, [*s.turns(BASE, SLOW, NOW - 3600, 10, session="a", seconds=2.0, output=40),
                *s.turns(BASE, FAST, NOW - 3600, 10, session="b", seconds=1.0, output=60), *failures])
    assert tips(db, "faster_model") == []  # 3x faster, but 71% of its turns succeeded against 100%


def test_larger_context_when_turns_come_near_it(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    near = s.turns(BASE, FAST, NOW - 3600, 3, session="n", seconds=1.0, output=300, input_tokens=7500)
    roomy = s.turns(BASE, SLOW, NOW - 3600, 3, session="r", seconds=1.0, output=300, input_tokens=1000, prefix="r")
    ingest(db, [*near, *roomy], context={("local", FAST): 8192, ("local", SLOW): 8192})
    [tip] = tips(db, "larger_context")
    assert tip.model == FAST
    assert tip.numbers == {"turns": 3, "turns_near_context": 3, "loaded_context": 8192, "context_used_max": 7800,
                           "context_errors": 0, "suggested_context": 16384}
    assert "Reload qwen/qwen3-4b-2507 with a larger context (e.g. 16384)" in tip.message


def test_context_overflow_errors_also_ask_for_more_context(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    overflow = {"name": "ContextOverflowError", "data": {"message": "context length exceeded"}}
    ingest(db, [*s.failed_turn(BASE, FAST, NOW - 60, "o1", "x1", overflow),
                *s.failed_turn(BASE, FAST, NOW - 30, "o2", "x2", overflow)])
    [tip] = tips(db, "larger_context")
    assert tip.numbers["context_errors"] >= 2


def test_unload_models_unused_for_days(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    old = NOW - 3 * 86400
    ingest(db, [*s.turns(BASE, FAST, NOW - 600, 1, session="x", seconds=1.0, output=10)], [
        (old, ev.LoadFinished("local", model=SLOW, instance_id=SLOW, seconds=5.0, size_bytes=8_100_000_000)),
        (old, ev.ModelLoaded("local", model=SLOW, instance_id=SLOW, context_length=4096)),
        (old, ev.ModelLoaded("local", model=FAST, instance_id=FAST, context_length=4096)),  # used 10 min ago
        (old, ev.ModelLoaded("local", model="llama-3.2-3b-instruct", instance_id="l", context_length=4096)),
        (old + 60, ev.ModelUnloaded("local", model="llama-3.2-3b-instruct", instance_id="l")),  # gone already
    ])
    [tip] = tips(db, "unload_unused")
    assert (tip.model, tip.instance) == (SLOW, "local")
    assert tip.numbers["days_unused"] == pytest.approx(3.0, abs=0.01)
    assert tip.numbers["size_bytes"] == 8_100_000_000
    assert "unused for 3.0 days, holding 8.1 GB" in tip.message


def test_set_a_ttl_when_evicted_and_reloaded_often(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    bus: list[tuple[float, ev.Event]] = []
    for i in range(4):  # four evictions, each followed by a reload five minutes later
        t = NOW - 3600 + i * 600
        bus += [(t, ev.ModelUnloaded("local", model=FAST, instance_id=FAST)),
                (t + 300, ev.ModelLoaded("local", model=FAST, instance_id=FAST, context_length=4096)),
                (t + 300, ev.LoadFinished("local", model=FAST, instance_id=FAST, seconds=6.0, size_bytes=1))]
    bus += [(NOW - 50, ev.ModelUnloaded("local", model=SLOW, instance_id=SLOW)),
            (NOW - 40, ev.ModelLoaded("local", model=SLOW, instance_id=SLOW))]  # once is not "often"
    ingest(db, bus=bus)
    [tip] = tips(db, "set_ttl")
    assert tip.model == FAST
    assert tip.numbers == {"reloads": 4, "median_gap_s": 300.0, "load_seconds": 24.0, "suggested_ttl_s": 660}
    assert "evicted and loaded again 4 times" in tip.message


def test_fix_a_model_id_that_keeps_failing(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    bad = [(NOW - 60, ev.VerdictGiven("local", model="qwen3-4b", category="unknown_model", ok=False))
           for _ in range(3)]
    once = [(NOW - 60, ev.VerdictGiven("local", model="typo-once", category="unknown_model", ok=False))]
    ingest(db, bus=[*bad, *once])
    [tip] = tips(db, "fix_model_id", known=(FAST, SLOW))
    assert tip.model == "qwen3-4b" and tip.numbers["failures"] == 3
    assert tip.numbers["close_matches"][0] == FAST
    assert "did you mean qwen/qwen3-4b-2507" in tip.message


# ---- the command ----------------------------------------------------------------------------------------


def test_stats_prints_the_report_and_suggestions(usage_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `stats` measures up to the real now: the instance has been offline since NOW - 0.25 h until then
    def uptime_pct() -> str:
        return f"{100 * 3.25 * 3600 / (time.time() - (NOW - 4 * 3600)):.0f}%"

    expected = {uptime_pct()}
    assert main(["stats", "--db", str(usage_db), "--since", "1d"]) == 0
    expected.add(uptime_pct())
    out = capsys.readouterr().out
    assert "21 turns" in out and "3 validations" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert lines[FAST][1:5] == ["3", "10", "100%", "1.0"]  # validations, turns, sessions ok, p50 turn (s)
    assert "local" in lines and expected & set(lines["local"]), (expected, lines["local"])  # uptime
    assert "Suggestions" in out


def test_stats_json(usage_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--db", str(usage_db), "--json", "--since", "all"]) == 0
    data = json.loads(capsys.readouterr().out)
    fast = next(m for m in data["report"]["models"] if m["model"] == FAST)
    assert fast["tokens_per_s"] == 60.0 and fast["turns"] == 10
    assert isinstance(data["suggestions"], list)


def test_stats_with_nothing_recorded_and_with_a_bad_window(capsys: pytest.CaptureFixture[str]) -> None:
    assert not default_path().exists()
    assert main(["stats"]) == 0
    assert "no analytics recorded yet" in capsys.readouterr().out
    assert main(["stats", "--since", "soon"]) == 2
    assert "--since 'soon'" in capsys.readouterr().err


def test_session_durations_per_model(usage_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # fast1: its first turn's event at t0 + 1, its last at t0 + 19; slow1: t0 + 2 to t0 + 29; slow2: one moment
    models = report_of(usage_db)
    assert models[FAST].session_median_s == pytest.approx(18.0) and models[FAST].session_total_s == pytest.approx(18.0)
    assert models[SLOW].session_median_s == pytest.approx(13.5) and models[SLOW].session_total_s == pytest.approx(27.0)
    assert main(["stats", "--db", str(usage_db), "--since", "1d"]) == 0
    out = capsys.readouterr().out
    assert "session median" in out and "sessions total" in out
    fast_line = next(line for line in out.splitlines() if line.startswith(f"  {FAST}"))
    assert fast_line.split()[-4:] == ["18", "s", "18", "s"]  # median, total
    assert main(["stats", "--db", str(usage_db), "--json", "--since", "all"]) == 0
    slow = next(m for m in json.loads(capsys.readouterr().out)["report"]["models"] if m["model"] == SLOW)
    assert (slow["session_median_s"], slow["session_total_s"]) == (13.5, 27.0)
