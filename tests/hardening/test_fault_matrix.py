"""Fault matrix: LM Studio misbehaving under a running core + endpoint + notifications.

Each case asserts what a person would see: the instance state (tray icon, `status`), the notification
bubble (recorded by the notify service's recording backend) and the validate verdict the OpenCode plugin
gets, and that nothing is left stuck (no phantom loads, recovery once LM Studio behaves).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lmstudio_tray.emulator import Emulator, Fault
from lmstudio_tray.notify.base import RecordingNotifier
from tests.hardening.helpers import Endpoint, start_endpoint, wait_for

MODEL = "qwen/qwen3-4b-2507"
FAST_POLLING = {"poll_interval": 0.1, "fast_poll_interval": 0.05, "offline_backoff_max": 0.2,
                "request_timeout": 1.0, "retries": 0}


class Rig:
    def __init__(self, emu: Emulator, **config: Any) -> None:
        config.setdefault("monitor", FAST_POLLING)
        self.emu = emu
        self.notes = RecordingNotifier()
        self.ep: Endpoint = start_endpoint(emu, notifier=self.notes, **config)
        self.http = self.ep.client()

    def state(self) -> str:
        snap = self.ep.core.monitor.snapshot("local")
        return snap.state.value if snap else "unknown"

    def wait_state(self, *states: str, timeout: float = 20.0) -> None:
        wait_for(lambda: self.state() in states, timeout)

    def validate(self, model: str = MODEL) -> dict[str, Any]:
        r = self.http.post("/v1/validate", json={"model": model, "base_url": self.emu.api_url + "/v1"})
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def titles(self) -> list[str]:
        return [m.title for m in self.notes.messages]

    def close(self) -> None:
        self.http.close()
        self.ep.thread.stop()


@pytest.fixture
def rig_factory(emulator_factory: Any) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(emu_settings: dict[str, Any] | None = None, **config: Any) -> Rig:
        rig = Rig(emulator_factory(**(emu_settings or {})), **config)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def test_lm_studio_killed_during_a_load(rig_factory: Any) -> None:
    rig = rig_factory({"load_seconds": 3600.0})  # the load can only end by LM Studio dying
    rig.wait_state("idle")
    answer: dict[str, Any] = {}

    def load() -> None:
        with rig.ep.client() as c:
            r = c.post("/v1/tools/load", json={"model": MODEL})
            answer.update(status=r.status_code, body=r.json())

    worker = threading.Thread(target=load)
    worker.start()
    wait_for(lambda: rig.emu.snapshot()["loading"], 20)
    rig.wait_state("loading")
    rig.emu.kill()
    worker.join(30)
    assert not worker.is_alive(), "the load call must end when LM Studio dies"
    assert answer["status"] == 409, answer
    assert answer["body"]["error"]["message"], answer
    rig.wait_state("offline")
    snap = rig.ep.core.monitor.snapshot("local")
    assert snap is not None and snap.loads == (), "no phantom load left behind"
    v = rig.validate()
    assert (v["ok"], v["category"], v["action"]) == (False, "offline", "block")
    assert "LM Studio" in v["message"]
    wait_for(lambda: "local is offline" in rig.titles())
    wait_for(lambda: "Could not load qwen/qwen3-4b-2507" in rig.titles())
    # LM Studio comes back: the model is simply not loaded, nothing is stuck
    rig.emu.start()
    rig.wait_state("idle")
    v = rig.validate()
    assert v["category"] in ("jit", "not_loaded") and not v["facts"]["instance_ids"], v  # JIT on: it loads on use
    wait_for(lambda: any("back online" in t for t in rig.titles()))


def test_flapping_server_collapses_into_one_notification(rig_factory: Any) -> None:
    rig = rig_factory()
    rig.emu.load(MODEL)
    rig.wait_state("ready")
    for _ in range(6):
        rig.emu.stop_server()
        rig.wait_state("offline")
        rig.emu.start_server()
        rig.wait_state("ready")
    time.sleep(0.3)
    # offline, back online, then one "keeps dropping", all in the same bubble; the other nine changes stay quiet
    assert rig.titles() == [f"{MODEL} is ready", "local is offline", "local is back online",
                            "local keeps dropping"], rig.titles()
    assert {m.replace_key for m in rig.notes.messages[1:]} == {"conn:local"}
    assert rig.validate()["category"] == "ready"


@pytest.mark.parametrize("fault", [
    Fault(path="*", kind="status", status=500),
    Fault(path="*", kind="status", status=503, body="<html>upstream down</html>"),
    Fault(path="*", kind="error_body", body="Model crashed: CUDA error"),
    Fault(path="*", kind="invalid_json"),
    Fault(path="*", kind="truncate"),
    Fault(path="*", kind="drop"),
], ids=["500", "503-html", "200-error-body", "invalid-json", "truncated", "dropped"])
def test_server_errors_show_as_error_and_block(rig_factory: Any, fault: Fault) -> None:
    rig = rig_factory()
    rig.emu.load(MODEL)
    rig.wait_state("ready")
    rig.emu.add_fault(fault)
    rig.wait_state("error")
    snap = rig.ep.core.monitor.snapshot("local")
    assert snap is not None and snap.failure is not None and snap.error
    assert snap.failure.value in ("server_error", "bad_response"), snap.failure
    v = rig.validate()
    assert (v["ok"], v["category"], v["action"]) == (False, "error", "block"), v
    assert snap.error in v["message"] or "error" in v["message"].lower(), v["message"]
    wait_for(lambda: "local is answering with errors" in rig.titles())
    status = rig.http.get("/v1/status").json()["instances"][0]
    assert status["state"] == "error"
    rig.emu.clear_faults()
    rig.wait_state("ready")
    assert rig.validate()["ok"] is True


def test_hung_lm_studio_never_holds_a_validate(rig_factory: Any) -> None:
    """LM Studio hangs (its requests wait the longest timeout there is, 120 s): each validate is answered
    from the last snapshot once the hook's budget is spent. One that waited for the hung refresh would not
    come back before the test's HTTP client gives up (30 s)."""
    rig = rig_factory(
        monitor={**FAST_POLLING, "request_timeout": 120.0, "cache_max_age": 0.2},
        validation={"hook_timeout_ms": 800},
    )
    rig.emu.load(MODEL)
    rig.wait_state("ready")
    rig.emu.add_fault(Fault(path="*", kind="hang"))
    time.sleep(0.5)  # the cache is now older than cache_max_age: each validate wants a refresh
    for _ in range(3):
        assert rig.validate()["category"] == "ready"
    metrics = rig.http.get("/v1/metrics").json()
    assert metrics["validate"]["answered_from_stale_cache"] == 3  # none waited for the hung refresh
    rig.emu.clear_faults()


def test_hung_lm_studio_turns_offline_and_bounds_tools_and_ensure(rig_factory: Any) -> None:
    """With a finite request timeout the hung poll ends as `offline` ("did not answer in time"); the tools
    and ensure are bounded by that timeout, not by a load's 10 minutes (the client gives up after 60 s)."""
    rig = rig_factory(monitor={**FAST_POLLING, "request_timeout": 3.0, "cache_max_age": 0.2})
    rig.emu.load(MODEL)
    rig.wait_state("ready")
    rig.emu.add_fault(Fault(path="*", kind="hang"))
    rig.wait_state("offline", timeout=30)
    snap = rig.ep.core.monitor.snapshot("local")
    assert snap is not None and "in time" in (snap.error or ""), snap.error
    with rig.ep.client() as c:
        c.timeout = httpx.Timeout(60.0)
        assert c.post("/v1/tools/list", json={}).status_code == 200
        ensure = c.post("/v1/ensure", json={"model": MODEL, "base_url": rig.emu.api_url + "/v1"})
    assert rig.validate()["category"] == "offline"
    assert ensure.status_code == 200 and ensure.json()["ok"] is False, ensure.text
    rig.emu.clear_faults()
    rig.wait_state("ready", timeout=30)


def test_token_change_shows_auth_failed(rig_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = "sk-lm-OLD00000:oldTokenABCDEFGHIJKLMNOP", "sk-lm-NEW00000:newTokenABCDEFGHIJKLMNOP"
    monkeypatch.setenv("LMSTUDIO_TRAY_TOKEN_LOCAL", old)
    rig = rig_factory({"auth_token": old})
    rig.emu.load(MODEL)
    rig.wait_state("ready")
    rig.emu.update(auth_token=new)
    rig.wait_state("auth_failed")
    v = rig.validate()
    assert (v["ok"], v["category"], v["action"]) == (False, "auth_failed", "block"), v
    assert "token" in v["message"].lower()
    wait_for(lambda: "local: API token needed" in rig.titles())
    for text in [*(m.body for m in rig.notes.messages), v["message"], rig.http.get("/v1/status").text]:
        assert old not in text and new not in text
    rig.emu.update(auth_token=old)
    rig.wait_state("ready")


def test_slow_but_alive_lm_studio_is_not_offline(rig_factory: Any) -> None:
    rig = rig_factory(monitor={**FAST_POLLING, "request_timeout": 3.0})
    rig.emu.load(MODEL)
    rig.wait_state("ready")
    rig.emu.add_fault(Fault(path="*", kind="latency", delay=0.5))
    time.sleep(2.0)
    assert rig.state() == "ready"
    assert not any("offline" in t for t in rig.titles())


def test_short_outage_is_retried_inside_one_refresh(rig_factory: Any) -> None:
    rig = rig_factory(monitor={**FAST_POLLING, "retries": 1})
    rig.emu.load(MODEL)
    rig.wait_state("ready")
    rig.emu.add_fault(Fault(path="*", kind="drop", times=1))
    time.sleep(1.0)
    assert rig.state() == "ready" and rig.titles() == [f"{MODEL} is ready"]


def test_endpoint_answers_while_the_core_is_busy_with_a_dead_remote(rig_factory: Any) -> None:
    """A remote instance that never answers (a laptop gone to sleep) must not hold up any verdict: its polls
    wait 120 s here, so a validate that waited for them would not come back before the client gives up
    (30 s)."""
    emu_rig = rig_factory(monitor={**FAST_POLLING, "request_timeout": 120.0})
    emu_rig.emu.load(MODEL)
    emu_rig.wait_state("ready")
    with socket.socket() as asleep:
        asleep.bind(("127.0.0.1", 0))
        asleep.listen(16)  # connections are accepted by the kernel and then nothing is ever said
        remote = f"http://127.0.0.1:{asleep.getsockname()[1]}/v1"
        with httpx.Client(timeout=30) as c:
            r = c.post(emu_rig.ep.url + "/v1/validate", headers={"authorization": f"Bearer {emu_rig.ep.token}"},
                       json={"model": MODEL, "base_url": remote})
            assert r.status_code == 200 and r.json()["ok"] is False
            assert emu_rig.validate()["ok"] is True
