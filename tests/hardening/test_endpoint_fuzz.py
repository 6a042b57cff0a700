"""Every endpoint route fuzzed from its own OpenAPI schema (schemathesis), over real HTTP.

Valid and invalid bodies, with and without the token: the endpoint never answers 5xx, never drops the
connection, and every refusal is a JSON error `{"error": {"kind", "message"}}` a plugin can show.
The route list comes from the running app, so routes added later are fuzzed too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from lmstudio_tray.emulator import Emulator
from tests.hardening.helpers import Endpoint, start_endpoint

PUBLIC = {"/v1/health"}
# Modest counts: the whole file must stay well under a minute on a loaded 2-core machine.
EXAMPLES: dict[Any, int] = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 8}
EXAMPLES_WITHOUT_TOKEN = 3


@pytest.fixture
def endpoint(emulator_factory: Any) -> Iterator[Endpoint]:
    emu: Emulator = emulator_factory()
    emu.load("qwen/qwen3-4b-2507")
    ep = start_endpoint(
        emu,
        # short timeouts: fuzzed base_urls become ad-hoc instances pointing nowhere, and fuzzed ensures
        # must not wait two minutes for a load
        monitor={"request_timeout": 0.5, "retries": 0},
        validation={"ensure_timeout": 2.0, "hook_timeout_ms": 200},
    )
    yield ep
    ep.thread.stop()


def _schema(ep: Endpoint) -> Any:
    assert ep.server.app is not None
    raw = ep.server.app.app.openapi()  # type: ignore[attr-defined]
    return schemathesis.openapi.from_dict(raw)


def _operations(ep: Endpoint) -> list[Any]:
    ops = [result.ok() for result in _schema(ep).get_all_operations()]
    assert len(ops) >= 15, [op.path for op in ops]  # sanity: the schema really lists the routes
    return ops


def _content_type(response: Any) -> str:
    # schemathesis' Response keeps each header as a list of values
    for name, value in response.headers.items():
        if name.lower() == "content-type":
            return str(value[0] if isinstance(value, list) else value)
    return ""


def _assert_readable(response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what}: HTTP {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400 and _content_type(response).startswith("text/html"):
        # the dashboard's pages are for a person in a browser: readable HTML saying what to do
        assert what.split()[1].startswith("/dashboard") and "lmstudio-tray dashboard" in response.text, what
        return
    if response.status_code >= 400:
        assert _content_type(response).startswith("application/json"), what
        body = response.json()
        err = body.get("error")
        assert isinstance(err, dict), f"{what}: {body}"
        assert isinstance(err.get("kind"), str) and err["kind"], f"{what}: {body}"
        assert isinstance(err.get("message"), str) and len(err["message"]) > 5, f"{what}: {body}"


def _fuzz(ep: Endpoint, mode: Any, examples: int, token: str | None) -> dict[str, set[int]]:
    session = requests.Session()
    headers = {"authorization": f"Bearer {token}"} if token else {}
    seen: dict[str, set[int]] = {}
    for op in _operations(ep):
        raw = op.definition.raw
        if mode is GenerationMode.NEGATIVE and not raw.get("requestBody") and not raw.get("parameters"):
            continue  # nothing to make invalid (GET routes without parameters)

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            what = f"{case.method} {case.path} body={str(getattr(case, 'body', None))[:200]}"
            try:
                response = case.call(base_url=ep.url, session=session, headers=headers, timeout=30)
            except OSError as exc:  # a dropped connection is a crash as far as a client knows
                raise AssertionError(f"{what}: connection failed: {exc}") from exc
            _assert_readable(response, what)
            seen.setdefault(case.path, set()).add(response.status_code)
            if token is None and case.path not in PUBLIC:
                assert response.status_code == 401, what

        run()
    # still up and still right after all of it
    with ep.client() as c:
        assert c.get("/v1/health").status_code == 200
        assert c.get("/v1/status").json()["instances"][0]["state"] in ("ready", "idle", "loading")
    return seen


@pytest.mark.timeout(300)
def test_valid_bodies_with_the_token_never_fail_on_the_server(endpoint: Endpoint) -> None:
    seen = _fuzz(endpoint, GenerationMode.POSITIVE, EXAMPLES[GenerationMode.POSITIVE], endpoint.token)
    # the fuzzing reached the routes themselves, not only the guard
    assert seen["/v1/validate"] & {200}, seen
    assert seen["/v1/status"] == {200}, seen


@pytest.mark.timeout(300)
def test_invalid_bodies_with_the_token_get_readable_errors(endpoint: Endpoint) -> None:
    seen = _fuzz(endpoint, GenerationMode.NEGATIVE, EXAMPLES[GenerationMode.NEGATIVE], endpoint.token)
    assert 422 in seen["/v1/validate"], seen


@pytest.mark.timeout(300)
def test_without_the_token_everything_but_health_is_refused(endpoint: Endpoint) -> None:
    seen = _fuzz(endpoint, GenerationMode.POSITIVE, EXAMPLES_WITHOUT_TOKEN, None)
    seen_neg = _fuzz(endpoint, GenerationMode.NEGATIVE, EXAMPLES_WITHOUT_TOKEN, None)
    assert seen["/v1/health"] == {200}
    assert all(codes == {401} for path, codes in seen_neg.items() if path not in PUBLIC), seen_neg


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=4096), path=st.sampled_from(["/v1/validate", "/v1/events", "/v1/tools/load"]),
       ctype=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
def test_raw_garbage_bodies_are_refused_readably(shared_endpoint: Endpoint, raw: bytes, path: str,
                                                 ctype: str) -> None:
    with shared_endpoint.client(**({"content-type": ctype} if ctype else {})) as client:
        r = client.post(path, content=raw)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert err["kind"] and err["message"]


@pytest.fixture(scope="module")
def shared_endpoint() -> Iterator[Endpoint]:
    # module scope: hypothesis re-runs the test body many times and function fixtures are not reset
    from lmstudio_tray.emulator import EmulatorSettings

    emu = Emulator(EmulatorSettings(load_seconds=0.05)).start()
    ep = start_endpoint(emu, monitor={"request_timeout": 0.5, "retries": 0})
    yield ep
    ep.thread.stop()
    emu.close()
