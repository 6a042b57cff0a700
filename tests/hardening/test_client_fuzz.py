"""The LM Studio client and monitor against malformed, truncated, huge and wrongly typed answers.

The emulator serves each generated body over real HTTP on every route (a `status` fault with a raw
body), so the client's whole fallback chain (REST v1, v0, OpenAI) sees it. The client may only raise
`LMStudioError`; the monitor never raises and shows `error` with a failure kind the tray can explain,
or a healthy state when the answer was in fact usable.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmstudio_tray.core.clock import SystemClock
from lmstudio_tray.core.config.schema import InstanceConfig, MonitorConfig
from lmstudio_tray.core.control.monitor import InstanceMonitor
from lmstudio_tray.core.errors import LMStudioError
from lmstudio_tray.core.events import ALL_KINDS, EventBus
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.models import FailureKind, InstanceState
from lmstudio_tray.emulator import Emulator, EmulatorSettings, Fault

HEALTHY = {InstanceState.IDLE, InstanceState.READY}
FAILED_KINDS = {FailureKind.BAD_RESPONSE, FailureKind.SERVER_ERROR}


class Rig:
    """One emulator, one event loop, one monitor: reused across hypothesis examples."""

    def __init__(self) -> None:
        self.emu = Emulator(EmulatorSettings(load_seconds=0.05)).start()
        self.emu.load("qwen/qwen3-4b-2507")
        self.loop = asyncio.new_event_loop()
        self.bus = EventBus()
        self.events: list[Any] = []
        self.bus.subscribe(self.events.append, *ALL_KINDS)
        cfg = InstanceConfig(name="local", url=self.emu.api_url)
        settings_ = MonitorConfig(request_timeout=2.0, retries=0, jit_check_interval=1)
        self.monitor = InstanceMonitor(cfg, LMStudioClient(cfg.url, timeout=2.0), self.bus, SystemClock(),
                                       lambda: settings_)
        with httpx.Client(base_url=self.emu.api_url) as http:
            self.v1: dict[str, Any] = http.get("/api/v1/models").json()
            self.v0: dict[str, Any] = http.get("/api/v0/models").json()

    def serve(self, body: str, status: int = 200) -> None:
        self.emu.clear_faults()
        self.emu.add_fault(Fault(path="*", kind="status", status=status, body=body))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def list_models(self) -> Any:
        """The client's own answer; anything but LMStudioError escaping is a bug."""

        async def go() -> Any:
            client = LMStudioClient(self.emu.api_url, timeout=2.0)
            try:
                return await client.list_models()
            finally:
                await client.aclose()

        return self.run(go())

    def close(self) -> None:
        self.run(self.monitor.stop())
        self.loop.close()
        self.emu.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def check(rig: Rig, body: str, status: int = 200) -> None:
    rig.serve(body, status)
    try:
        listing: Any = rig.list_models()
    except LMStudioError as exc:
        listing = None
        assert exc.kind in FAILED_KINDS | {FailureKind.AUTH_FAILED}, (exc.kind, body[:200])
        assert exc.message and len(exc.message) < 2000, "the message must stay readable"
    snap = rig.run(rig.monitor.refresh())
    if listing is None:
        expected = InstanceState.AUTH_FAILED if status in (401, 403) else InstanceState.ERROR
        assert snap.state is expected, (snap.state, snap.error, body[:200])
        assert snap.failure in FAILED_KINDS | {FailureKind.AUTH_FAILED}
        assert snap.error and "unexpected error" not in snap.error, snap.error  # a client bug, not a verdict
    else:
        assert snap.state in HEALTHY, (snap.state, snap.error)


# ---- generated bodies ----------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                          st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)


def _dump(value: Any) -> str:
    # allow_nan: Python's json (and so httpx's .json()) reads NaN/Infinity; LM Studio must not crash us with them
    return json.dumps(value, allow_nan=True)


@st.composite
def mutated_listing(draw: st.DrawFn, base: dict[str, Any], list_key: str) -> str:
    """A real listing with one field somewhere replaced by a value of the wrong type."""
    doc = json.loads(json.dumps(base))
    items = doc[list_key]
    target: Any = draw(st.sampled_from(["top", "item", "nested"]))
    value = draw(json_values)
    if target == "top":
        doc[list_key] = value
    else:
        item = items[draw(st.integers(0, len(items) - 1))]
        if target == "item" or not any(isinstance(v, (dict, list)) for v in item.values()):
            item[draw(st.sampled_from(sorted(item)))] = value
        else:
            nested_key = draw(st.sampled_from(sorted(k for k, v in item.items() if isinstance(v, (dict, list)))))
            inner = item[nested_key]
            if isinstance(inner, list):
                if inner:
                    inner[draw(st.integers(0, len(inner) - 1))] = value
                else:
                    item[nested_key] = [value]
            else:
                inner[draw(st.sampled_from(sorted(inner) or ["x"]))] = value
    return _dump(doc)


EXAMPLES = settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@EXAMPLES
@given(data=st.data())
def test_wrongly_typed_fields_in_a_v1_listing(rig: Rig, data: st.DataObject) -> None:
    check(rig, data.draw(mutated_listing(rig.v1, "models")))


@EXAMPLES
@given(data=st.data())
def test_wrongly_typed_fields_in_a_v0_listing(rig: Rig, data: st.DataObject) -> None:
    check(rig, data.draw(mutated_listing(rig.v0, "data")))


@EXAMPLES
@given(cut=st.floats(0.0, 1.0, exclude_max=True), which=st.sampled_from(["v1", "v0"]))
def test_truncated_json(rig: Rig, cut: float, which: str) -> None:
    text = json.dumps(rig.v1 if which == "v1" else rig.v0)
    check(rig, text[: math.floor(len(text) * cut)])


@EXAMPLES
@given(body=st.one_of(st.text(max_size=300), json_values.map(_dump)),
       status=st.sampled_from([200, 200, 201, 204, 301, 400, 404, 418, 429, 500, 502, 503]))
def test_arbitrary_bodies_and_statuses(rig: Rig, body: str, status: int) -> None:
    check(rig, body, status)


@pytest.mark.parametrize("body", [
    "NaN", "Infinity", '{"models": NaN}', '{"models": [{"key": "k", "max_context_length": Infinity}]}',
    '{"models": [{"key": "k", "size_bytes": 1e400}]}', '{"models": [{"key": "k", "loaded_instances": 5}]}',
    '{"data": [{"id": "k", "capabilities": 7}]}', '{"data": [{"id": "k", "loaded_context_length": -Infinity,'
    ' "state": "loaded"}]}', '{"error": {"message": 12}}', '{"error": null}', "\ufeff{}", '"\\ud800"',
    "[" * 100_000 + "]" * 100_000,  # nesting deeper than the JSON parser's recursion limit
])
def test_known_nasty_bodies(rig: Rig, body: str) -> None:
    check(rig, body)


def test_huge_listing_is_handled_without_hanging(rig: Rig) -> None:
    models = [dict(rig.v1["models"][0], key=f"pub/model-{i}", loaded_instances=[]) for i in range(5_000)]
    check(rig, json.dumps({"models": models}))  # ~2.5 MB of valid JSON: a usable listing
    check(rig, '{"models": [' + '"x",' * 500_000 + '"x"]}')  # 2 MB of wrongly typed items


def test_monitor_keeps_polling_through_garbage_and_recovers(rig: Rig) -> None:
    rig.serve("<html>502 Bad Gateway</html>", 502)
    assert rig.run(rig.monitor.refresh()).state is InstanceState.ERROR
    rig.emu.clear_faults()
    snap = rig.run(rig.monitor.refresh())
    assert snap.state is InstanceState.READY and snap.error is None
