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

from lmstudio_tray.core.config import ConfigError, Policy, load_config
from lmstudio_tray.core.config_store import (
    DELETE,
    backup_path,
    merge_config,
    set_value,
    unset_value,
    update_config,
)

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
    from lmstudio_tray.core.config_store import update_config
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
