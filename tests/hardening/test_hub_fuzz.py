"""The team hub's HTTP API fuzzed over a real socket, like the endpoint's (test_endpoint_fuzz.py).

Reports whose fields have any type, raw bodies under any content type, and requests built byte by byte with
abused headers (Host, lying or doubled Content-Length, chunked bodies, odd methods, paths and versions) and
good, unknown, revoked or malformed tokens. Whatever comes in, the hub answers with a status line, never a 5xx,
and every refusal is JSON `{"error"}` naming what was wrong (for a report: the field, e.g. `uses[2].model`). A
kept-alive connection still answers the next request right (no body is taken for a request), every report the hub
acknowledged is there afterwards, and its state loads again after a restart.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmstudio_tray.hub.limits import Limits
from lmstudio_tray.hub.members import MemberTokens
from lmstudio_tray.hub.server import MAX_TEXT, HubServer, HubSettings
from lmstudio_tray.hub.store import KEEP_SECONDS

# Modest counts: the file must stay well under a minute on a loaded 2-core machine.
EXAMPLES = 150
DEADLINE = 60.0  # socket timeout against a hang, not a speed bound
UNLIMITED = Limits(reports_per_second=1e9, burst=10**9, entries=10**9)  # the limits have their own tests
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@dataclass
class Hub:
    state: Path
    alice: str
    bob_revoked: str
    server: HubServer
    acked: dict[tuple[str, str], float] = field(default_factory=dict)  # (instance, model) -> smallest age sent

    @property
    def port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])

    def restart(self) -> None:
        self.server.stop()
        self.server = HubServer(HubSettings(state=self.state, port=0, limits=UNLIMITED, idle_timeout=1.0))
        self.server.start()

    def check_nothing_acknowledged_was_lost(self) -> None:
        """Every acknowledged use is served, then again from a restarted hub reading the state back."""
        for _ in range(2):
            answer = httpx.get(f"{self.server.url}/v1/uses", headers={"Authorization": f"Bearer {self.alice}"})
            assert answer.status_code == 200, answer.text
            served = {(u["instance"], u["model"]): u["age_seconds"] for u in answer.json()["uses"]
                      if u["member"] == "alice"}
            missing = set(self.acked) - set(served)
            assert not missing, f"acknowledged but lost: {sorted(missing)[:5]}"
            assert all(served[key] >= math.floor(age * 10) / 10 for key, age in self.acked.items())
            if self.acked:
                json.loads((self.state / "uses.json").read_text(encoding="utf-8"))  # the file is whole JSON
            self.restart()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    # module scope: hypothesis re-runs the test body many times and function fixtures are not reset
    state = tmp_path_factory.mktemp("hub")
    members = MemberTokens(state)
    alice, bob = members.add("alice"), members.add("bob")
    members.revoke("bob")
    server = HubServer(HubSettings(state=state, port=0, limits=UNLIMITED, idle_timeout=1.0))
    server.start()
    h = Hub(state, alice, bob, server)
    yield h
    h.server.stop()


def assert_readable(status: int, content_type: str | None, body: bytes, what: str) -> str:
    """The answer's error ('' for a success): a 4xx has a JSON error a person can act on; never a 5xx."""
    assert status < 500, f"{what}: HTTP {status}: {body[:300]!r}"
    if status < 400:
        return ""
    assert content_type == "application/json", f"{what}: {content_type}"
    error = json.loads(body)["error"]
    assert isinstance(error, str) and len(error) > 10, f"{what}: {error!r}"
    return error


# --- reports whose fields have any type -------------------------------------------------------------------

printable = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(str.isprintable)
anything: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.text(min_size=MAX_TEXT + 1),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
good_age = st.floats(min_value=0, max_value=KEEP_SECONDS - 3600)
valid_use = st.fixed_dictionaries({"instance": printable, "model": printable, "age_seconds": good_age})
use = st.one_of(
    valid_use,
    st.fixed_dictionaries({"instance": st.one_of(printable, anything), "model": st.one_of(printable, anything),
                           "age_seconds": st.one_of(good_age, anything)},
                          optional={"extra": anything}),
    anything)
report = st.one_of(st.fixed_dictionaries({"uses": st.lists(valid_use, min_size=1, max_size=4)}),
                   st.fixed_dictionaries({"uses": st.lists(use, max_size=4)}, optional={"more": anything}),
                   st.fixed_dictionaries({"uses": anything}), anything)


def _text_ok(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT and value.isprintable()


def first_problem(body: Any) -> str | None:
    """The field the hub must name for `body`, None when the report is valid (the hub's documented rules)."""
    items = body.get("uses") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return '"uses"'
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            return f"uses[{n}]"
        if not _text_ok(item.get("instance")):
            return f"uses[{n}].instance"
        if not _text_ok(item.get("model")):
            return f"uses[{n}].model"
        age = item.get("age_seconds")
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 <= age < 1e9:
            return f"uses[{n}].age_seconds"
    return None


@pytest.mark.timeout(600)
def test_reports_with_fields_of_any_type_are_stored_or_refused_naming_the_field(hub: Hub) -> None:
    client = httpx.Client(timeout=DEADLINE, headers={"Authorization": f"Bearer {hub.alice}"})

    @FUZZ
    @given(body=report, ctype=st.sampled_from(["application/json", "text/plain", "", "application/x-www-form"]))
    def run(body: Any, ctype: str) -> None:
        # json.dumps, not httpx's json=: NaN, Infinity and lone surrogates are what a broken member may send
        raw = json.dumps(body).encode()
        answer = client.post(f"{hub.server.url}/v1/uses", content=raw,
                             headers={"Content-Type": ctype} if ctype else {})
        what = f"POST /v1/uses {raw[:200]!r}"
        error = assert_readable(answer.status_code, answer.headers.get("content-type"), answer.content, what)
        problem = first_problem(body)
        if problem is None:
            kept = [item for item in body["uses"] if item["age_seconds"] <= KEEP_SECONDS]  # older: dropped
            assert answer.status_code == 200, what
            assert answer.json() == {"member": "alice", "stored": len(kept)}, what
            for item in kept:
                key = (item["instance"], item["model"])
                hub.acked[key] = min(float(item["age_seconds"]), hub.acked.get(key, math.inf))
        else:
            assert answer.status_code == 400 and problem in error, f"{what}: {answer.status_code} {error}"

    run()
    client.close()
    assert len(hub.acked) > 10, "the fuzzing reached valid reports too"
    hub.check_nothing_acknowledged_was_lost()


# --- raw bodies, content types, methods, paths and tokens -------------------------------------------------


@pytest.mark.timeout(600)
def test_raw_bodies_methods_and_tokens_are_answered_readably(hub: Hub) -> None:
    tokens = {"alice": hub.alice, "revoked": hub.bob_revoked, "unknown": "x" * 43, "none": None}
    client = httpx.Client(timeout=DEADLINE)

    @FUZZ
    @given(raw=st.one_of(st.binary(max_size=2048), st.sampled_from([b"{" * (64 * 1024 + 1), b"x" * 999_999])),
           method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
           path=st.sampled_from(["/v1/uses", "/v1/health", "/", "/v1/uses?x=1", "/v1/usesX", "/v2/uses"]),
           who=st.sampled_from(sorted(tokens)),
           ctype=st.sampled_from(["application/json", "text/plain", "multipart/form-data", ""]))
    def run(raw: bytes, method: str, path: str, who: str, ctype: str) -> None:
        headers = {"Content-Type": ctype} if ctype else {}
        if tokens[who]:
            headers["Authorization"] = f"Bearer {tokens[who]}"
        what = f"{method} {path} as {who}: {raw[:100]!r}"
        try:
            answer = client.request(method, f"{hub.server.url}{path}", content=raw, headers=headers)
        except httpx.HTTPError as exc:  # a dropped connection is a crash as far as a client knows
            raise AssertionError(f"{what}: {exc!r}") from exc
        error = assert_readable(answer.status_code, answer.headers.get("content-type"),
                                answer.content if method != "HEAD" else b'{"error": "(HEAD has no body)"}', what)
        bare = path.split("?")[0]
        if len(raw) > 64 * 1024:
            assert answer.status_code == 413, what
        elif bare == "/v1/uses" and method in ("GET", "POST"):
            expected = {"alice": (200, 400), "revoked": (403,), "unknown": (401,), "none": (401,)}[who]
            assert answer.status_code in expected, f"{what}: {answer.status_code} {error}"
            if who == "revoked":
                assert "'bob' was revoked" in error
        elif bare == "/v1/health" and method == "GET":
            assert answer.status_code == 200, what
        else:
            assert answer.status_code in (404, 405), what

    run()
    client.close()
    hub.check_nothing_acknowledged_was_lost()


# --- requests built byte by byte ----------------------------------------------------------------------------

FRAMINGS = ["none", "exact", "short+close", "extra", "two-lengths", "negative", "unicode-digit", "chunked",
            "chunked+length", "huge"]


def framed(framing: str, body: bytes) -> tuple[list[bytes], bytes]:
    """(headers, the bytes after them) for a body sent with `framing`."""
    n = len(body)
    return {
        "none": ([], b""),
        "exact": ([b"Content-Length: %d" % n], body),
        "short+close": ([b"Content-Length: %d" % (n + 10)], body),
        "extra": ([b"Content-Length: %d" % max(0, n - 3)], body),
        "two-lengths": ([b"Content-Length: %d" % n, b"Content-Length: %d" % (n + 1)], body),
        "negative": ([b"Content-Length: -%d" % n], body),
        "unicode-digit": ([b"Content-Length: \xb2"], body),
        "chunked": ([b"Transfer-Encoding: chunked"], b"%x\r\n%s\r\n0\r\n\r\n" % (n, body)),
        "chunked+length": ([b"Transfer-Encoding: chunked", b"Content-Length: %d" % n], body),
        "huge": ([b"Content-Length: 99999999999999999999"], body),
    }[framing]


header_text = st.binary(min_size=0, max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)


@pytest.mark.timeout(600)
def test_header_abuse_never_breaks_the_connection_or_frames_a_body_as_a_request(hub: Hub) -> None:
    valid = json.dumps({"uses": [{"instance": "gpu", "model": "raw/socket", "age_seconds": 5}]}).encode()
    tokens = [hub.alice.encode(), hub.bob_revoked.encode(), b"unknown", b"", b"\xff\xfe", b"x" * 5000]

    @FUZZ
    @given(method=st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"BREW", b"G\xe9T"]),
           path=st.one_of(st.sampled_from([b"/v1/uses", b"/v1/health", b"*", b"http://hub/v1/uses", b"/%00",
                                           b"/v1/../v1/uses", b"/" + b"a" * 3000]),
                          st.binary(min_size=1, max_size=30).filter(lambda b: not set(b) & set(b" \r\n"))),
           version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.\xb2", b"FOO/1.1"]),
           hosts=st.lists(st.one_of(st.sampled_from([b"127.0.0.1", b"", b"evil.example:80"]), header_text),
                          max_size=2),
           framing=st.sampled_from(FRAMINGS),
           body=st.one_of(st.just(valid), st.binary(max_size=300)),
           auth=st.one_of(st.none(), st.sampled_from(tokens).map(lambda t: b"Bearer " + t),
                          header_text.map(lambda t: b"Basic " + t)),
           junk=st.lists(st.tuples(st.binary(min_size=1, max_size=20).filter(lambda b: not set(b) & set(b":\r\n ")),
                                   header_text), max_size=3),
           many=st.sampled_from([0, 0, 0, 150]))
    def run(method: bytes, path: bytes, version: bytes, hosts: list[bytes], framing: str, body: bytes,
            auth: bytes | None, junk: list[tuple[bytes, bytes]], many: int) -> None:
        lengths, payload = framed(framing, body)
        lines = [method + b" " + path + b" " + version] + [b"Host: " + h for h in hosts]
        lines += ([b"Authorization: " + auth] if auth is not None else []) + lengths
        lines += [name + b": " + value for name, value in junk] + [b"X-Many-%d: y" % n for n in range(many)]
        request = b"\r\n".join(lines) + b"\r\n\r\n" + payload
        what = repr(request[:300])
        with socket.create_connection(("127.0.0.1", hub.port), timeout=DEADLINE) as sock:
            sock.sendall(request)
            if framing == "short+close":
                sock.shutdown(socket.SHUT_WR)
            response = http.client.HTTPResponse(sock, method="HEAD" if method == b"HEAD" else "GET")
            try:
                response.begin()  # no status line, or a closed connection, raises
                content = response.read()
            except (http.client.HTTPException, OSError) as exc:
                raise AssertionError(f"{what}: no readable answer: {exc!r}") from exc
            assert_readable(response.status, response.getheader("Content-Type"),
                            content if method != b"HEAD" else b'{"error": "(HEAD has no body)"}', what)
            if response.status == 200 and method == b"POST" and auth == b"Bearer " + hub.alice.encode():
                hub.acked[("gpu", "raw/socket")] = min(5.0, hub.acked.get(("gpu", "raw/socket"), math.inf))
            if response.will_close or framing in ("extra", "short+close"):
                return  # ("extra": the bytes past Content-Length are the client's next request, by HTTP's rules)
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: hub\r\n\r\n")
            after = http.client.HTTPResponse(sock, method="GET")
            try:
                after.begin()
                assert (after.status, json.loads(after.read())) == (200, {"ok": True}), f"after {what}"
            except (http.client.HTTPException, OSError) as exc:
                raise AssertionError(f"the connection kept alive after {what} did not answer: {exc!r}") from exc

    run()
    hub.check_nothing_acknowledged_was_lost()
