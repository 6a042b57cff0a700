"""The router against a pool of emulated LM Studio servers: placement, balancing, failover, streaming."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx

from lmstudio_tray.core.config.schema import parse_config
from tests.routing.conftest import GEMMA, NOMIC, QWEN, Pool, chat

INSTANCE = "x-lmstudio-tray-instance"


def sse_events(raw: bytes) -> list[Any]:
    """SSE data events, with the per-response ids and timestamps blanked so two answers compare."""
    events: list[Any] = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        data = block[len("data: "):]
        if data == "[DONE]":
            events.append(data)
            continue
        event = json.loads(data)
        event.pop("id", None)
        event.pop("created", None)
        events.append(event)
    return events


# ---- placement ---------------------------------------------------------------------------------------


async def test_requests_go_to_the_instance_that_has_the_model_loaded(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN], "b": [GEMMA], "c": [NOMIC]})
    async with pool.client() as c:
        for _ in range(3):
            r = await c.post(pool.base() + "/chat/completions", json=chat(QWEN))
            assert r.status_code == 200, r.text
            assert r.headers[INSTANCE] == "a"
            reply = r.json()["choices"][0]["message"]["content"]
            assert "Hello from the LM Studio emulator (qwen/qwen3-4b-2507)" in reply
        r = await c.post(pool.base() + "/chat/completions", json=chat(GEMMA))
        assert r.status_code == 200 and r.headers[INSTANCE] == "b"
        r = await c.post(pool.base() + "/completions", json={"model": GEMMA, "prompt": "once upon"})
        assert r.status_code == 200 and r.headers[INSTANCE] == "b"
        assert r.json()["object"] == "text_completion"
        r = await c.post(pool.base() + "/embeddings", json={"model": NOMIC, "input": ["a", "b"]})
        assert r.status_code == 200 and r.headers[INSTANCE] == "c"
        assert len(r.json()["data"]) == 2
    assert pool.served("a") == 3 and pool.served("b") == 1 and pool.served("c") == 0
    assert pool.served("b", "/v1/completions") == 1 and pool.served("c", "/v1/embeddings") == 1


async def test_models_lists_what_the_pool_has_loaded(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN], "b": [QWEN, GEMMA]})
    for emu in pool.emus.values():
        emu.clear_requests()  # the monitor's first poll checks /v1/models for JIT
    async with pool.client() as c:
        r = await c.get(pool.base() + "/models")
    assert r.status_code == 200
    assert sorted(m["id"] for m in r.json()["data"]) == sorted([QWEN, GEMMA])
    # answered from the status cache: no instance was asked for it
    assert all(e.request_counts().get("GET /v1/models", 0) == 0 for e in pool.emus.values())


async def test_each_instance_gets_its_own_token_and_never_the_endpoint_token(pool_factory: Any) -> None:
    pool: Pool = pool_factory(
        {"a": [QWEN], "b": [GEMMA]},
        emu_settings={"a": {"auth_token": "token-of-a"}, "b": {"auth_token": "token-of-b"}},
        tokens={"a": "token-of-a", "b": "token-of-b"},
    )
    async with pool.client() as c:
        ra = await c.post(pool.base() + "/chat/completions", json=chat(QWEN))
        rb = await c.post(pool.base() + "/chat/completions", json=chat(GEMMA))
    assert ra.status_code == 200 and rb.status_code == 200, (ra.text, rb.text)
    for name, token in (("a", "token-of-a"), ("b", "token-of-b")):
        sent = [r for r in pool.emus[name].requests if r.path == "/v1/chat/completions"]
        assert [r.headers.get("authorization") for r in sent] == [f"Bearer {token}"]
        assert pool.server.token not in json.dumps([r.to_json() for r in pool.emus[name].requests])


async def test_an_instance_error_comes_back_unchanged(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN]})
    direct = pool.emus["a"].api_url
    async with pool.client() as c:
        routed = await c.post(pool.base() + "/chat/completions", json={"model": QWEN, "messages": []})
    async with httpx.AsyncClient() as d:
        straight = await d.post(direct + "/v1/chat/completions", json={"model": QWEN, "messages": []})
    assert routed.status_code == straight.status_code == 400
    assert routed.json() == straight.json()


# ---- balancing ---------------------------------------------------------------------------------------


async def test_concurrent_streams_spread_by_least_outstanding(pool_factory: Any) -> None:
    slow = {"token_delay": 0.05}
    pool: Pool = pool_factory({"a": [QWEN], "b": [QWEN], "c": [QWEN]},
                              emu_settings={"a": slow, "b": slow, "c": slow})
    async with pool.client() as c:

        async def stream() -> str:
            async with c.stream("POST", pool.base() + "/chat/completions", json=chat(QWEN, stream=True)) as r:
                assert r.status_code == 200
                async for _ in r.aiter_raw():
                    pass
                return r.headers[INSTANCE]

        first = [asyncio.ensure_future(stream()) for _ in range(6)]
        placed = Counter(await asyncio.gather(*first))
        assert placed == {"a": 2, "b": 2, "c": 2}

        # two streams busy on a and one on b: the next request goes to c, then b
        busy = [asyncio.ensure_future(stream()) for _ in range(3)]
        await asyncio.sleep(0.3)
        assert sum(u.outstanding for u in pool.router.usage.values()) == 3
        r = await c.post(pool.base() + "/chat/completions", json=chat(QWEN))
        outstanding = {n: u.outstanding for n, u in pool.router.usage.items()}
        await asyncio.gather(*busy)
        # the endpoint counts a stream done once its last chunk is written, a moment after the client read it
        for _ in range(50):
            if all(u.outstanding == 0 for u in pool.router.usage.values()):
                break
            await asyncio.sleep(0.1)
    # whichever instance had nothing in flight got it
    assert r.status_code == 200
    assert outstanding[r.headers[INSTANCE]] == 0 or min(outstanding.values()) >= 1
    assert all(u.outstanding == 0 for u in pool.router.usage.values())


# ---- failover ----------------------------------------------------------------------------------------


async def test_failover_when_the_preferred_instance_is_stopped(pool_factory: Any) -> None:
    # slow polling: the monitor does not notice the stop during the test, only the router's own failure does
    pool: Pool = pool_factory({"a": [QWEN], "b": [QWEN, GEMMA]}, emu_settings={"b": {"token_delay": 0.05}},
                              poll_interval=60)
    async with pool.client() as c:
        # keep b busy (gemma is only on b) so a is the preferred instance for qwen, then stop a's server
        async def long_stream() -> int:
            async with c.stream("POST", pool.base() + "/chat/completions", json=chat(GEMMA, stream=True)) as r:
                async for _ in r.aiter_raw():
                    pass
                return r.status_code

        busy = asyncio.ensure_future(long_stream())
        await asyncio.sleep(0.2)
        assert pool.router.usage["b"].outstanding == 1
        pool.emus["a"].stop_server()
        r = await c.post(pool.base() + "/chat/completions", json=chat(QWEN, "still there?"))
        assert r.status_code == 200, r.text
        assert r.headers[INSTANCE] == "b"
        assert "still there?" in r.json()["choices"][0]["message"]["content"]
        assert await busy == 200
    a = pool.router.usage["a"]
    assert a.failovers == 1 and a.failures and "connection refused" in a.failures[-1][1]
    assert a.outstanding == 0


async def test_requests_keep_succeeding_while_an_instance_dies_mid_run(pool_factory: Any) -> None:
    # no polls during the run (they would reorder the instances by latency): only the test refreshes
    pool: Pool = pool_factory({"a": [QWEN], "b": [QWEN], "c": [GEMMA]}, poll_interval=60, fast_window=0)
    statuses: list[int] = []
    last = killed = ""
    async with pool.client() as c:
        for i in range(20):
            if i in (5, 12):
                killed = last  # the instance the router prefers right now
                pool.emus[killed].kill()
            if i == 10:
                pool.emus[killed].start()  # relaunched on the same port, the model loaded again...
                pool.emus[killed].load(QWEN)
                await pool.refreshed()  # ...and seen by the monitor's next poll
            r = await c.post(pool.base() + "/chat/completions", json=chat(QWEN, f"request {i}"))
            statuses.append(r.status_code)
            assert r.status_code == 200, (i, r.text)
            assert f"request {i}" in r.json()["choices"][0]["message"]["content"]
            last = r.headers[INSTANCE]
    assert statuses == [200] * 20
    a, b = pool.router.usage["a"], pool.router.usage["b"]
    assert a.served + b.served == 20
    assert a.failovers + b.failovers == 2  # each death cost one connection attempt, no request


async def test_every_member_down_is_a_clear_error(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN], "b": [QWEN]}, poll_interval=60)
    pool.emus["a"].kill()
    pool.emus["b"].kill()
    async with pool.client() as c:
        r = await c.post(pool.base() + "/chat/completions", json=chat(QWEN))
        assert r.status_code == 502
        err = r.json()["error"]
        assert err["kind"] == "upstream_unreachable" and "a (" in err["message"] and "b (" in err["message"]
        # once the monitor has seen them offline, the answer says so without trying them
        await pool.refreshed()
        r = await c.post(pool.base() + "/chat/completions", json=chat(QWEN))
    assert r.status_code == 503
    assert r.json()["error"]["kind"] == "pool_unavailable"
    assert "a: offline" in r.json()["error"]["message"]


# ---- streaming ---------------------------------------------------------------------------------------


async def test_streaming_passes_through_unchanged_and_as_it_happens(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN]}, emu_settings={"a": {"token_delay": 0.1}})
    body = chat(QWEN, "tell me a story about routers", stream=True, stream_options={"include_usage": True})
    async with httpx.AsyncClient(timeout=30) as d, d.stream(
        "POST", pool.emus["a"].api_url + "/v1/chat/completions", json=body
    ) as r:
        direct_type = r.headers["content-type"]
        direct = b"".join([chunk async for chunk in r.aiter_raw()])
    upstream = pool.emus["a"].state.engine.instance(QWEN)
    assert upstream is not None
    async with pool.client() as c:
        serving_at_first_chunk: int | None = None
        chunks: list[bytes] = []
        async with c.stream("POST", pool.base() + "/chat/completions", json=body) as r:
            assert r.status_code == 200
            routed_type = r.headers["content-type"]
            async for chunk in r.aiter_raw():
                if serving_at_first_chunk is None:
                    serving_at_first_chunk = upstream.active
                chunks.append(chunk)
    routed = b"".join(chunks)
    assert routed_type == direct_type
    assert sse_events(routed) == sse_events(direct)
    assert sse_events(routed)[-1] == "[DONE]" and "usage" in sse_events(routed)[-2]
    # tokens arrive while they are generated, not all at the end: LM Studio was still generating this
    # answer when its first chunk reached the client
    assert serving_at_first_chunk == 1
    assert len(chunks) > 5


async def test_client_hanging_up_mid_stream_frees_the_instance(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN]}, emu_settings={"a": {"token_delay": 0.2}})
    async with pool.client() as c:
        async with c.stream("POST", pool.base() + "/chat/completions", json=chat(QWEN, stream=True)) as r:
            async for _ in r.aiter_raw():
                break
        for _ in range(50):
            if pool.router.usage["a"].outstanding == 0:
                break
            await asyncio.sleep(0.1)
    assert pool.router.usage["a"].outstanding == 0


# ---- bad inputs --------------------------------------------------------------------------------------


async def test_unknown_pool_is_404_naming_the_pools(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN]}, extra_pools=[{"name": "gpu", "instances": ["a"]}])
    async with pool.client() as c:
        for path in ("/v1/route/nope/v1/chat/completions", "/v1/route/nope/v1/models"):
            r = await c.request("POST" if "chat" in path else "GET", path, json=chat(QWEN))
            assert r.status_code == 404
            err = r.json()["error"]
            assert err["kind"] == "unknown_pool"
            assert "'nope'" in err["message"] and "gpu" in err["message"] and "team" in err["message"]


async def test_model_loaded_nowhere_says_where_to_load_it(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN], "b": []})
    async with pool.client() as c:
        r = await c.post(pool.base() + "/chat/completions", json=chat(GEMMA))
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["kind"] == "model_not_loaded"
    assert GEMMA in err["message"] and "lmstudio-tray load" in err["message"]
    assert "a: qwen/qwen3-4b-2507" in err["message"] and "b: nothing loaded" in err["message"]
    assert all(e.request_counts().get("POST /v1/chat/completions", 0) == 0 for e in pool.emus.values())


async def test_missing_or_wrong_token_is_401(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN]})
    for token in ("", "wrong"):
        async with pool.client(token=token) as c:
            r = await c.post(pool.base() + "/chat/completions", json=chat(QWEN))
            assert r.status_code == 401
            assert r.json()["error"]["kind"] == "unauthorized"
            assert (await c.get(pool.base() + "/models")).status_code == 401
    assert pool.served("a") == 0


async def test_malformed_requests_get_readable_errors(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN]})
    async with pool.client() as c:
        cases = [
            ("POST", "/chat/completions", b"{not json", 400, "invalid_request", "not valid JSON"),
            ("POST", "/chat/completions", b"[1, 2]", 400, "invalid_request", "JSON object"),
            ("POST", "/chat/completions", json.dumps({"messages": []}).encode(), 400, "invalid_request", "model"),
            ("GET", "/chat/completions", b"", 405, "method_not_allowed", "POST"),
            ("POST", "/images/generations", b"{}", 404, "not_found", "v1/chat/completions"),
        ]
        for method, path, content, status, kind, words in cases:
            r = await c.request(method, pool.base() + path, content=content,
                                headers={"content-type": "application/json"})
            assert r.status_code == status, (path, r.text)
            err = r.json()["error"]
            assert err["kind"] == kind and words in err["message"], (path, err)
        r = await c.post("/v1/route/team/chat/completions", json=chat(QWEN))  # forgot the /v1
        assert r.status_code == 404 and "/v1/route/team/v1/chat/completions" in r.json()["error"]["message"]
    assert pool.served("a") == 0


# ---- connections -------------------------------------------------------------------------------------


async def test_an_idle_connection_the_instance_closed_is_not_a_failure(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN]})
    async with pool.client() as c:
        assert (await c.post(pool.base() + "/chat/completions", json=chat(QWEN))).status_code == 200
        await asyncio.sleep(6)  # LM Studio (like Node) drops idle keep-alive connections after 5 s
        r = await c.post(pool.base() + "/chat/completions", json=chat(QWEN, "again"))
        assert r.status_code == 200 and "again" in r.text
        stats = (await c.get("/v1/route/")).json()
    assert stats["instances"]["a"]["failovers"] == 0 and stats["instances"]["a"]["served"] == 2
    assert stats["pools"] == {"team": ["a"]}
    assert stats["overhead_ms"]["count"] == 2 and stats["overhead_ms"]["p50"] >= 0


async def test_an_instance_dying_mid_stream_is_not_passed_off_as_a_complete_answer(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN]}, emu_settings={"a": {"token_delay": 0.1}})
    async with pool.client() as c:
        received = b""
        try:
            async with c.stream("POST", pool.base() + "/chat/completions", json=chat(QWEN, stream=True)) as r:
                async for chunk in r.aiter_raw():
                    received += chunk
                    if received.count(b"data: ") == 3:
                        pool.emus["a"].kill()
            broke = False
        except httpx.HTTPError:
            broke = True
    # either the transfer errors out or it ends without OpenAI's end marker: never a fake clean finish
    assert broke or b"[DONE]" not in received
    assert received.count(b"data: ") >= 3
    assert pool.router.usage["a"].outstanding == 0


async def test_a_large_body_comes_back_byte_for_byte(pool_factory: Any) -> None:
    # ~2.7 MB of embeddings: more than the router buffers before it stops reading the instance
    pool: Pool = pool_factory({"a": [NOMIC]})
    body = {"model": NOMIC, "input": [f"sentence number {i}" for i in range(300)]}
    async with httpx.AsyncClient(timeout=60) as d:
        direct = await d.post(pool.emus["a"].api_url + "/v1/embeddings", json=body)
    async with pool.client() as c:
        routed = await c.post(pool.base() + "/embeddings", json=body)
    assert routed.status_code == direct.status_code == 200
    assert len(routed.content) > 2_000_000
    assert routed.content == direct.content
    assert routed.headers["content-type"] == direct.headers["content-type"]


async def test_pools_changed_in_the_config_apply_without_a_restart(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN], "b": [QWEN]})
    async with pool.client() as c:
        r = await c.post("/v1/route/solo/v1/chat/completions", json=chat(QWEN))
        assert r.status_code == 404 and r.json()["error"]["kind"] == "unknown_pool"
        data = pool.core.config.model_dump(mode="json", exclude_none=True)
        data["pools"].append({"name": "solo", "instances": ["b"]})
        await pool.on_core(pool.core.apply_config(parse_config(data)))
        r = await c.post("/v1/route/solo/v1/chat/completions", json=chat(QWEN))
    assert r.status_code == 200 and r.headers[INSTANCE] == "b"
