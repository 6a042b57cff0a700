"""`lmstudio-tray opencode install/uninstall/status` against the emulator over real HTTP, in temp dirs."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.cli import main
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.endpoint_file import EndpointInfo, read_endpoint, write_endpoint
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.opencode.jsonc import comments_of, parse_config_object
from tests.opencode.conftest import PLUGIN_FILE, JsoncReference

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    emulator.load(QWEN, context_length=8192)
    return emulator


@pytest.fixture
def cfg(tmp_path: Path, emu: Emulator) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[[instances]]\nname = "local"\nurl = "{emu.api_url}"\n')
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "project"
    p.mkdir()
    return p


def run(cfg: Path, *args: str) -> int:
    try:
        return main(["--config", str(cfg), "opencode", *args])
    except SystemExit as exc:
        return int(exc.code or 0)


def backups(folder: Path) -> list[Path]:
    return sorted(folder.glob("opencode.json.bak-*"))


def read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def test_install_project_writes_plugin_and_provider_from_what_lm_studio_has(
    cfg: Path, project: Path, emu: Emulator
) -> None:
    # a running endpoint: its token must not leak into OpenCode's config
    write_endpoint(EndpointInfo(url="http://127.0.0.1:1", token="secret-endpoint-token", pid=os.getpid()))
    assert run(cfg, "install", "--project", str(project), "--provider") == 0

    plugin = project / ".opencode" / "plugins" / "lmstudio-tray.ts"
    assert plugin.read_text() == PLUGIN_FILE.read_text()
    text = (project / "opencode.json").read_text()
    assert "secret-endpoint-token" not in text
    doc = json.loads(text)
    assert next(iter(doc)) == "$schema"
    prov = doc["provider"]["lmstudio"]
    assert prov["npm"] == "@ai-sdk/openai-compatible"
    assert prov["options"]["baseURL"] == emu.api_url.rstrip("/") + "/v1"
    # the loaded model announces its real loaded context, not the model's maximum
    assert prov["models"][QWEN]["limit"] == {"context": 8192, "output": 2048}
    chat_keys = {m["modelKey"] for m in emu.downloaded() if m.get("type") != "embedding"}
    assert set(prov["models"]) == chat_keys
    assert all(m.get("type") != "embedding" for m in emu.downloaded() if m["modelKey"] in prov["models"])
    assert prov["whitelist"] == sorted(chat_keys)
    assert prov["models"][GEMMA]["limit"]["context"] <= 32768


def test_install_is_idempotent(cfg: Path, project: Path) -> None:
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    first = (project / "opencode.json").read_bytes()
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    assert (project / "opencode.json").read_bytes() == first
    assert backups(project) == []


def test_reinstall_keeps_user_edits_and_unknown_keys_and_backs_up(cfg: Path, project: Path, emu: Emulator) -> None:
    config = project / "opencode.json"
    config.write_text(json.dumps({"theme": "tokyonight", "provider": {"other": {"npm": "x"}},
                                  "agent": {"build": {"temperature": 0.2}}}, indent=2))
    original = config.read_text()
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    (bak,) = backups(project)
    assert bak.read_text() == original

    doc = read(config)
    assert doc["theme"] == "tokyonight" and doc["provider"]["other"] == {"npm": "x"}
    assert "$schema" not in doc  # we do not add keys to a file the user wrote, beyond the provider
    doc["provider"]["lmstudio"]["models"][QWEN]["limit"]["context"] = 6000  # the user's own choice
    doc["provider"]["lmstudio"]["models"]["my/own-model"] = {"name": "Mine"}
    config.write_text(json.dumps(doc, indent=2))

    emu.load(GEMMA, context_length=16384)  # LM Studio changed: gemma is loaded now
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    prov = read(config)["provider"]["lmstudio"]
    assert prov["models"][QWEN]["limit"]["context"] == 6000
    assert prov["models"][GEMMA]["limit"]["context"] == 16384
    assert prov["models"]["my/own-model"] == {"name": "Mine"}
    assert "my/own-model" in prov["whitelist"]
    assert len(backups(project)) == 2


def test_uninstall_removes_exactly_what_install_added(cfg: Path, project: Path) -> None:
    config = project / "opencode.json"
    mine = {"$schema": "https://opencode.ai/config.json", "theme": "x",
            "provider": {"lmstudio": {"options": {"headers": {"X-Mine": "1"}}}}}
    config.write_text(json.dumps(mine))
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    assert read(config) != mine
    assert run(cfg, "uninstall", "--project", str(project)) == 0
    assert read(config) == mine
    assert not (project / ".opencode" / "plugins" / "lmstudio-tray.ts").exists()


def test_uninstall_of_a_fresh_install_removes_the_files_it_created(cfg: Path, project: Path) -> None:
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    assert run(cfg, "uninstall", "--project", str(project)) == 0
    assert not (project / "opencode.json").exists()
    assert not (project / ".opencode" / "plugins").exists()


def test_uninstall_keeps_values_and_plugin_the_user_changed(cfg: Path, project: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    plugin = project / ".opencode" / "plugins" / "lmstudio-tray.ts"
    plugin.write_text(plugin.read_text() + "\n// my tweak\n")
    config = project / "opencode.json"
    doc = read(config)
    doc["provider"]["lmstudio"]["options"]["baseURL"] = "http://127.0.0.1:9999/v1"
    config.write_text(json.dumps(doc))
    capsys.readouterr()
    assert run(cfg, "uninstall", "--project", str(project)) == 0
    out = capsys.readouterr().out
    assert plugin.exists() and "my tweak" in plugin.read_text()
    assert "kept" in out
    assert read(config) == {"provider": {"lmstudio": {"options": {"baseURL": "http://127.0.0.1:9999/v1"}}}}


def test_global_install_goes_to_opencode_config_dir(cfg: Path) -> None:
    assert run(cfg, "install", "--global") == 0
    base = Path(os.environ["XDG_CONFIG_HOME"]) / "opencode"
    assert (base / "plugins" / "lmstudio-tray.ts").read_text() == PLUGIN_FILE.read_text()
    assert not (base / "opencode.json").exists()  # no --provider: the config is not touched


def test_existing_singular_plugin_dir_and_jsonc_file_are_reused(cfg: Path, project: Path) -> None:
    (project / ".opencode" / "plugin").mkdir(parents=True)
    jsonc = project / ".opencode" / "opencode.jsonc"
    jsonc.write_text('{\n  "theme": "x",\n}\n')  # trailing comma: JSONC, no comments
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    assert (project / ".opencode" / "plugin" / "lmstudio-tray.ts").exists()
    assert not (project / ".opencode" / "plugins").exists()
    assert not (project / "opencode.json").exists()
    doc = parse_config_object(jsonc.read_text())  # still JSONC: the trailing comma stays, as the user wrote it
    assert doc["theme"] == "x" and "lmstudio" in doc["provider"]


COMMENTED = """\
// My OpenCode setup: every comment here must survive `opencode install` and `uninstall`.
{
    "$schema": "https://opencode.ai/config.json", // for the editor
    /* an older choice: "theme": "tokyonight", // too dark */
    "theme": "gruvbox",
    "instructions": ["AGENTS.md", "docs/style.md", // and this one
    ],
    "provider": {
        // my hosted provider; "lmstudio" is added below it
        "other": {"npm": "x", /* pinned */ "options": {"baseURL": "https://example.invalid/v1",},},
    },
    "agent": {"build": {"temperature": 0.2}}, /* warm */
    // "model": "lmstudio/qwen/qwen3-4b-2507",
}
"""


def test_install_and_uninstall_edit_a_commented_jsonc_in_place(cfg: Path, project: Path,
                                                                jsonc_reference: JsoncReference) -> None:
    config = project / "opencode.jsonc"
    config.write_text(COMMENTED)
    before = jsonc_reference.parse(COMMENTED)[1]
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    text = config.read_text()
    errors, doc = jsonc_reference.parse(text)
    assert errors == [], text
    assert Counter(comments_of(text)) == Counter(comments_of(COMMENTED))
    assert {k: v for k, v in doc.items() if k != "provider"} == {k: v for k, v in before.items() if k != "provider"}
    assert doc["provider"]["other"] == before["provider"]["other"]
    assert doc["provider"]["lmstudio"]["models"][QWEN]["limit"] == {"context": 8192, "output": 2048}
    # the block goes in after `other`, indented like the file (4 spaces), and nothing before it moved
    assert '\n        "lmstudio": {\n            "npm": "@ai-sdk/openai-compatible",' in text
    head = COMMENTED[: COMMENTED.index('"agent"')].rstrip().removesuffix("},\n    },").rstrip()
    assert text.startswith(head)
    (bak,) = sorted(project.glob("opencode.jsonc.bak-*"))
    assert bak.read_text() == COMMENTED

    assert run(cfg, "install", "--project", str(project), "--provider") == 0  # idempotent
    assert config.read_text() == text
    assert run(cfg, "uninstall", "--project", str(project)) == 0
    assert config.read_text() == COMMENTED


def test_a_comment_after_a_trailing_comma_is_valid_jsonc_to_install(cfg: Path, project: Path) -> None:
    config = project / "opencode.jsonc"
    text = '{\n  "instructions": ["a.md", "b.md", // two\n  ],\n}\n'
    config.write_text(text)
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    assert "// two" in config.read_text() and "lmstudio" in parse_config_object(config.read_text())["provider"]
    assert run(cfg, "uninstall", "--project", str(project)) == 0
    assert config.read_text() == text


def test_install_keeps_crlf_line_ends(cfg: Path, project: Path) -> None:
    config = project / "opencode.json"
    original = b'{\r\n  // mine\r\n  "theme": "x"\r\n}\r\n'
    config.write_bytes(original)
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    written = config.read_bytes()
    assert b"\n" not in written.replace(b"\r\n", b"") and b'  "provider": {\r\n    "lmstudio": {' in written
    assert run(cfg, "uninstall", "--project", str(project)) == 0
    assert config.read_bytes() == original


def test_a_private_config_file_stays_private(cfg: Path, project: Path) -> None:
    # opencode.json may hold API keys ("apiKey" of a provider): an install must not make it world-readable
    config = project / "opencode.json"
    config.write_text('{"provider": {"hosted": {"options": {"apiKey": "sk-private"}}}}')
    config.chmod(0o600)
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    assert config.stat().st_mode & 0o777 == 0o600
    assert run(cfg, "uninstall", "--project", str(project)) == 0
    assert config.stat().st_mode & 0o777 == 0o600


def test_dry_run_on_a_commented_file_changes_nothing(cfg: Path, project: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = project / "opencode.json"
    config.write_text(COMMENTED)
    assert run(cfg, "install", "--project", str(project), "--provider", "--dry-run", "--json") == 0
    changes = json.loads(capsys.readouterr().out)["changes"]
    assert {"path": str(config), "action": "would be updated", "detail": "", "backup": None} in changes
    assert config.read_text() == COMMENTED


def test_corrupt_config_is_reported_and_left_alone(
    cfg: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project / "opencode.json"
    config.write_text('{\n  "theme": "x"\n  "model": 1\n}')
    assert run(cfg, "install", "--project", str(project), "--provider") == 1
    err = capsys.readouterr().err
    assert str(config) in err and "line 3" in err
    assert config.read_text() == '{\n  "theme": "x"\n  "model": 1\n}'
    assert backups(project) == []


def test_an_unclosed_block_comment_is_refused_naming_where_it_starts(
    cfg: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project / "opencode.jsonc"
    text = '{\n  "theme": "x"\n}\n/* a comment that never ends\n'
    config.write_text(text)
    assert run(cfg, "install", "--project", str(project), "--provider") == 1
    err = capsys.readouterr().err
    assert str(config) in err and "line 4, column 1" in err and "never closed" in err
    assert config.read_text() == text
    assert not (project / ".opencode").exists()


def test_lm_studio_offline_changes_nothing(cfg: Path, project: Path, emu: Emulator,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    emu.stop_server()
    assert run(cfg, "install", "--project", str(project), "--provider") == 1
    err = capsys.readouterr().err
    assert "cannot read the models" in err and "nothing was changed" in err
    assert list(project.iterdir()) == []


def test_dry_run_changes_nothing(cfg: Path, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cfg, "install", "--project", str(project), "--provider", "--dry-run", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert {c["action"] for c in report["changes"]} == {"would be created"}
    assert report["models"][QWEN] == 8192
    assert list(project.iterdir()) == []
    assert not paths.state_dir().joinpath("opencode-installs.json").exists()


def test_status_reports_plugin_provider_and_endpoint(cfg: Path, project: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cfg, "status", "--project", str(project)) == 1
    capsys.readouterr()
    assert run(cfg, "install", "--project", str(project), "--provider") == 0
    write_endpoint(EndpointInfo(url="http://127.0.0.1:5", token="t", pid=os.getpid()))
    capsys.readouterr()
    assert run(cfg, "status", "--project", str(project), "--json") == 0
    st = json.loads(capsys.readouterr().out)
    assert st["plugin"] == "current" and st["installed_by_lmstudio_tray"] is True
    assert st["provider"]["models"][QWEN] == 8192
    assert st["endpoint"] == {"file": str(paths.endpoint_file()), "running": True, "url": "http://127.0.0.1:5"}


def test_endpoint_file_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    custom = tmp_path / "elsewhere" / "ep.json"
    monkeypatch.setenv("LMSTUDIO_TRAY_ENDPOINT_FILE", str(custom))
    assert paths.endpoint_file() == custom
    write_endpoint(EndpointInfo(url="http://127.0.0.1:7", token="tok", pid=os.getpid()))
    assert custom.exists()
    info = read_endpoint()
    assert info is not None and info.url == "http://127.0.0.1:7"
    assert "LMSTUDIO_TRAY_ENDPOINT_FILE" in PLUGIN_FILE.read_text()  # the plugin reads the same override


def test_project_install_warns_when_the_plugin_is_also_global(cfg: Path, project: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cfg, "install", "--global") == 0
    capsys.readouterr()
    assert run(cfg, "install", "--project", str(project)) == 0
    out = capsys.readouterr().out
    assert "also installed globally" in out and "uninstall --global" in out
