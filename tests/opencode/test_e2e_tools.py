"""End to end: the lmstudio_* tools called by an agent in the real `opencode run`, through the plugin, against
`lmstudio-tray serve` and the emulator.

A tool must not unload the model its own session runs on: the next turn of that session would be blocked
before the agent ever read the tool's answer. Between the plugin and the endpoint sits a recording proxy
(the plugin finds it through its own endpoint.json), so the tests also see exactly what the plugin sends.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.opencode.test_e2e import GEMMA, QWEN, Env, _e2e

pytestmark = pytest.mark.opencode


@dataclass
class EndpointProxy:
    """Forwards the plugin's calls to the real endpoint and records (path, JSON body) of each; `delays`: seconds to
    hold the answer to a path (a tray slow to answer it, as on a busy machine)."""

    target: str
    calls: list[tuple[str, Any]] = field(default_factory=list)
    delays: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path: str) -> list[Any]:
        with self.lock:
            return [body for p, body in self.calls if p == path]


def _handler(proxy: EndpointProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            with proxy.lock:
                proxy.calls.append((self.path, json.loads(raw) if raw else None))
            # the endpoint checks Host against its own address: httpx sets it from the target URL
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
            r = httpx.request(self.command, proxy.target + self.path, content=raw or None, headers=headers,
                              timeout=180)
            time.sleep(proxy.delays.get(self.path, 0))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the plugin stopped waiting
                self.send_response(r.status_code)
                self.send_header("content-type", r.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        do_GET = do_POST = _forward

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def _proxied(env: Env, delays: dict[str, float] | None = None) -> Iterator[tuple[Env, EndpointProxy]]:
    real = json.loads((Path(env.env["XDG_STATE_HOME"]) / "lmstudio-tray" / "endpoint.json").read_text())
    proxy = EndpointProxy(real["url"], delays=delays or {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    file = env.root / "proxy-endpoint.json"
    file.write_text(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}", "token": real["token"]}))
    try:
        # only OpenCode reads the proxy's file; `serve` already wrote and keeps its own
        yield replace(env, env={**env.env, "LMSTUDIO_TRAY_ENDPOINT_FILE": str(file)}), proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def proxied(opencode_bin: Path, tmp_path: Path, emulator_factory: Any) -> Iterator[tuple[Env, EndpointProxy]]:
    with contextlib.contextmanager(_e2e)(opencode_bin, tmp_path, emulator_factory(jit=False)) as env, \
            _proxied(env) as pair:
        yield pair


def _loaded_keys(env: Env) -> list[str]:
    return sorted(i["modelKey"] for i in env.emu.loaded())


def _tool_results(env: Env) -> list[str]:
    """The tool messages OpenCode sent back to the model in its later requests."""
    return [json.dumps(m.get("content")) for r in env.emu.requests
            if r.path.endswith("/chat/completions") and isinstance(r.json, dict)
            for m in r.json.get("messages", []) if isinstance(m, dict) and m.get("role") == "tool"]


def test_switch_tool_keeps_the_sessions_model_and_the_next_turn_runs(
    proxied: tuple[Env, EndpointProxy],
) -> None:
    env, proxy = proxied
    proc = env.run(f'CALLTOOL:lmstudio_switch_model {{"model": "{GEMMA}"}}', timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the session's model stayed, the one asked for is loaded and ready for when the person switches
    assert _loaded_keys(env) == sorted([GEMMA, QWEN])
    # the agent's next turn ran and read the tool's answer: what was kept, why, and how the person switches
    results = [t for t in _tool_results(env) if GEMMA in t]
    assert results, _tool_results(env)
    assert any(f"Kept {QWEN} loaded" in t and "/models" in t for t in results), results
    assert "tool result:" in proc.stdout
    # the plugin named the session and its model
    (body,) = proxy.bodies("/v1/tools/switch")
    assert body["session_model"] == QWEN and body["session_id"].startswith("ses"), body


def test_unload_all_tool_keeps_the_sessions_model(proxied: tuple[Env, EndpointProxy]) -> None:
    env, _proxy = proxied
    env.emu.load(GEMMA, context_length=4096)
    proc = env.run('CALLTOOL:lmstudio_unload_model {"all": true}', timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _loaded_keys(env) == [QWEN]
    results = _tool_results(env)
    assert any(GEMMA in t and f"Kept {QWEN} loaded" in t and "/models" in t for t in results), results
    assert "tool result:" in proc.stdout


def test_load_tool_passes_its_options_and_the_answer_says_what_it_did(proxied: tuple[Env, EndpointProxy]) -> None:
    env, proxy = proxied
    proc = env.run(f'CALLTOOL:lmstudio_load_model {{"model": "{GEMMA}", "context_length": 8192, "ttl": 900}}',
                   timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (body,) = proxy.bodies("/v1/tools/load")
    assert (body["model"], body["context_length"], body["ttl"]) == (GEMMA, 8192, 900), body
    [inst] = [i for i in env.emu.state.engine.loaded() if i.spec.key == GEMMA]
    assert (inst.context_length, inst.ttl) == (8192, 900)
    # the agent read the answer: loaded, and that no memory estimate was made (the tray here has no `lms`)
    results = [t for t in _tool_results(env) if GEMMA in t]
    assert any("loaded in" in t and "No memory estimate" in t for t in results), _tool_results(env)


def test_the_plugin_sends_only_fields_the_endpoint_uses(proxied: tuple[Env, EndpointProxy]) -> None:
    env, proxy = proxied
    proc = env.run("say hi")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sent: dict[str, set[str]] = {}
    for path, body in proxy.calls:
        if isinstance(body, dict):
            sent.setdefault(path.split("?")[0], set()).update(body)
    assert sent["/v1/validate"] == {"model", "base_url", "context_limit", "agent", "session_id"}
    assert sent["/v1/transform/system"] == {"model", "base_url"}
    assert sent["/v1/transform/messages"] == {"model", "base_url", "context_limit", "messages"}
    assert sent["/v1/text-complete"] == {"model", "base_url", "text"}
    # ... and each is a field the endpoint declares (it ignores unknown ones, so a typo would go unnoticed)
    real = json.loads((Path(env.env["XDG_STATE_HOME"]) / "lmstudio-tray" / "endpoint.json").read_text())
    spec = httpx.get(real["url"] + "/openapi.json", headers={"authorization": f"Bearer {real['token']}"}).json()
    for path, keys in sent.items():
        ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert keys <= set(spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"]), path


def test_opencode_has_the_models_command_the_answers_name(opencode_bin: Path) -> None:
    """The tools' answers (and the verdicts) send the person to `/models` to switch the session's model: the
    pinned OpenCode registers that slash command (its TUI command list: `slashName:"models"`)."""
    with opencode_bin.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as binary:
        assert binary.find(b'slashName:"models"') != -1


def test_the_advice_tools_answer_through_a_real_opencode_run(proxied: tuple[Env, EndpointProxy]) -> None:
    """lmstudio_benchmark (on the session's own model), lmstudio_compare, lmstudio_stats and lmstudio_recommend, and
    the search's filters, each called by the agent; each answer reaches the model's next turn. `instance` goes through
    to the endpoint."""
    env, proxy = proxied
    before = _loaded_keys(env)
    answers: dict[str, str] = {}
    for name, args, expect in (
        ("lmstudio_benchmark", {}, f"Benchmarked {QWEN} on local (quick suite v1, 3 runs"),
        ("lmstudio_compare", {"models": [QWEN, GEMMA]}, "tok/s generated"),
        ("lmstudio_stats", {"since": "24h", "instance": "local"}, f"- bench {QWEN}: "),
        ("lmstudio_recommend", {"task": "coding agent"}, "For 'coding agent' (needs: llm, tool use):"),
        # a model fills every argument it is shown: a `false` filter is "not given", or it would hide vision models
        ("lmstudio_search_models", {"query": "qwen", "type": "llm", "vision": False}, "- qwen/qwen2.5-vl-7b: "),
    ):
        proc = env.run(f"CALLTOOL:{name} {json.dumps(args)}", timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results = [t for t in _tool_results(env) if expect in t]
        assert results, (name, _tool_results(env)[-1:])
        answers[name] = results[-1]
    assert _loaded_keys(env) == before  # the bench put the instance back
    (bench,) = proxy.bodies("/v1/tools/benchmark")
    assert bench["session_model"] == QWEN and "model" not in bench, bench  # the session's model, by default
    (stats,) = proxy.bodies("/v1/tools/stats")
    assert stats == {"base_url": stats["base_url"], "since": "24h", "instance": "local"}, stats
    assert "kept in the analytics store" in answers["lmstudio_benchmark"]
    (search,) = proxy.bodies("/v1/tools/search")
    assert search["type"] == "llm" and "vision" not in search, search
