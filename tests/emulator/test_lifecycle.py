from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.emulator import Emulator, EmulatorSettings
from tests.emulator.helpers import client_for, http
from tests.emulator_fixtures import EmulatorFactory

QWEN = "qwen/qwen3-4b-2507"


def test_stop_and_start_reopen_the_same_port(emulator: Emulator) -> None:
    url = emulator.api_url
    emulator.load(QWEN)
    with client_for(url) as c:
        assert c.get("/v1/models").status_code == 200
        emulator.stop_server()
        assert not emulator.server_running
        with pytest.raises(httpx.ConnectError):
            c.get("/v1/models")
        # The internal API server stays up while the HTTP server is off.
        assert http.get(f"{emulator.control_url}/lmstudio-greeting").json() == {"lmstudio": True}
        emulator.start_server()
        assert emulator.api_url == url and emulator.server_running
        assert c.get("/v1/models").status_code == 200
    assert [m["identifier"] for m in emulator.loaded()] == [QWEN]


def test_stopping_terminates_in_flight_requests(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=1.0)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            http.post(f"{emu.api_url}/api/v1/models/load", json={"model": QWEN}, timeout=5)
        except httpx.HTTPError as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.1)
    emu.stop_server()
    t.join(2)
    assert errors and isinstance(errors[0], (httpx.RemoteProtocolError, httpx.ReadError))


def test_start_stopped_and_fixed_port(emulator_factory: EmulatorFactory) -> None:
    first = emulator_factory()
    port = first.api_port
    first.close()
    emu = emulator_factory(server_running=False, port=port)
    assert not emu.server_running and emu.api_port == port
    with pytest.raises(httpx.ConnectError):
        http.get(f"{emu.api_url}/lmstudio-greeting")
    emu.start_server()
    assert http.get(f"http://127.0.0.1:{port}/lmstudio-greeting").status_code == 200


def test_kill_drops_loads_and_closes_both_ports(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=2.0)
    emu.load("google/gemma-3-12b")
    errors: list[BaseException] = []

    def call() -> None:
        try:
            http.post(f"{emu.api_url}/api/v1/models/load", json={"model": QWEN}, timeout=5)
        except httpx.HTTPError as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.1)
    emu.kill()
    t.join(30)
    assert not t.is_alive()
    # the kill ended the load at once: the client's own 5 s timeout would have said ReadTimeout
    assert errors and not isinstance(errors[0], httpx.ReadTimeout)
    for url in (emu.api_url, emu.control_url):
        with pytest.raises(httpx.ConnectError):
            http.get(f"{url}/lmstudio-greeting")
    assert emu.loaded() == []
    # Relaunch: same ports, nothing loaded, server state restored.
    emu.start()
    assert http.get(f"{emu.api_url}/lmstudio-greeting").status_code == 200
    assert http.get(f"{emu.control_url}/lms-status").json() == {"package": "lmstudio-emulator", "version": "0.4.8"}


def test_context_manager() -> None:
    with Emulator(EmulatorSettings(load_seconds=0)) as emu:
        url = emu.api_url
        assert http.get(f"{url}/lmstudio-greeting").status_code == 200
    with pytest.raises(httpx.ConnectError):
        http.get(f"{url}/lmstudio-greeting")


def test_load_api_stacks_and_custom_identifier(emulator: Emulator) -> None:
    assert emulator.load(QWEN) == QWEN
    assert emulator.load(QWEN) == f"{QWEN}:2"
    assert emulator.load(QWEN, identifier="mine", context_length=8192) == "mine"
    with pytest.raises(Exception, match="already"):
        emulator.load(QWEN, identifier="mine")
    with pytest.raises(KeyError):
        emulator.load("nope/none")
    assert emulator.load("google/gemma-3-12b@q8_0") == "google/gemma-3-12b"
    assert emulator.unload(f"{QWEN}:2") and not emulator.unload(f"{QWEN}:2")
    assert emulator.load(QWEN) == f"{QWEN}:2"
    assert set(emulator.unload_all()) == {QWEN, f"{QWEN}:2", "mine", "google/gemma-3-12b"}


def test_lms_ps_record_shapes(emulator: Emulator) -> None:
    emulator.load("llama-3.2-3b-instruct")
    emulator.load("text-embedding-nomic-embed-text-v1.5")
    mlx, emb = emulator.loaded()
    assert mlx["format"] == "safetensors" and mlx["type"] == "llm"
    assert list(mlx)[-4:] == ["contextLength", "status", "queued", "parallel"]
    assert mlx["status"] == "idle" and mlx["queued"] == 0 and mlx["ttlMs"] is None
    assert mlx["quantization"] == {"name": "4bit", "bits": 4}
    assert emb["type"] == "embedding" and emb["parallel"] is None and "vision" not in emb
    ls = {m["modelKey"]: m for m in emulator.downloaded()}
    assert ls["google/gemma-3-12b"]["selectedVariant"] == "google/gemma-3-12b@q4_k_m"
    assert ls["llama-3.2-3b-instruct"]["format"] == "safetensors"


def test_update_validates(emulator: Emulator) -> None:
    with pytest.raises(ValueError):
        emulator.update(port=1)
    with pytest.raises(ValueError):
        emulator.update(version="banana")
    emulator.update(version="0.3.31")
    assert http.get(f"{emulator.api_url}/api/v1/models").json()["error"].startswith("Unexpected endpoint")


def test_home_layout(tmp_path: Path, emulator_factory: EmulatorFactory) -> None:
    home = tmp_path / ".lmstudio"
    emu = emulator_factory(home=home, jit=False)
    config = json.loads((home / ".internal" / "http-server-config.json").read_text())
    assert config["port"] == emu.api_port and config["networkInterface"] == "127.0.0.1"
    assert config["justInTimeModelLoading"] is False and config["fileLoggingMode"] == "succinct"
    info = json.loads((home / ".internal" / "http-server.json").read_text())
    assert info["host"] == "127.0.0.1" and info["port"] == emu.control_port and info["pid"] > 0
    assert (home / "bin" / "lms").stat().st_mode & 0o111
    emu.update(jit=True)
    config = json.loads((home / ".internal" / "http-server-config.json").read_text())
    assert config["justInTimeModelLoading"] is True


_http = http


def control(emu: Emulator, method: str, path: str, body: object = None) -> httpx.Response:
    return _http.request(method, f"{emu.control_url}/_emulator{path}", json=body)


def test_control_routes(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=0.15)
    state = control(emu, "GET", "/state").json()
    assert state["server_running"] and state["api_port"] == emu.api_port and state["loaded"] == []
    assert len(state["downloaded"]) == 7
    job = control(emu, "POST", "/load", {"model": QWEN, "context_length": 8192}).json()
    assert job["status"] == "loading" and job["identifier"] == QWEN
    seen = []
    while (status := control(emu, "GET", f"/load/{job['job_id']}").json())["status"] == "loading":
        seen.append(status["progress"])
        time.sleep(0.03)
    assert status["status"] == "loaded" and status["instance"]["contextLength"] == 8192
    assert seen and seen == sorted(seen)
    assert control(emu, "POST", "/load", {"model": "nope"}).status_code == 404
    assert control(emu, "POST", "/unload", {"identifier": "nope"}).status_code == 404
    assert control(emu, "POST", "/unload", {"identifier": QWEN}).json() == {"identifier": QWEN}
    control(emu, "POST", "/faults", {"path": "/v1/models", "status": 502})
    assert http.get(f"{emu.api_url}/v1/models").status_code == 502
    assert control(emu, "GET", "/state").json()["request_counts"]["GET /v1/models"] == 1
    assert control(emu, "GET", "/requests").json()[0]["path"] == "/v1/models"
    control(emu, "POST", "/faults/clear")
    assert http.get(f"{emu.api_url}/v1/models").status_code == 200
    assert control(emu, "POST", "/settings", {"jit": False}).json()["jit"] is False
    assert control(emu, "POST", "/settings", {"bogus": 1}).status_code == 400
    assert control(emu, "POST", "/server/stop").json()["running"] is False
    assert not emu.server_running
    assert control(emu, "POST", "/server/start").json() == {"running": True, "port": emu.api_port}
    assert control(emu, "POST", "/kill").json() == {"ok": True}
    deadline = time.monotonic() + 2
    while emu.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not emu.alive


def test_failed_async_load_reports_error(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(fail_loads={QWEN: "Error loading model."})
    job = control(emu, "POST", "/load", {"model": QWEN}).json()
    deadline = time.monotonic() + 2
    while (status := control(emu, "GET", f"/load/{job['job_id']}").json())["status"] == "loading":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert status["status"] == "failed" and status["error"] == "Error loading model."
