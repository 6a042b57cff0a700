"""The shared-instance guard: a model that served requests through this machine in the last minutes is not
switched away without --force; the router's traffic is what counts, across processes (through
model-use.json), and the refusal claims no more than that record shows."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.core.config import team, team_fetch
from lmstudio_tray.core.control import model_use, shared_guard
from lmstudio_tray.core.errors import SharedBusyError, SharedInstanceBusy
from tests.routing.conftest import GEMMA, QWEN, Pool, chat

PROFILE = '[team]\nname = "ml"\nbusy_minutes = 5\n[[instances]]\nname = "a"\nurl = "http://127.0.0.1:9"\n'


def profile(tmp_path: Path, text: str = PROFILE) -> team.TeamProfile:
    path = tmp_path / "team.toml"
    path.write_text(text)
    return team_fetch.load_team(str(path))


def test_recent_use_on_a_shared_instance_is_refused_unless_forced(tmp_path: Path) -> None:
    p = profile(tmp_path)
    uses = model_use.ModelUseLog(tmp_path / "use.json")
    now = 1_000_000.0
    uses.record("a", QWEN, now - 60)
    uses.record("a", GEMMA, now - 600)
    uses.flush()
    with pytest.raises(SharedInstanceBusy) as err:
        shared_guard.guard_change(p, "a", [QWEN, GEMMA], uses=uses, now=now)
    message = str(err.value)
    assert "shared by team 'ml'" in message and QWEN in message and "60 s ago" in message
    assert GEMMA not in message and "--force" in message
    shared_guard.guard_change(p, "a", [QWEN], uses=uses, now=now, force=True)
    shared_guard.guard_change(p, "a", [GEMMA], uses=uses, now=now)  # idle for 10 minutes
    shared_guard.guard_change(p, "private-box", [QWEN], uses=uses, now=now)  # not shared: not guarded
    shared_guard.guard_change(None, "a", [QWEN], uses=uses, now=now)  # no team at all


def test_the_refusal_says_what_this_machine_saw_and_nothing_it_cannot_know(tmp_path: Path) -> None:
    p = profile(tmp_path)
    uses = model_use.ModelUseLog(tmp_path / "use.json")
    now = 1_000_000.0
    uses.record("a", QWEN, now - 42)
    uses.record("a", GEMMA, now - 7)
    with pytest.raises(SharedInstanceBusy) as err:
        shared_guard.guard_change(p, "a", [QWEN, GEMMA], uses=uses, now=now)
    message = str(err.value)
    # when each model was last used, and that this is the use through this machine's lmstudio-tray
    assert f"{QWEN} 42 s ago" in message and f"{GEMMA} 7 s ago" in message
    assert "through lmstudio-tray on this machine" in message
    assert "other machines are not visible here" in message
    # nothing is known about anyone's sessions: no claim that the change would break them
    assert "people" not in message and "break" not in message and "sessions" not in message
    assert "5 minutes" in message and "--force" in message


def test_use_log_is_shared_between_processes_and_never_goes_back_in_time(tmp_path: Path) -> None:
    first = model_use.ModelUseLog(tmp_path / "use.json")
    second = model_use.ModelUseLog(tmp_path / "use.json")
    first.record("a", QWEN, 200.0)
    first.flush()
    second.record("a", QWEN, 100.0)  # an older observation from another process
    second.record("b", GEMMA, 150.0)
    second.flush()
    reader = model_use.ModelUseLog(tmp_path / "use.json")
    assert reader.last_use("a", QWEN) == 200.0 and reader.last_use("b", GEMMA) == 150.0
    (tmp_path / "use.json").write_text("{not json")
    assert model_use.ModelUseLog(tmp_path / "use.json").last_use("a", QWEN) is None


async def test_router_traffic_makes_the_guard_refuse(pool_factory: Any, tmp_path: Path) -> None:
    pool: Pool = pool_factory({"a": [QWEN], "b": [GEMMA]})
    p = profile(tmp_path, PROFILE.replace("http://127.0.0.1:9", pool.emus["a"].api_url))
    async with pool.client() as c:
        r = await c.post(pool.base() + "/chat/completions", json=chat(QWEN))
        assert r.status_code == 200
    # written off the event loop: wait for the file (another process would read exactly this)
    for _ in range(100):
        if model_use.ModelUseLog().last_use("a", QWEN):
            break
        await asyncio.sleep(0.05)
    last = model_use.ModelUseLog().last_use("a", QWEN)
    assert last is not None and time.time() - last < 30
    with pytest.raises(SharedInstanceBusy):
        shared_guard.guard_change(p, "a", [QWEN])
    shared_guard.guard_change(p, "a", [GEMMA])  # nobody used gemma on a
    shared_guard.guard_change(p, "a", [QWEN], force=True)


async def test_guard_for_unload_and_switch_from_the_status_cache(pool_factory: Any, tmp_path: Path) -> None:
    pool: Pool = pool_factory({"a": [QWEN, GEMMA, "text-embedding-nomic-embed-text-v1.5"]})
    p = profile(tmp_path, PROFILE.replace("http://127.0.0.1:9", pool.emus["a"].api_url))
    snap = pool.core.monitor.snapshot("a")
    uses = model_use.ModelUseLog(tmp_path / "use.json")
    uses.record("a", GEMMA)
    uses.flush()
    assert shared_guard.models_affected(snap, switch_to=QWEN) == [GEMMA]  # embeddings stay, the target stays
    assert sorted(shared_guard.models_affected(snap, unload="all")) == sorted(
        [QWEN, GEMMA, "text-embedding-nomic-embed-text-v1.5"])
    shared_guard.guard_action(p, snap, unload=QWEN, uses=uses)  # qwen is idle
    with pytest.raises(SharedInstanceBusy):
        shared_guard.guard_action(p, snap, switch_to=QWEN, uses=uses)  # would unload gemma, in use
    with pytest.raises(SharedInstanceBusy):
        shared_guard.guard_action(p, snap, unload="all", uses=uses)
    shared_guard.guard_action(p, snap, unload="all", uses=uses, force=True)
    shared_guard.guard_action(p, snap, switch_to=GEMMA, uses=uses)  # keeps gemma: nothing in use goes away


async def test_validated_use_counts_like_routed_use(pool_factory: Any, tmp_path: Path) -> None:
    pool: Pool = pool_factory({"a": [QWEN]})
    pool.router.note_use("a", QWEN)  # what /v1/validate would do for a provider pointing at a directly
    for _ in range(100):
        if model_use.ModelUseLog().last_use("a", QWEN):
            break
        await asyncio.sleep(0.05)
    p = profile(tmp_path, PROFILE.replace("http://127.0.0.1:9", pool.emus["a"].api_url))
    with pytest.raises(SharedInstanceBusy):
        shared_guard.guard_action(p, pool.core.monitor.snapshot("a"), unload="all")


async def test_an_unload_reads_the_use_file_in_a_worker_thread_not_on_the_core_loop(
    pool_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool: Pool = pool_factory({"a": [QWEN]})
    p = profile(tmp_path, PROFILE.replace("http://127.0.0.1:9", pool.emus["a"].api_url))
    other = model_use.ModelUseLog()  # another lmstudio-tray process on this machine used qwen just now
    other.record("a", QWEN)
    other.flush()
    readers: list[threading.Thread] = []
    read = model_use.ModelUseLog.read

    def spied(self: model_use.ModelUseLog) -> dict[str, dict[str, float]]:
        readers.append(threading.current_thread())
        return read(self)

    monkeypatch.setattr(model_use.ModelUseLog, "read", spied)
    monkeypatch.setattr(pool.core.actions, "current_team", lambda: p)
    with pytest.raises(SharedBusyError, match="last used"):
        await pool.core.actions.unload("a", QWEN)
    assert readers and threading.current_thread() not in readers  # the file was read, never on the loop
