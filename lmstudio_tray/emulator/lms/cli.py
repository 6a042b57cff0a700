"""A fake `lms` CLI that drives an lmstudio-tray emulator through its control port.

Texts, streams (human text on stderr, JSON on stdout) and exit codes follow the real CLI. Discovery order:
`--host/--port` (remote mode: greeting probe, then the control port advertised by the emulator), env
`LMS_EMULATOR_CONTROL_URL`, env `LMS_API_SERVER_INFO_PATH`, then `<home>/.internal/http-server.json` with the
home from env `LMSTUDIO_HOME` or LM Studio's own resolution (pointer file, ~/.cache/lm-studio, ~/.lmstudio).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CONTROL_PORT_HEADER = "X-LMS-Emulator-Control-Port"
GREETING_TIMEOUT = 0.5
CONTROL_TIMEOUT = 3.0
DEFAULT_REMOTE_PORT = 1234
# Never route loopback calls through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LmsError(Exception):
    """A failure reported on stderr with exit code 1."""


def log(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


def emit_json(data: Any) -> None:
    # JSON.stringify output: compact.
    print(json.dumps(data, separators=(",", ":"), ensure_ascii=False), flush=True)


def _http(method: str, url: str, body: Any = None, timeout: float = CONTROL_TIMEOUT) -> tuple[int, Any, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            parsed = json.loads(payload or b"null")
        except ValueError:
            parsed = None
        return exc.code, parsed, exc.headers


def greeting_ok(host: str, port: int) -> tuple[bool, Any]:
    """`GET /lmstudio-greeting` with the CLI's 500 ms timeout: (answered as LM Studio, headers)."""
    try:
        status, body, headers = _http("GET", f"http://{host}:{port}/lmstudio-greeting", timeout=GREETING_TIMEOUT)
    except (OSError, ValueError):
        return False, None
    return status == 200 and isinstance(body, dict) and body.get("lmstudio") is True, headers


# --- discovery ---------------------------------------------------------------------------------------
def lmstudio_home() -> Path:
    env = os.environ.get("LMSTUDIO_HOME")
    if env:
        return Path(env)
    user_home = Path.home()
    pointer = user_home / ".lmstudio-home-pointer"
    if pointer.is_file():
        return Path(pointer.read_text(encoding="utf-8").strip())
    legacy = user_home / ".cache" / "lm-studio"
    return legacy if legacy.exists() else user_home / ".lmstudio"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def control_url(args: argparse.Namespace) -> str:
    if args.host is not None or args.port is not None:
        host = args.host or "127.0.0.1"
        port = args.port or DEFAULT_REMOTE_PORT
        ok, headers = greeting_ok(host, port)
        if not ok:
            raise LmsError(
                f"Error: Failed to connect to LM Studio at {host}:{port}. Make sure LM Studio is running on "
                "that machine and that its server is reachable (\"Serve on Local Network\")."
            )
        control_port = headers.get(CONTROL_PORT_HEADER) if headers is not None else None
        if not control_port:
            raise LmsError(f"Error: {host}:{port} is an LM Studio server, not an lmstudio-tray emulator.")
        return f"http://{host}:{control_port}"
    env = os.environ.get("LMS_EMULATOR_CONTROL_URL")
    if env:
        return env.rstrip("/")
    info_path = os.environ.get("LMS_API_SERVER_INFO_PATH")
    info = _read_json(Path(info_path) if info_path else lmstudio_home() / ".internal" / "http-server.json")
    if isinstance(info, dict) and info.get("port"):
        return f"http://{info.get('host', '127.0.0.1')}:{info['port']}"
    raise LmsError("Error: LM Studio is not running (no emulator found). Start it with `lmstudio-tray emulator`.")


class Control:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        try:
            status, data, _ = _http(method, f"{self.base}/_emulator{path}", body)
        except (OSError, ValueError) as exc:
            raise LmsError(
                "Error: Failed to connect to LM Studio. Is LM Studio running? "
                f"(emulator control port {self.base} unreachable: {exc})"
            ) from exc
        return status, data

    def state(self) -> dict[str, Any]:
        status, data = self.call("GET", "/state")
        if status != 200 or not isinstance(data, dict):
            raise LmsError(f"Error: unexpected answer from LM Studio ({status}).")
        return data


def _host(control: Control) -> str:
    return control.base.split("//", 1)[1].rsplit(":", 1)[0]


def server_port(state: dict[str, Any]) -> int | None:
    """The port `lms` believes the server uses: http-server-config.json, else what the emulator reports."""
    home = state["settings"].get("home")
    config = _read_json(Path(home) / ".internal" / "http-server-config.json") if home else None
    if isinstance(config, dict) and isinstance(config.get("port"), int):
        return int(config["port"])
    port = state.get("api_port")
    return int(port) if port else None


# --- formatting --------------------------------------------------------------------------------------
def fmt_size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


# --- commands ----------------------------------------------------------------------------------------
def cmd_server_start(control: Control, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"cors": bool(args.cors)}
    if args.port_option is not None:
        body["port"] = args.port_option
    status, data = control.call("POST", "/server/start", body)
    failure = "Failed to verify the server is running. Please try to use another port."
    if status != 200 or not isinstance(data, dict):
        log(failure)
        return 1
    port = int(data["port"])
    for _ in range(50):
        if greeting_ok(_host(control), port)[0]:
            log(f"Success! Server is now running on port {port}")
            return 0
        time.sleep(0.1)
    log(failure)
    return 1


def cmd_server_stop(control: Control, args: argparse.Namespace) -> int:
    port = server_port(control.state())
    if port is None or not greeting_ok(_host(control), port)[0]:
        log("The server is not running.")
        return 1
    control.call("POST", "/server/stop")
    log(f"Stopped the server on port {port}.")
    return 0


def cmd_server_status(control: Control, args: argparse.Namespace) -> int:
    port = server_port(control.state())
    running = port is not None and greeting_ok(_host(control), port)[0]
    if args.json:
        emit_json({"running": running, "port": port} if port is not None else {"running": False})
    elif running:
        log(f"The server is running on port {port}.")
    else:
        log("The server is not running.")
    return 0


def cmd_ps(control: Control, args: argparse.Namespace) -> int:
    loaded = control.state()["loaded"]
    if args.json:
        emit_json(loaded)
        return 0
    if not loaded:
        log("No models are currently loaded.")
        return 0
    rows = [["IDENTIFIER", "MODEL", "STATUS", "SIZE", "CONTEXT", "PARALLEL", "DEVICE", "TTL"]]
    for m in loaded:
        ttl = f"{m['ttlMs'] // 60000}m" if m.get("ttlMs") else ""
        rows.append([
            m["identifier"], m["modelKey"], str(m.get("status", "idle")).upper(), fmt_size(m["sizeBytes"]),
            str(m["contextLength"]), str(m.get("parallel") or ""), "Local", ttl,
        ])
    log(table(rows))
    return 0


def cmd_ls(control: Control, args: argparse.Namespace) -> int:
    state = control.state()
    models = state["downloaded"]
    if args.model_key:
        models = match_model(models, args.model_key)
    if args.llm:
        models = [m for m in models if m["type"] == "llm"]
    if args.embedding:
        models = [m for m in models if m["type"] == "embedding"]
    if args.json:
        emit_json(models)
        return 0
    loaded: dict[str, int] = {}
    for inst in state["loaded"]:
        loaded[inst["modelKey"]] = loaded.get(inst["modelKey"], 0) + 1
    total = sum(m["sizeBytes"] for m in models)
    log(f"You have {len(models)} models, taking up {fmt_size(total)} of disk space.\n")
    for kind, title in (("llm", "LLM"), ("embedding", "EMBEDDING")):
        group = [m for m in models if m["type"] == kind]
        if not group:
            continue
        rows = [[title, "PARAMS", "ARCH", "SIZE", "DEVICE", ""]]
        for m in group:
            count = loaded.get(m["modelKey"], 0)
            mark = ("✓ LOADED" + (f" ({count})" if count > 1 else "")) if count else ""
            rows.append([
                m["modelKey"], m.get("paramsString") or "", m.get("architecture") or "", fmt_size(m["sizeBytes"]),
                "Local", mark,
            ])
        log(table(rows) + "\n")
    return 0


def match_model(models: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """Exact key or variant first; otherwise a case-insensitive fuzzy match over key, name and path."""
    exact = [m for m in models if query in (m["modelKey"], *m.get("variants", []))]
    if exact:
        return exact
    needle = query.lower()
    fuzzy = [
        m for m in models
        if any(needle in str(m.get(k, "")).lower() for k in ("modelKey", "displayName", "path"))
    ]
    if fuzzy:
        return fuzzy
    tokens = needle.replace("/", " ").replace("-", " ").split()
    return [m for m in models if all(t in m["modelKey"].lower() for t in tokens)] if tokens else []


def _follow_load(control: Control, job: dict[str, Any], key: str) -> tuple[dict[str, Any], int]:
    """Print `Loading <key> NN%` as progress changes; returns the final job and the last percentage shown."""
    shown = -1
    while True:
        percent = int(float(job.get("progress", 0)) * 100)
        if percent != shown and job["status"] == "loading":
            log(f"Loading {key} {percent}%")
            shown = percent
        if job["status"] != "loading":
            return job, shown
        time.sleep(0.05)
        status, latest = control.call("GET", f"/load/{job['job_id']}")
        if status != 200:
            raise LmsError("Error: lost track of the load.")
        job.update(latest)


def cmd_load(control: Control, args: argparse.Namespace) -> int:
    state = control.state()
    if not args.model_key:
        raise LmsError("Error: Please specify a model key to load (interactive selection needs a terminal).")
    matches = match_model(state["downloaded"], args.model_key)
    if not matches:
        raise LmsError(f'Error: Model not found: no downloaded model matches "{args.model_key}".')
    if len(matches) > 1 and not args.yes:
        names = "\n".join(f"  · {m['modelKey']}" for m in matches)
        raise LmsError(f'Error: "{args.model_key}" matches several models; use -y to pick the first:\n{names}')
    chosen = matches[0]
    key = args.model_key if args.model_key in chosen.get("variants", []) else chosen["modelKey"]
    body: dict[str, Any] = {"model": key}
    if args.context_length is not None:
        body["context_length"] = args.context_length
    if args.identifier is not None:
        body["identifier"] = args.identifier
    if args.ttl is not None:
        body["ttl"] = args.ttl
    status, job = control.call("POST", "/load", body)
    if status != 202 or not isinstance(job, dict):
        message = job["error"]["message"] if isinstance(job, dict) and "error" in job else f"HTTP {status}"
        raise LmsError(f"Error: {message}")
    try:
        job, shown = _follow_load(control, job, chosen["modelKey"])
    except KeyboardInterrupt:
        # Ctrl-C cancels the load in LM Studio, not just the CLI.
        control.call("POST", f"/load/{job['job_id']}/cancel")
        log("Load cancelled.")
        return 130
    if job["status"] != "loaded":
        raise LmsError(f"Error: {job.get('error') or 'Failed to load the model.'}")
    if shown != 100:
        log(f"Loading {chosen['modelKey']} 100%")
    log(f"Model loaded successfully in {job['load_time_seconds']:.2f}s. ({fmt_size(job['size_bytes'])})")
    log(f'To use the model in the API/SDK, use the identifier "{job["identifier"]}".')
    return 0


def cmd_unload(control: Control, args: argparse.Namespace) -> int:
    if args.all:
        loaded = control.state()["loaded"]
        if not loaded:
            log("No models to unload.")
            return 0
        for m in loaded:
            log(f'Unloading "{m["identifier"]}"...')
            control.call("POST", "/unload", {"identifier": m["identifier"]})
        log(f"Unloaded {len(loaded)} model{'s' if len(loaded) != 1 else ''}.")
        return 0
    if not args.identifier:
        raise LmsError("Error: Please specify a model identifier to unload, or use --all.")
    status, _ = control.call("POST", "/unload", {"identifier": args.identifier})
    if status != 200:
        # The real CLI returns without an error code here.
        log(f'Model Not Found: Cannot find a model with the identifier "{args.identifier}".')
        return 0
    log(f'Model "{args.identifier}" unloaded.')
    return 0


def cmd_status(control: Control, args: argparse.Namespace) -> int:
    state = control.state()
    port = server_port(state)
    if port is not None and greeting_ok(_host(control), port)[0]:
        log(f"Server: ON (port: {port})\n")
    else:
        log("Server:  OFF \n\n(i) Tip: Start the server with `lms server start`.\n")
    if state["loaded"]:
        log("Loaded Models")
        for m in state["loaded"]:
            log(f"  · {m['identifier']} - {fmt_size(m['sizeBytes'])}")
    else:
        log("No Models Loaded")
    return 0


# --- argument parsing --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    logging_flags = argparse.ArgumentParser(add_help=False)
    logging_flags.add_argument("--host", default=None)
    logging_flags.add_argument("--log-level", choices=["debug", "info", "warn", "error", "none"], default="info")
    logging_flags.add_argument("--quiet", action="store_true")
    logging_flags.add_argument("--verbose", action="store_true")
    common = argparse.ArgumentParser(add_help=False, parents=[logging_flags])
    common.add_argument("--port", type=int, default=None, dest="port")

    parser = argparse.ArgumentParser(prog="lms", description="LM Studio CLI (lmstudio-tray emulator)")
    commands = parser.add_subparsers(dest="command", required=True)

    server = commands.add_parser("server", help="Start, stop or check the HTTP server")
    server_commands = server.add_subparsers(dest="server_command", required=True)
    # Here -p/--port is the HTTP server port, not the global remote-mode port.
    start = server_commands.add_parser("start", parents=[logging_flags])
    start.add_argument("-p", "--port", dest="port_option", type=int, default=None)
    start.set_defaults(port=None)
    start.add_argument("--bind", default=None)
    start.add_argument("--cors", action="store_true")
    start.set_defaults(func=cmd_server_start)
    server_commands.add_parser("stop", parents=[common]).set_defaults(func=cmd_server_stop)
    status = server_commands.add_parser("status", parents=[common])
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_server_status)

    ps = commands.add_parser("ps", parents=[common], help="List loaded models")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_ps)

    ls = commands.add_parser("ls", parents=[common], help="List downloaded models")
    ls.add_argument("model_key", nargs="?")
    ls.add_argument("--json", action="store_true")
    kinds = ls.add_mutually_exclusive_group()
    kinds.add_argument("--llm", action="store_true")
    kinds.add_argument("--embedding", action="store_true")
    ls.set_defaults(func=cmd_ls)

    load = commands.add_parser("load", parents=[common], help="Load a model")
    load.add_argument("model_key", nargs="?")
    load.add_argument("-c", "--context-length", type=int, default=None)
    load.add_argument("--identifier", default=None)
    load.add_argument("--ttl", type=float, default=None)
    load.add_argument("--gpu", default=None)
    load.add_argument("--parallel", type=int, default=None)
    load.add_argument("-y", "--yes", action="store_true")
    load.set_defaults(func=cmd_load)

    unload = commands.add_parser("unload", parents=[common], help="Unload a model")
    unload.add_argument("identifier", nargs="?")
    unload.add_argument("-a", "--all", action="store_true")
    unload.set_defaults(func=cmd_unload)

    commands.add_parser("status", parents=[common], help="LM Studio status").set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    # The real lms (Node) handles Ctrl-C itself, even when started with SIGINT ignored (a background
    # job, a service); do the same so a cancel always reaches the load.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "port_option"):
        args.port_option = None
    try:
        control = Control(control_url(args))
        result: int = args.func(control, args)
        return result
    except LmsError as exc:
        log(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
