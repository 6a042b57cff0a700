"""`lms server start|stop|status` and `lms status`, with the texts of the real CLI (src/subcommands/server.ts,
status.ts)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from lmstudio_tray.emulator.lms.base import (
    Control,
    LmsError,
    Logger,
    emit_json,
    fmt_size,
    greeting_ok,
    internal_file,
    read_json,
)
from lmstudio_tray.emulator.lms.connect import connect, env_control

CORS_WARNING = "CORS is enabled. This means any website you visit can use the LM Studio server."
NETWORK_WARNING = "Server will accept connections from the network. Only use this if you know what you are doing!"
VERIFY_FAILED = "Failed to verify the server is running. Please try to use another port."
# The real CLI checks 5 times, a second apart; the emulator answers at once, so checks come faster.
VERIFY_ATTEMPTS = 50
VERIFY_SECONDS = 0.1
# The real CLI checks the greeting on the bound interface; the emulator listens on 127.0.0.1 whatever `--bind`
# says (docs/emulator.md), so that is where its checks go.
CHECK_HOST = "127.0.0.1"


def server_config() -> dict[str, Any] | None:
    """`getServerConfig`: `.internal/http-server-config.json`. An `lms` installed without a home asks its
    emulator instead (it has no home to read)."""
    env = env_control()
    if env is not None:
        try:
            state = Control(env).state()
        except LmsError:  # the emulator is down: like a missing file
            return None
        return {"port": state.get("api_port"), "networkInterface": state.get("network_interface")}
    config = read_json(internal_file("http-server-config.json"))
    return config if isinstance(config, dict) and isinstance(config.get("port"), int) else None


def server_running(config: dict[str, Any] | None) -> bool:
    if config is None or not isinstance(config.get("port"), int):
        return False
    return greeting_ok(CHECK_HOST, int(config["port"]))[0]


def cmd_server_start(args: argparse.Namespace) -> int:
    logger = Logger(args)
    control = connect(args, logger)
    if args.cors:
        logger.warn(CORS_WARNING)
    # --bind, then LMS_SERVER_HOST (empty counts as unset), then 127.0.0.1; the saved interface is not reused.
    address = args.bind or os.environ.get("LMS_SERVER_HOST") or "127.0.0.1"
    config = server_config()
    port = args.port_option
    if port is None and config is not None:
        port = int(config["port"])
    if port is None:
        port = int(control.state()["api_port"])  # the real CLI would fall back to 1234
    if address != "127.0.0.1":
        logger.warn(NETWORK_WARNING)
    request = {"port": port, "cors": bool(args.cors), "networkInterface": address}
    status, _ = control.call("POST", "/server/start", request)
    # A refused bind is only in LM Studio's log; the CLI learns of it when the server never answers.
    if status == 200:
        for _ in range(VERIFY_ATTEMPTS):
            if greeting_ok(CHECK_HOST, port)[0]:
                logger.info(f"Success! Server is now running on port {port}")
                return 0
            time.sleep(VERIFY_SECONDS)
    logger.error(VERIFY_FAILED)
    return 1


def cmd_server_stop(args: argparse.Namespace) -> int:
    logger = Logger(args)
    config = server_config()
    if config is None or not server_running(config):
        logger.error("The server is not running.")
        return 1
    control = connect(args, logger)
    control.call("POST", "/server/stop")
    logger.info(f"Stopped the server on port {config['port']}.")
    return 0


def cmd_server_status(args: argparse.Namespace) -> int:
    logger = Logger(args)
    config = server_config()
    port = int(config["port"]) if config is not None else None
    running = server_running(config)
    if args.json:
        emit_json({"running": running, "port": port} if port is not None else {"running": running})
    elif running:
        logger.info(f"The server is running on port {port}.")
    else:
        logger.info("The server is not running.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    logger = Logger(args)
    state = connect(args, logger).state()
    config = server_config()
    if server_running(config):
        assert config is not None
        logger.info(f"Server: ON (port: {config['port']})\n")
    else:
        logger.info("Server:  OFF \n\n(i) Tip: Start the server with `lms server start`.\n")
    if state["loaded"]:
        logger.info("Loaded Models")
        for m in state["loaded"]:
            logger.info(f"  · {m['identifier']} - {fmt_size(m['sizeBytes'])}")
    else:
        logger.info("No Models Loaded")
    return 0
