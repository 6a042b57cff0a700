from __future__ import annotations

import threading
import time

import httpx
import pytest

from lmstudio_tray.emulator import Emulator, Fault
from tests.emulator.helpers import http


def test_status_fault_with_times(emulator: Emulator, client: httpx.Client) -> None:
    emulator.add_fault(Fault(path="/api/v1/models", status=503, times=2))
    assert client.get("/api/v1/models").status_code == 503
    assert client.get("/api/v1/models").status_code == 503
    assert client.get("/api/v1/models").status_code == 200


def test_status_fault_custom_body_and_method(emulator: Emulator, client: httpx.Client) -> None:
    emulator.add_fault(Fault(path="/v1/chat/completions", method="POST", status=429, body={"error": "slow down"}))
    assert client.get("/v1/chat/completions").status_code == 200  # GET is not matched: unknown-route fallback
    r = client.post("/v1/chat/completions", json={})
    assert r.status_code == 429 and r.json() == {"error": "slow down"}


def test_prefix_match(emulator: Emulator, client: httpx.Client) -> None:
    emulator.add_fault(Fault(path="/api/*", status=500))
    assert client.get("/api/v0/models").status_code == 500
    assert client.get("/api/v1/models").status_code == 500
    assert client.get("/v1/models").status_code == 200
    emulator.clear_faults()
    assert client.get("/api/v1/models").status_code == 200


def test_latency(emulator: Emulator, client: httpx.Client) -> None:
    emulator.add_fault(Fault(path="/v1/models", kind="latency", delay=0.2))
    started = time.monotonic()
    assert client.get("/v1/models").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_hang_until_cleared(emulator: Emulator) -> None:
    emulator.add_fault(Fault(path="/v1/models", kind="hang"))
    with pytest.raises(httpx.ReadTimeout):
        http.get(f"{emulator.api_url}/v1/models", timeout=0.1)
    result: list[int] = []
    url = f"{emulator.api_url}/v1/models"
    t = threading.Thread(target=lambda: result.append(http.get(url, timeout=5).status_code))
    t.start()
    time.sleep(0.1)
    assert not result
    emulator.clear_faults()
    t.join(2)
    assert result == [200]


def test_hang_released_by_close(emulator: Emulator) -> None:
    emulator.add_fault(Fault(path="/v1/models", kind="hang"))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            http.get(f"{emulator.api_url}/v1/models", timeout=5)
        except httpx.HTTPError as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.1)
    emulator.close()
    t.join(2)
    assert not t.is_alive() and errors


def test_invalid_json(emulator: Emulator, client: httpx.Client) -> None:
    emulator.add_fault(Fault(path="/api/v1/models", kind="invalid_json"))
    r = client.get("/api/v1/models")
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()


def test_error_body(emulator: Emulator, client: httpx.Client) -> None:
    emulator.add_fault(Fault(path="/api/v1/models", kind="error_body", body="Internal failure"))
    r = client.get("/api/v1/models")
    assert r.status_code == 200 and r.json() == {"error": "Internal failure"}


def test_drop(emulator: Emulator, client: httpx.Client) -> None:
    emulator.add_fault(Fault(path="/v1/models", kind="drop", times=1))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1/models")
    assert client.get("/v1/models").status_code == 200


def test_truncate(emulator: Emulator, client: httpx.Client) -> None:
    emulator.add_fault(Fault(path="/v1/models", kind="truncate", times=1))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1/models")


def test_greeting_can_fault(emulator: Emulator, client: httpx.Client) -> None:
    emulator.add_fault(Fault(path="/lmstudio-greeting", kind="status", status=500))
    assert client.get("/lmstudio-greeting").status_code == 500


def test_unknown_kind_rejected() -> None:
    with pytest.raises(ValueError):
        Fault(path="/x", kind="explode")  # type: ignore[arg-type]
