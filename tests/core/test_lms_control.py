"""The core's `lms` wrapper against the fake `lms` and the emulator: server start with a port, bind and
CORS, server status, the llmster daemon, loads with options, memory estimates and `lms get`, including
every failure path (a bind the system refuses, a daemon that will not start, an estimate that does not fit,
a download that fails halfway)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from lmstudio_tray.core.errors import LmsError, LmsFailure
from lmstudio_tray.core.lmstudio.lms import (
    DaemonStatus,
    DownloadProgress,
    Lms,
    ServerStatus,
    parse_download_progress,
    parse_estimate,
)
from lmstudio_tray.core.lmstudio.load_options import LoadOptions, UnsupportedLoadOptions, parse_gpu
from tests.emulator_fixtures import EmulatorFactory, LmsHome

QWEN = "qwen/qwen3-4b-2507"
GPT_OSS = "openai/gpt-oss-20b"
GRANITE = "ibm/granite-4-micro"


@pytest.fixture
def lms(lms_home: LmsHome) -> Lms:
    return Lms(lms_home.lms)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# --- the HTTP server ------------------------------------------------------------------------------------
async def test_server_status_and_start_with_bind_and_cors(lms: Lms, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    assert await lms.server_status() == ServerStatus(running=True, port=emu.api_port)
    emu.stop_server()
    assert await lms.server_status() == ServerStatus(running=False, port=emu.api_port)
    started = await lms.start_server(bind="0.0.0.0", cors=True)
    assert (started.port, started.bind, started.cors) == (emu.api_port, "0.0.0.0", True)
    assert started.warnings == (
        "CORS is enabled. This means any website you visit can use the LM Studio server.",
        "Server will accept connections from the network. Only use this if you know what you are doing!",
    )
    assert emu.server_running and emu.snapshot()["network_interface"] == "0.0.0.0"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    started = await lms.start_server(port)
    assert started.port == port == emu.api_port and started.warnings == ()


async def test_server_status_without_a_saved_config(lms: Lms, lms_home: LmsHome) -> None:
    (lms_home.lmstudio_home / ".internal" / "http-server-config.json").unlink()
    assert await lms.server_status() == ServerStatus(running=False, port=None)


async def test_a_port_in_use_is_bind_refused(lms: Lms, lms_home: LmsHome, busy_port: int) -> None:
    with pytest.raises(LmsError) as err:
        await lms.start_server(busy_port)
    assert err.value.kind is LmsFailure.BIND_REFUSED
    assert "port may be in use by another program" in str(err.value)
    assert "Failed to verify the server is running" in str(err.value)  # LM Studio's own words, quoted
    assert lms_home.emulator.server_running and lms_home.emulator.api_port != busy_port


async def test_an_address_of_another_machine_is_bind_refused(lms: Lms) -> None:
    with pytest.raises(LmsError) as err:
        await lms.start_server(bind="192.0.2.1")
    assert err.value.kind is LmsFailure.BIND_REFUSED


# --- the daemon -----------------------------------------------------------------------------------------
async def test_daemon_status_down_and_up(lms: Lms, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    pid = os.getpid()
    assert await lms.daemon_status() == DaemonStatus(running=True, pid=pid, is_daemon=True)
    assert await lms.daemon_down() == "Done."
    assert not emu.alive
    assert await lms.daemon_status() == DaemonStatus(running=False)
    with pytest.raises(LmsError) as err:
        await lms.daemon_down()
    assert err.value.kind is LmsFailure.NOT_RUNNING
    assert await lms.daemon_up() == DaemonStatus(running=True, pid=pid, is_daemon=True, version="0.4.8")
    assert emu.alive


async def test_a_daemon_that_will_not_start(lms: Lms, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(launch_error="llmster: the models folder is not readable")
    emu.kill()
    with pytest.raises(LmsError) as err:
        await lms.daemon_up()
    assert err.value.kind is LmsFailure.DAEMON_TIMEOUT
    assert "did not answer in time" in str(err.value)
    (lms_home.lmstudio_home / ".internal" / "llmster-install-location.json").unlink()
    with pytest.raises(LmsError) as err:
        await lms.daemon_up()
    assert err.value.kind is LmsFailure.NOT_INSTALLED
    assert "install LM Studio (or llmster)" in str(err.value)
    # commands that need LM Studio fail the same way
    with pytest.raises(LmsError) as err:
        await lms.start_server()
    assert err.value.kind is LmsFailure.NOT_INSTALLED


async def test_the_desktop_app_is_not_stopped_by_daemon_down(
    emulator_factory: EmulatorFactory, lms_home: LmsHome, lms: Lms
) -> None:
    lms_home.emulator.close()
    emu = emulator_factory(home=lms_home.lmstudio_home, daemon=False)
    assert (await lms.daemon_status()).is_daemon is False
    with pytest.raises(LmsError) as err:
        await lms.daemon_down()
    assert err.value.kind is LmsFailure.DESKTOP_APP and "quit LM Studio" in str(err.value)
    assert emu.alive


# --- loads ------------------------------------------------------------------------------------------------
async def test_load_with_every_lms_option(lms: Lms, lms_home: LmsHome) -> None:
    seen: list[float] = []
    options = LoadOptions(context_length=16384, gpu=0.5, ttl=600, parallel=2, identifier="coder")
    ident = await lms.load(QWEN, context_length=None, on_progress=seen.append, options=options)
    assert ident == "coder" and seen and seen[-1] == 1.0
    (record,) = lms_home.emulator.loaded()
    assert (record["contextLength"], record["ttlMs"], record["parallel"]) == (16384, 600_000, 2)
    assert lms_home.emulator.state.engine.loaded()[0].options.gpu == 0.5


async def test_load_refuses_options_lms_has_no_flag_for(lms: Lms, lms_home: LmsHome) -> None:
    with pytest.raises(UnsupportedLoadOptions) as err:
        await lms.load(QWEN, context_length=None, on_progress=lambda _: None,
                       options=LoadOptions(flash_attention=False))
    assert err.value.options == ("flash_attention",) and "REST load" in str(err.value)
    assert lms_home.emulator.loaded() == []


async def test_load_failures_are_typed(lms: Lms, lms_home: LmsHome) -> None:
    with pytest.raises(LmsError) as err:
        await lms.load("no-such-model", context_length=None, on_progress=lambda _: None)
    assert err.value.kind is LmsFailure.MODEL_NOT_FOUND
    lms_home.emulator.update(memory_bytes=1024**3)
    with pytest.raises(LmsError) as err:
        await lms.load(GPT_OSS, context_length=None, on_progress=lambda _: None)
    assert "insufficient system resources" in str(err.value)


# --- estimates --------------------------------------------------------------------------------------------
async def test_estimate(lms: Lms, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    estimate = await lms.estimate(GPT_OSS, context_length=32768, gpu=0.5)
    expected = emu.estimate(GPT_OSS, context_length=32768, gpu=0.5)
    assert (estimate.model, estimate.context_length, estimate.gpu_offload) == (GPT_OSS, 32768, 0.5)
    # printed with two decimals in GiB: within half a hundredth of a GiB
    assert abs(estimate.total_memory_bytes - expected.total_bytes) <= 0.005 * 1024**3
    assert abs(estimate.gpu_memory_bytes - expected.gpu_bytes) <= 0.005 * 1024**3
    assert estimate.low_confidence and estimate.fits
    assert emu.loaded() == []


async def test_an_estimate_that_does_not_fit(lms: Lms, lms_home: LmsHome) -> None:
    lms_home.emulator.update(memory_bytes=8 * 1024**3)
    estimate = await lms.estimate(GPT_OSS)
    assert not estimate.fits and not estimate.low_confidence
    assert estimate.context_length is None and estimate.gpu_offload is None
    with pytest.raises(LmsError) as err:
        await lms.estimate("no-such-model")
    assert err.value.kind is LmsFailure.MODEL_NOT_FOUND


def test_parse_estimate_reads_the_documented_example_and_the_current_units() -> None:
    # DOCS 3_cli/0_local-models/load.md (before sizes moved to base-1024 units in Feb 2026)
    old = parse_estimate(
        "Model: openai/gpt-oss-120b\nEstimated GPU Memory:   65.68 GB\nEstimated Total Memory: 65.68 GB\n\n"
        "Estimate: This model may be loaded based on your resource guardrails settings.\n"
    )
    assert old.total_memory_bytes == 65_680_000_000 and old.fits and not old.low_confidence
    new = parse_estimate(
        "Model: a/b\nContext Length: 4,096\nGPU Offload: 33.33%\nEstimated GPU Memory:   512 Bytes\n"
        "Estimated Total Memory: 1.50 KiB\nConfidence: LOW\n\n"
        "Estimate: This model will fail to load based on your resource guardrails settings.\n"
    )
    assert (new.context_length, new.gpu_memory_bytes, new.total_memory_bytes) == (4096, 512, 1536)
    assert new.gpu_offload == pytest.approx(0.3333) and new.low_confidence and not new.fits
    with pytest.raises(LmsError) as err:
        parse_estimate("Model: a/b\n")
    assert err.value.kind is LmsFailure.BAD_OUTPUT


def test_load_options_check_their_values() -> None:
    assert [parse_gpu(t) for t in ("off", "MAX", "0.25")] == [0.0, 1.0, 0.25]
    for bad in ("2", "lots"):
        with pytest.raises(ValueError, match="off, max"):
            parse_gpu(bad)
    with pytest.raises(ValueError, match="context_length"):
        LoadOptions(context_length=0)
    with pytest.raises(ValueError, match="gpu"):
        LoadOptions(gpu=1.5)
    with pytest.raises(ValueError, match="identifier"):
        LoadOptions(identifier=" ")
    assert LoadOptions(gpu=0.0).lms_args() == ["--gpu", "off"]
    assert LoadOptions(gpu=1.0, ttl=60).lms_args() == ["--gpu", "max", "--ttl", "60"]


# --- downloads through lms get ----------------------------------------------------------------------------
async def test_get_reports_progress_and_the_model_is_then_listed(lms: Lms, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(download_speed=2e9)
    seen: list[DownloadProgress] = []
    result = await lms.get(GRANITE, on_progress=seen.append)
    assert not result.already_downloaded
    assert seen and seen[-1].fraction == 1.0 and seen[-1].total_bytes == 2_280_000_000
    assert [p.downloaded_bytes for p in seen] == sorted(p.downloaded_bytes for p in seen)
    assert GRANITE in [m["modelKey"] for m in emu.downloaded()]
    again = await lms.get(GRANITE)
    assert again.already_downloaded and again.model == GRANITE


async def test_get_that_fails_halfway(lms: Lms, lms_home: LmsHome) -> None:
    lms_home.emulator.update(download_speed=5e9, fail_downloads={GRANITE: 0.5})
    seen: list[DownloadProgress] = []
    with pytest.raises(LmsError) as err:
        await lms.get(GRANITE, on_progress=seen.append)
    assert err.value.kind is LmsFailure.DOWNLOAD_FAILED
    assert "the connection to the model repository was lost" in str(err.value)
    assert seen[-1].fraction == 0.5
    with pytest.raises(LmsError) as err:
        await lms.get("nothing-like-this")
    assert err.value.kind is LmsFailure.MODEL_NOT_FOUND


def test_parse_download_progress() -> None:
    line = "⠋ [█████▍                ] 45.00% | 1.03 GB / 2.28 GB | 250.00 MB/s | ETA 00:05          \x1b[u"
    assert parse_download_progress(line) == DownloadProgress(0.45, 1_030_000_000, 2_280_000_000, 250_000_000.0)
    assert parse_download_progress("Finalizing download...") is None
