"""Model downloads: REST v1 jobs and their statuses (growing with the clock at the configured speed), pause,
a failure halfway, `already_downloaded`, the new model in every listing, and `lms get` for versions without
the REST route."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from lmstudio_tray.emulator import Emulator
from tests.emulator.helpers import client_for
from tests.emulator_fixtures import EmulatorFactory, LmsHome

GRANITE = "ibm/granite-4-micro"
GRANITE_BYTES = 2_279_145_003
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Wait for a condition (the emulator's clock runs in real time), never for a fixed time."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
    return value


def status_of(c: httpx.Client, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = c.get(f"/api/v1/models/download/status/{job_id}").json()
    return body


def test_download_job_grows_and_the_model_joins_every_listing(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1e9)
    with client_for(emu.api_url) as c:
        r = c.post("/api/v1/models/download", json={"model": GRANITE})
        assert r.status_code == 200
        job = r.json()
        assert list(job) == ["job_id", "status", "total_size_bytes", "started_at"]
        assert re.fullmatch(r"job_[0-9a-f]{10}", job["job_id"]) and job["status"] == "downloading"
        assert job["total_size_bytes"] == GRANITE_BYTES and ISO.match(job["started_at"])
        first = status_of(c, job["job_id"])
        assert first["status"] == "downloading" and first["bytes_per_second"] == 1_000_000_000
        assert ISO.match(first["estimated_completion"]) and "completed_at" not in first
        later = until(lambda: (s := status_of(c, job["job_id"]))["downloaded_bytes"] > first["downloaded_bytes"] and s)
        assert later["downloaded_bytes"] <= GRANITE_BYTES
        assert GRANITE not in [m["key"] for m in c.get("/api/v1/models").json()["models"]]  # not before it is done
        done = until(lambda: (s := status_of(c, job["job_id"]))["status"] == "completed" and s)
        assert done["downloaded_bytes"] == GRANITE_BYTES and ISO.match(done["completed_at"])
        assert "bytes_per_second" not in done and "estimated_completion" not in done
        assert datetime.fromisoformat(done["completed_at"][:-1]) >= datetime.fromisoformat(done["started_at"][:-1])
        assert GRANITE in [m["key"] for m in c.get("/api/v1/models").json()["models"]]
        assert GRANITE in [m["id"] for m in c.get("/api/v0/models").json()["data"]]
        assert GRANITE in [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert GRANITE in [m["modelKey"] for m in emu.downloaded()]
        assert c.post("/api/v1/models/load", json={"model": GRANITE}).json()["instance_id"] == GRANITE
        assert c.post("/api/v1/models/download", json={"model": GRANITE}).json() == {"status": "already_downloaded"}


def test_already_downloaded_by_key_variant_or_hugging_face_url(client: httpx.Client) -> None:
    for name in ("qwen/qwen3-4b-2507", "google/gemma-3-12b@q8_0",
                 "https://huggingface.co/lmstudio-community/Qwen3-4B-Instruct-2507-GGUF"):
        r = client.post("/api/v1/models/download", json={"model": name})
        assert r.status_code == 200 and r.json() == {"status": "already_downloaded"}, name


def test_pause_resume_and_a_failure_halfway(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1e9, fail_downloads={GRANITE: 0.5})
    with client_for(emu.api_url) as c:
        job_id = c.post("/api/v1/models/download", json={"model": GRANITE}).json()["job_id"]
        emu.pause_download(job_id)
        paused = status_of(c, job_id)
        assert paused["status"] == "paused" and "bytes_per_second" not in paused
        time.sleep(0.05)  # a paused job does not move however long it waits
        assert status_of(c, job_id)["downloaded_bytes"] == paused["downloaded_bytes"]
        # asking again attaches to the same job
        assert c.post("/api/v1/models/download", json={"model": GRANITE}).json()["job_id"] == job_id
        emu.resume_download(job_id)
        failed = until(lambda: (s := status_of(c, job_id))["status"] == "failed" and s)
        assert failed["downloaded_bytes"] == GRANITE_BYTES // 2 and failed["total_size_bytes"] == GRANITE_BYTES
        assert GRANITE not in [m["modelKey"] for m in emu.downloaded()]
        # a new request starts a new job
        emu.update(fail_downloads={})
        again = c.post("/api/v1/models/download", json={"model": GRANITE}).json()
        assert again["job_id"] != job_id
        assert emu.finish_downloads() == 1
        assert status_of(c, again["job_id"])["status"] == "completed"


def test_finish_downloads_holds_a_slow_download_until_the_test_says(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1.0)  # one byte a second: it would take 72 years
    with client_for(emu.api_url) as c:
        job_id = c.post("/api/v1/models/download", json={"model": GRANITE}).json()["job_id"]
        assert status_of(c, job_id)["status"] == "downloading"
        assert emu.finish_downloads() == 1
        assert status_of(c, job_id)["status"] == "completed"


def test_download_errors(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    with client_for(emu.api_url) as c:
        r = c.post("/api/v1/models/download", json={})
        assert r.status_code == 400 and r.json()["error"]["code"] == "missing_required_parameter"
        r = c.post("/api/v1/models/download", json={"model": "nobody/nothing"})
        assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
        r = c.get("/api/v1/models/download/status/job_0000000000")
        assert r.status_code == 404 and r.json()["error"]["type"] == "job_not_found"
    old = emulator_factory(version="0.3.31")
    with client_for(old.api_url) as c:
        r = c.post("/api/v1/models/download", json={"model": GRANITE})
        assert r.status_code == 200
        assert r.json() == {"error": "Unexpected endpoint or method. (POST /api/v1/models/download)"}


def test_settings_are_checked(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="fail_downloads"):
        emulator.update(fail_downloads={GRANITE: 1.5})
    with pytest.raises(ValueError, match="download_speed"):
        emulator.update(download_speed=0)
    assert emulator.settings.download_speed > 0 and emulator.settings.fail_downloads == {}


# --- lms get ----------------------------------------------------------------------------------------------
def lms(home: LmsHome, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(home.lms), *args], capture_output=True, text=True, timeout=60, env={**os.environ})


def test_lms_get_downloads_with_progress_on_a_version_without_the_rest_route(
    emulator_factory: EmulatorFactory, lms_home: LmsHome
) -> None:
    lms_home.emulator.close()
    emu = emulator_factory(home=lms_home.lmstudio_home, version="0.3.31", download_speed=2e9)
    r = lms(lms_home, "get", GRANITE, "-y")
    assert r.returncode == 0, r.stderr
    frames = [f for f in r.stdout.splitlines() if "%" in f]
    assert r.stdout.splitlines()[0] == "Resolution completed. Downloading 2.28 GB..."
    assert frames and frames[-1].endswith("100.00% | 2.28 GB / 2.28 GB | 0 B/s | ETA --:--")
    assert re.search(r"\] \d+\.\d\d% \| (\d+ B|\d+\.\d\d [KMG]B) / 2\.28 GB \| 2\.00 GB/s \| ETA 00:0\d$", frames[0])
    assert r.stderr.splitlines() == ["Finalizing download...", "Download completed."]
    assert GRANITE in [m["modelKey"] for m in emu.downloaded()]
    r = lms(lms_home, "ls", "--json")
    assert GRANITE in r.stdout
    r = lms(lms_home, "get", GRANITE)
    assert r.returncode == 0 and r.stderr == f"Model already downloaded. To use, run: lms load {GRANITE}\n"


def test_lms_get_searches_the_staff_picks_and_fails_halfway(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(download_speed=5e9, fail_downloads={"qwen/qwen3-8b": 0.5})
    r = lms(lms_home, "get", "qwen3-8b", "-y")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "Searching staff picks with the term qwen3-8b",
        "Error: Download failed: the connection to the model repository was lost.",
    ]
    assert r.stdout.splitlines()[-1].endswith("50.00% | 2.51 GB / 5.03 GB | 0 B/s | ETA --:--")
    r = lms(lms_home, "get", "no-such-model")
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == (
        "Error: No staff picks found with the specified search criteria."
    )
    r = lms(lms_home, "get", "a@b@c")
    assert r.returncode == 1
    assert r.stderr.strip() == "Error: You cannot have more than 2 @'s in the model name argument."


def test_a_download_stands_still_while_lm_studio_is_dead(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1e6)
    with client_for(emu.api_url) as c:
        job_id = c.post("/api/v1/models/download", json={"model": GRANITE}).json()["job_id"]
    emu.kill()
    before = next(j for j in emu.downloads() if j["job_id"] == job_id)["downloaded_bytes"]
    time.sleep(0.2)  # dead for a while: nothing may be downloaded meanwhile
    alive_since = time.monotonic()
    emu.start()
    after = next(j for j in emu.downloads() if j["job_id"] == job_id)
    alive_for = time.monotonic() - alive_since
    assert after["status"] == "downloading"
    assert after["downloaded_bytes"] - before <= 1e6 * alive_for + 1  # only the time it has been alive again
