"""Config: defaults, readable errors that name the key, untouched bad files, migration, secrets."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.schema import CURRENT_VERSION, Config, Policy, dump_config, parse_config
from lmstudio_tray.core.errors import ConfigError
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.core.support.secrets import FileStore, open_store


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "nope.toml")
    assert [(i.name, i.url) for i in cfg.instances] == [("local", "http://127.0.0.1:1234")]
    assert cfg.validation.policy["not_loaded"] is Policy.BLOCK
    assert cfg.validation.policy["jit"] is Policy.ALLOW
    assert cfg.monitor.cache_max_age == 30


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    cfg = parse_config({"instances": [{"name": "gpu", "url": "http://10.1.2.3:1234/v1"}]})
    path.write_text(dump_config(cfg))
    again = load_config(path)
    assert again == cfg and again.instances[0].url == "http://10.1.2.3:1234"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[monitor]\npoll_interval = -1\n", "monitor.poll_interval = -1: Input should be greater than or equal to 0.1"),
        ("[monitor]\npoll_intervall = 2\n", "monitor.poll_intervall: unknown key; remove it or check its spelling"),
        ('[[instances]]\nname = "x"\nurl = "ftp://box"\n', "instances[0].url = 'ftp://box'"),
        ('[validation.policy]\nnot_loaded = "explode"\n', "validation.policy.not_loaded = 'explode'"),
        ('[validation.policy]\nsomething = "block"\n', "unknown category something"),
        ('active_instance = "gone"\n', "active_instance 'gone' is not one of the instances"),
        ("version = 99\n", "written by a newer lmstudio-tray"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_bad_config_names_key_value_and_fix_and_stays_untouched(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)
    assert path.read_bytes() == before


def test_duplicate_instance_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="repeated: a"):
        parse_config({"instances": [{"name": "a", "url": "http://h:1"}, {"name": "a", "url": "http://h:2"}]})


def test_version_1_layout_is_migrated() -> None:
    cfg = parse_config({"server": {"url": "http://gpu.lan:1234", "poll_seconds": 3}, "notify": False})
    assert cfg.version == CURRENT_VERSION
    assert [(i.name, i.url) for i in cfg.instances] == [("local", "http://gpu.lan:1234")]
    assert cfg.monitor.poll_interval == 3.0
    assert cfg.notifications.enabled is False


def test_config_path_override_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.config_file() == paths.config_dir() / "config.toml"
    assert str(paths.config_file()).startswith(os.environ["XDG_CONFIG_HOME"])
    monkeypatch.setenv("LMSTUDIO_TRAY_CONFIG", str(tmp_path / "env.toml"))
    assert paths.config_file() == tmp_path / "env.toml"
    assert paths.config_file(tmp_path / "flag.toml") == tmp_path / "flag.toml"


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.toml"
    atomic_write(path, "a = 1\n")
    atomic_write(path, "a = 2\n", mode=0o600)
    assert path.read_text() == "a = 2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["f.toml"]


def test_instance_lookup_errors_list_the_configured_names() -> None:
    cfg = Config()
    assert cfg.instance().name == "local"
    with pytest.raises(ConfigError, match=r"no instance named 'x' \(configured: local\)"):
        cfg.instance("x")


def test_lmstudio_home_resolution(isolated_env: Path) -> None:
    assert paths.lmstudio_home() == isolated_env / ".lmstudio"
    (isolated_env / ".cache" / "lm-studio").mkdir(parents=True)
    assert paths.lmstudio_home() == isolated_env / ".cache" / "lm-studio"
    (isolated_env / ".lmstudio-home-pointer").write_text(str(isolated_env / "elsewhere") + "\n")
    assert paths.lmstudio_home() == isolated_env / "elsewhere"


def test_tokens_live_in_the_keyring(memory_keyring: object) -> None:
    store = open_store()
    store.set("local", "sk-lm-abcdEFGH:abcdefghijABCDEFGHij")
    assert store.get("local") == "sk-lm-abcdEFGH:abcdefghijABCDEFGHij"
    assert memory_keyring.store[("lmstudio-tray", "local")]  # type: ignore[attr-defined]
    store.delete("local")
    assert store.get("local") is None


def test_file_fallback_is_private_and_warns(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import keyring
    from keyring.backends import fail

    monkeypatch.setattr(keyring, "get_keyring", lambda: fail.Keyring())
    store = open_store()
    assert "no working keyring backend" in caplog.text
    store.set("gpu", "sk-lm-secret00:abcdefghijABCDEFGHij")
    path = FileStore().path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.get("gpu") == "sk-lm-secret00:abcdefghijABCDEFGHij"
    assert "sk-lm-secret00" not in caplog.text


def test_env_token_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSTUDIO_TRAY_TOKEN_GPU_BOX", "from-env")
    assert open_store().get("gpu-box") == "from-env"
