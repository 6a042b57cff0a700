"""Team profile layering: defaults < team < user, locked keys, and falling back to the last good copy."""

from __future__ import annotations

import http.server
import logging
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmstudio_tray.core.config import loader, team, team_fetch
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.errors import TeamProfileError

PROFILE = """
[team]
name = "ml-team"
locked = ["validation.policy.not_loaded", "monitor.poll_interval"]
busy_minutes = 3

[models]
allowed = ["qwen/qwen3-4b-2507"]
recommended = [{ key = "qwen/qwen3-4b-2507", context_length = 32768 }]

[[instances]]
name = "gpu-box"
url = "http://10.0.0.7:1234"

[monitor]
poll_interval = 2.0

[notifications]
quiet = true
window = 30

[validation.policy]
not_loaded = "ensure"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_merge_layers_order_and_locks() -> None:
    defaults = {"monitor": {"poll_interval": 1.0, "retries": 1}, "instances": [{"name": "local", "url": "u0"}]}
    team_layer = {"monitor": {"poll_interval": 2.0}, "notifications": {"quiet": True},
                  "instances": [{"name": "gpu", "url": "u1", "timeout": 5}]}
    user = {"monitor": {"poll_interval": 0.5, "retries": 3}, "notifications": {"quiet": False},
            "instances": [{"name": "gpu", "timeout": 9}, {"name": "mine", "url": "u2"}]}
    merged = team.merge_layers(defaults, team_layer, user, ["monitor.poll_interval", "logging.level"])
    assert merged["monitor"] == {"poll_interval": 2.0, "retries": 3}  # locked: the team's; the rest: user's
    assert merged["notifications"] == {"quiet": False}
    assert merged["instances"] == [{"name": "local", "url": "u0"}, {"name": "gpu", "url": "u1", "timeout": 9},
                                   {"name": "mine", "url": "u2"}]
    assert "logging" not in merged  # locked but set by nobody: stays at the default
    assert team.merge_layers({}, {}, {"logging": {"level": "debug"}}, ["logging.level"]) == {"logging": {}}


def test_config_with_a_team_profile(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    profile = write(tmp_path / "share" / "team.toml", PROFILE)
    cfg = write(tmp_path / "config.toml", f'team_profile = "{profile}"\n[notifications]\nwindow = 90\n'
                "[monitor]\npoll_interval = 0.5\n[validation.policy]\nnot_loaded = \"block\"\n")
    teams = loader.TeamProfiles()
    with caplog.at_level(logging.WARNING):
        config = load_config(cfg, teams)
    assert [i.name for i in config.instances] == ["local", "gpu-box"]  # own default kept, shared added
    assert config.notifications.quiet is True  # team default
    assert config.notifications.window == 90  # the user's own value wins where not locked
    assert config.monitor.poll_interval == 2.0  # locked
    assert config.validation.policy["not_loaded"].value == "ensure"  # locked
    assert "monitor.poll_interval is locked by team profile 'ml-team'" in caplog.text
    current = teams.current({"team_profile": str(profile)})
    assert current is not None and current.allows("qwen/qwen3-4b-2507") and not current.allows("other")
    assert current.context_for("qwen/qwen3-4b-2507") == 32768
    assert current.shared_instances == ("gpu-box",)


def test_environment_beats_the_config_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = write(tmp_path / "a.toml", '[[instances]]\nname = "from-a"\nurl = "http://10.0.0.1:1234"\n')
    b = write(tmp_path / "b.toml", '[[instances]]\nname = "from-b"\nurl = "http://10.0.0.2:1234"\n')
    cfg = write(tmp_path / "config.toml", f'team_profile = "{a}"\n')
    monkeypatch.setenv(team.ENV, str(b))
    assert [i.name for i in load_config(cfg).instances] == ["local", "from-b"]
    # no config file at all: the variable alone brings the team layer
    assert [i.name for i in load_config(tmp_path / "missing.toml").instances] == ["local", "from-b"]


def test_invalid_profile_falls_back_to_the_last_good_copy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    profile = write(tmp_path / "team.toml", PROFILE)
    cfg = write(tmp_path / "config.toml", f'team_profile = "{profile}"\n')
    assert load_config(cfg).notifications.quiet is True
    for broken in ("[team\nname = 1", '[notifications]\nquiet = "very"\n', "[team]\nbusy_minutes = -1\n",
                   '[team]\nname = "x"\n[mystery]\nkey = 1\n'):
        write(profile, broken)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            config = load_config(cfg)
        assert config.notifications.quiet is True and [i.name for i in config.instances] == ["local", "gpu-box"]
        assert "using the last good copy" in caplog.text, broken
    profile.unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_config(cfg).monitor.poll_interval == 2.0
    assert "cannot read" in caplog.text and "last good copy" in caplog.text


def test_unusable_profile_without_a_copy_never_stops_a_start(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    cfg = write(tmp_path / "config.toml", f'team_profile = "{tmp_path / "nowhere.toml"}"\n'
                "[notifications]\nquiet = true\n")
    teams = loader.TeamProfiles()
    with caplog.at_level(logging.WARNING):
        config = load_config(cfg, teams)
    assert config.notifications.quiet is True and [i.name for i in config.instances] == ["local"]
    assert "no good copy" in caplog.text


# ---- over HTTPS --------------------------------------------------------------------------------------


@pytest.fixture
def https_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A real HTTPS server on 127.0.0.1 with a self-signed certificate the client is told to trust."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()


def test_https_profile_cached_and_used_when_the_server_is_gone(
    https_server: tuple[str, dict[str, bytes]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base, files = https_server
    url = f"{base}/team.toml"
    files["/team.toml"] = PROFILE.encode()
    profile = team_fetch.load_team(url)
    assert profile.name == "ml-team" and not profile.from_cache
    assert team_fetch.cache_file(url).read_text() == PROFILE
    assert oct(team_fetch.cache_file(url).stat().st_mode & 0o777) == "0o600"

    files["/team.toml"] = b"not = [valid"
    with caplog.at_level(logging.WARNING):
        again = team_fetch.load_team(url, refresh_seconds=0)
    assert again.from_cache and again.warning and "not valid TOML" in again.warning
    del files["/team.toml"]
    again = team_fetch.load_team(url, refresh_seconds=0)
    assert again.from_cache and again.warning and "HTTP 404" in again.warning
    # a fresh copy is reused without asking the server at all
    assert not team_fetch.load_team(url).from_cache


def test_plain_http_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TeamProfileError) as err:
        team_fetch.load_team("http://127.0.0.1:9/team.toml")
    assert "https:// only" in str(err.value)
