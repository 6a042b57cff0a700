"""`opencode install --pool NAME`: a provider pointed at the endpoint's router for a pool, with what the
pool's instances have loaded, no token in opencode.json, and an uninstall that takes exactly that out."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.cli import main
from lmstudio_tray.core.support import paths
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.opencode.jsonc import comments_of
from tests.emulator_fixtures import EmulatorFactory
from tests.opencode.conftest import JsoncReference

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
PORT = 47999


@pytest.fixture
def boxes(emulator_factory: EmulatorFactory) -> tuple[Emulator, Emulator]:
    a, b = emulator_factory(), emulator_factory()
    a.load(QWEN, context_length=16384)
    b.load(QWEN, context_length=8192)  # the provider must announce what every member can hold
    b.load(GEMMA, context_length=4096)
    return a, b


def write_cfg(tmp_path: Path, a: Emulator, b: Emulator, port: int = PORT) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[[instances]]\nname = "a"\nurl = "{a.api_url}"\n\n[[instances]]\nname = "b"\nurl = "{b.api_url}"\n\n'
        '[[pools]]\nname = "team"\ninstances = ["a", "b"]\n\n'
        f"[endpoint]\nport = {port}\n"
    )
    return path


def run(cfg: Path, *args: str) -> int:
    try:
        return main(["--config", str(cfg), "opencode", *args])
    except SystemExit as exc:
        return int(exc.code or 0)


def read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def test_pool_provider_points_at_the_router_with_the_pools_loaded_models(
    tmp_path: Path, boxes: tuple[Emulator, Emulator], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_cfg(tmp_path, *boxes)
    project = tmp_path / "project"
    project.mkdir()
    assert run(cfg, "install", "--project", str(project), "--pool", "team") == 0
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{PORT}/v1/route/team/v1" in out and "lmstudio-pool-team" in out
    text = (project / "opencode.json").read_text()
    provider = json.loads(text)["provider"]["lmstudio-pool-team"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": f"http://127.0.0.1:{PORT}/v1/route/team/v1"}
    assert sorted(provider["models"]) == [GEMMA, QWEN]
    assert provider["models"][QWEN]["limit"]["context"] == 8192  # the smaller of the two loaded copies
    assert provider["models"][GEMMA]["limit"]["context"] == 4096
    assert "whitelist" not in provider  # only the `lmstudio` id pulls in models.dev's catalogue
    # no secret: neither the endpoint's token nor an apiKey/header is written
    assert "apiKey" not in text and "Authorization" not in text and "Bearer" not in text
    assert (project / ".opencode" / "plugins" / "lmstudio-tray.ts").is_file()  # the plugin adds the token

    # idempotent
    before = (project / "opencode.json").read_text()
    assert run(cfg, "install", "--project", str(project), "--pool", "team") == 0
    assert (project / "opencode.json").read_text() == before


def test_uninstall_takes_out_the_pool_and_the_lmstudio_provider_together(
    tmp_path: Path, boxes: tuple[Emulator, Emulator]
) -> None:
    cfg = write_cfg(tmp_path, *boxes)
    project = tmp_path / "project"
    project.mkdir()
    config = project / "opencode.json"
    assert run(cfg, "install", "--project", str(project), "--pool", "team") == 0  # creates the file
    assert run(cfg, "install", "--project", str(project), "--provider", "--instance", "a") == 0
    data = read(config)
    assert set(data["provider"]) == {"lmstudio", "lmstudio-pool-team"}
    assert run(cfg, "uninstall", "--project", str(project)) == 0
    assert not config.exists()  # install created it, so it goes whole

    mine = {"theme": "x", "provider": {"other": {"npm": "x"}}}
    config.write_text(json.dumps(mine))
    assert run(cfg, "install", "--project", str(project), "--pool", "team") == 0
    assert "lmstudio-pool-team" in read(config)["provider"]
    assert run(cfg, "uninstall", "--project", str(project)) == 0
    assert read(config) == mine


def test_a_model_the_pool_no_longer_has_leaves_the_provider(
    tmp_path: Path, boxes: tuple[Emulator, Emulator]
) -> None:
    a, b = boxes
    cfg = write_cfg(tmp_path, a, b)
    project = tmp_path / "project"
    project.mkdir()
    assert run(cfg, "install", "--project", str(project), "--pool", "team") == 0
    b.unload(GEMMA)
    assert run(cfg, "install", "--project", str(project), "--pool", "team") == 0
    models = read(project / "opencode.json")["provider"]["lmstudio-pool-team"]["models"]
    assert sorted(models) == [QWEN]
    assert models[QWEN]["limit"]["context"] == 8192


def test_bad_pool_requests_change_nothing(
    tmp_path: Path, boxes: tuple[Emulator, Emulator], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = boxes
    project = tmp_path / "project"
    project.mkdir()
    cfg = write_cfg(tmp_path, a, b)
    assert run(cfg, "install", "--project", str(project), "--pool", "nope") == 2
    err = capsys.readouterr().err
    assert "no pool named 'nope'" in err and "team" in err

    cfg = write_cfg(tmp_path, a, b, port=0)
    assert run(cfg, "install", "--project", str(project), "--pool", "team") == 2
    assert "endpoint.port" in capsys.readouterr().err

    a.unload_all()
    b.unload_all()
    cfg = write_cfg(tmp_path, a, b)
    assert run(cfg, "install", "--project", str(project), "--pool", "team") == 1
    assert "no instance of pool 'team' has a chat model loaded" in capsys.readouterr().err
    assert list(project.iterdir()) == []
    assert not (paths.state_dir() / "opencode-installs.json").exists()


COMMENTED = """\
{
  // pools are set up in lmstudio-tray's config.toml
  "provider": {
    "other": {"npm": "x"}, /* a hosted one */
  },
  "share": "disabled", // never
}
"""


def test_pool_and_lmstudio_providers_go_in_and_out_of_a_commented_jsonc(
    tmp_path: Path, boxes: tuple[Emulator, Emulator], jsonc_reference: JsoncReference
) -> None:
    a, b = boxes
    cfg = write_cfg(tmp_path, a, b)
    project = tmp_path / "project"
    project.mkdir()
    config = project / "opencode.jsonc"
    config.write_text(COMMENTED)
    assert run(cfg, "install", "--project", str(project), "--pool", "team") == 0
    assert run(cfg, "install", "--project", str(project), "--provider", "--instance", "a") == 0
    b.unload(GEMMA)  # the pool loses a model: the re-install takes its entry out of the commented file
    assert run(cfg, "install", "--project", str(project), "--pool", "team") == 0
    text = config.read_text()
    errors, data = jsonc_reference.parse(text)
    assert errors == [] and set(data["provider"]) == {"other", "lmstudio", "lmstudio-pool-team"}
    assert sorted(data["provider"]["lmstudio-pool-team"]["models"]) == [QWEN]
    assert Counter(comments_of(text)) == Counter(comments_of(COMMENTED))
    assert run(cfg, "uninstall", "--project", str(project)) == 0
    assert config.read_text() == COMMENTED
