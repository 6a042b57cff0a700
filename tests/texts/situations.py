"""Generated texts, produced for real: what people and agents read in every situation the code words.

A real core and endpoint (in the core's loop thread, as in the tray) watch emulated LM Studio servers in
every state a verdict distinguishes; the texts are the endpoint's validate answers and tool answers, the
refusals of the shared-instance guard, the tray's notifications after menu clicks, and the notification
policy's wording for each kind of event.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from lmstudio_tray.api.server import EndpointServer, attach_endpoint
from lmstudio_tray.core.clock import FakeClock
from lmstudio_tray.core.config import team
from lmstudio_tray.core.config.schema import NotificationsConfig, ValidationConfig, parse_config
from lmstudio_tray.core.events import (
    AuthFailed,
    BenchFailed,
    BenchFinished,
    Event,
    InstanceError,
    InstanceOffline,
    InstanceOnline,
    LoadFailed,
    LoadFinished,
    LoadProgressed,
    LoadStarted,
    ModelLoaded,
    ServerStarted,
    ServerStopped,
    SessionFailing,
    StateChanged,
)
from lmstudio_tray.core.hooks.verdict import ValidateRequest, evaluate
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.emulator.state.catalog import ModelSpec, default_catalog
from lmstudio_tray.emulator.state.faults import Fault
from lmstudio_tray.notify.base import RecordingNotifier
from lmstudio_tray.notify.policy import NotificationPolicy
from lmstudio_tray.notify.service import NotificationService
from lmstudio_tray.tray.menu import ActionKind, MenuAction, MenuPrefs
from lmstudio_tray.tray.preferences import menu_prefs
from lmstudio_tray.tray.presenter import TrayPresenter
from lmstudio_tray.wiring import StoreMeasurements
from tests.texts.named import Text

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"  # two quant variants: JIT would pick one
GEMMA_TWIN = "lmstudio-community/gemma-3-12b"  # same base name as GEMMA: "gemma-3-12b" is ambiguous
DEVSTRAL = "mistralai/devstral-small-2507"
LLAMA = "llama-3.2-3b-instruct"
GPT_OSS = "openai/gpt-oss-20b"
UNKNOWN = "qwen/qwen3-4b"
BROKEN_LOAD = "the engine crashed while loading"

# (model, context_limit) the plugin may ask about; together with the instances below they reach every
# verdict category (test_user_texts checks that they do)
REQUESTS = [(QWEN, None), (QWEN, 65536), (GEMMA, None), ("gemma-3-12b", None), (UNKNOWN, None),
            (DEVSTRAL, None), (GPT_OSS, None)]


class PlainNotifier(RecordingNotifier):
    """A notification backend without buttons: the tray then writes the command that forces a refused change."""

    supports_buttons = False


@dataclass
class World:
    core: Core
    thread: CoreThread
    server: EndpointServer
    emus: dict[str, Emulator]
    stranger: Emulator  # not in the config: validating against it makes an ad-hoc instance
    bus_notes: RecordingNotifier
    texts: list[Text] = field(default_factory=list)
    categories: set[str] = field(default_factory=set)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers={"authorization": f"Bearer {self.server.token}"},
                            timeout=30)

    def run(self, coro: Any) -> Any:
        return self.thread.submit(coro).result(timeout=30)

    def add(self, source: str, *texts: str) -> None:
        self.texts += [Text(source, t, generated=True) for t in texts if t]


def _emulators(make: Callable[..., Emulator]) -> dict[str, Emulator]:
    twin = ModelSpec(key=GEMMA_TWIN, display_name="Gemma 3 12B (community)", publisher="lmstudio-community",
                     architecture="gemma3", max_context_length=131072)
    emus = {
        "local": make(jit=False, catalog=[*default_catalog(), twin]),  # the active instance
        "jit": make(fail_loads={DEVSTRAL: BROKEN_LOAD}),
        "auth": make(auth_token="sk-lm-texts:secret"),
        "down": make(server_running=False),
        "broken": make(),
        "unsure": make(jit=False),
    }
    emus["local"].load(QWEN, context_length=4096)
    emus["unsure"].load(QWEN)
    emus["broken"].add_fault(Fault(path="*", status=500, body={"error": "internal"}))
    emus["unsure"].add_fault(Fault(path="/v1/models", status=500))  # JIT cannot be told apart then
    return emus


@contextmanager
def world(make: Callable[..., Emulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    emus = _emulators(make)
    shared = tmp_path / "team-shared.toml"
    shared.write_text(f'[team]\nname = "ml"\nbusy_minutes = 5\n[[instances]]\nname = "local"\n'
                      f'url = "{emus["local"].api_url}"\n')
    monkeypatch.setenv(team.ENV, str(shared))
    config = parse_config({
        "instances": [{"name": n, "url": e.api_url} for n, e in emus.items()],
        "active_instance": "local",
        "endpoint": {"port": 0},
    })
    core = Core(config, lms_path=None)
    server = attach_endpoint(core, measurements=StoreMeasurements())
    bus_notes = RecordingNotifier()
    NotificationService(bus_notes, config.notifications).subscribe(core.bus)
    thread = CoreThread(core)
    thread.start()
    w = World(core, thread, server, emus, make(jit=False), bus_notes)
    try:
        for name in emus:
            w.run(core.monitor.get(name, max_age=0))
        yield w
    finally:
        thread.stop()


# ---- verdicts --------------------------------------------------------------------------------------


def _validate(w: World, client: httpx.Client, emu: Emulator, where: str, model: str, ctx: int | None) -> None:
    body: dict[str, Any] = {"model": model, "base_url": emu.api_url + "/v1"}
    if ctx:
        body["context_limit"] = ctx
    r = client.post("/v1/validate", json=body)
    assert r.status_code == 200, r.text
    v = r.json()
    w.categories.add(v["category"])
    w.add(f"POST /v1/validate on {where} for {model}" + (f" (context {ctx})" if ctx else "")
          + f": {v['category']}", v["text"], *v["steps"])


def verdicts(w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint's verdicts for every instance state, with and without a team's model list."""
    allowed = tmp_path / "team-allowed.toml"
    allowed.write_text(f'[team]\nname = "ml"\n[models]\nallowed = ["{QWEN}", "{GEMMA}", "{GEMMA_TWIN}", '
                       f'"{DEVSTRAL}", "{LLAMA}"]\nrecommended = [{{ key = "{QWEN}", context_length = 16384 }}]\n')
    places = [*w.emus.items(), ("an ad-hoc instance", w.stranger)]
    with w.http() as client:
        for env in (None, allowed):
            if env is not None:
                monkeypatch.setenv(team.ENV, str(env))
                # loaded as a config load would (the core reads only loaded profiles: it never fetches on its loop)
                w.core.teams.for_config(w.core.config)
            for where, emu in places:
                for model, ctx in REQUESTS:
                    _validate(w, client, emu, where + (" with the team's model list" if env else ""), model, ctx)
        # a load that is under way
        w.core.monitor.mark_expected_load("jit", LLAMA, 20.0)
        _validate(w, client, w.emus["jit"], "jit while it loads", LLAMA, None)
    monkeypatch.setenv(team.ENV, str(tmp_path / "team-shared.toml"))
    # before the first poll answers there is no snapshot at all
    for name in ("local", "gpu-box"):
        v = evaluate(None, ValidateRequest(QWEN, "http://10.0.0.7:1234/v1"), ValidationConfig().policy,
                     instance_name=name)
        w.categories.add(v.category)
        w.add(f"verdict without a snapshot of {name}", v.text)


# ---- actions, tools, the tray ------------------------------------------------------------------------


def _tool(w: World, client: httpx.Client, route: str, body: dict[str, Any]) -> None:
    r = client.post(route, json=body)
    data = r.json()
    text = data["text"] if r.status_code == 200 else data["error"]["message"]
    w.add(f"POST {route} {body} -> {r.status_code}", text)


TOOL_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/tools/list", {"instance": "local"}),
    ("/v1/tools/list", {"instance": "down"}),
    ("/v1/tools/load", {"instance": "local", "model": UNKNOWN}),
    ("/v1/tools/load", {"instance": "jit", "model": UNKNOWN}),
    ("/v1/tools/load", {"instance": "jit", "model": DEVSTRAL}),
    ("/v1/tools/load", {"instance": "jit", "model": LLAMA}),
    ("/v1/tools/load", {"instance": "jit", "models": [LLAMA, UNKNOWN]}),
    ("/v1/tools/load", {"instance": "down", "model": QWEN}),
    ("/v1/tools/load", {"instance": "auth", "model": QWEN}),
    ("/v1/tools/load", {"instance": "nowhere", "model": QWEN}),
    ("/v1/tools/unload", {"instance": "jit", "model": UNKNOWN}),
    ("/v1/tools/switch", {"instance": "jit", "model": QWEN}),
    ("/v1/tools/unload", {"instance": "jit", "all": True}),
    ("/v1/tools/server/start", {"instance": "local"}),
    ("/v1/tools/server/stop", {"instance": "down"}),
    ("/v1/tools/server/status", {"instance": "down"}),
    ("/v1/tools/search", {"instance": "local", "query": "gema"}),
    ("/v1/tools/search", {"instance": "local", "query": "zzzz"}),
    ("/v1/tools/search", {"instance": "local", "type": "embedding", "min_context": "1m"}),
    ("/v1/tools/stats", {"instance": "local"}),
    ("/v1/tools/recommend", {"instance": "local", "task": "coding agent"}),
    ("/v1/tools/compare", {"instance": "local", "models": [QWEN, UNKNOWN]}),
    ("/v1/tools/compare", {"instance": "local", "models": [QWEN, GEMMA]}),
    ("/v1/tools/benchmark", {"instance": "local"}),
    ("/v1/tools/benchmark", {"instance": "local", "model": UNKNOWN}),
    ("/v1/tools/benchmark", {"instance": "down", "model": QWEN}),
    ("/v1/tools/benchmark", {"instance": "jit", "model": LLAMA, "runs": 1}),
    ("/v1/tools/stats", {"instance": "jit", "since": "all"}),
    # the shared instance: qwen served a request through this machine a moment ago (see tool_answers)
    ("/v1/tools/unload", {"instance": "local", "model": QWEN}),
    ("/v1/tools/unload", {"instance": "local", "all": True}),
    ("/v1/tools/switch", {"instance": "local", "model": GEMMA}),
]


def tool_answers(w: World) -> None:
    """What the OpenCode tools answer, including every refusal an action can give."""
    with w.http() as client:
        r = client.post("/v1/validate", json={"model": QWEN, "base_url": w.emus["local"].api_url + "/v1"})
        assert r.json()["ok"]  # a request went to qwen on the shared instance: the guard now protects it
        for route, body in TOOL_CALLS:
            _tool(w, client, route, body)


def tray_notifications(w: World) -> None:
    """The tray's bubbles after clicks, on a backend without buttons (so they name the commands)."""
    notifier = PlainNotifier()
    presenter = TrayPresenter(
        mock.Mock(), status=w.core.status, actions=w.core.actions, submit=w.thread.submit,
        reporter=NotificationService(notifier, w.core.config.notifications),
        prefs=MenuPrefs(**menu_prefs(w.core.config, w.core.teams)),
    )
    clicks = [
        MenuAction(ActionKind.SWITCH, "local", GEMMA), MenuAction(ActionKind.UNLOAD, "local", QWEN),
        MenuAction(ActionKind.UNLOAD_ALL, "local"), MenuAction(ActionKind.LOAD, "jit", UNKNOWN),
        MenuAction(ActionKind.LOAD, "down", QWEN), MenuAction(ActionKind.SERVER_START, "local"),
        MenuAction(ActionKind.LOAD, "jit", DEVSTRAL),
    ]
    for click in clicks:
        presenter.on_click(click)
    deadline = time.monotonic() + 30
    while presenter.pending:
        assert time.monotonic() < deadline, "the tray's actions never finished"
        concurrent.futures.wait(presenter.pending, timeout=1)
    for message in notifier.messages:
        w.add(f"tray notification {message.title!r}", message.title, message.body)
    for message in w.bus_notes.messages:
        w.add(f"notification {message.title!r}", message.title, message.body)


def policy_notifications(w: World) -> None:
    """The notification policy's wording for every kind of event it turns into a bubble."""
    policy = NotificationPolicy(NotificationsConfig(), FakeClock())
    events: list[Event] = [
        StateChanged("gpu-box", old=None, new="ready"),
        InstanceOffline("gpu-box", url="http://10.0.0.7:1234", reason="connection refused"),
        InstanceOnline("gpu-box", url="http://10.0.0.7:1234"),
        AuthFailed("gpu-box", url="http://10.0.0.7:1234", reason="invalid token"),
        InstanceError("gpu-box", reason="HTTP 500"),
        LoadStarted("gpu-box", model=QWEN, eta_seconds=30.0, size_bytes=2_500_000_000),
        LoadProgressed("gpu-box", model=GEMMA, progress=0.5, eta_seconds=20.0),
        LoadFinished("gpu-box", model=QWEN, instance_id=QWEN, seconds=12.0),
        ModelLoaded("gpu-box", model=GEMMA, instance_id=GEMMA, context_length=8192),
        LoadFailed("gpu-box", model=DEVSTRAL, reason=BROKEN_LOAD),
        ServerStarted("gpu-box"),
        ServerStopped("gpu-box"),
        SessionFailing("gpu-box", session_id="ses_1", model=QWEN, failures=3, reason="context overflow"),
        BenchFinished("gpu-box", fastest=QWEN, tokens_per_s=61.5, models=2, seconds=40.0, pid=7),
        BenchFailed("gpu-box", reason="LM Studio stopped answering", pid=8),
    ]
    for event in events:
        decision = policy.decide(event)
        if decision is not None:
            w.add(f"notification for {event.kind}", decision.title, decision.body)


def advice_texts(w: World, tmp_path: Path) -> None:
    """The advice the bench feeds: the tips from bench rows, and the system transform of a model that is not
    loaded next to one measured faster (with the figures the analytics caches)."""
    from lmstudio_tray.analytics.bench import bench_rows, latest_bench
    from lmstudio_tray.analytics.store import Store, reading
    from lmstudio_tray.analytics.suggestions import suggest
    from lmstudio_tray.core.control.bench import SUITE_VERSION, BenchReport, ModelBench, Spread, Suite
    from lmstudio_tray.core.hooks.transforms import system_context

    def result(model: str, tps: float, passed: int, checks: int) -> ModelBench:
        return ModelBench(model, "Q4_K_M", 4096, None, True, 2.0, Spread(0.3, 0.2, 0.4), Spread(400, 380, 420),
                          Spread(tps, tps * 0.9, tps * 1.1), passed, checks, 3)

    db = tmp_path / "advice.sqlite3"
    store = Store(db)
    for suite, checks in ((Suite.QUICK, 0), (Suite.CODING, 3)):
        report = BenchReport(suite, SUITE_VERSION, "0.4.0", (result(QWEN, 48.0, checks, checks),
                                                             result(GEMMA, 12.0, checks, checks)))
        store.write(bench_rows(report, instance="local", ts=time.time()))
    store.close()
    with reading(db) as conn:
        tips = suggest(conn, time.time())
        bench: dict[str, tuple[Any, ...]] = {}
        for b in latest_bench(conn):
            bench[b.model] = (*bench.get(b.model, ()), b)
    assert {t.kind for t in tips} >= {"bench_faster", "fastest_coding"}
    w.add("analytics tip from the bench", *(t.message for t in tips))
    text = system_context(w.core.monitor.snapshot("local"), GEMMA, bench)
    assert "Loaded there instead" in text and "Measured here" in text
    w.add("POST /v1/transform/system (a model not loaded, with bench figures)", text)


def generated_texts(make: Callable[..., Emulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> tuple[list[Text], set[str]]:
    """Every generated text, and the verdict categories they covered."""
    with world(make, tmp_path, monkeypatch) as w:
        verdicts(w, tmp_path, monkeypatch)
        tool_answers(w)
        tray_notifications(w)
        policy_notifications(w)
        advice_texts(w, tmp_path)
        return w.texts, w.categories
