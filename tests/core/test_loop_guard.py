"""The loop guard (tests/loop_guard.py) itself: it fails a test whose core's loop was held for 50 ms and
names the callback, lets the same work through once it runs in a worker thread, leaves alone a loop
the core does not run on, and does not charge a callback with the time another thread held the GIL while
stuck in the kernel."""

from __future__ import annotations

import re
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


def test_a_wait_for_the_gil_held_by_a_thread_stuck_in_the_kernel_is_not_the_callbacks(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread starting a process holds the GIL until the child has exec'd, on no CPU; on a saturated
    # machine that took 0.07-0.22 s, charged to whatever callback the core's loop was running then. A
    # start that sleeps in a C call keeping the GIL stands for it.
    pytester.makepyfile(test_stall='''
        import ctypes
        import subprocess
        import threading
        import time
        from collections.abc import Callable
        from typing import Any

        import pytest

        from lmstudio_tray.core.config.schema import parse_config
        from lmstudio_tray.core.runtime import Core, CoreThread

        pytestmark = pytest.mark.loop_guard
        usleep_holding_the_gil = ctypes.PyDLL(None).usleep


        class SlowStart(subprocess.Popen):
            def _execute_child(self, *args: Any) -> None:
                usleep_holding_the_gil(self.stall_us)
                super()._execute_child(*args)


        def start_slowly(stall_us: int) -> None:
            SlowStart.stall_us = stall_us
            SlowStart(["true"]).wait()


        def run_on_the_loop(work: Callable[[], None]) -> None:
            core = Core(parse_config({"instances": [{"name": "gone", "url": "http://127.0.0.1:9"}]}), lms_path=None)
            thread = CoreThread(core)
            thread.start()
            try:
                thread.call(work)
            finally:
                thread.stop()


        def read_during_a_start(read_seconds: float, stall_us: int) -> None:
            """A blocking read (the GIL released) on the core's loop; meanwhile another thread starts a process,
            holding the GIL `stall_us`."""
            go = threading.Event()
            other = threading.Thread(target=lambda: go.wait() and start_slowly(stall_us))
            other.start()

            def read() -> None:
                go.set()
                time.sleep(read_seconds)

            run_on_the_loop(read)
            other.join()


        def test_another_thread_starts_a_process_while_the_loop_waits() -> None:
            read_during_a_start(0.01, 300_000)  # a short read, after which the loop waits for the GIL


        def test_a_real_block_meanwhile_is_still_charged() -> None:
            read_during_a_start(0.4, 100_000)  # the stall is over long before this read is


        def test_the_loops_own_start_of_a_process_is_charged() -> None:
            run_on_the_loop(lambda: start_slowly(300_000))
    ''')
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = pytester.runpytest_subprocess("-p", "tests.loop_guard", "-p", "no:cacheprovider", "-rA")
    out = result.stdout.str()
    assert "PASSED test_stall.py::test_another_thread_starts_a_process_while_the_loop_waits" in out, out
    assert "FAILED test_stall.py::test_a_real_block_meanwhile_is_still_charged" in out, out
    assert "FAILED test_stall.py::test_the_loops_own_start_of_a_process_is_charged" in out, out
    # the real block: the stall deducted, the read charged (less what other threads and the machine took)
    real = re.search(r"_real_block_.*?held the event loop .*? for ([\d.]+) s .*?held by a stalled thread ([\d.]+) s",
                     out, re.S)
    assert real, out
    assert float(real[1]) >= 0.2 and 0.05 < float(real[2]) <= 0.11, real[0]
    # the loop's own start: charged whole
    own = re.search(r"_loops_own_start_.*?held the event loop .*? for ([\d.]+) s", out, re.S)
    assert own and float(own[1]) >= 0.25, out
