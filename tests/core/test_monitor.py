"""Instance monitor and status cache against the emulator: states, transitions, events, polling."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from lmstudio_tray.core.clock import FakeClock
from lmstudio_tray.core.config.schema import InstanceConfig
from lmstudio_tray.core.events import (
    ALL_KINDS,
    STATUS_KINDS,
    Event,
    InstanceOffline,
    LoadProgressed,
    ModelLoaded,
    StateChanged,
)
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.models import FailureKind, InstanceSnapshot, InstanceState
from lmstudio_tray.emulator import Emulator, Fault
from tests.core.helpers import Recorder, make_core
from tests.emulator_fixtures import EmulatorFactory

TOKEN = "sk-lm-abcdEFGH:abcdefghijABCDEFGHij"


async def test_every_state_and_the_events_between_them(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(auth_token=TOKEN)
    clock = FakeClock()
    core = make_core(emu.api_url, clock=clock)
    rec = Recorder()
    core.bus.subscribe(rec, *ALL_KINDS)
    mon = core.monitor.instance("local")
    try:
        snap = await mon.refresh()
        assert snap.state is InstanceState.AUTH_FAILED and snap.failure is FailureKind.AUTH_FAILED
        assert rec.kinds() == ["instance.state", "instance.auth_failed"]

        await core.set_token("local", TOKEN)
        assert (await mon.refresh()).state is InstanceState.IDLE
        assert "instance.online" in rec.kinds()

        emu.load("qwen/qwen3-4b-2507", context_length=8192)
        snap = await mon.refresh()
        assert snap.state is InstanceState.READY
        loaded = rec.of("model.loaded")
        assert isinstance(loaded[-1], ModelLoaded)
        assert (loaded[-1].model, loaded[-1].instance_id, loaded[-1].context_length) == (
            "qwen/qwen3-4b-2507",
            "qwen/qwen3-4b-2507",
            8192,
        )

        mon.expect_load("openai/gpt-oss-20b", eta_seconds=12.0)
        snap = mon.snapshot()
        assert snap is not None and snap.state is InstanceState.LOADING
        assert snap.loads[0].eta_seconds == 12.0

        emu.stop_server()
        snap = await mon.refresh()
        assert snap.state is InstanceState.OFFLINE
        assert snap.models, "the last known models stay visible while offline"
        assert "instance.offline" in rec.kinds()
        assert not rec.of("model.unloaded"), "going offline is not unloading"

        emu.start_server()
        emu.add_fault(Fault(path="*", kind="status", status=500))
        snap = await mon.refresh()
        assert snap.state is InstanceState.ERROR and "instance.error" in rec.kinds()

        emu.clear_faults()
        emu.unload_all()
        assert (await mon.refresh()).state in (InstanceState.IDLE, InstanceState.LOADING)
        assert [e.instance_id for e in rec.of("model.unloaded")] == ["qwen/qwen3-4b-2507"]  # type: ignore[attr-defined]
    finally:
        await core.monitor.stop()


async def test_colon_instances_appear_and_vanish_as_events(emulator: Emulator) -> None:
    core = make_core(emulator.api_url)
    rec = Recorder()
    core.bus.subscribe(rec, *ALL_KINDS)
    mon = core.monitor.instance("local")
    try:
        await mon.refresh()
        emulator.load("qwen/qwen3-4b-2507")
        emulator.load("qwen/qwen3-4b-2507")
        snap = await mon.refresh()
        model = snap.model("qwen/qwen3-4b-2507")
        assert model is not None and len(model.instances) == 2
        assert sorted(e.instance_id for e in rec.of("model.loaded")) == [  # type: ignore[attr-defined]
            "qwen/qwen3-4b-2507",
            "qwen/qwen3-4b-2507:2",
        ]
        emulator.unload("qwen/qwen3-4b-2507:2")
        await mon.refresh()
        assert [e.instance_id for e in rec.of("model.unloaded")] == ["qwen/qwen3-4b-2507:2"]  # type: ignore[attr-defined]
    finally:
        await core.monitor.stop()


async def test_jit_is_detected_both_ways(emulator_factory: EmulatorFactory) -> None:
    on = emulator_factory(jit=True)
    off = emulator_factory(jit=False)
    off.load("qwen/qwen3-4b-2507")
    core = make_core(on.api_url, off.api_url)
    try:
        await core.monitor.warm_up()
        assert core.monitor.snapshot("local").jit is True  # type: ignore[union-attr]
        assert core.monitor.snapshot("i1").jit is False  # type: ignore[union-attr]
    finally:
        await core.monitor.stop()


async def test_cache_hits_cost_no_lmstudio_call(emulator: Emulator) -> None:
    clock = FakeClock()
    core = make_core(emulator.api_url, clock=clock, cache_max_age=30)
    try:
        await core.monitor.warm_up()
        calls = core.monitor.lmstudio_calls
        emulator.clear_requests()
        for _ in range(100):
            await core.monitor.get("local")
        assert core.monitor.lmstudio_calls == calls
        assert emulator.requests == []
        assert (core.monitor.stats.hits, core.monitor.stats.misses) == (100, 0)

        clock.advance(31)  # older than the maximum age: the next read refreshes
        await core.monitor.get("local")
        assert core.monitor.stats.misses == 1 and len(emulator.requests) >= 1

        core.monitor.invalidate("local")  # an error reported by a hook invalidates at once
        await core.monitor.get("local")
        assert core.monitor.stats.misses == 2
    finally:
        await core.monitor.stop()


async def test_concurrent_refreshes_share_one_request(emulator: Emulator) -> None:
    core = make_core(emulator.api_url)
    mon = core.monitor.instance("local")
    try:
        await mon.refresh()
        emulator.clear_requests()
        emulator.add_fault(Fault(path="/api/v1/models", kind="latency", delay=0.2))
        await asyncio.gather(*(mon.refresh() for _ in range(10)))
        assert [r.path for r in emulator.requests].count("/api/v1/models") == 1
    finally:
        await core.monitor.stop()


async def test_transient_failure_is_retried_inside_the_refresh(emulator: Emulator) -> None:
    core = make_core(emulator.api_url, retries=1)
    mon = core.monitor.instance("local")
    try:
        emulator.add_fault(Fault(path="/api/v1/models", kind="status", status=500, times=1))
        snap = await mon.refresh()
        assert snap.state is InstanceState.IDLE
    finally:
        await core.monitor.stop()


async def test_polling_adapts_fast_stable_and_backoff(emulator: Emulator) -> None:
    clock = FakeClock()
    core = make_core(
        emulator.api_url,
        clock=clock,
        poll_interval=1.0,
        fast_poll_interval=0.25,
        fast_window=10,
        offline_backoff_max=8,
    )
    mon = core.monitor.instance("local")
    try:
        await mon.refresh()
        assert mon.next_delay() == 0.25  # just changed (first sight)
        clock.advance(11)
        await mon.refresh()
        assert mon.next_delay() == 1.0  # stable
        mon.expect_load("qwen/qwen3-4b-2507", eta_seconds=5)
        assert mon.next_delay() == 0.25  # something loads
        mon.end_load("qwen/qwen3-4b-2507")
        clock.advance(11)
        emulator.stop_server()
        delays = []
        for _ in range(6):
            await mon.refresh()
            delays.append(mon.next_delay())
        assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # exponential backoff, capped
        emulator.start_server()
        await mon.refresh()
        assert mon.next_delay() == 0.25
    finally:
        await core.monitor.stop()


async def test_poll_loop_runs_on_the_injected_clock(emulator: Emulator) -> None:
    clock = FakeClock()
    core = make_core(emulator.api_url, clock=clock, poll_interval=1.0, fast_window=0)
    rec = Recorder()
    core.bus.subscribe(rec, ModelLoaded)
    try:
        await core.monitor.start()
        emulator.load("qwen/qwen3-4b-2507")
        for _ in range(50):  # let the loop reach its sleep
            await asyncio.sleep(0.01)
            if clock.pending_sleeps:
                break
        assert not rec.events  # no time passed, no poll
        clock.advance(1.0)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if rec.events:
                break
        assert rec.kinds() == ["model.loaded"]
    finally:
        await core.monitor.stop()


async def test_unknown_base_url_becomes_an_ad_hoc_instance(emulator_factory: EmulatorFactory) -> None:
    a = emulator_factory()
    b = emulator_factory()
    core = make_core(a.api_url)
    try:
        assert core.monitor.instance_for_url(a.api_url + "/v1") == "local"
        assert core.monitor.instance_for_url(a.api_url.replace("127.0.0.1", "localhost")) == "local"
        name = await core.monitor.ensure_instance(b.api_url + "/v1")
        assert name != "local" and core.monitor.snapshot(name) is not None
        assert await core.monitor.ensure_instance(b.api_url) == name
    finally:
        await core.monitor.stop()


def closed_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:  # all bound at once, so the OS hands out n different ports
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]  # nothing listens on them: a poll is refused at once
    finally:
        for sock in socks:
            sock.close()


async def test_ad_hoc_instances_are_capped_least_recently_used_first(emulator: Emulator) -> None:
    from lmstudio_tray.core.control.monitor import MAX_AD_HOC

    core = make_core(emulator.api_url)
    urls = [f"http://127.0.0.1:{p}" for p in closed_ports(MAX_AD_HOC + 3)]
    try:
        names = [await core.monitor.ensure_instance(u) for u in urls[:MAX_AD_HOC]]
        assert await core.monitor.ensure_instance(urls[0]) == names[0]  # asked again: now the most recent
        for url in urls[MAX_AD_HOC:]:
            await core.monitor.ensure_instance(url)
        watched = set(core.monitor.names)
        assert "local" in watched  # configured instances are never dropped
        assert len(watched) == 1 + MAX_AD_HOC
        assert names[0] in watched and not {names[1], names[2], names[3]} & watched
        assert core.monitor.instance_for_url(urls[-1]) is not None
    finally:
        await core.monitor.stop()


async def test_killed_lmstudio_goes_offline_and_ends_expected_loads(emulator: Emulator) -> None:
    core = make_core(emulator.api_url)
    mon = core.monitor.instance("local")
    try:
        await mon.refresh()
        mon.expect_load("qwen/qwen3-4b-2507", eta_seconds=3)
        emulator.kill()
        snap = await mon.refresh()
        assert snap.state is InstanceState.OFFLINE
        assert snap.loads == ()
    finally:
        await core.monitor.stop()


async def test_an_event_is_published_once_the_status_shows_it(emulator_factory: EmulatorFactory) -> None:
    """A subscriber that reads the status on an event (the tray redraws from it) sees what the event says."""
    emu = emulator_factory()
    core = make_core(emu.api_url)
    seen: list[tuple[Event, InstanceSnapshot | None]] = []
    core.bus.subscribe(lambda event: seen.append((event, core.monitor.snapshot("local"))), *STATUS_KINDS)
    mon = core.monitor.instance("local")
    try:
        await mon.refresh()
        emu.load("qwen/qwen3-4b-2507")
        await mon.refresh()
        mon.expect_load("openai/gpt-oss-20b", eta_seconds=12.0)
        mon.update_load("openai/gpt-oss-20b", progress=0.4, eta_seconds=6.0, estimated=False)
        emu.stop_server()
        await mon.refresh()
    finally:
        await core.monitor.stop()
    kinds = [type(event) for event, _ in seen]
    assert {StateChanged, ModelLoaded, LoadProgressed, InstanceOffline} <= set(kinds)
    for event, snap in seen:
        assert snap is not None, event
        if isinstance(event, StateChanged):
            assert snap.state.value == event.new, event
        elif isinstance(event, ModelLoaded):
            model = snap.model(event.model)
            assert model is not None and event.instance_id in [i.id for i in model.instances], event
        elif isinstance(event, LoadProgressed):
            assert [(lp.model, lp.progress) for lp in snap.loads] == [(event.model, event.progress)], event
        elif isinstance(event, InstanceOffline):
            assert snap.state is InstanceState.OFFLINE, event


async def test_status_read_while_an_instance_is_added_sees_the_instances_before_or_after(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Core.status() runs on the tray's thread while the loop adds and removes instances (a config switch, an
    # ad-hoc URL); here the addition lands in the middle of the read, which is where a thread switch can put it.
    core = make_core(emulator.api_url)
    try:
        await core.monitor.warm_up()
        local = core.monitor.instance("local")
        snapshot = type(local).snapshot
        added: list[str] = []

        def snapshot_then_add(mon: Any) -> InstanceSnapshot | None:
            if not added:
                added.append("late")
                core.monitor.add_instance(InstanceConfig(name="late", url=emulator.api_url),
                                          LMStudioClient(emulator.api_url))
            return snapshot(mon)

        monkeypatch.setattr(type(local), "snapshot", snapshot_then_add)
        assert [s.name for s in core.status().instances] == ["local"]  # the instances as the read began
        assert "late" in core.monitor.names
    finally:
        await core.monitor.stop()


async def test_storing_the_hub_token_in_this_process_makes_the_team_sync_read_it_again(
    emulator_factory: EmulatorFactory,
) -> None:
    """The team sync keeps the hub token it read (not the keyring every round); a token stored through the core
    replaces it at the next round."""
    from lmstudio_tray.core.control.team_sync import HUB_TOKEN

    core = make_core(emulator_factory().api_url)
    core.team_sync._token = "the old one"  # as a round leaves it
    await core.set_token(HUB_TOKEN, "the new one")
    assert core.team_sync._token is None  # forgotten: the next round reads the new one from the store
    assert core.secrets.get(HUB_TOKEN) == "the new one"
