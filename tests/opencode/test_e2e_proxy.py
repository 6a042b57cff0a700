"""With HTTP(S)_PROXY set, the plugin still talks to the tray's endpoint directly: its bearer token must
never reach a proxy. Bun's fetch sends even 127.0.0.1 through the proxy, so the plugin does not use it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.opencode.test_e2e import QWEN, _e2e
from tests.tinyproxy import start_tinyproxy

pytestmark = pytest.mark.opencode


def test_the_plugin_reaches_the_endpoint_directly_when_a_proxy_is_set(
    opencode_bin: Path, tmp_path: Path, emulator_factory: object
) -> None:
    proxy = start_tinyproxy(tmp_path / "proxy")
    stack = _e2e(opencode_bin, tmp_path, emulator_factory(jit=False))  # type: ignore[operator]
    e2e = next(stack)
    try:
        via = f"http://{proxy.address}"
        env = {k: v for k, v in e2e.env.items() if k.lower() != "no_proxy"}
        env.update(HTTP_PROXY=via, HTTPS_PROXY=via, http_proxy=via, https_proxy=via)
        run = subprocess.run([str(e2e.opencode), "run", "-m", f"lmstudio/{QWEN}", "say hi"], cwd=e2e.project,
                             env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]

        endpoint = json.loads((Path(e2e.env["XDG_STATE_HOME"]) / "lmstudio-tray" / "endpoint.json").read_text())
        carried = [urlsplit(target) for _, target in proxy.carried()]
        # the proxy was in use: OpenCode's own requests to LM Studio went through it
        assert any(t.port == urlsplit(e2e.emu.api_url).port for t in carried), proxy.carried()
        # ... but not one request to the endpoint, whose every request carries the token
        assert not [t for t in carried if t.port == urlsplit(endpoint["url"]).port], proxy.carried()
        metrics = httpx.get(endpoint["url"] + "/v1/metrics", timeout=10, trust_env=False,
                            headers={"authorization": f"Bearer {endpoint['token']}"}).json()
        assert metrics["validate"]["count"] >= 1  # the plugin did ask, directly
    finally:
        stack.close()
        proxy.proc.terminate()
        proxy.proc.wait(10)
