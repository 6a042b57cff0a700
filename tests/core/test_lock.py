"""core.lock and the config-store lock: real processes on this OS, and Windows' rules through a fake LockOS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lmstudio_tray.core.config import store as config_store
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.errors import ConfigError, ConfigLocked, LockError
from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.core.support.lock import OSLock, SingleInstance, exclusive, pid_file

HOLD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from lmstudio_tray.core.config import store as config_store
    from lmstudio_tray.core.support.lock import SingleInstance

    kind, path = sys.argv[1], Path(sys.argv[2])
    if kind == "instance":
        instance = SingleInstance(path)  # kept: the lock lives as long as its holder object
        assert instance.acquire() is None
        print("holding", flush=True)
        sys.stdin.readline()
        instance.release()
    else:
        with config_store.locked(path):
            print("holding", flush=True)
            sys.stdin.readline()  # the test says when to let go
            config_store.write_validated(path, "version = 2\\n[monitor]\\npoll_interval = 7.0\\n",
                                         config_store.read_text(path))
""")


@dataclass
class Holder:
    proc: subprocess.Popen[str]

    def let_go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(60) == 0


Hold = Callable[[str, Path], Holder]


@pytest.fixture
def hold(tmp_path: Path) -> Iterator[Hold]:
    procs: list[subprocess.Popen[str]] = []
    script = tmp_path / "hold.py"
    script.write_text(HOLD)

    def start(kind: str, path: Path) -> Holder:
        proc = subprocess.Popen([sys.executable, str(script), kind, str(path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "holding\n"
        return Holder(proc)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


# ---- single instance, real processes --------------------------------------------------------------------


def test_a_second_start_learns_the_pid_of_the_running_one(tmp_path: Path, hold: Hold) -> None:
    lock = tmp_path / "state" / "tray.lock"
    first = hold("instance", lock)
    assert SingleInstance(lock).acquire() == first.proc.pid
    assert pid_file(lock).read_text() == str(first.proc.pid)
    first.let_go()
    assert not pid_file(lock).exists(), "a clean exit removes its pid file"
    mine = SingleInstance(lock)
    assert mine.acquire() is None
    mine.release()


def test_a_killed_holder_leaves_no_lock_behind(tmp_path: Path, hold: Hold) -> None:
    lock = tmp_path / "tray.lock"
    first = hold("instance", lock)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    assert pid_file(lock).read_text() == str(first.proc.pid), "the crash leaves its pid file behind"
    again = SingleInstance(lock)
    assert again.acquire() is None  # the OS dropped the dead process's lock
    assert pid_file(lock).read_text() == str(os.getpid())
    again.release()


def test_a_lock_file_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    with pytest.raises(LockError, match=rf"cannot create the lock file {blocker}.*tray.lock .*folder you can write to"):
        SingleInstance(blocker / "tray.lock").acquire()


# ---- the config lock, real processes --------------------------------------------------------------------


def test_a_second_config_writer_waits_for_the_first_and_keeps_its_change(tmp_path: Path, hold: Hold) -> None:
    path = tmp_path / "config.toml"
    atomic_write(path, "version = 2\n")
    first = hold("config", path)
    second = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from lmstudio_tray.core.config.store import "
         "set_value; print('writing', flush=True); set_value(Path(sys.argv[1]), 'notifications.enabled', False)",
         str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert second.stdout is not None and second.stdout.readline() == "writing\n"
        assert second.poll() is None and path.read_text() == "version = 2\n"
        first.let_go()
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
    finally:
        if second.poll() is None:
            second.kill()
    config = load_config(path)
    assert config.monitor.poll_interval == 7.0, "the first writer's change was not lost"
    assert config.notifications.enabled is False


def test_a_config_writer_gives_up_with_a_message_naming_the_lock(tmp_path: Path, hold: Hold) -> None:
    path = tmp_path / "config.toml"
    atomic_write(path, "version = 2\n")
    first = hold("config", path)
    script = ("import sys; from pathlib import Path; from lmstudio_tray.core.config import store as config_store\n"
              "config_store.LOCK_TIMEOUT = 0.5\n"
              "try:\n"
              "    config_store.set_value(Path(sys.argv[1]), 'notifications.enabled', False)\n"
              "except config_store.ConfigError as exc:\n"
              "    print(type(exc).__name__, exc); sys.exit(3)\n")
    try:
        # while the first writer still holds the lock: the second one does not wait forever
        second = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                                timeout=60)
        assert first.proc.poll() is None
    finally:
        first.let_go()
    assert second.returncode == 3, second.stderr
    lock = config_store.lock_path(path)
    assert second.stdout.startswith("ConfigLocked ")
    assert f"still holds its lock {lock}, so nothing was changed; try again" in second.stdout
    assert f"delete {lock}" in second.stdout
    assert load_config(path).notifications.enabled is True


# ---- Windows, through a fake LockOS ---------------------------------------------------------------------


@dataclass
class Machine:
    """Several processes on one Windows machine: which process holds which lock file, who is alive."""

    held: dict[Path, WindowsProcess] = field(default_factory=dict)
    alive: set[int] = field(default_factory=set)
    waited: list[float] = field(default_factory=list)


class WindowsLock:
    def __init__(self, proc: WindowsProcess, path: Path) -> None:
        self.proc, self.path = proc, path

    def try_acquire(self, timeout: float) -> bool:
        holder = self.proc.machine.held.get(self.path)
        if holder is not None and holder is not self.proc:
            self.proc.machine.waited.append(timeout)  # LockFileEx keeps failing until the timeout is over
            return False
        self.path.touch()
        self.proc.machine.held[self.path] = self.proc
        return True

    def release(self) -> None:
        del self.proc.machine.held[self.path]
        self.path.unlink()  # filelock removes the lock file on Windows


@dataclass(eq=False)
class WindowsProcess:
    """One process's view of the OS, with Windows' rules: a file another process locked cannot be read."""

    machine: Machine
    pid_: int
    slept: float = 0.0

    def __post_init__(self) -> None:
        self.machine.alive.add(self.pid_)

    def lock(self, path: Path) -> OSLock:
        return WindowsLock(self, path)

    def read_file(self, path: Path) -> str:
        holder = self.machine.held.get(path)
        if holder is not None and holder is not self:
            # what msvcrt.locking / LockFileEx do to everyone else: the locked byte range cannot be read
            raise PermissionError(13, "The process cannot access the file because another process has locked a "
                                      "portion of the file", str(path))
        return path.read_text(encoding="utf-8")

    def write_file(self, path: Path, text: str) -> None:
        atomic_write(path, text)

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def pid(self) -> int:
        return self.pid_

    def pid_alive(self, pid: int) -> bool:
        return pid in self.machine.alive

    def sleep(self, seconds: float) -> None:
        self.slept += seconds


def test_on_windows_a_second_start_says_who_runs_without_reading_the_locked_file(tmp_path: Path) -> None:
    machine = Machine()
    tray, second = WindowsProcess(machine, 4100), WindowsProcess(machine, 4200)
    lock = tmp_path / "tray.lock"
    first = SingleInstance(lock, lock_os=tray)
    assert first.acquire() is None
    with pytest.raises(PermissionError):
        second.read_file(lock)  # reading the lock file is what crashed the second start before
    assert SingleInstance(lock, lock_os=second).acquire() == 4100
    assert second.slept == 0  # the pid was there at once
    first.release()
    assert not lock.exists() and not pid_file(lock).exists()
    assert SingleInstance(lock, lock_os=second).acquire() is None


def test_on_windows_a_start_during_the_holders_first_moments_waits_briefly_then_says_unknown(
    tmp_path: Path,
) -> None:
    machine = Machine()
    lock = tmp_path / "tray.lock"
    pid_file(lock).write_text("3000")  # from a run that crashed; pid 3000 is gone
    holder = WindowsProcess(machine, 4100)
    machine.held[lock] = holder  # holds the lock, has not written its pid yet
    second = WindowsProcess(machine, 4200)
    assert SingleInstance(lock, lock_os=second, holder_wait=0.5).acquire() == 0
    assert second.slept == pytest.approx(0.5)


def test_on_windows_a_config_writer_stops_waiting_with_the_message(tmp_path: Path) -> None:
    machine = Machine()
    path = tmp_path / "config.toml"
    atomic_write(path, "version = 2\n")
    stuck, cli = WindowsProcess(machine, 4100), WindowsProcess(machine, 4200)
    with config_store.locked(path, lock_os=stuck):
        with pytest.raises(ConfigLocked, match=r"has been changing this file for over 10 s") as err, \
                config_store.locked(path, lock_os=cli):
            pytest.fail("two writers at once")
        assert machine.waited == [10.0]  # waited for the timeout, did not retry forever
    assert isinstance(err.value, ConfigError) and err.value.path == path
    assert str(config_store.lock_path(path)) in str(err.value)
    with config_store.locked(path, lock_os=cli):
        assert machine.held == {config_store.lock_path(path): cli}  # free again: the next writer gets it


def test_exclusive_releases_the_lock_when_the_block_fails(tmp_path: Path) -> None:
    machine = Machine()
    proc = WindowsProcess(machine, 1)
    lock = tmp_path / ".x.lock"
    with pytest.raises(RuntimeError), exclusive(lock, 1.0, lock_os=proc):
        raise RuntimeError("boom")
    assert machine.held == {}
