"""Pytest plugin: nothing may hold the core's event loop for 50 ms.

The core answers the plugin's validate hook within a millisecond, so nothing may hold its loop: network,
keyring, file reads and heavy imports run in worker threads. This test mode checks it. While a guarded
test runs (`GUARDED`: the core, endpoint, team and router tests; elsewhere `@pytest.mark.loop_guard`),
every asyncio loop it creates (the core's `CoreThread`, `asyncio.run`, pytest-asyncio's) is a
`GuardedLoop`: asyncio's debug mode with `slow_callback_duration = 0.05`, kept on even where a runner
turns debug mode off. asyncio then logs `Executing <callback> took X seconds` for each callback that
held its loop that long; this plugin collects those records from the core's loops and fails the test
phase (setup, call or teardown) that produced them, naming the callback. `slow_callbacks` gives a test
the records so far. A core's loop is one that runs a task of `lmstudio_tray.core` (a `CoreThread`'s
start, the monitor's polls and refreshes, which `Core.start` begins with): where the core runs in a
`CoreThread`, the test's own loop (an HTTP client, assertions) is the test's business; where a test runs
the core on its own loop, everything on that loop counts, test code included, because it holds up the
core just the same.

What counts as held. asyncio measures the wall clock. On a shared 2-core machine under coverage, that
also counts time that is not the callback's doing, so the plugin takes a few clocks around each
callback (`Handle._run`) and charges the callback with

    its own CPU time (thread CPU clock), minus garbage collection pauses,
  + the time it was blocked (wall - own CPU - own wait for a CPU), minus the time the other threads of
    this process ran or waited for a CPU meanwhile, minus the time the GIL was held by a thread that did
    neither.

The first term is what the callback computed (coverage's tracing included: a callback close to the limit
fails under coverage first, and was too close anyway). The second is what it waited for: a socket read,
a D-Bus call, a lock. The deduction covers the waits that are contention instead: the GIL held by
another thread (running, or itself waiting for a CPU), a new worker thread that needs a CPU to start,
CPU time the hypervisor took from the machine (`steal` in /proc/stat: the tests run in a VM). A wait
during which the process had to read a page from disk (a major page fault stalls whichever thread holds
the GIL, for a time nothing reports) is not charged at all. Nor is a wait for the GIL held by a thread stuck
in the kernel: a thread that starts a process holds it until the child has replaced itself with the new
program (CPython forks with vfork), which on a saturated machine can take a few hundred ms, and every
thread of the process waits meanwhile, on no CPU. The sampler thread below notices those: woken later
than every thread of the process ran or waited for a CPU in the same interval (and than the hypervisor
took), it waited for a GIL held by a stalled thread. Which thread held it, it cannot tell; blocking I/O in
Python code releases the GIL, so a callback that blocks on a socket, a file or a lock is charged in full,
and the one C call the loop makes that keeps it, starting a process (asyncio starts the core's `lms` on
the loop's thread), is noted (`Popen.__init__` is wrapped): a stall while the loop's own thread started
one is charged. It errs on the lenient side: a callback
that blocks while other threads happen to be busy is charged less by their busy time, so a wait is
reported once it outlasts the contention (a hung fetch, a locked keyring), not a 60 ms read on a
saturated machine. A CPU clock alone (of the thread or the process) would not do: a callback stuck for
3 s on a network read uses no CPU at all, and the process may be idle meanwhile. The waits for a CPU
come from Linux's per-thread scheduler statistics (`/proc/thread-self/schedstat`, second field; the
other threads' and the stolen time are sampled every few ms by a helper thread). Without them (not
Linux) the callback is charged with what asyncio measured. Garbage collection is left out because its
pauses fall on whichever callback allocates when a generation fills up: in a test process that has run
hundreds of tests that is a large heap, which the tray's never is.

Nothing is whitelisted: a one-off cost (an import, building the web app) counts like any other and is
moved off the loop instead. The terminal summary says how many slow wall-clock readings were put down
to contention.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import gc
import logging
import os
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import lmstudio_tray

SLOW_SECONDS = 0.05
# the test directories of the code that runs on the core's loop
GUARDED = ("core", "api", "team", "routing")
SAMPLE_SECONDS = 0.005  # how often the other threads' waits for a CPU are sampled
GIL_SLACK = 0.001  # how late a timed wait may return without having waited for the GIL (timer slack)
_TESTS = Path(__file__).resolve().parent
_ASYNCIO_SLOW = "Executing %s took %.3f seconds"  # asyncio.base_events, debug mode
_TASKS = Path("/proc/self/task")
_CORE = str(Path(lmstudio_tray.__file__).resolve().parent / "core")
_HAVE_SCHEDSTAT = Path("/proc/thread-self/schedstat").exists() and Path("/proc/stat").exists()
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class SlowCallback:
    callback: str
    held: float  # what the callback is charged with (see the module docstring)
    seconds: float  # the wall clock, as asyncio measured it
    cpu: float  # its own CPU time
    gc: float  # garbage collection pauses meanwhile
    waited: float  # its own wait for a CPU
    others: float  # the other threads' CPU time and waits for a CPU meanwhile
    stolen: float  # CPU time the hypervisor took from this machine meanwhile
    page_ins: int  # pages this process had to read from disk meanwhile
    stalled: float  # the GIL held by a thread that neither ran nor waited for a CPU meanwhile
    thread: str

    def describe(self) -> str:
        return (f"{self.callback} held the event loop of thread {self.thread!r} for {self.held:.3f} s "
                f"({self.seconds:.3f} s wall clock: {self.cpu:.3f} s on the CPU, {self.gc:.3f} s of it collecting "
                f"garbage, {self.waited:.3f} s waiting for a CPU; meanwhile other threads ran or waited for a "
                f"CPU {self.others:.3f} s, {self.stolen:.3f} s were stolen from the machine, {self.page_ins} "
                f"pages were read from disk, the GIL was held by a stalled thread {self.stalled:.3f} s)")


def _page_ins() -> int:
    import resource  # Unix only, like the rest of the measuring

    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


def _schedstat(fd: int) -> tuple[float, float]:
    """A thread's time on a CPU and waiting on a run queue so far, in seconds."""
    # "<ns on a CPU> <ns waiting on a run queue> <timeslices>"; reading from offset 0 renews the values
    on_cpu, waiting = os.pread(fd, 64, 0).split()[:2]
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def _run_delay(fd: int) -> float:
    return _schedstat(fd)[1]


def _stolen() -> float:
    """CPU time the hypervisor gave to other machines so far, all CPUs (/proc/stat `steal`), in seconds."""
    with open("/proc/stat", "rb") as fh:
        return int(fh.readline().split()[8]) / _TICKS


# each thread's time on a CPU and waiting for one so far, and the machine's stolen time
Sample = tuple[dict[int, tuple[float, float]], float]


class _RunQueueSampler(threading.Thread):
    """Every few ms: how long each thread of this process has run and waited for a CPU so far, and how much
    CPU time the hypervisor took from this machine. Its own lateness tells when no thread could take the GIL:
    woken late by more than any thread of the process (itself included) ran or waited for a CPU meanwhile,
    and than the hypervisor took, it waited for a GIL held by a thread that did neither (`stalls`)."""

    def __init__(self) -> None:
        super().__init__(name="loop-guard-sampler", daemon=True)
        self.samples: deque[tuple[float, Sample]] = deque(maxlen=int(10 / SAMPLE_SECONDS))
        self.stalls: deque[tuple[float, float]] = deque(maxlen=int(10 / SAMPLE_SECONDS))
        self.last: tuple[float, Sample] | None = None  # the last sample (one tuple: never seen half updated)
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()
        self._finish = threading.Event()

    def read(self) -> Sample:
        return self._threads(), _stolen()

    def _threads(self) -> dict[int, tuple[float, float]]:
        with self._lock:
            threads: dict[int, tuple[float, float]] = {}
            for entry in os.scandir(_TASKS):
                tid = int(entry.name)
                try:
                    fd = self._fds.get(tid)
                    if fd is None:
                        fd = self._fds[tid] = os.open(f"{entry.path}/schedstat", os.O_RDONLY)
                    threads[tid] = _schedstat(fd)
                except (OSError, ValueError, IndexError):  # the thread ended meanwhile
                    continue
            for tid in set(self._fds) - set(threads):
                os.close(self._fds.pop(tid))
            return threads

    def run(self) -> None:
        sample = self.read()
        self.last = (time.perf_counter(), sample)  # after the first read, which opens every file
        while not self._finish.wait(SAMPLE_SECONDS):
            now, sample = time.perf_counter(), self.read()
            stall = self.stall(self.last, now, sample)
            if stall > 0:
                self.stalls.append((now - stall, now))
            self.samples.append((now, sample))
            self.last = (now, sample)

    def stall(self, last: tuple[float, Sample] | None, now: float, sample: Sample) -> float:
        """How long, between `last` and `now` (`sample` read then), the GIL was held by a thread that neither
        ran nor waited for a CPU: the sampler's lateness beyond its timeout, less what every thread of the
        process ran and waited for a CPU and what the hypervisor took in the same interval."""
        if last is None or self.native_id not in sample[0]:
            return 0.0
        since, before = last
        busy = sum(max(0.0, cpu + wait - sum(before[0].get(tid, (0.0, 0.0))))
                   for tid, (cpu, wait) in sample[0].items())
        return max(0.0, now - since - SAMPLE_SECONDS - GIL_SLACK - busy - max(0.0, sample[1] - before[1]))

    def stalled_between(self, began: float, now: float) -> float:
        """How much of [began, now] the GIL was held by a stalled thread, the sampler's current wait included."""
        last = self.last  # before the spans: a span added meanwhile is then counted (once: a union) not lost
        spans = list(self.stalls)
        pending = self.stall(last, now, self.read())
        if pending > 0:
            spans.append((now - pending, now))
        total, reached = 0.0, began
        for start, end in sorted(spans):
            start, end = max(start, reached), min(end, now)
            if end > start:
                total += end - start
                reached = end
        return total

    def before(self, moment: float) -> Sample | None:
        """The last sample taken at or before `moment` (the oldest kept if none was)."""
        samples = list(self.samples)
        if not samples:
            return None
        i = bisect.bisect_right([t for t, _ in samples], moment)
        return samples[max(0, i - 1)][1]

    def close(self) -> None:
        self._finish.set()
        self.join()
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


@dataclass
class _Spawn:
    """A process started by a thread of this one: `Popen.__init__` from `start` to `end` (None: under way)."""

    thread: int
    start: float
    end: float | None = None


class _Clocks(threading.local):
    """Per loop thread: its schedstat file, its GC pauses, and the clocks when the callback started."""

    def __init__(self) -> None:
        self.fd: int | None = None
        # wall, own wait for a CPU, own CPU, process CPU, own GC pauses so far (seconds), process page-ins
        self.start: tuple[float, float, float, float, float, int] | None = None
        self.gc = 0.0
        self.gc_started: float | None = None
        self.loop_checked: asyncio.AbstractEventLoop | None = None  # known to be a core loop


class LoopGuard(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.active = False
        self.slow: list[SlowCallback] = []
        self.excused: list[SlowCallback] = []  # slow only because of contention (see the module docstring)
        self._clocks = _Clocks()
        self._fds: list[int] = []
        self._lock = threading.Lock()
        self._sampler: _RunQueueSampler | None = None
        self._core_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self.guarded_tests = 0
        self.contention: list[SlowCallback] = []  # of the whole session, for the summary
        self._spawns: deque[_Spawn] = deque(maxlen=1000)

    # ---- measuring (on the loop threads) ---------------------------------------------------------------

    def _own_run_delay(self) -> float:
        if not _HAVE_SCHEDSTAT:
            return 0.0
        clocks = self._clocks
        if clocks.fd is None:
            clocks.fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            with self._lock:
                self._fds.append(clocks.fd)
        return _run_delay(clocks.fd)

    def callback_starts(self, handle: asyncio.Handle) -> None:
        if self.active:
            clocks = self._clocks
            clocks.start = (time.perf_counter(), self._own_run_delay(), time.thread_time(), time.process_time(),
                            clocks.gc, _page_ins())
            if clocks.loop_checked is not handle._loop:  # type: ignore[attr-defined]
                self._note_core_loop(handle)

    def _note_core_loop(self, handle: asyncio.Handle) -> None:
        """A loop is the core's once it runs a task of `lmstudio_tray.core` (a CoreThread's start, a poll loop,
        a refresh, `CoreThread.call`); only its callbacks count."""
        loop = handle._loop  # type: ignore[attr-defined]
        if loop in self._core_loops:
            self._clocks.loop_checked = loop
            return
        task = getattr(getattr(handle, "_callback", None), "__self__", None)  # a task's step or wake-up
        code = getattr(task.get_coro(), "cr_code", None) if isinstance(task, asyncio.Task) else None
        if code is not None and code.co_filename.startswith(_CORE):
            self._core_loops.add(loop)
            self._clocks.loop_checked = loop

    def gc_phase(self, phase: str, _info: dict[str, Any]) -> None:
        clocks = self._clocks
        if phase == "start":
            clocks.gc_started = time.perf_counter()
        elif clocks.gc_started is not None:
            clocks.gc += time.perf_counter() - clocks.gc_started
            clocks.gc_started = None

    def emit(self, record: logging.LogRecord) -> None:
        # called on the loop's thread right after the slow callback returned
        if not self.active or record.msg != _ASYNCIO_SLOW or not isinstance(record.args, tuple):
            return
        if asyncio.get_running_loop() not in self._core_loops:
            return
        callback, seconds = record.args[0], record.args[1]
        slow = self._measure(str(callback), float(seconds) if isinstance(seconds, (int, float)) else 0.0)
        with self._lock:
            (self.slow if slow.held >= SLOW_SECONDS else self.excused).append(slow)

    def _measure(self, callback: str, seconds: float) -> SlowCallback:
        thread = threading.current_thread().name
        start = self._clocks.start
        if start is None or not _HAVE_SCHEDSTAT:
            return SlowCallback(callback, seconds, seconds, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, thread)
        # The window is the callback's own run (from `Handle._run` until asyncio reported it): a wait for
        # the GIL between asyncio reading its clock and calling the callback is not the callback's.
        began, own_delay, own_cpu, process_cpu, gc_before, page_ins_before = start
        wall = time.perf_counter() - began
        waited = max(0.0, self._own_run_delay() - own_delay)
        cpu = time.thread_time() - own_cpu
        gc_pause = self._clocks.gc - gc_before
        page_ins = _page_ins() - page_ins_before
        others_waited, stolen, stalled = self._others(began)
        others = max(0.0, time.process_time() - process_cpu - cpu) + others_waited
        blocked = max(0.0, min(wall, seconds) - cpu - waited)
        if self._spawned_here(began):
            stalled = 0.0  # the loop's own thread started a process: its hold of the GIL is the loop's
        # a page read from disk (by any thread, the GIL held) stalls for an unknown part of the wait
        waits = 0.0 if page_ins else max(0.0, blocked - others - stolen - stalled)
        held = max(0.0, cpu - gc_pause) + waits
        return SlowCallback(callback, held, seconds, cpu, gc_pause, waited, others, stolen, page_ins, stalled,
                            thread)

    def _others(self, since: float) -> tuple[float, float, float]:
        """Since `since`: the other threads' waits for a CPU, the time stolen from the machine, and the time
        the GIL was held by a stalled thread."""
        sampler = self._sampler
        before = sampler.before(since) if sampler is not None else None
        if sampler is None or before is None:
            return 0.0, 0.0, 0.0
        me = threading.get_native_id()
        now = time.perf_counter()
        threads, stolen = sampler.read()
        waited = sum(max(0.0, wait - before[0].get(tid, (0.0, 0.0))[1])
                     for tid, (_cpu, wait) in threads.items() if tid != me)
        return waited, max(0.0, stolen - before[1]), sampler.stalled_between(since, now)

    def _spawned_here(self, since: float) -> bool:
        """Whether this thread started a process since `since` (a start under way included)."""
        me = threading.get_native_id()
        with self._lock:
            return any(s.thread == me and (s.end is None or s.end >= since) for s in self._spawns)

    def spawn_starts(self) -> _Spawn:
        """Note that this thread starts a process (`Popen.__init__` runs); the entry to end when it is done."""
        spawn = _Spawn(threading.get_native_id(), time.perf_counter())
        with self._lock:
            self._spawns.append(spawn)
        return spawn

    # ---- per test --------------------------------------------------------------------------------------

    def activate(self) -> None:
        with self._lock:
            self.slow.clear()
            self.excused.clear()
        if _HAVE_SCHEDSTAT:
            self._sampler = _RunQueueSampler()
            self._sampler.start()
        self.active = True

    def deactivate(self) -> None:
        self.active = False
        self.guarded_tests += 1
        with self._lock:
            self.contention += self.excused
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        with self._lock:
            fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
        self._clocks = _Clocks()  # threads that live on open their file again next time
        self._core_loops = weakref.WeakSet()

    def take(self) -> list[SlowCallback]:
        with self._lock:
            slow, self.slow = self.slow, []
        return slow


class GuardedLoop(asyncio.SelectorEventLoop):
    """A loop in asyncio's debug mode with the 50 ms slow-callback limit, which stays in debug mode while
    the guard is on (pytest-asyncio's runner turns debug mode off unless its own option says otherwise)."""

    def __init__(self) -> None:
        super().__init__()
        self.slow_callback_duration = SLOW_SECONDS

    def set_debug(self, enabled: bool) -> None:
        super().set_debug(enabled or _guard.active)


class GuardedLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """New loops are `GuardedLoop`s while the guard is on."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return GuardedLoop() if _guard.active else super().new_event_loop()


_guard = LoopGuard()
_LEVEL = pytest.StashKey[int]()


def _guarded(item: pytest.Item) -> bool:
    if item.get_closest_marker("loop_guard") is not None:
        return True
    try:
        relative = Path(str(item.path)).resolve().relative_to(_TESTS)
    except ValueError:
        return False
    return relative.parts[0] in GUARDED


def _noted_spawn(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def __init__(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        spawn = _guard.spawn_starts()
        try:
            init(self, *args, **kwargs)
        finally:
            spawn.end = time.perf_counter()

    return __init__


def _timed_run(run: Callable[[asyncio.Handle], Any]) -> Callable[[asyncio.Handle], Any]:
    def _run(handle: asyncio.Handle) -> Any:
        _guard.callback_starts(handle)
        return run(handle)

    return _run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "loop_guard: fail on event loop callbacks of 50 ms or more (on by "
                            f"default for tests/{{{','.join(GUARDED)}}})")
    # pytest-asyncio's loops come from the global policy too (its `event_loop_policy` fixture returns it)
    asyncio.set_event_loop_policy(GuardedLoopPolicy())
    # every callback of every loop goes through Handle._run: note the clocks as it starts
    asyncio.events.Handle._run = _timed_run(asyncio.events.Handle._run)  # type: ignore[method-assign,assignment]
    # which thread starts a process, and when (asyncio starts them on the loop's thread)
    subprocess.Popen.__init__ = _noted_spawn(subprocess.Popen.__init__)  # type: ignore[method-assign]
    logging.getLogger("asyncio").addHandler(_guard)
    gc.callbacks.append(_guard.gc_phase)


@pytest.fixture
def slow_callbacks() -> Callable[[], list[SlowCallback]]:
    """The callbacks the guard found too slow so far in this test, for tests that check it themselves."""
    return lambda: list(_guard.slow)


def _check(phase: str) -> None:
    slow = _guard.take()
    if slow:
        lines = "\n".join(f"- {s.describe()}" for s in slow)
        pytest.fail(
            f"the event loop was held for {SLOW_SECONDS * 1000:.0f} ms or more during {phase} "
            f"(tests/loop_guard.py); move the blocking work off the loop (asyncio.to_thread):\n{lines}",
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _guard.guarded_tests:
        return
    line = f"loop guard: {_guard.guarded_tests} tests ran with a {SLOW_SECONDS * 1000:.0f} ms limit per callback"
    if _guard.contention:
        worst = max(_guard.contention, key=lambda s: s.seconds)
        line += (f"; {len(_guard.contention)} callbacks took longer by the wall clock only because of "
                 f"contention (the longest: {worst.seconds:.3f} s, of which it held the loop {worst.held:.3f} s)")
    terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    if not _guarded(item):
        return (yield)
    asyncio_logger = logging.getLogger("asyncio")
    item.stash[_LEVEL] = asyncio_logger.level
    asyncio_logger.setLevel(logging.WARNING)  # the records must be made even where a test quiets logging
    _guard.activate()
    result = yield
    _check("setup")
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    result = yield
    if _guard.active:
        _check("the test")
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        if _guard.active:
            logging.getLogger("asyncio").setLevel(item.stash.get(_LEVEL, logging.NOTSET))
            try:
                _check("teardown")
            finally:
                _guard.deactivate()
