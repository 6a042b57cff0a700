"""The config save API: comments kept, validated before writing, backups, crash-safe writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.schema import Policy
from lmstudio_tray.core.config.store import DELETE, backup_path, merge_config, set_value, unset_value, update_config
from lmstudio_tray.core.errors import ConfigError

USER_FILE = textwrap.dedent(
    """\
    # My LM Studio tray settings
    version = 2

    # the box under my desk
    [[instances]]
    name = "local"
    url = "http://127.0.0.1:1234"  # default port

    [notifications]
    # I like bubbles
    enabled = true
    window = 30.0
    """
)


def test_update_keeps_comments_and_layout_and_changes_only_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    cfg = update_config(path, {"notifications.enabled": False})
    assert cfg.notifications.enabled is False
    text = path.read_text()
    assert text == USER_FILE.replace("enabled = true", "enabled = false")
    assert load_config(path).notifications.window == 30.0


def test_update_creates_tables_and_nested_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    update_config(
        path,
        {
            "validation.policy.jit": "block",
            "notifications.categories.loading": False,
            "instances.local.timeout": 5,
        },
    )
    cfg = load_config(path)
    assert cfg.validation.policy["jit"] is Policy.BLOCK
    assert cfg.notifications.categories["loading"] is False
    assert cfg.instances[0].timeout == 5
    assert "# the box under my desk" in path.read_text() and "# I like bubbles" in path.read_text()


def test_missing_file_is_created_with_version(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    set_value(path, "notifications.quiet", True)
    data = tomllib.loads(path.read_text())
    assert data == {"notifications": {"quiet": True}, "version": 2}
    assert not backup_path(path).exists()  # there was nothing to back up


def test_previous_file_is_kept_as_backup(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    set_value(path, "notifications.window", 5)
    assert backup_path(path).read_text() == USER_FILE
    set_value(path, "notifications.window", 6)
    assert "window = 5" in backup_path(path).read_text()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"notifications.window": -3}, "notifications.window = -3: Input should be greater than or equal to 0"),
        ({"notifications.enabeld": False}, "notifications.enabeld: unknown key"),
        ({"validation.policy.jit": "maybe"}, "validation.policy.jit = 'maybe'"),
        ({"instances.nope.url": "http://x:1"}, "instances.nope.url: there is no entry named 'nope'"),
        ({"notifications.enabled.deeper": 1}, "enabled is a single value"),
    ],
)
def test_invalid_change_leaves_file_byte_identical(tmp_path: Path, changes: dict[str, object], expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as err:
        update_config(path, changes)
    assert expected in str(err.value)
    assert path.read_bytes() == before
    assert not backup_path(path).exists()


def test_unparsable_file_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("this = = broken\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        set_value(path, "notifications.enabled", False)
    assert path.read_text() == "this = = broken\n"


def test_delete_and_unset(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    unset_value(path, "notifications.window")
    assert load_config(path).notifications.window == 60.0  # back to the default
    update_config(path, {"notifications.nothing_here": DELETE})  # removing an absent key is fine


def test_v1_layout_is_migrated_on_first_write_and_original_backed_up(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    # top-level keys come before the first table in TOML, as 0.0.x wrote them
    v1 = 'notify = false\n\n[server]\nurl = "http://127.0.0.1:4321"\npoll_seconds = 3\n'
    path.write_text(v1)
    cfg = set_value(path, "notifications.quiet", True)
    assert cfg.instances[0].url == "http://127.0.0.1:4321"
    assert cfg.monitor.poll_interval == 3.0
    assert cfg.notifications.enabled is False and cfg.notifications.quiet is True
    data = tomllib.loads(path.read_text())
    assert data["version"] == 2 and "server" not in data
    assert backup_path(path).read_text() == v1


def test_merge_keeps_comments_and_merges_tables(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    merge_config(path, {"notifications": {"quiet": True}, "monitor": {"poll_interval": 2.0}})
    cfg = load_config(path)
    assert cfg.notifications.quiet and cfg.notifications.window == 30.0 and cfg.monitor.poll_interval == 2.0
    assert "# I like bubbles" in path.read_text()


def test_file_mode_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    os.chmod(path, 0o600)
    set_value(path, "notifications.quiet", True)
    assert path.stat().st_mode & 0o777 == 0o600


WRITER = textwrap.dedent(
    """\
    import sys
    from pathlib import Path
    from lmstudio_tray.core.config.store import update_config
    path = Path(sys.argv[1])
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        # a long value makes each write take a while, so kills land inside writes
        update_config(path, {"notifications.window": float(i % 2 + 1),
                             "instances.local.lms_host": "h" * 4000 + str(i)})
    """
)


def test_kill_9_during_writes_never_leaves_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    seen_windows: set[float] = set()
    for round_no in range(15):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + (round_no % 5) * 0.03)  # vary where in a write the kill lands
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        # The file is whole: it parses, validates and is either the original or a complete write.
        text = path.read_text()
        cfg = load_config(path)
        if text != USER_FILE:
            host = cfg.instances[0].lms_host or ""
            assert host.startswith("h" * 4000) and host[4000:].isdigit()
            seen_windows.add(cfg.notifications.window)
        assert "# I like bubbles" in text
        if backup_path(path).exists():
            load_config(backup_path(path))
    assert seen_windows, "no write finished in any round; the test proved nothing"


# ---- every released layout loads -------------------------------------------------------------------

SAMPLES = Path(__file__).parent / "config_samples"


def _sample(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_bytes((SAMPLES / name).read_bytes())
    return path


def test_every_layout_has_a_sample() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.toml")) == [
        "v1_full.toml", "v1_minimal.toml", "v2_profiles.toml", "v2_release.toml",
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("v1_minimal.toml", {"instances": [("local", "http://127.0.0.1:1234")], "poll": 1.0, "notify": True}),
        ("v1_full.toml", {"instances": [("desk", "http://192.168.1.20:1234")], "poll": 5.0, "notify": False}),
        ("v2_release.toml", {"instances": [("local", "http://127.0.0.1:1234"), ("gpu", "http://10.0.0.5:1234")],
                             "poll": 2.0, "notify": True}),
        ("v2_profiles.toml", {"instances": [("gpu", "http://10.0.0.5:1234")], "poll": 1.0, "notify": True}),
    ],
)
def test_sample_of_each_layout_loads_and_survives_a_change(
    tmp_path: Path, name: str, expected: dict[str, object]
) -> None:
    path = _sample(tmp_path, name)
    cfg = load_config(path)
    assert [(i.name, i.url) for i in cfg.instances] == expected["instances"]
    assert cfg.monitor.poll_interval == expected["poll"]
    assert cfg.notifications.enabled is expected["notify"]
    # a change made through the app rewrites old layouts in the current one and keeps everything else
    after = set_value(path, "logging.level", "debug")
    assert after.model_dump(exclude={"logging"}) == cfg.model_dump(exclude={"logging"})
    assert tomllib.loads(path.read_text())["version"] == 2
    assert backup_path(path).read_bytes() == (SAMPLES / name).read_bytes()


def test_v2_release_sample_keeps_its_meaning(tmp_path: Path) -> None:
    cfg = load_config(_sample(tmp_path, "v2_release.toml"))
    assert cfg.active_instance == "gpu" and cfg.instances[1].timeout == 5.0
    assert cfg.validation.policy["not_loaded"] is Policy.ENSURE
    assert cfg.notifications.quiet and cfg.notifications.categories["loading"] is False
    assert cfg.endpoint.port == 47900


def test_profiles_sample_applies_the_active_profile(tmp_path: Path) -> None:
    cfg = load_config(_sample(tmp_path, "v2_profiles.toml"))
    assert cfg.active_profile == "work" and cfg.active_instance == "gpu"
    assert cfg.validation.policy["jit"] is Policy.BLOCK
    assert sorted(cfg.profiles) == ["laptop", "work"]


# ---- export / import -------------------------------------------------------------------------------


def _cli(*args: str) -> int:
    from lmstudio_tray.cli import main

    return main(list(args))


@pytest.mark.parametrize("ext", ["toml", "json"])
@pytest.mark.parametrize("sample", ["v1_full.toml", "v2_release.toml", "v2_profiles.toml"])
def test_export_import_round_trip(tmp_path: Path, ext: str, sample: str) -> None:
    src = _sample(tmp_path, sample)
    exported = tmp_path / f"exported.{ext}"
    assert _cli("--config", str(src), "config", "export", str(exported)) == 0
    other = tmp_path / "other" / "config.toml"
    other.parent.mkdir()
    other.write_text('[[instances]]\nname = "x"\nurl = "http://127.0.0.1:9"\n')
    assert _cli("--config", str(other), "config", "import", str(exported)) == 0
    assert load_config(other) == load_config(src)
    again = tmp_path / f"again.{ext}"
    assert _cli("--config", str(other), "config", "export", str(again)) == 0
    strip = (lambda t: "\n".join(t.splitlines()[1:])) if ext == "toml" else (lambda t: t)  # the dated header
    assert strip(again.read_text()) == strip(exported.read_text())
    assert "x" in backup_path(other).read_text()  # the replaced settings are kept


def test_export_never_contains_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lmstudio_tray.core.support.secrets import open_store

    path = tmp_path / "config.toml"
    path.write_text('[[instances]]\nname = "gpu"\nurl = "http://me:hunter2@10.0.0.5:1234"\n')
    open_store().set("gpu", "sk-lm-supersecret")
    assert _cli("--config", str(path), "config", "export") == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "supersecret" not in out
    assert 'url = "http://10.0.0.5:1234"' in out
    from lmstudio_tray.core.config.store import _scrub

    assert _scrub({"team_profile": "https://x.example/team.toml?v=2&access_token=abc&sig=zz"}) == {
        "team_profile": "https://x.example/team.toml?v=2"
    }
    assert _scrub({"a": {"api_key": "k", "b": "keep"}}) == {"a": {"b": "keep"}}
    assert _cli("--config", str(path), "config", "export", "--format", "json") == 0
    assert "hunter2" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.toml", "[monitor]\npoll_interval = 0\n", "monitor.poll_interval = 0: Input should be greater than"),
        ("bad.toml", "[notifications]\nenabeld = false\n", "notifications.enabeld: unknown key"),
        ("bad.json", '{"validation": {"policy": {"jit": "sometimes"}}}', "validation.policy.jit = 'sometimes'"),
        ("bad.json", '{"profiles": {"w": {"monitor": {"retries": 99}}}}', "profiles.w.monitor.retries = 99"),
        ("bad.json", "[1, 2]", "the top level must be a table"),
        ("bad.toml", "a = = b", "not valid TOML"),
        ("bad.json", "{nope", "not valid JSON"),
        ("missing.toml", None, "cannot read it"),
    ],
)
@pytest.mark.parametrize("merge", [False, True])
def test_bad_import_changes_nothing_and_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | None, expected: str, merge: bool
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    before = path.read_bytes()
    bad = tmp_path / name
    if content is not None:
        bad.write_text(content)
    args = ["--config", str(path), "config", "import", str(bad)] + (["--merge"] if merge else [])
    assert _cli(*args) == 2
    err = capsys.readouterr().err
    assert expected in err and str(bad) in err and "Nothing was changed" in err
    assert path.read_bytes() == before
    assert not backup_path(path).exists()


def test_import_merge_keeps_comments_and_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    part = tmp_path / "part.json"
    part.write_text('{"notifications": {"quiet": true}, "validation": {"policy": {"jit": "warn"}}}')
    assert _cli("--config", str(path), "config", "import", str(part), "--merge") == 0
    cfg = load_config(path)
    assert cfg.notifications.quiet and cfg.notifications.window == 30.0
    assert cfg.validation.policy["jit"] is Policy.WARN
    assert "# I like bubbles" in path.read_text()
    assert backup_path(path).read_text() == USER_FILE


def test_config_set_unset_and_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USER_FILE)
    assert _cli("--config", str(path), "config", "set", "monitor.poll_interval", "2.5") == 0
    assert _cli("--config", str(path), "config", "set", "logging.level", "debug") == 0
    cfg = load_config(path)
    assert cfg.monitor.poll_interval == 2.5 and cfg.logging.level == "debug"
    before = path.read_bytes()
    assert _cli("--config", str(path), "config", "set", "monitor.poll_interval", "0") == 2
    assert "monitor.poll_interval = 0: Input should be greater than or equal to 0.1" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert _cli("--config", str(path), "config", "unset", "monitor.poll_interval") == 0
    assert load_config(path).monitor.poll_interval == 1.0
    capsys.readouterr()
    assert _cli("config", "explain", "validation.policy.jit") == 0
    out = capsys.readouterr().out
    assert "default: \"allow\"" in out and "allow, warn, block, ensure" in out and "JIT" in out
    assert _cli("config", "explain", "instances.local.url") == 0
    assert "instances[].url" in capsys.readouterr().out
    assert _cli("config", "explain", "monitor.poll_intervall") == 2
    assert "monitor.poll_interval" in capsys.readouterr().err  # a suggestion
