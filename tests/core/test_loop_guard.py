"""The loop guard (tests/loop_guard.py) itself: it fails a test whose core's loop was held for 50 ms and
names the callback, lets the same work through once it runs in a worker thread, and leaves alone a loop
the core does not run on."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_blocking_call_on_the_cores_loop_fails_the_test_and_a_worker_thread_does_not(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_blocking='''
        import asyncio
        import time

        import pytest

        from lmstudio_tray.core.config.schema import parse_config
        from lmstudio_tray.core.runtime import Core, CoreThread

        pytestmark = pytest.mark.loop_guard


        def read_slowly() -> None:
            time.sleep(0.3)  # stands for a network read or a keyring look-up


        def make_core() -> Core:
            # an instance nobody serves: its polls are the core's tasks on the loop it runs on
            return Core(parse_config({"instances": [{"name": "gone", "url": "http://127.0.0.1:9"}]}), lms_path=None)


        async def test_core_on_the_tests_loop() -> None:
            core = make_core()
            await core.start()
            try:
                read_slowly()
            finally:
                await core.stop()


        async def test_core_on_the_tests_loop_reading_in_a_worker_thread() -> None:
            core = make_core()
            await core.start()
            try:
                await asyncio.to_thread(read_slowly)
            finally:
                await core.stop()


        def test_core_in_a_thread_of_its_own() -> None:
            thread = CoreThread(make_core())
            thread.start()
            try:
                thread.call(read_slowly)
            finally:
                thread.stop()


        async def test_a_loop_without_a_core() -> None:
            read_slowly()  # the test's own loop, next to a core running elsewhere: its own business
    ''')
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = pytester.runpytest_subprocess("-p", "tests.loop_guard", "-p", "no:cacheprovider",
                                           "-o", "asyncio_mode=auto", "-rA")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "FAILED test_blocking.py::test_core_on_the_tests_loop " in out
    assert "FAILED test_blocking.py::test_core_in_a_thread_of_its_own " in out
    # The failure sections only: the short summary repeats the message as far as the terminal is wide.
    failures = out.split("short test summary info")[0]
    assert failures.count("held the event loop") == 2
    assert "coro=<test_core_on_the_tests_loop()" in out  # the callback is named
    assert "coro=<CoreThread.call.<locals>.wrapper()" in out
    assert "thread 'lmstudio-tray-core'" in out
