"""A settings switch replaces the core's config as a whole: a thread reading it (the tray's menu, the
notification backend, the endpoint) sees the old settings or the new ones, never half of each."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from lmstudio_tray.core.config.schema import Config, parse_config
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.notify.base import LogNotifier
from lmstudio_tray.notify.service import make_service

SWITCHES = 20


def two_profiles(home: Emulator, gpu: Emulator) -> tuple[Config, Config]:
    """The plain settings and the `work` profile; each pair of values below belongs together."""
    data: dict[str, Any] = {
        "instances": [{"name": "home", "url": home.api_url}],
        "monitor": {"request_timeout": 2.0},
        "validation": {"hook_timeout_ms": 1500},
        "profiles": {"work": {
            "instances": [{"name": "gpu", "url": gpu.api_url}],
            "monitor": {"request_timeout": 5.0},
            "validation": {"hook_timeout_ms": 5000},
        }},
    }
    return parse_config(data), parse_config({**data, "active_profile": "work"})


def settings(config: Config) -> tuple[str | None, float, int, tuple[str, ...]]:
    return (config.active_profile, config.monitor.request_timeout, config.validation.hook_timeout_ms,
            tuple(i.name for i in config.instances))


def test_a_reader_thread_never_sees_half_of_a_profile_switch(emulator_factory: Callable[..., Emulator]) -> None:
    home, gpu = emulator_factory(), emulator_factory()
    plain, work = two_profiles(home, gpu)
    expected = {settings(plain), settings(work)}
    core = Core(two_profiles(home, gpu)[0], lms_path=None)
    thread = CoreThread(core)
    thread.start()
    seen: set[tuple[str | None, float, int, tuple[str, ...]]] = set()
    mixed: list[tuple[str | None, float, int, tuple[str, ...]]] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            current = settings(core.config)  # one reference: all it says is from one config
            if current in expected:
                seen.add(current)
            else:
                mixed.append(current)
            time.sleep(0)

    reading = threading.Thread(target=reader, name="config-reader")
    reading.start()
    try:
        for n in range(SWITCHES):
            # each switch swaps the watched instance too, so it takes a few loop turns to apply
            new = two_profiles(home, gpu)[1 if n % 2 == 0 else 0]
            changes = thread.submit(core.apply_config(new)).result(30)
            assert "settings applied" in changes
    finally:
        done.set()
        reading.join()
        thread.stop()
    assert mixed == [], f"half-applied settings were visible: {sorted(set(mixed), key=str)}"
    assert seen == expected
    assert core.config is new  # the object that was applied, not the old one changed in place


def test_a_config_listener_gets_the_config_now_in_effect(emulator_factory: Callable[..., Emulator]) -> None:
    plain, work = two_profiles(emulator_factory(), emulator_factory())
    core = Core(plain, lms_path=None)
    thread = CoreThread(core)
    thread.start()
    try:
        told: list[Config] = []
        core.on_config_change(told.append)
        thread.submit(core.apply_config(work)).result(30)
        assert told == [work] and told[0] is core.config
        assert plain.active_profile is None and plain.monitor.request_timeout == 2.0  # the old one is untouched
    finally:
        thread.stop()


def test_the_notification_policy_follows_a_switch(emulator: Emulator) -> None:
    # `serve` and the tray build it from the config at start; it must not keep those settings forever
    base = {"instances": [{"name": "local", "url": emulator.api_url}],
            "profiles": {"quiet": {"notifications": {"quiet": True, "window": 5}}}}
    core = Core(parse_config(base), lms_path=None)
    service = make_service(core, LogNotifier())
    thread = CoreThread(core)
    thread.start()
    try:
        quiet = parse_config({**base, "active_profile": "quiet"})
        thread.submit(core.apply_config(quiet)).result(30)
        assert service.policy.config is quiet.notifications
    finally:
        thread.stop()
