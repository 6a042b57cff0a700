"""The agent's tools: list, load, unload, switch and download models; start, stop, ask about LM Studio's server
(search and the advice tools are in `tools_advice`).

Every answer is a `ToolOut` (`ok`, `instance`, `text` for the agent, `data`, `kept`). An agent acts for a
person but is not one: on an instance the team shares it cannot force a change, and it never takes away
the model its own OpenCode session runs on (that is listed in `kept` instead).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from lmstudio_tray.api import schemas as s
from lmstudio_tray.api.context import TOOL_ERRORS, ApiContext, ApiError
from lmstudio_tray.core.control.actions import UnloadResult
from lmstudio_tray.core.control.downloads import DownloadResult, agent_may_download, agent_refusal
from lmstudio_tray.core.errors import ActionError, SharedBusyError
from lmstudio_tray.core.lmstudio.client import DownloadStatus
from lmstudio_tray.core.lmstudio.load_options import LoadOptions, parse_gpu
from lmstudio_tray.core.support.units import format_duration, format_size

T = TypeVar("T")


def add_tool_routes(app: FastAPI, ctx: ApiContext) -> None:
    """`/v1/tools/...`: each route is one of the functions below, given `ctx` and the request body."""

    @app.post("/v1/tools/list", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_list(body: s.TargetIn) -> JSONResponse:
        return await list_models(ctx, body)

    @app.post("/v1/tools/load", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_load(body: s.LoadIn) -> JSONResponse:
        return await load(ctx, body)

    @app.post("/v1/tools/unload", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"],
                 description="Unload models, never the one the calling session runs on (listed in `kept`).")
    async def tool_unload(body: s.UnloadIn) -> JSONResponse:
        return await unload(ctx, body)

    @app.post("/v1/tools/switch", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"],
                 description="Load a model, then unload the other chat models except the one the calling session "
                 "runs on (listed in `kept`).")
    async def tool_switch(body: s.SwitchIn) -> JSONResponse:
        return await switch(ctx, body)

    @app.post("/v1/tools/server/start", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_server_start(body: s.TargetIn) -> JSONResponse:
        return await server_start(ctx, body)

    @app.post("/v1/tools/server/stop", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"],
                 description="Stop LM Studio's server; refused (409 in_use_by_session) on the instance the calling "
                 "session runs on.")
    async def tool_server_stop(body: s.SessionTargetIn) -> JSONResponse:
        return await server_stop(ctx, body)

    @app.post("/v1/tools/server/status", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_server_status(body: s.TargetIn) -> JSONResponse:
        return await server_status(ctx, body)

    @app.post("/v1/tools/download", response_model=s.ToolOut, tags=["tools"],
              responses={**TOOL_ERRORS, 403: {"model": s.ErrorOut, "description": "the config does not let agents "
                                               "download this model; the message says what the person sets"}},
              description="Start downloading a model (or report on its download): only models the person allowed "
              "in `[opencode.tools]`. Calling it again for the same model follows the same download.")
    async def tool_download(body: s.DownloadIn) -> JSONResponse:
        return await download(ctx, body)



# ---- what every tool shares --------------------------------------------------------------------------


def target(ctx: ApiContext, body: s.TargetIn) -> str:
    """The instance a tool acts on: named, or serving the session's base_url, or the active one."""
    name = ctx.resolve(body.base_url, body.instance)
    if name is None:
        name = ctx.core.active_instance
    if name is None:
        raise ApiError(404, "unknown_instance", "no LM Studio instance is configured")
    return name


def tool(ok: bool, name: str, text: str, data: Any = None, kept: Sequence[str] = ()) -> JSONResponse:
    """A tool's answer."""
    return JSONResponse({"ok": ok, "instance": name, "text": text, "data": data, "kept": list(kept)})


def session_keep(ctx: ApiContext, body: s.SessionTargetIn, name: str) -> list[str]:
    """The model the calling OpenCode session runs on, if that is on instance `name`: what validate last
    saw for the session, and what the plugin says. A tool must not take it away: the session's next turn
    would be blocked before the agent even read the tool's answer."""
    keep: list[str] = []
    use = ctx.sessions.current(body.session_id) if body.session_id else None
    if use is not None and use.instance in (None, name):
        keep.append(use.model)
    if body.session_model:
        # the plugin sends the session's own base_url; a URL no instance has may still be this server
        where = ctx.resolve(body.base_url) if body.base_url else None
        if where in (None, name):
            keep.append(body.session_model)
    return list(dict.fromkeys(keep))


def kept_text(kept: Sequence[str]) -> str:
    """Why the models in `kept` stay loaded, and what the person can do about it."""
    names = ", ".join(kept)
    return (f"Kept {names} loaded: this OpenCode session runs on it, and unloading it would stop the session "
            "before it reads this answer. Only the person can move the session to another model: with "
            f"/models in OpenCode. After that, {names} can be unloaded.")


def as_cli(ctx: ApiContext, name: str, command: str) -> str:
    """The `lmstudio-tray ... --force` command a person would run instead of the agent."""
    where = f" --instance {name}" if len(ctx.core.monitor.names) > 1 else ""
    return f"`lmstudio-tray {command}{where} --force`"


async def by_agent(action: Awaitable[T], person_command: str) -> T:
    """An action an agent asked for. On an instance the team shares, an agent cannot push a change
    through (no `force` here): the refusal says so and names the command a person would use."""
    try:
        return await action
    except SharedBusyError as exc:
        raise ApiError(409, "shared_busy", f"{exc.reason}. An agent cannot force a change on an instance "
                       f"the team shares; if the team agrees, the person can run {person_command}.") from None


# ---- the tools ---------------------------------------------------------------------------------------


async def list_models(ctx: ApiContext, body: s.TargetIn) -> JSONResponse:
    """The instance's state and every downloaded model, loaded ones with their instances."""
    name = target(ctx, body)
    snap = await ctx.core.monitor.get(name, max_age=2.0)
    lines = [f"LM Studio '{name}' ({snap.url}): {snap.state.value}, JIT "
             + {True: "on", False: "off", None: "unknown"}[snap.jit]]
    for m in snap.models:
        if m.loaded:
            ids = ", ".join(f"{i.id} (ctx {i.context_length})" for i in m.instances)
            lines.append(f"- {m.key} [{m.type}] loaded: {ids}")
        else:
            lines.append(f"- {m.key} [{m.type}] not loaded, max ctx {m.max_context_length}")
    if not snap.models:
        lines.append("(no models listed)")
    return tool(True, name, "\n".join(lines), [m.to_json() for m in snap.models])


def load_options(body: s.LoadIn, count: int) -> LoadOptions:
    """The load options of a load tool call; a 422 naming the bad one."""
    if body.identifier is not None and count > 1:
        raise ApiError(422, "invalid_request", "identifier: names one loaded copy; load one model with it")
    try:
        gpu = parse_gpu(body.gpu) if body.gpu is not None else None
        return LoadOptions(context_length=body.context_length, gpu=gpu, ttl=body.ttl, parallel=body.parallel,
                           identifier=body.identifier)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None


async def load(ctx: ApiContext, body: s.LoadIn) -> JSONResponse:
    """Load one model (its failure is a 409) or several (each failure is a line of the answer)."""
    name = target(ctx, body)
    keys = [k for k in [body.model, *body.models] if k]
    if not keys:
        raise ApiError(422, "invalid_request", "model: give a model key (or models: [...])")
    options = load_options(body, len(dict.fromkeys(keys)))
    results, lines, ok, kind = [], [], True, "failed"
    for key in dict.fromkeys(keys):
        try:
            r = await ctx.core.actions.load(name, key, options=options)
        except ActionError as exc:
            ok, kind = False, exc.kind.value  # `not_supported`, `wont_fit`, `cancelled`... say which
            lines.append(f"{key}: failed: {exc}")
            continue
        results.append(r.to_json())
        how = "was already loaded" if r.already_loaded else f"loaded in {r.seconds:.1f} s"
        lines.extend(r.warnings)
        lines.append(f"{r.model} {how} as {r.instance_id} (context {r.context_length or 'default'})")
    if not ok and len(keys) == 1:
        raise ApiError(409, kind, lines[0].split(": failed: ", 1)[-1])
    return tool(ok, name, "\n".join(lines), results)


async def unload(ctx: ApiContext, body: s.UnloadIn) -> JSONResponse:
    """Unload models (or all), never the one the calling session runs on."""
    name = target(ctx, body)
    actions = ctx.core.actions
    keep = session_keep(ctx, body, name)
    results: list[UnloadResult] = []
    if body.all:
        results.append(await by_agent(actions.unload_all(name, keep=keep), as_cli(ctx, name, "unload --all")))
    else:
        keys = [k for k in [body.model, *body.models] if k]
        if not keys:
            raise ApiError(422, "invalid_request", "model: give a model key, models: [...], or all: true")
        for key in dict.fromkeys(keys):
            results.append(await by_agent(actions.unload(name, key, keep=keep), as_cli(ctx, name, f"unload {key}")))
    done = [i for r in results for i in r.unloaded]
    kept = list(dict.fromkeys(i for r in results for i in r.kept))
    if done:
        text = f"Unloaded {', '.join(done)} on {name}."
    else:
        text = f"Nothing was unloaded on {name}." if kept else f"Nothing was loaded on {name}."
    if kept:
        text += " " + kept_text(kept)
    return tool(not kept, name, text, done, kept)


async def switch(ctx: ApiContext, body: s.SwitchIn) -> JSONResponse:
    """Load a model, then unload the other chat models but the session's own."""
    name = target(ctx, body)
    r = await by_agent(ctx.core.actions.switch(name, body.model, context_length=body.context_length,
                                               keep=session_keep(ctx, body, name)),
                       as_cli(ctx, name, f"switch {body.model}"))
    how = f"{r.model} ({r.instance_id}, context {r.context_length or 'default'})"
    text = f"Loaded {how} on {name}" if r.kept else f"Switched {name} to {how}"
    text += f"; unloaded {', '.join(r.unloaded)}." if r.unloaded else "; no other chat model was loaded."
    if r.kept:
        text += " " + kept_text(r.kept)
    return tool(not r.kept, name, text, r.to_json(), r.kept)


async def server_start(ctx: ApiContext, body: s.TargetIn) -> JSONResponse:
    """Start LM Studio's server."""
    name = target(ctx, body)
    msg = await ctx.core.actions.server_start(name)
    return tool(True, name, msg or f"Started the server of {name}.")


async def server_stop(ctx: ApiContext, body: s.SessionTargetIn) -> JSONResponse:
    """Stop LM Studio's server, unless the calling session runs on it."""
    name = target(ctx, body)
    keep = session_keep(ctx, body, name)
    if keep:
        # there is no keeping a model loaded on a stopped server: refuse, the session would stop with it
        where = f" --instance {name}" if len(ctx.core.monitor.names) > 1 else ""
        raise ApiError(409, "in_use_by_session", f"Not stopping the server of {name}: this OpenCode session "
                       f"runs on {keep[0]} there and would stop before it reads this answer. Only the person "
                       f"can move the session to another model: with /models in OpenCode; the person can "
                       f"then stop the server with `lmstudio-tray server stop{where}`.")
    msg = await ctx.core.actions.server_stop(name)
    return tool(True, name, msg or f"Stopped the server of {name}.")


async def server_status(ctx: ApiContext, body: s.TargetIn) -> JSONResponse:
    """Whether LM Studio's server runs, what is loaded and, on this machine, its settings (read only: no tool
    changes who may connect or CORS, an agent must not expose LM Studio to the network)."""
    name = target(ctx, body)
    info = await ctx.core.server_control.status_of(await ctx.core.actions.server_status(name))
    snap = ctx.core.monitor.snapshot(name)
    loaded = ", ".join(m.key for m in snap.loaded_models) if snap else ""
    text = (f"LM Studio '{name}' at {info['url']} is {'running' if info['running'] else 'not running'} "
            f"({info['state']}); loaded: {loaded or 'nothing'}.")
    if info.get("bind") is not None:
        who = "this machine only" if info["reach"] == "this_machine" else f"the local network ({info['bind']})"
        jit = "unknown" if info["jit"] is None else ("on" if info["jit"] else "off")
        text += (f" Server settings: reachable from {who}, CORS {'on' if info['cors'] else 'off'}, "
                 f"Just-in-Time loading {jit}, API token required: {info['auth_required']}.")
    return tool(True, name, text, info)


async def download(ctx: ApiContext, body: s.DownloadIn) -> JSONResponse:
    """Start a download the config allows agents, or say how far the running one is; refused (403) otherwise."""
    name = target(ctx, body)
    allowed = ctx.core.config.opencode.tools
    if not agent_may_download(allowed, body.model):
        raise ApiError(403, "download_not_allowed", agent_refusal(allowed, body.model))
    result = await ctx.core.downloads.start(name, body.model, quantization=body.quantization)
    return tool(True, name, download_text(ctx, result), result.to_json())


def download_text(ctx: ApiContext, r: DownloadResult) -> str:
    """What the agent reads about a download: done already, or how far it is and how to follow it."""
    if r.status is DownloadStatus.ALREADY_DOWNLOADED:
        return f"{r.model} is downloaded on {r.instance}; load it with lmstudio_load_model."
    follow = (f"It runs inside LM Studio (job {r.job_id}). To see how far it is, call lmstudio_download_model "
              "again with the same model: that follows this download, it never starts a second one. Once done, "
              "the model is listed by lmstudio_list_models.")
    state = ctx.core.downloads.following(r.instance, r.job_id) if r.job_id else None
    if not r.attached or state is None:
        size = f" ({format_size(r.total_bytes)})" if r.total_bytes else ""
        return f"Started downloading {r.model}{size} on {r.instance}. {follow}"
    figures = []
    if state.fraction is not None:
        figures.append(f"{state.fraction * 100:.0f} % of {format_size(state.total_bytes)}")
    if state.paused:
        figures.append("paused in LM Studio (a person resumes it there)")
    elif state.bytes_per_second and state.total_bytes and state.downloaded_bytes is not None:
        left = (state.total_bytes - state.downloaded_bytes) / state.bytes_per_second
        figures.append(f"{format_size(int(state.bytes_per_second))}/s, about {format_duration(left)} left")
    return f"{r.model} is downloading on {r.instance}: {', '.join(figures) or 'starting'}. {follow}"
