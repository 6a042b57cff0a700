"""Profiles and presets against real emulators over HTTP: switching changes what is watched and what
validate answers, without a restart; each preset's effect is the behaviour a user would notice."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.api.server import EndpointServer, attach_endpoint
from lmstudio_tray.cli import main
from lmstudio_tray.core.clock import FakeClock
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.presets import PRESETS
from lmstudio_tray.core.config.profiles import (
    apply_preset,
    list_profiles,
    preference_key,
    save_preference,
    use_profile,
)
from lmstudio_tray.core.config.schema import Policy
from lmstudio_tray.core.config.store import set_value
from lmstudio_tray.core.errors import ActionError, ConfigError
from lmstudio_tray.core.events import LoadFailed, ModelLoaded
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.notify.policy import NotificationPolicy

QWEN = "qwen/qwen3-4b-2507"
EmulatorFactory = Callable[..., Emulator]


def write_two_profile_config(path: Path, home: Emulator, gpu: Emulator) -> None:
    path.write_text(
        textwrap.dedent(
            f"""\
            # two places I work from
            version = 2

            [[instances]]
            name = "home"
            url = "{home.api_url}"

            [monitor]
            poll_interval = 0.2

            [endpoint]
            port = 0

            [profiles.work]
            description = "the GPU box at the office, strict"

            [[profiles.work.instances]]
            name = "gpu"
            url = "{gpu.api_url}"

            [profiles.work.validation.policy]
            jit = "block"
            """
        )
    )


@dataclass
class Running:
    core: Core
    thread: CoreThread
    server: EndpointServer
    path: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers={"authorization": f"Bearer {self.server.token}"},
                            timeout=30)

    def status(self) -> dict[str, Any]:
        with self.client() as c:
            data: dict[str, Any] = c.get("/v1/status").json()
            return data

    def validate(self, model: str, base_url: str) -> dict[str, Any]:
        with self.client() as c:
            r = c.post("/v1/validate", json={"model": model, "base_url": base_url + "/v1"})
            assert r.status_code == 200, r.text
            data: dict[str, Any] = r.json()
            return data

    def wait_for(self, check: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if check(status):
                return status
            assert time.monotonic() < deadline, f"status never matched: {status}"
            time.sleep(0.1)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Callable[[Path], Running]]:
    threads: list[CoreThread] = []

    def start(path: Path) -> Running:
        core = Core(load_config(path), config_path=path, lms_path=None)
        server = attach_endpoint(core)
        thread = CoreThread(core)
        thread.start()
        threads.append(thread)
        return Running(core, thread, server, path)

    yield start
    for thread in threads:
        thread.stop()


def test_profile_use_switches_watched_instance_and_validate_answer_without_restart(
    tmp_path: Path, emulator_factory: EmulatorFactory, running: Callable[[Path], Running],
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, gpu = emulator_factory(), emulator_factory()
    path = tmp_path / "config.toml"
    write_two_profile_config(path, home, gpu)
    app = running(path)

    status = app.status()
    assert status["profile"] is None and [i["name"] for i in status["instances"]] == ["home"]
    v = app.validate(QWEN, home.api_url)
    assert (v["category"], v["ok"]) == ("jit", True)

    assert main(["--config", str(path), "profile", "use", "work"]) == 0
    assert "work" in capsys.readouterr().out
    status = app.wait_for(lambda s: s["profile"] == "work")
    assert [(i["name"], i["url"]) for i in status["instances"]] == [("gpu", gpu.api_url.rstrip("/"))]
    # the work profile blocks JIT loads, and answers for the GPU box
    v = app.validate(QWEN, gpu.api_url)
    assert (v["category"], v["ok"], v["action"]) == ("jit", False, "block")
    assert v["facts"]["instance"] == "gpu"

    # the monitor really watches the GPU box now, and no longer polls the home server
    home_before, gpu_before = len(home.requests), len(gpu.requests)
    time.sleep(1.5)
    assert len(gpu.requests) > gpu_before
    assert len(home.requests) == home_before

    assert main(["--config", str(path), "profile", "off"]) == 0
    status = app.wait_for(lambda s: s["profile"] is None)
    assert [i["name"] for i in status["instances"]] == ["home"]
    assert app.validate(QWEN, home.api_url)["ok"] is True
    assert "# two places I work from" in path.read_text()  # the user's file kept its comments


def test_a_broken_edit_keeps_the_running_settings(
    tmp_path: Path, emulator_factory: EmulatorFactory, running: Callable[[Path], Running],
) -> None:
    home, gpu = emulator_factory(), emulator_factory()
    path = tmp_path / "config.toml"
    write_two_profile_config(path, home, gpu)
    app = running(path)
    path.write_text(path.read_text() + '\nactive_profile = "nope"\n')  # invalid: no such profile
    time.sleep(2.5)
    status = app.status()
    assert status["profile"] is None and [i["name"] for i in status["instances"]] == ["home"]
    # a fixed file is picked up again
    path.write_text(path.read_text().replace('active_profile = "nope"', ""))
    use_profile(path, "work")
    app.wait_for(lambda s: s["profile"] == "work")


async def test_apply_config_adds_and_removes_monitors_and_updates_policy_in_place(
    tmp_path: Path, emulator_factory: EmulatorFactory
) -> None:
    home, gpu = emulator_factory(), emulator_factory()
    path = tmp_path / "config.toml"
    write_two_profile_config(path, home, gpu)
    core = Core(load_config(path), config_path=path, lms_path=None)
    policy = core.config.validation.policy  # what the endpoint reads per request
    seen: list[str | None] = []
    core.on_config_change(lambda cfg: seen.append(cfg.active_profile))
    await core.start()
    try:
        assert core.monitor.names == ["home"]
        changes = await core.apply_config(use_profile(path, "work"))
        assert "stopped watching home" in changes and any(c.startswith("watching gpu") for c in changes)
        assert core.monitor.names == ["gpu"]
        assert core.monitor.snapshot("gpu") is not None  # polled before apply_config returned
        assert core.config.validation.policy["jit"] is Policy.BLOCK
        assert policy is not core.config.validation.policy or policy["jit"] is Policy.BLOCK
        assert core.status().profile == "work" and core.active_instance == "gpu"
        assert seen == ["work"]
        assert await core.apply_config(load_config(path)) == []  # same settings: nothing to do
        assert seen == ["work"]
    finally:
        await core.stop()


# ---- where tray preferences go ---------------------------------------------------------------------


def test_tray_preference_goes_where_it_takes_effect(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[notifications]\nenabled = true\n\n[profiles.laptop.notifications]\nquiet = true\n\n[profiles.work]\n'
    )
    cfg = use_profile(path, "laptop")
    assert preference_key(cfg, "notifications.quiet") == "profiles.laptop.notifications.quiet"
    assert preference_key(cfg, "notifications.enabled") == "notifications.enabled"
    cfg = save_preference(path, cfg, {"notifications.quiet": False, "notifications.enabled": False})
    assert cfg.notifications.quiet is False and cfg.notifications.enabled is False
    cfg = use_profile(path, "work")
    assert cfg.notifications.enabled is False  # the base setting, shared by every profile


def test_profile_use_of_unknown_name_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[profiles.work]\n")
    before = path.read_bytes()
    assert main(["--config", str(path), "profile", "use", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no profile named 'nope'" in err and "work" in err
    assert path.read_bytes() == before
    with pytest.raises(ConfigError, match="no profile named"):
        use_profile(path, "nope", load_config(path))


def test_profile_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    assert main(["--config", str(path), "config", "preset", "quiet", "--profile", "laptop"]) == 0
    assert main(["--config", str(path), "config", "preset", "remote", "--profile", "work"]) == 0
    assert main(["--config", str(path), "profile", "use", "work"]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "profile", "list"]) == 0
    out = capsys.readouterr().out
    assert "* work" in out and "  laptop" in out and "remote preset" in out
    assert main(["--config", str(path), "profile", "show"]) == 0
    out = capsys.readouterr().out
    assert "work (active)" in out and "actions.server_control = false" in out
    assert main(["--config", str(path), "profile", "show", "laptop", "--json"]) == 0
    assert '"notifications.quiet": true' in capsys.readouterr().out
    assert [p.name for p in list_profiles(load_config(path))] == ["laptop", "work"]


# ---- presets: the effect a user notices ------------------------------------------------------------


def preset_config(tmp_path: Path, emu: Emulator, preset: str) -> Path:
    path = tmp_path / f"{preset}.toml"
    path.write_text(f'[[instances]]\nname = "local"\nurl = "{emu.api_url}"\n\n[endpoint]\nport = 0\n')
    apply_preset(path, preset)
    return path


def test_every_preset_applies_and_is_documented() -> None:
    assert set(PRESETS) == {"strict", "jit-friendly", "quiet", "remote"}
    for p in PRESETS.values():
        assert p.summary and p.details and p.changes()


def test_strict_preset_blocks_everything_not_ready(
    tmp_path: Path, emulator_factory: EmulatorFactory, running: Callable[[Path], Running]
) -> None:
    emu = emulator_factory()
    emu.load(QWEN, context_length=4096)
    app = running(preset_config(tmp_path, emu, "strict"))
    assert app.validate(QWEN, emu.api_url)["ok"] is True  # loaded: ready
    v = app.validate("google/gemma-3-12b", emu.api_url)  # JIT could load it; strict says no
    assert v["ok"] is False and v["action"] == "block"
    cfg = load_config(app.path)
    assert {c: p.value for c, p in cfg.validation.policy.items() if p is not Policy.BLOCK} == {"ready": "allow"}


def test_jit_friendly_preset_loads_unloaded_models_first(
    tmp_path: Path, emulator_factory: EmulatorFactory, running: Callable[[Path], Running]
) -> None:
    emu = emulator_factory(jit=False)
    emu.load("llama-3.2-3b-instruct", context_length=4096)
    path = preset_config(tmp_path, emu, "jit-friendly")
    assert load_config(path).validation.policy["jit"] is Policy.ALLOW
    app = running(path)
    with app.client() as c:
        r = c.post("/v1/ensure", json={"model": QWEN, "base_url": emu.api_url + "/v1"})
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    assert any(m["key"] == QWEN and m["loaded"] for m in app.status()["instances"][0]["models"])


def test_quiet_preset_only_lets_failures_notify(tmp_path: Path, emulator: Emulator) -> None:
    cfg = load_config(preset_config(tmp_path, emulator, "quiet"))
    policy = NotificationPolicy(cfg.notifications, FakeClock())
    assert policy.decide(ModelLoaded("local", model=QWEN, instance_id=QWEN)) is None
    assert policy.decide(LoadFailed("local", model=QWEN, reason="out of memory")) is not None


async def test_remote_preset_has_longer_timeouts_and_no_server_control(
    tmp_path: Path, emulator: Emulator, lms_home: Any
) -> None:
    cfg = load_config(preset_config(tmp_path, emulator, "remote"))
    assert cfg.monitor.request_timeout == 10 and cfg.validation.hook_timeout_ms == 3000
    core = Core(cfg, lms_path=lms_home.lms)
    await core.monitor.warm_up()
    try:
        snap = core.monitor.snapshot("local")
        assert snap is not None and snap.can_control_server is False  # the tray shows no start/stop
        assert core.monitor.instance("local").client.timeout == 10
        with pytest.raises(ActionError, match="server_control = false"):
            await core.actions.server_stop("local")
    finally:
        await core.monitor.stop()
    # without the preset the same instance offers start/stop
    plain = Core(load_config(tmp_path / "missing.toml").model_copy(update={"instances": cfg.instances}),
                 lms_path=lms_home.lms)
    await plain.monitor.warm_up()
    try:
        assert plain.monitor.snapshot("local").can_control_server is True  # type: ignore[union-attr]
    finally:
        await plain.monitor.stop()


def test_preset_into_profile_then_switch_in_a_running_core(
    tmp_path: Path, emulator_factory: EmulatorFactory, running: Callable[[Path], Running]
) -> None:
    emu = emulator_factory()
    path = tmp_path / "config.toml"
    path.write_text(f'[[instances]]\nname = "local"\nurl = "{emu.api_url}"\n\n[endpoint]\nport = 0\n')
    app = running(path)
    assert app.validate(QWEN, emu.api_url)["ok"] is True
    apply_preset(path, "strict", "careful")
    set_value(path, "active_profile", "careful")
    app.wait_for(lambda s: s["profile"] == "careful")
    assert app.validate(QWEN, emu.api_url)["ok"] is False


async def test_watcher_notices_changes_quickly(tmp_path: Path, emulator: Emulator) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[[instances]]\nname = "local"\nurl = "{emulator.api_url}"\n')
    core = Core(load_config(path), config_path=path, lms_path=None)
    await core.start()
    try:
        apply_preset(path, "quiet", "laptop")
        set_value(path, "active_profile", "laptop")
        started = time.monotonic()
        while core.config.active_profile != "laptop":
            assert time.monotonic() - started < 10
            await asyncio.sleep(0.05)
        assert core.config.notifications.quiet is True
    finally:
        await core.stop()


def test_status_names_the_active_profile(
    tmp_path: Path, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    home, gpu = emulator_factory(), emulator_factory()
    path = tmp_path / "config.toml"
    write_two_profile_config(path, home, gpu)
    main(["--config", str(path), "status"])
    assert "profile:" not in capsys.readouterr().out
    use_profile(path, "work")
    assert main(["--config", str(path), "status"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "profile: work" and "gpu: " in out
    assert main(["--config", str(path), "status", "--json"]) == 0
    assert '"profile": "work"' in capsys.readouterr().out
