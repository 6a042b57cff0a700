"""The bench runner against the emulator's per-model speeds (`speed_scale`): ranking, the figures it reports, and
that what was loaded is put back after a run, a failure and a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lmstudio_tray.core.control.bench import (
    SUITE_VERSION,
    Bench,
    BenchError,
    BenchProgress,
    ClientLoads,
    Suite,
    loaded_state,
    python_defines,
)
from lmstudio_tray.core.errors import LMStudioError
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.emulator import Emulator, Fault
from tests.emulator_fixtures import EmulatorFactory

SMALL = "qwen/qwen3-4b-2507"  # 2.5 GB
LARGE = "google/gemma-3-12b"  # 8.1 GB
KEPT = "llama-3.2-3b-instruct"  # loaded before the bench, with its own context


@pytest.fixture
def emu(emulator_factory: EmulatorFactory) -> Emulator:
    emu = emulator_factory(speed_scale=0.02)
    emu.load(KEPT, context_length=8192)
    return emu


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[LMStudioClient]:
    c = LMStudioClient(emu.api_url, timeout=5)
    yield c
    await c.aclose()


async def state(client: LMStudioClient) -> set[tuple[str, int | None]]:
    return {(key, ctx) for _id, key, ctx in loaded_state((await client.list_models()).models)}


async def test_the_faster_model_ranks_first_and_what_was_loaded_stays(client: LMStudioClient) -> None:
    before = await state(client)
    steps: list[BenchProgress] = []
    report = await Bench(client, progress=steps.append, lmstudio_version="0.4.8").run(
        [LARGE, SMALL], Suite.QUICK, runs=2
    )
    assert [r.model for r in report.results] == [SMALL, LARGE]
    assert report.suite_version == SUITE_VERSION and report.lmstudio_version == "0.4.8"
    small, large = report.results
    assert small.generated_tokens_per_s and large.generated_tokens_per_s
    assert small.prompt_tokens_per_s and large.prompt_tokens_per_s and small.first_token_seconds
    assert small.loaded_for_bench and small.load_seconds is not None and small.runs == 2
    assert small.quantization == "Q4_K_M" and small.memory_bytes == 2_497_280_256
    assert await state(client) == before
    assert BenchProgress(SMALL, "run 2/2") in steps and BenchProgress(SMALL, "restoring") in steps


async def test_a_loaded_model_is_benched_where_it_is(client: LMStudioClient) -> None:
    report = await Bench(client).run([KEPT], Suite.QUICK, runs=1)
    (result,) = report.results
    assert not result.loaded_for_bench and result.load_seconds is None and result.context_length == 8192
    assert await state(client) == {(KEPT, 8192)}


async def test_a_failed_load_puts_back_what_was_loaded(emu: Emulator, client: LMStudioClient) -> None:
    emu.update(fail_loads={LARGE: "Model loading was stopped due to insufficient system resources."})
    before = await state(client)
    with pytest.raises(LMStudioError, match="insufficient system resources"):
        await Bench(client).run([SMALL, LARGE], Suite.QUICK, runs=1)
    assert await state(client) == before


async def test_a_cancelled_bench_puts_back_what_was_loaded(client: LMStudioClient) -> None:
    before = await state(client)
    running = asyncio.Event()

    def progress(step: BenchProgress) -> None:
        if step.step.startswith("run"):
            running.set()

    task = asyncio.create_task(Bench(client, progress=progress).run([SMALL], Suite.CODING, runs=50))
    await asyncio.wait_for(running.wait(), 30)
    assert (SMALL, 4096) in await state(client)  # loaded for the bench, then cancelled mid-run
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await state(client) == before


async def test_a_model_someone_else_loads_during_the_bench_stays_loaded(emu: Emulator, client: LMStudioClient) -> None:
    """Putting the instance back undoes the bench's own load only: a model a session or a person loaded meanwhile
    is theirs."""
    other = "openai/gpt-oss-20b"

    def progress(step: BenchProgress) -> None:
        if step.step == "run 1/1":
            emu.load(other, context_length=4096)  # someone else, while the bench runs

    await Bench(client, progress=progress).run([SMALL], Suite.QUICK, runs=1)
    assert await state(client) == {(KEPT, 8192), (other, 4096)}


async def test_bad_requests_are_refused_before_anything_loads(client: LMStudioClient) -> None:
    with pytest.raises(BenchError, match="not downloaded: no/such-model"):
        await Bench(client).run(["no/such-model"])
    with pytest.raises(BenchError, match="--runs must be at least 1"):
        await Bench(client).run([SMALL], runs=0)
    assert await state(client) == {(KEPT, 8192)}


def test_the_coding_check_parses_the_answer_and_never_runs_it() -> None:
    good = "Here:\n```python\ndef is_palindrome(text: str) -> bool:\n    t = text.lower()\n    return t == t[::-1]\n```"
    assert python_defines(good, "is_palindrome")
    assert not python_defines("```python\ndef other(): pass\n```", "is_palindrome")
    assert not python_defines("```python\ndef is_palindrome(:\n```", "is_palindrome")
    assert not python_defines("Hello from the LM Studio emulator", "is_palindrome")



async def test_a_failing_version_probe_keeps_the_figures_and_says_why(emu: Emulator, client: LMStudioClient) -> None:
    """The REST v0 runtime probe only names the version: its failure costs the version, never the bench."""
    emu.add_fault(Fault(path="/api/v0/chat/completions", status=500))
    report = await Bench(client).run([SMALL], Suite.QUICK, runs=1)
    assert report.results[0].generated_tokens_per_s is not None
    assert report.lmstudio_version is None
    assert report.version_note is not None and "failed" in report.version_note
    assert await state(client) == {(KEPT, 8192)}


async def test_a_model_someone_unloads_during_the_bench_stays_unloaded(emu: Emulator, client: LMStudioClient) -> None:
    """Only what the bench's own load pushed out is loaded again: a person who unloads a model while a long bench
    runs does not get it back."""

    def progress(step: BenchProgress) -> None:
        if step.step == "run 1/2":
            assert emu.unload(KEPT)  # a person, while the bench runs

    await Bench(client, progress=progress).run([SMALL], Suite.QUICK, runs=2)
    assert await state(client) == set()


async def test_a_model_the_benchs_own_load_pushed_out_is_loaded_again_with_its_context(
    emu: Emulator, client: LMStudioClient
) -> None:
    class EvictingLoads(ClientLoads):
        """LM Studio making room for the benched model by unloading the one loaded before."""

        async def load(self, key: str, context_length: int | None) -> tuple[str, int | None, float | None]:
            if key == SMALL:
                assert emu.unload(KEPT)
            return await super().load(key, context_length)

    await Bench(client, loads=EvictingLoads(client)).run([SMALL], Suite.QUICK, runs=1)
    assert await state(client) == {(KEPT, 8192)}


async def test_with_nothing_loaded_before_the_benched_model_is_unloaded_after(
    emu: Emulator, client: LMStudioClient
) -> None:
    emu.unload(KEPT)
    await Bench(client).run([SMALL], Suite.QUICK, runs=1)
    assert await state(client) == set()


async def test_a_failed_restore_is_kept_apart_from_the_error_that_stopped_the_bench(
    emu: Emulator, client: LMStudioClient
) -> None:
    emu.add_fault(Fault(path="/v1/chat/completions", method="POST", status=500))
    emu.add_fault(Fault(path="/api/v1/models/unload", method="POST", status=500))
    bench = Bench(client)
    with pytest.raises(LMStudioError) as stopped:
        await bench.run([SMALL], Suite.QUICK, runs=1)
    assert "/api/v1/models/unload" not in str(stopped.value)  # the caller hears why the bench stopped
    assert bench.restore_failure is not None
