"""LM Studio HTTP client: one place that knows the three API generations and their quirks.

Every failure becomes an `LMStudioError` with one `FailureKind`; nothing else escapes. Versions are
detected by the body, never the status: LM Studio answers unknown routes with HTTP 200 and an
`{"error": "Unexpected endpoint or method..."}` body.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import quote

from lmstudio_tray.core.errors import ConnectError, HTTPError, LMStudioError, MissingRoute, RequestTimeout
from lmstudio_tray.core.lmstudio import http1
from lmstudio_tray.core.lmstudio.load_options import LoadOptions
from lmstudio_tray.core.models import ApiFlavor, FailureKind, LoadedInstance, ModelInfo, ModelType

UNKNOWN_ROUTE_PREFIX = "Unexpected endpoint or method"


class _UnknownRoute(Exception):
    """The server does not have this route (older LM Studio): try the next API generation."""


@dataclass(frozen=True)
class Listing:
    """One model listing: the models with their loaded copies, the API generation that answered, and what it revealed
    about JIT loading (None: nothing)."""

    models: tuple[ModelInfo, ...]
    api: ApiFlavor
    jit: bool | None  # what the listing itself reveals about JIT; None when it cannot tell


@dataclass(frozen=True)
class LoadResponse:
    """REST v1 load: the instance, and the configuration LM Studio says it applied (`load_config`; None
    where it does not say, e.g. the llama.cpp knobs of an MLX model)."""

    instance_id: str
    seconds: float | None
    context_length: int | None
    type: str | None = None  # llm | embedding
    eval_batch_size: int | None = None
    flash_attention: bool | None = None
    num_experts: int | None = None
    offload_kv_cache_to_gpu: bool | None = None


class DownloadStatus(str, Enum):
    """A download job's status as LM Studio reports it."""
    DOWNLOADING = "downloading"
    PAUSED = "paused"  # paused in LM Studio (there is no REST route to pause or resume)
    COMPLETED = "completed"
    FAILED = "failed"
    ALREADY_DOWNLOADED = "already_downloaded"

    @property
    def finished(self) -> bool:
        """No more progress will come: completed, failed or already downloaded."""
        return self in (DownloadStatus.COMPLETED, DownloadStatus.FAILED, DownloadStatus.ALREADY_DOWNLOADED)


@dataclass(frozen=True)
class DownloadJob:
    """A REST v1 download job (or one run by `lms get`, `via_lms`); `job_id` is None for already_downloaded."""

    job_id: str | None
    status: DownloadStatus
    total_bytes: int | None = None
    downloaded_bytes: int | None = None
    bytes_per_second: float | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    estimated_completion: datetime | None = None
    via_lms: bool = False
    error: str | None = None  # why it failed, when LM Studio (or `lms get`) says

    @property
    def fraction(self) -> float | None:
        """How much is downloaded, 0..1; None while LM Studio has not said how big the download is."""
        if self.status in (DownloadStatus.COMPLETED, DownloadStatus.ALREADY_DOWNLOADED):
            return 1.0
        if not self.total_bytes or self.downloaded_bytes is None:
            return None
        return min(1.0, self.downloaded_bytes / self.total_bytes)


class LMStudioClient:
    """The client of one LM Studio server, over `http1`: model listings from the newest API generation the server has,
    load and unload over REST v1, and the load-progress stream.

    It sends the instance's API token and turns every failure into an `LMStudioError`. Its connections belong to the
    event loop that opened them.
    """

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.calls = 0  # HTTP requests sent: the cost figure the cache is measured by
        self.api: ApiFlavor | None = None  # remembered after the first successful listing
        self._origin, self._prefix = http1.split_url(self.base_url)
        self._http = http1.Pool(connect_timeout=timeout, max_idle=4, idle_expiry=30.0)

    async def aclose(self) -> None:
        """Close the client's idle connections."""
        await self._http.aclose()

    def use_token(self, token: str | None) -> None:
        """Send `token` (None: none) from the next request on: a token stored or deleted while running."""
        self.token = token

    # ---- low level ---------------------------------------------------------------------------------

    def _encode(self, method: str, path: str, json_body: Any) -> http1.Request:
        headers = [("Accept", "application/json"), ("User-Agent", "lmstudio-tray")]
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        body = b""
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.append(("Content-Type", "application/json"))
        return http1.encode_request(method, self._prefix + path, self._origin, headers, body)

    async def _request(
        self, method: str, path: str, *, json_body: Any = None, timeout: float | None = None
    ) -> Any:
        self.calls += 1
        limit = self.timeout if timeout is None else timeout
        try:
            request = self._encode(method, path, json_body)
        except ValueError as exc:  # e.g. a line break in the token; the message never contains its value
            raise LMStudioError(FailureKind.AUTH_FAILED, f"cannot send {method} {path}: {exc}") from None
        try:
            resp = await self._http.request(self._origin, request, timeout=limit, connect_timeout=limit)
        except ConnectError as exc:
            raise LMStudioError(FailureKind.OFFLINE, f"cannot connect to {self.base_url} ({exc.message})") from None
        except RequestTimeout:
            raise LMStudioError(
                FailureKind.OFFLINE, f"{self.base_url} did not answer {method} {path} in time"
            ) from None
        except HTTPError as exc:
            raise LMStudioError(
                FailureKind.SERVER_ERROR, f"{self.base_url} dropped the connection ({exc.message})"
            ) from None
        return self._decode(resp, method, path)

    def _decode(self, resp: http1.Response, method: str, path: str) -> Any:
        try:
            body = json.loads(resp.content)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly nested JSON
            body = None
        status = resp.status
        if status == 407 or (status >= 500 and body is None):
            proxied = self._through_proxy(status)
            if proxied is not None:
                raise proxied
        if status in (401, 403):
            raise LMStudioError(
                FailureKind.AUTH_FAILED,
                _error_message(body) or f"{self.base_url} refused the API token (HTTP {status})",
                status=status,
            )
        if status >= 500:
            raise LMStudioError(
                FailureKind.SERVER_ERROR,
                _error_message(body) or f"LM Studio answered HTTP {status} to {method} {path}",
                status=status,
            )
        if body is None:
            raise LMStudioError(
                FailureKind.BAD_RESPONSE, f"{method} {path} did not return JSON (HTTP {status})", status=status
            )
        if isinstance(body, dict) and "error" in body:
            message = _error_message(body) or "unknown error"
            if isinstance(body["error"], str) and body["error"].startswith(UNKNOWN_ROUTE_PREFIX):
                raise _UnknownRoute(message)
            if status == 200:
                # 200 with an error body that is not the unknown-route fallback: the server is confused.
                raise LMStudioError(FailureKind.SERVER_ERROR, message, status=200)
            raise LMStudioError(FailureKind.SERVER_ERROR, message, status=status)
        if status >= 400:
            raise LMStudioError(FailureKind.SERVER_ERROR, f"HTTP {status} from {method} {path}", status=status)
        return body

    def _through_proxy(self, status: int) -> LMStudioError | None:
        """The proxy's own refusal (credentials, or it cannot reach LM Studio), said as such; None when the
        request did not go through a proxy."""
        proxy = self._http.proxy_for(self._origin)
        if proxy is None:
            return None
        direct = f"add {self._origin.host} to NO_PROXY to connect directly"
        if status == 407:
            return LMStudioError(FailureKind.OFFLINE, f"the proxy {proxy.url} asks for credentials (HTTP 407): put "
                                 f"user:password@ into its URL in HTTP_PROXY/HTTPS_PROXY/ALL_PROXY, or {direct}",
                                 status=status)
        return LMStudioError(FailureKind.OFFLINE, f"the proxy {proxy.url} could not reach {self.base_url} (HTTP "
                             f"{status}); if LM Studio runs on this machine, {direct}", status=status)

    # ---- probes and listings -----------------------------------------------------------------------

    async def greeting(self) -> bool:
        """Whether the server answers `GET /lmstudio-greeting` as LM Studio (the check `lms` makes); False on any
        failure."""
        try:
            body = await self._request("GET", "/lmstudio-greeting", timeout=min(self.timeout, 1.0))
        except (LMStudioError, _UnknownRoute):
            return False
        return isinstance(body, dict) and body.get("lmstudio") is True

    async def lms_status(self) -> str | None:
        """LM Studio's version from `GET /lms-status` (`{package, version}`, answered by LM Studio's internal API
        server); None on any failure or another answer."""
        try:
            body = await self._request("GET", "/lms-status", timeout=min(self.timeout, 3.0))
        except (LMStudioError, _UnknownRoute):
            return None
        version = body.get("version") if isinstance(body, dict) and "error" not in body else None
        return version if isinstance(version, str) and version else None

    async def runtime(self, model: str) -> tuple[str, str] | None:
        """The inference runtime serving `model` (name, version), as REST v0's chat completion reports it: one
        token generated. None where the server has no REST v0 (LM Studio before 0.3.6) or names no runtime;
        LMStudioError when the server fails."""
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}
        try:
            answer = await self._request("POST", "/api/v0/chat/completions", json_body=body)
        except _UnknownRoute:
            return None
        runtime = answer.get("runtime") if isinstance(answer, dict) else None
        if not isinstance(runtime, dict):
            return None
        name, version = runtime.get("name"), runtime.get("version")
        return (name, version) if isinstance(name, str) and isinstance(version, str) and version else None

    async def list_models(self) -> Listing:
        """Models with their loaded instances, from the newest API the server has."""
        order = [ApiFlavor.REST_V1, ApiFlavor.REST_V0, ApiFlavor.OPENAI]
        if self.api is not None:  # start with what worked last time, fall back if the server changed
            order.remove(self.api)
            order.insert(0, self.api)
        last_error: LMStudioError | None = None
        for flavor in order:
            try:
                listing = await self._list(flavor)
            except _UnknownRoute:
                continue
            except LMStudioError as exc:
                if exc.kind in (FailureKind.OFFLINE, FailureKind.AUTH_FAILED):
                    raise
                last_error = exc
                continue
            self.api = flavor
            return listing
        if last_error is not None:
            raise last_error
        raise LMStudioError(FailureKind.BAD_RESPONSE, f"{self.base_url} answers no known LM Studio model listing")

    async def _list(self, flavor: ApiFlavor) -> Listing:
        if flavor is ApiFlavor.REST_V1:
            body = await self._request("GET", "/api/v1/models")
            return Listing(parse_v1_models(body), flavor, None)
        if flavor is ApiFlavor.REST_V0:
            body = await self._request("GET", "/api/v0/models")
            models = parse_v0_models(body)
            # JIT on lists every downloaded model; seeing an unloaded one proves it.
            jit = True if any(not m.loaded for m in models) else None
            return Listing(models, flavor, jit)
        ids = await self.openai_model_ids()
        models = tuple(_group_openai_ids(ids))
        return Listing(models, flavor, None)

    async def openai_model_ids(self) -> list[str]:
        """The model ids `GET /v1/models` lists (the loaded copies; with JIT loading on, the downloaded models too).
        LMStudioError when that fails."""
        body = await self._request("GET", "/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise LMStudioError(FailureKind.BAD_RESPONSE, "GET /v1/models returned no `data` list")
        return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]

    # ---- actions -----------------------------------------------------------------------------------

    async def load(
        self,
        model: str,
        *,
        context_length: int | None = None,
        timeout: float = 600.0,
        options: LoadOptions | None = None,
    ) -> LoadResponse:
        """REST v1 load; blocks for the whole load. `options` may set what the REST route documents (context
        length, eval batch size, flash attention, experts, KV cache on the GPU) and `ttl`; GPU offload,
        parallel and an identifier need `lms load` (UnsupportedLoadOptions, before anything is sent)."""
        opts = options or LoadOptions()
        opts.check_rest()
        body: dict[str, Any] = {"model": model, **opts.rest_body(), "echo_load_config": True}
        if context_length and "context_length" not in body:
            body["context_length"] = context_length
        try:
            resp = await self._request("POST", "/api/v1/models/load", json_body=body, timeout=timeout)
        except _UnknownRoute:
            raise MissingRoute(
                "this LM Studio has no REST load API (added in 0.4.0); update LM Studio or install `lms`"
            ) from None
        except LMStudioError as exc:
            if "cancelled" not in exc.message:
                raise
            # cancelled in LM Studio (its window, `lms`): its error says so in words, the only sign there is
            raise LMStudioError(exc.kind, exc.message, status=exc.status, cancelled=True) from None
        if not isinstance(resp, dict) or not isinstance(resp.get("instance_id"), str):
            raise LMStudioError(FailureKind.BAD_RESPONSE, "load answered without an instance_id")
        cfg = resp.get("load_config")
        config: dict[str, Any] = cfg if isinstance(cfg, dict) else {}
        ctx = config.get("context_length")
        seconds = resp.get("load_time_seconds")
        return LoadResponse(
            resp["instance_id"],
            float(seconds) if isinstance(seconds, (int, float)) else None,
            int(ctx) if isinstance(ctx, int) else body.get("context_length"),
            type=_str(resp.get("type")),
            eval_batch_size=_int(config.get("eval_batch_size")),
            flash_attention=_bool(config.get("flash_attention")),
            num_experts=_int(config.get("num_experts")),
            offload_kv_cache_to_gpu=_bool(config.get("offload_kv_cache_to_gpu")),
        )

    async def unload(self, instance_id: str) -> None:
        """Unload one loaded copy (`instance_id`) through `POST /api/v1/models/unload`. LMStudioError when that fails or
        the server has no REST unload API."""
        try:
            await self._request("POST", "/api/v1/models/unload", json_body={"instance_id": instance_id})
        except _UnknownRoute:
            raise MissingRoute(
                "this LM Studio has no REST unload API (added in 0.4.0); update LM Studio or install `lms`"
            ) from None

    async def download(self, model: str, *, quantization: str | None = None) -> DownloadJob:
        """Start downloading `model` (a catalog id such as `ibm/granite-4-micro`, or a Hugging Face URL with an
        optional `quantization`); returns the job, or status ALREADY_DOWNLOADED without a job id. LM Studio
        before 0.4.0 raises MissingRoute: use `lms get` there."""
        body: dict[str, Any] = {"model": model}
        if quantization:
            body["quantization"] = quantization
        try:
            resp = await self._request("POST", "/api/v1/models/download", json_body=body, timeout=30.0)
        except _UnknownRoute:
            raise MissingRoute("this LM Studio has no REST download API (added in 0.4.0); use `lms get`") from None
        return parse_download_job(resp, "POST /api/v1/models/download")

    async def download_status(self, job_id: str) -> DownloadJob:
        """Where download `job_id` stands (`GET /api/v1/models/download/status/{job_id}`); MissingRoute before 0.4.0."""
        path = f"/api/v1/models/download/status/{quote(job_id, safe='')}"
        try:
            resp = await self._request("GET", path)
        except _UnknownRoute:
            raise MissingRoute("this LM Studio has no REST download API (added in 0.4.0); use `lms get`") from None
        return parse_download_job(resp, f"GET {path}")

    async def chat_load_events(self, model: str, *, context_length: int | None = None) -> AsyncIterator[float]:
        """Trigger a load through `/api/v1/chat` and yield LM Studio's own load progress (0..1).

        The only HTTP surface that reports load progress; the stream is closed once the load ends.
        """
        body: dict[str, Any] = {"model": model, "input": ".", "stream": True, "max_output_tokens": 1, "store": False}
        if context_length:
            body["context_length"] = context_length
        self.calls += 1
        try:
            request = self._encode("POST", "/api/v1/chat", body)
        except ValueError as exc:
            raise LMStudioError(FailureKind.AUTH_FAILED, f"cannot send POST /api/v1/chat: {exc}") from None
        try:
            resp = await self._http.request(
                self._origin, request, timeout=600.0, stream=True, connect_timeout=self.timeout
            )
        except HTTPError as exc:
            raise LMStudioError(FailureKind.OFFLINE, f"load stream to {self.base_url} failed: {exc.message}") from None
        try:
            if resp.status in (401, 403):
                raise LMStudioError(FailureKind.AUTH_FAILED, "LM Studio refused the API token")
            event = ""
            async for line in _lines(resp.body()):
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = _loads(line[5:])
                    kind = data.get("type", event) if isinstance(data, dict) else event
                    if kind == "model_load.progress" and isinstance(data, dict):
                        progress = data.get("progress")
                        yield float(progress) if isinstance(progress, (int, float)) else 0.0
                    elif kind == "model_load.end":
                        yield 1.0
                        return
                    elif kind == "error" and isinstance(data, dict):
                        message = _error_message(data) or "load failed"
                        # cancelled in LM Studio: its error says so in words, the only sign there is
                        raise LMStudioError(FailureKind.SERVER_ERROR, message, cancelled="cancelled" in message)
                    elif kind in ("prompt_processing.start", "message.start", "chat.end"):
                        return  # already loaded: no model_load events come
        except HTTPError as exc:
            raise LMStudioError(FailureKind.OFFLINE, f"load stream to {self.base_url} failed: {exc.message}") from None
        finally:
            resp.close()  # mid-stream this closes the connection, which ends the chat on LM Studio's side


    async def chat_stream(
        self, model: str, messages: list[dict[str, str]], *, max_tokens: int, timeout: float = 600.0
    ) -> AsyncIterator[ChatChunk]:
        """Stream one OpenAI-compatible chat completion (`/v1/chat/completions`, with usage): each piece of text
        as it comes, then one chunk with LM Studio's token counts. LMStudioError on any failure."""
        body = {
            "model": model, "messages": messages, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, "temperature": 0,
        }
        self.calls += 1
        try:
            request = self._encode("POST", "/v1/chat/completions", body)
            resp = await self._http.request(
                self._origin, request, timeout=timeout, stream=True, connect_timeout=self.timeout
            )
        except ValueError as exc:
            raise LMStudioError(FailureKind.AUTH_FAILED, f"cannot send POST /v1/chat/completions: {exc}") from None
        except HTTPError as exc:
            raise LMStudioError(FailureKind.OFFLINE, f"chat with {self.base_url} failed: {exc.message}") from None
        try:
            if resp.status >= 400:
                text = (await resp.read()).decode("utf-8", "replace")
                kind = FailureKind.AUTH_FAILED if resp.status in (401, 403) else FailureKind.SERVER_ERROR
                raise LMStudioError(kind, _error_message(_loads(text)) or f"HTTP {resp.status}", status=resp.status)
            async for line in _lines(resp.body()):
                chunk = _chat_chunk(line)
                if chunk is not None:
                    yield chunk
        except HTTPError as exc:
            raise LMStudioError(FailureKind.OFFLINE, f"chat with {self.base_url} failed: {exc.message}") from None
        finally:
            resp.close()


@dataclass(frozen=True)
class ChatChunk:
    """A piece of a streamed reply; the last chunk carries the token counts LM Studio reports (`usage`)."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _chat_chunk(line: str) -> ChatChunk | None:
    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
        return None
    data = _loads(line[5:])
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("error"), (dict, str)):
        raise LMStudioError(FailureKind.SERVER_ERROR, _error_message(data) or "the chat stream failed")
    usage = data.get("usage")
    if isinstance(usage, dict):
        return ChatChunk(prompt_tokens=_int(usage.get("prompt_tokens")),
                         completion_tokens=_int(usage.get("completion_tokens")))
    choices = _list(data.get("choices"))
    delta = choices[0].get("delta") if choices and isinstance(choices[0], dict) else None
    text = delta.get("content") if isinstance(delta, dict) else None
    return ChatChunk(text=text) if isinstance(text, str) and text else None


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Text lines of a server-sent event stream (LF or CRLF ends a line)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.removesuffix(b"\r").decode("utf-8", "replace")


# ---- parsing -----------------------------------------------------------------------------------------


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _error_message(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    err = body.get("error", body)
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        msg = err.get("message")
        return str(msg) if msg else None
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, float) and not math.isfinite(value):  # json reads NaN/Infinity
        return None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _time(value: Any) -> datetime | None:
    """An ISO 8601 time as JavaScript writes it (`2025-10-03T15:33:23.496Z`); None if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_download_job(body: Any, route: str) -> DownloadJob:
    """A `DownloadJob` from a download route's answer `body`; LMStudioError(BAD_RESPONSE) naming `route` if it is
    none."""
    if not isinstance(body, dict):
        raise LMStudioError(FailureKind.BAD_RESPONSE, f"{route} returned no job object")
    try:
        status = DownloadStatus(body.get("status"))
    except ValueError:
        raise LMStudioError(
            FailureKind.BAD_RESPONSE, f"{route} returned an unknown status {body.get('status')!r}"
        ) from None
    job_id = body.get("job_id")
    if status is not DownloadStatus.ALREADY_DOWNLOADED and not isinstance(job_id, str):
        raise LMStudioError(FailureKind.BAD_RESPONSE, f"{route} returned a {status.value} job without a job_id")
    speed = body.get("bytes_per_second")
    return DownloadJob(
        job_id=job_id if isinstance(job_id, str) else None,
        status=status,
        total_bytes=_int(body.get("total_size_bytes")),
        downloaded_bytes=_int(body.get("downloaded_bytes")),
        bytes_per_second=float(speed) if isinstance(speed, (int, float)) and not isinstance(speed, bool) else None,
        started_at=_time(body.get("started_at")),
        completed_at=_time(body.get("completed_at")),
        estimated_completion=_time(body.get("estimated_completion")),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _require_list(body: Any, key: str, route: str) -> list[Any]:
    items = body.get(key) if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        raise LMStudioError(FailureKind.BAD_RESPONSE, f"{route} returned no `{key}` list")
    return items


def parse_v1_models(body: Any) -> tuple[ModelInfo, ...]:
    """The models of a `GET /api/v1/models` body, their loaded copies sorted by copy number. LMStudioError
    (`bad_response`) when the body has no `models` list or a model has no key."""
    out: list[ModelInfo] = []
    for raw in _require_list(body, "models", "GET /api/v1/models"):
        if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
            raise LMStudioError(FailureKind.BAD_RESPONSE, "GET /api/v1/models returned a model without a key")
        caps_raw = raw.get("capabilities")
        caps: set[str] = set()
        if isinstance(caps_raw, dict):
            if caps_raw.get("vision"):
                caps.add("vision")
            if caps_raw.get("trained_for_tool_use"):
                caps.add("tool_use")
            if caps_raw.get("reasoning"):
                caps.add("reasoning")
        quant = raw.get("quantization")
        instances = []
        for inst in _list(raw.get("loaded_instances")):
            if isinstance(inst, dict) and isinstance(inst.get("id"), str):
                cfg = inst.get("config")
                instances.append(
                    LoadedInstance(inst["id"], _int(cfg.get("context_length")) if isinstance(cfg, dict) else None)
                )
        variants = raw.get("variants")
        out.append(
            ModelInfo(
                key=raw["key"],
                type=ModelType(_str(raw.get("type")) or ModelType.LLM),
                display_name=_str(raw.get("display_name")),
                publisher=_str(raw.get("publisher")),
                architecture=_str(raw.get("architecture")),
                quantization=_str(quant.get("name")) if isinstance(quant, dict) else _str(quant),
                format=_str(raw.get("format")),
                size_bytes=_int(raw.get("size_bytes")),
                params_string=_str(raw.get("params_string")),
                max_context_length=_int(raw.get("max_context_length")),
                capabilities=frozenset(caps),
                variants=tuple(v for v in variants if isinstance(v, str)) if isinstance(variants, list) else (),
                instances=tuple(sorted(instances, key=lambda i: split_instance_id(i.id))),
            )
        )
    return tuple(out)


def split_instance_id(instance_id: str) -> tuple[str, int]:
    """`qwen/qwen3-4b:2` -> (`qwen/qwen3-4b`, 2); a plain key is copy 1."""
    key, sep, num = instance_id.rpartition(":")
    if sep and num.isdigit() and key:
        return key, int(num)
    return instance_id, 1


def parse_v0_models(body: Any) -> tuple[ModelInfo, ...]:
    """v0 lists one entry per model (or per `:N` instance): group instances under their model key."""
    grouped: dict[str, dict[str, Any]] = {}
    for raw in _require_list(body, "data", "GET /api/v0/models"):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise LMStudioError(FailureKind.BAD_RESPONSE, "GET /api/v0/models returned a model without an id")
        key, _ = split_instance_id(raw["id"])
        entry = grouped.setdefault(key, {"raw": raw, "instances": []})
        if raw["id"] == key:
            entry["raw"] = raw
        if raw.get("state") == "loaded":
            entry["instances"].append(LoadedInstance(raw["id"], _int(raw.get("loaded_context_length"))))
    out = []
    for key, entry in grouped.items():
        raw = entry["raw"]
        caps = {c for c in _list(raw.get("capabilities")) if isinstance(c, str)}
        mtype = ModelType(_str(raw.get("type")) or ModelType.LLM)  # v0's `embeddings` reads as EMBEDDING
        if mtype is ModelType.VLM:
            caps.add("vision")
        out.append(
            ModelInfo(
                key=key,
                type=mtype,
                publisher=_str(raw.get("publisher")),
                architecture=_str(raw.get("arch")),
                quantization=_str(raw.get("quantization")),
                format=_str(raw.get("compatibility_type")),
                max_context_length=_int(raw.get("max_context_length")),
                capabilities=frozenset(caps),
                instances=tuple(sorted(entry["instances"], key=lambda i: split_instance_id(i.id))),
            )
        )
    return tuple(out)


def _group_openai_ids(ids: list[str]) -> list[ModelInfo]:
    # /v1/models cannot tell loaded from downloaded; with JIT off it lists only loaded instances,
    # which is the only case this fallback is trusted to mean "loaded".
    grouped: dict[str, list[LoadedInstance]] = {}
    for model_id in ids:
        key, _ = split_instance_id(model_id)
        grouped.setdefault(key, []).append(LoadedInstance(model_id))
    return [ModelInfo(key=k, instances=tuple(v)) for k, v in grouped.items()]

