"""Broken team profiles: whatever the shared file holds, a member's start never fails because of it.

`load_team` either returns a profile or raises `TeamProfileError` naming the source; after one good read,
a broken update falls back to the last good copy with a warning; the shared file is never modified; and
the member's own config still loads with the broken profile configured.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.team_fetch import load_team
from lmstudio_tray.core.errors import TeamProfileError

GOOD = b'[team]\nname = "ml"\nlocked = ["notifications.quiet"]\n\n[[instances]]\nname = "gpu"\nurl = "http://10.0.0.7:1234"\n'
SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
garbage = st.one_of(
    st.binary(max_size=300),
    st.text(alphabet=st.sampled_from(list('[]{}=".,\n #abcmodelsteaminstances_-\'')), max_size=200).map(str.encode),
    st.sampled_from([
        b"[team]\nname = 5\n", b"[team]\nbusy_minutes = -1\n", b"team = 'x'\n", b"[models]\nallowed = 'all'\n",
        b"[[instances]]\nname = 'a b'\nurl = 'ftp://x'\n", b"instances = 5\n", b"[monitor]\npoll_intervall = 1\n",
        b"a = " + b"[" * 3000 + b"]" * 3000 + b"\n", b"\xff\xfe[team]\n", b"[models]\nrecommended = [{key = 1}]\n",
    ]),
)


@SETTINGS
@given(content=garbage)
def test_garbage_profile_fails_with_a_named_error(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    path = tmp_path_factory.mktemp("team") / "team.toml"
    path.write_bytes(content)
    try:
        load_team(str(path))
    except TeamProfileError as exc:
        assert str(path) in str(exc) and "unset team_profile" in str(exc)
    assert path.read_bytes() == content


@SETTINGS
@given(content=garbage)
def test_broken_update_falls_back_to_the_last_good_copy(tmp_path_factory: pytest.TempPathFactory,
                                                        content: bytes) -> None:
    path = tmp_path_factory.mktemp("team") / "team.toml"
    path.write_bytes(GOOD)
    assert load_team(str(path)).name == "ml"
    path.write_bytes(content)
    profile = load_team(str(path))
    if profile.from_cache:
        assert profile.warning and "last good copy" in profile.warning
        assert profile.shared_instances == ("gpu",)
    assert path.read_bytes() == content


def test_member_config_loads_with_a_broken_team_profile(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    team = tmp_path / "team.toml"
    team.write_bytes(b"[team\nname = ")
    config = tmp_path / "config.toml"
    config.write_text(f'team_profile = "{team}"\n[[instances]]\nname = "local"\nurl = "http://127.0.0.1:1234"\n')
    with caplog.at_level(logging.WARNING):
        cfg = load_config(config)
    assert [i.name for i in cfg.instances] == ["local"]
    assert any(str(team) in r.getMessage() and "not valid TOML" in r.getMessage() for r in caplog.records)
    assert team.read_bytes() == b"[team\nname = "
