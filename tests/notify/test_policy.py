from __future__ import annotations

import pytest

from lmstudio_tray.core.clock import FakeClock
from lmstudio_tray.core.config.schema import NotificationsConfig
from lmstudio_tray.core.events import (
    AuthFailed,
    InstanceError,
    InstanceOffline,
    InstanceOnline,
    LoadFailed,
    LoadFinished,
    LoadProgressed,
    LoadStarted,
    ModelLoaded,
    ModelUnloaded,
    ServerStarted,
    ServerStopped,
    SessionFailing,
    StateChanged,
)
from lmstudio_tray.notify.base import Urgency
from lmstudio_tray.notify.policy import NotificationPolicy, format_duration, format_size


def make(clock: FakeClock, **kw: object) -> NotificationPolicy:
    return NotificationPolicy(NotificationsConfig(**kw), clock)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def seen_online(policy: NotificationPolicy, name: str = "local") -> None:
    assert policy.decide(InstanceOnline(name, url="http://h:1234")) is None  # start-up: not news


def test_failed_load_carries_reason_and_replaces_the_loading_bubble(clock: FakeClock) -> None:
    p = make(clock)
    started = p.decide(LoadStarted("local", model="qwen", eta_seconds=20, size_bytes=4_500_000_000))
    assert started is not None
    assert started.title == "Loading qwen"
    assert "about 20 s left" in started.body and "4.5 GB" in started.body
    failed = p.decide(LoadFailed("local", model="qwen", reason="not enough memory"))
    assert failed is not None
    assert failed.replace_key == started.replace_key == "load:local:qwen"
    assert "not enough memory" in failed.body
    assert failed.urgency is Urgency.CRITICAL
    assert failed.category == "load_failed"


def test_loading_bubble_only_for_loads_longer_than_threshold(clock: FakeClock) -> None:
    p = make(clock, loading_threshold=5)
    assert p.decide(LoadStarted("local", model="small", eta_seconds=2)) is None
    loaded = p.decide(LoadFinished("local", model="small", instance_id="small", seconds=1.5))
    assert loaded is not None and loaded.category == "loaded"
    assert loaded.body == "Loaded on local in 2 s."


def test_load_without_eta_shows_once_it_outlasts_threshold(clock: FakeClock) -> None:
    p = make(clock, loading_threshold=5)
    assert p.decide(LoadStarted("local", model="big")) is None
    clock.advance(2)
    assert p.decide(LoadProgressed("local", model="big", progress=0.2)) is None
    clock.advance(4)
    shown = p.decide(LoadProgressed("local", model="big", progress=0.5, eta_seconds=6))
    assert shown is not None
    assert "50 %" in shown.body and "about 6 s left" in shown.body
    clock.advance(1)
    assert p.decide(LoadProgressed("local", model="big", progress=0.6, eta_seconds=4)) is None


def test_progress_with_long_eta_shows_early(clock: FakeClock) -> None:
    p = make(clock, loading_threshold=5)
    assert p.decide(LoadStarted("local", model="big")) is None
    assert p.decide(LoadProgressed("local", model="big", progress=0.01, eta_seconds=60)) is not None


def test_threshold_zero_shows_every_load(clock: FakeClock) -> None:
    p = make(clock, loading_threshold=0)
    assert p.decide(LoadStarted("local", model="m", eta_seconds=0.5)) is not None


def test_model_loaded_and_load_finished_are_one_piece_of_news(clock: FakeClock) -> None:
    p = make(clock)
    assert p.decide(ModelLoaded("local", model="qwen", instance_id="qwen", context_length=8192)) is not None
    assert p.decide(LoadFinished("local", model="qwen", instance_id="qwen", seconds=3)) is None
    other = p.decide(ModelLoaded("local", model="gemma", instance_id="gemma"))
    assert other is not None and "gemma" in other.title


def test_dedupe_within_window_then_again_after(clock: FakeClock) -> None:
    p = make(clock, window=60)
    seen_online(p)
    assert p.decide(AuthFailed("local", url="http://h", reason="401")) is not None
    clock.advance(30)
    assert p.decide(AuthFailed("local", url="http://h", reason="401")) is None
    clock.advance(31)
    assert p.decide(AuthFailed("local", url="http://h", reason="401")) is not None


def test_rate_limit_per_kind_and_instance(clock: FakeClock) -> None:
    p = make(clock, window=60)
    shown = [p.decide(LoadFailed("local", model="m", reason=f"r{i}")) for i in range(6)]
    assert sum(d is not None for d in shown) == 3
    # Another instance has its own budget.
    assert p.decide(LoadFailed("remote", model="m", reason="r0")) is not None
    clock.advance(61)
    assert p.decide(LoadFailed("local", model="m", reason="r9")) is not None


def test_updates_share_one_replace_key(clock: FakeClock) -> None:
    p = make(clock)
    p.decide(InstanceOnline("local"))
    off = p.decide(InstanceOffline("local", url="http://h:1234", reason="connection refused"))
    clock.advance(200)
    on = p.decide(InstanceOnline("local"))
    assert off is not None and on is not None
    assert off.replace_key == on.replace_key == "conn:local"
    assert "connection refused" in off.body
    assert on.body == "Back after 3 min 20 s."


def test_offline_at_start_up_is_not_news(clock: FakeClock) -> None:
    p = make(clock)
    assert p.decide(InstanceOffline("local", url="http://h")) is None
    assert p.decide(InstanceOnline("local")) is None
    assert p.decide(InstanceError("local", reason="500")) is not None


def test_repeated_offline_events_say_it_once(clock: FakeClock) -> None:
    p = make(clock, window=0)
    p.decide(InstanceOnline("local"))
    assert p.decide(InstanceOffline("local")) is not None
    clock.advance(100)
    assert p.decide(InstanceOffline("local")) is None


def test_flapping_collapses_into_one_message(clock: FakeClock) -> None:
    p = make(clock, window=0, flap_window=120)
    p.decide(InstanceOnline("local"))
    shown = []
    for i in range(10):
        clock.advance(5)
        event = InstanceOffline("local") if i % 2 == 0 else InstanceOnline("local")
        shown.append(p.decide(event))
    titles = [d.title for d in shown if d is not None]
    assert titles == ["local is offline", "local is back online", "local keeps dropping"]
    flap = next(d for d in shown if d is not None and d.title.endswith("dropping"))
    assert flap.replace_key == "conn:local"
    assert "3 times" in flap.body
    # The sequence ended online; once it settles for longer than flap_window, changes are news again.
    clock.advance(300)
    again = p.decide(InstanceOffline("local"))
    assert again is not None and again.title == "local is offline"


def test_flapping_then_stable_offline_notifies_normally(clock: FakeClock) -> None:
    p = make(clock, window=0, flap_window=60)
    p.decide(InstanceOnline("local"))
    for _ in range(3):
        clock.advance(1)
        p.decide(InstanceOffline("local"))
        clock.advance(1)
        p.decide(InstanceOnline("local"))
    clock.advance(120)
    d = p.decide(InstanceOffline("local"))
    assert d is not None and d.title == "local is offline"


def test_quiet_mode_only_failures(clock: FakeClock) -> None:
    p = make(clock, quiet=True, loading_threshold=0)
    assert p.decide(LoadStarted("local", model="m", eta_seconds=10)) is None
    assert p.decide(LoadFinished("local", model="m", instance_id="m", seconds=10)) is None
    assert p.decide(ServerStarted("local")) is None
    assert p.decide(LoadFailed("local", model="m", reason="oom")) is not None
    assert p.decide(SessionFailing("local", session_id="s1", model="m", failures=3)) is not None


def test_categories_switch_off_one_kind(clock: FakeClock) -> None:
    p = make(clock, categories={"loaded": False})
    assert p.decide(ModelLoaded("local", model="m", instance_id="m")) is None
    assert p.decide(LoadFailed("local", model="m", reason="x")) is not None


def test_disabled_means_nothing_but_keeps_bookkeeping(clock: FakeClock) -> None:
    p = make(clock, enabled=False)
    p.decide(InstanceOnline("local"))
    assert p.decide(InstanceOffline("local")) is None
    p.set_enabled(True)
    clock.advance(10)
    d = p.decide(InstanceOnline("local"))
    assert d is not None and d.body == "Back after 10 s."


def test_server_auth_session_wording(clock: FakeClock) -> None:
    p = make(clock)
    started = p.decide(ServerStarted("local"))
    stopped = p.decide(ServerStopped("local"))
    assert started is not None and stopped is not None
    assert started.replace_key == stopped.replace_key == "server:local"
    auth = p.decide(AuthFailed("local", url="http://h:1234", reason="invalid token"))
    assert auth is not None
    assert "lmstudio-tray token set local" in auth.body and "invalid token" in auth.body
    assert "Server Settings → Manage Tokens" in auth.body  # what LM Studio calls the page
    # LM Studio's own reason ends with a full stop: the sentence does not get a second one
    auth = p.decide(AuthFailed("other", url="http://h:1234", reason="Learn more at: https://lmstudio.ai/docs."))
    assert auth is not None and "docs. Create a token" in auth.body and ".." not in auth.body
    session = p.decide(SessionFailing("local", session_id="abc", model="qwen", failures=4, reason="timeout"))
    assert session is not None
    assert session.body == "4 requests with qwen failed in a row: timeout"


def test_events_without_notifications(clock: FakeClock) -> None:
    p = make(clock)
    assert p.decide(StateChanged("local", old="idle", new="ready")) is None
    assert p.decide(ModelUnloaded("local", model="m", instance_id="m")) is None


def test_formatters() -> None:
    assert format_duration(5.4) == "5 s"
    assert format_duration(60) == "1 min"
    assert format_duration(75) == "1 min 15 s"
    assert format_duration(3720) == "1 h 02 min"
    assert format_size(None) == ""
    assert format_size(500) == "500 B"
    assert format_size(1_500_000) == "1.5 MB"
    assert format_size(12_300_000_000) == "12.3 GB"


def test_first_poll_online_counts_as_seen(clock: FakeClock) -> None:
    # The monitor publishes StateChanged(None -> idle) at start-up, InstanceOnline only after outages.
    p = make(clock)
    assert p.decide(StateChanged("local", old=None, new="idle")) is None
    d = p.decide(InstanceOffline("local", url="http://h:1234"))
    assert d is not None and d.title == "local is offline"
    started_offline = make(clock)
    started_offline.decide(StateChanged("b", old=None, new="offline"))
    assert started_offline.decide(InstanceOffline("b")) is None
