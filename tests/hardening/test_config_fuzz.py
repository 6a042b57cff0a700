"""Bad config files: corrupt TOML, wrong types, unknown keys, huge files, broken encodings.

Whatever the file holds, loading it either works or raises `ConfigError` whose problems name the key
(or the line) and what to do, and the file is left byte-for-byte as it was. The CLI shows the same
problems without a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.schema import Config
from lmstudio_tray.core.errors import ConfigError

SETTINGS = settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
SECTIONS = {name: type(getattr(Config(), name)) for name in ("monitor", "validation", "notifications", "endpoint",
                                                               "logging", "actions")}


def load_keeping(path: Path, content: bytes) -> Config | ConfigError:
    """Load `content` from `path` (in a directory of its own); assert the file is unchanged whatever happened."""
    path = path.parent / "cfg" / path.name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    try:
        result: Config | ConfigError = load_config(path)
    except ConfigError as exc:
        result = exc
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert str(path) in str(exc)
    assert path.read_bytes() == content, "a config that failed to load must stay as the user wrote it"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temp or backup files appear"
    return result


toml_scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True),
    st.text(max_size=20), st.datetimes(),
)
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)), max_leaves=8)


@SETTINGS
@given(raw=st.binary(max_size=400))
def test_random_bytes(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    load_keeping(tmp_path_factory.mktemp("c") / "config.toml", raw)


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from(list('[]{}=".,\n #abc1_-\'tf')), max_size=200))
def test_toml_like_garbage(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    load_keeping(tmp_path_factory.mktemp("c") / "config.toml", text.encode())


@SETTINGS
@given(data=st.data())
def test_wrong_types_and_unknown_keys_are_named(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    section = data.draw(st.sampled_from(sorted(SECTIONS)))
    known = sorted(SECTIONS[section].model_fields)
    key = data.draw(st.one_of(st.sampled_from(known), st.from_regex(r"[a-z_]{1,12}", fullmatch=True)))
    value = data.draw(toml_values)
    doc = tomlkit.document()
    doc[section] = {key: value}
    result = load_keeping(tmp_path_factory.mktemp("c") / "config.toml", tomlkit.dumps(doc).encode())
    if isinstance(result, ConfigError):
        text = " ".join(result.problems)
        assert f"{section}.{key}" in text or f"{section} " in text or "not valid TOML" in text, text
        if key not in known:
            assert "unknown key" in text, text


def test_wrong_type_message_names_key_value_and_fix(tmp_path: Path) -> None:
    err = load_keeping(tmp_path / "config.toml", b'[monitor]\npoll_interval = "fast"\n')
    assert isinstance(err, ConfigError)
    assert err.problems == ["monitor.poll_interval = 'fast': Input should be a valid number, unable to parse "
                            "string as a number"]


@pytest.mark.parametrize(("content", "named"), [
    (b"\xff\xfe[monitor]\n", "UTF-8"),  # not UTF-8 (a UTF-16 BOM from a Windows editor)
    (b"[monitor]\npoll_interval = 1\n[monitor]\n", "monitor"),  # duplicate table
    (b"version = 1\n[server]\npoll_seconds = 'soon'\n", "poll_seconds"),  # bad value in the old layout
    (b"version = 1\nserver = 'x'\n", ""),
    (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", ""),  # nesting deeper than any parser's recursion
    (b"[[instances]]\nname = 'x'\nurl = 'http://h:1'\n" + b"\x00", "TOML"),
])
def test_nasty_files(tmp_path: Path, content: bytes, named: str) -> None:
    result = load_keeping(tmp_path / "config.toml", content)
    assert isinstance(result, ConfigError), result
    assert named in " ".join(result.problems)


def test_huge_files_load_or_fail_clearly(tmp_path: Path) -> None:
    instances = "".join(f'[[instances]]\nname = "i{i}"\nurl = "http://127.0.0.1:{1000 + i}"\n' for i in range(20_000))
    cfg = load_keeping(tmp_path / "config.toml", instances.encode())  # ~1 MB of valid config
    assert isinstance(cfg, Config) and len(cfg.instances) == 20_000
    junk = b"# " + b"x" * 20_000_000 + b"\n[monitor]\nbogus = 1\n"  # 20 MB comment, then a typo
    err = load_keeping(tmp_path / "config.toml", junk)
    assert isinstance(err, ConfigError) and "monitor.bogus: unknown key" in err.problems[0]


@pytest.mark.parametrize("command", [["status"], ["serve", "--port", "0"], ["config", "show"]])
def test_cli_reports_problems_without_a_traceback(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "config.toml"
    content = b'[monitor]\npoll_intervall = 2\n[notifications]\nenabled = "yes please"\n'
    path.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "lmstudio_tray", "--config", str(path), *command],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "monitor.poll_intervall: unknown key" in proc.stderr
    assert "notifications.enabled = 'yes please'" in proc.stderr
    assert path.read_bytes() == content

