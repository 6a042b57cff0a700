"""`lmstudio-tray token set|delete` while lmstudio-tray runs: the running one reads the token again and uses it at
once, instead of keeping the one it read at start until a restart (what the auth verdict and notification tell a
person to run must fix what they see)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.api.conftest import Api
from tests.hardening.helpers import child_env, start_serve, wait_for, write_config

TOKEN = "sk-lm-abcdEFGH:abcdefghijABCDEFGHij"


def token_command(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lmstudio_tray", "token", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=120)


def state_of(endpoint: dict[str, Any]) -> str:
    answer = httpx.get(endpoint["url"] + "/v1/status", headers={"authorization": f"Bearer {endpoint['token']}"},
                       timeout=10, trust_env=False)
    return str(answer.json()["instances"][0]["state"])


def test_a_token_set_while_serve_runs_is_used_at_once(tmp_path: Path, emulator_factory: Any) -> None:
    emu = emulator_factory(auth_token=TOKEN)
    # a keyring both processes share (a file), as the desktop's Secret Service is on a person's machine
    env = {**child_env(), "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring"}
    serve = start_serve(tmp_path, env, write_config(tmp_path / "config.toml", emu.api_url))
    try:
        endpoint = serve.wait_ready()
        wait_for(lambda: state_of(endpoint) == "auth_failed", 60)
        done = token_command(env, "set", "local", stdin=TOKEN + "\n")
        assert done.returncode == 0, done.stderr
        assert "The running lmstudio-tray uses it from now on." in done.stdout
        wait_for(lambda: state_of(endpoint) == "idle", 60)
        gone = token_command(env, "delete", "local")
        assert gone.returncode == 0 and "uses it from now on" in gone.stdout, gone.stderr
        wait_for(lambda: state_of(endpoint) == "auth_failed", 60)
        other = token_command(env, "set", "elsewhere", stdin="x\n")
        assert "monitors no instance 'elsewhere'; it reads the token when one is added" in other.stdout
    finally:
        serve.stop()
    alone = token_command(env, "set", "local", stdin=TOKEN + "\n")  # none runs: nothing to tell, nothing said
    assert alone.returncode == 0 and "running" not in alone.stdout + alone.stderr


async def test_the_reload_reads_the_store_and_names_no_token_in_the_answer(api: Api) -> None:
    api.core.secrets.set("local", "sk-secret")
    answer = await api.client.post("/v1/tokens/reload", json={"name": "local"})
    assert answer.status_code == 200 and answer.json() == {"name": "local", "used": True}
    assert api.core.monitor.instance("local").client.token == "sk-secret"  # read from the store, not sent
    bad = await api.client.post("/v1/tokens/reload", json={"name": ""})
    assert bad.status_code == 422 and "name" in bad.json()["error"]["message"]
