"""`POST /v1/validate` takes a fast path past FastAPI's routing; it must answer exactly as the route does."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from lmstudio_tray.api.app import create_app
from tests.api.conftest import Api, api, api_factory  # noqa: F401  (fixtures)

QWEN = "qwen/qwen3-4b-2507"


async def test_fast_path_answers_like_the_route(api: Api) -> None:  # noqa: F811
    api.emu.load(QWEN, context_length=4096)
    await api.refreshed()
    body = {"model": QWEN, "base_url": api.url + "/v1", "context_limit": 8192, "session_id": "s1"}
    fast = await api.client.post("/v1/validate", json=body)
    # the route itself, reached without the middleware: FastAPI's own answer for the same state
    guard = create_app(api.core, token="t", port=80)
    route_app: Any = guard.app
    route_app.user_middleware.clear()
    route_app.middleware_stack = None
    with TestClient(route_app, base_url="http://127.0.0.1:80") as tc:
        slow = tc.post("/v1/validate", json=body)
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == "application/json"
    f, s = fast.json(), slow.json()
    assert f == s
    assert f["category"] == "context_too_small" and f["facts"]["loaded_context_length"] == 4096


async def test_bad_bodies_still_get_the_readable_422(api: Api) -> None:  # noqa: F811
    r = await api.client.post("/v1/validate", json={"base_url": api.url, "context_limit": -1})
    assert r.status_code == 422
    msg = r.json()["error"]["message"]
    assert "model" in msg and "context_limit" in msg
    r = await api.client.post("/v1/validate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = await api.client.post("/v1/validate", json={"model": QWEN, "base_url": "ftp://x"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("base_url")


async def test_fast_path_stays_behind_the_guard(api_factory: Callable[..., Api]) -> None:  # noqa: F811
    ep = api_factory()
    r = await ep.client.post("/v1/validate", json={"model": QWEN}, headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = await ep.client.post("/v1/validate", json={"model": QWEN}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    metrics = (await ep.client.get("/v1/metrics")).json()
    assert metrics["validate"]["count"] == 0
    assert json.dumps(metrics)  # still served by the normal routes


async def test_a_body_not_typed_as_json_is_answered_like_the_route_does(api: Api) -> None:  # noqa: F811
    # curl -d without a Content-Type sends form-encoding; FastAPI refuses it, so must the fast path
    r = await api.client.post("/v1/validate", content=json.dumps({"model": QWEN}).encode(),
                              headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422
    r = await api.client.post("/v1/validate", content=json.dumps({"model": QWEN}).encode(),
                              headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200
