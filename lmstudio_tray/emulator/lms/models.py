"""`lms ps`, `ls`, `load` (with `--estimate-only`) and `unload`, with the texts of the real CLI
(src/subcommands/list.ts, load.ts, unload.ts)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from lmstudio_tray.emulator.lms.base import (
    Control,
    LmsError,
    Logger,
    emit_json,
    fmt_elapsed,
    fmt_memory,
    fmt_size,
    js_number,
    table,
)
from lmstudio_tray.emulator.lms.connect import connect

SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
FITS = "This model may be loaded based on your resource guardrails settings."
DOES_NOT_FIT = "This model will fail to load based on your resource guardrails settings."


def cmd_ps(args: argparse.Namespace) -> int:
    logger = Logger(args)
    loaded = connect(args, logger).state()["loaded"]
    if args.json:
        emit_json(loaded)
        return 0
    if not loaded:
        logger.info("No models are currently loaded.")
        return 0
    rows = [["IDENTIFIER", "MODEL", "STATUS", "SIZE", "CONTEXT", "PARALLEL", "DEVICE", "TTL"]]
    for m in loaded:
        ttl = f"{m['ttlMs'] // 60000}m" if m.get("ttlMs") else ""
        rows.append([
            m["identifier"], m["modelKey"], str(m.get("status", "idle")).upper(), fmt_size(m["sizeBytes"]),
            str(m["contextLength"]), str(m.get("parallel") or ""), "Local", ttl,
        ])
    logger.info(table(rows))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    logger = Logger(args)
    state = connect(args, logger).state()
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
    logger.info(f"You have {len(models)} models, taking up {fmt_size(total)} of disk space.\n")
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
        logger.info(table(rows) + "\n")
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


class Spinner:
    """The real CLI's load spinner: `\\r<text> <frame>` on stdout, cleared with `\\r\\x1b[K` at the end."""

    def __init__(self) -> None:
        self.frame = 0

    def show(self, text: str) -> None:
        self.frame += 1
        sys.stdout.write(f"\r{text} {SPINNER_FRAMES[self.frame % len(SPINNER_FRAMES)]}")
        sys.stdout.flush()

    def stop(self) -> None:
        sys.stdout.write("\r\x1b[K")
        sys.stdout.flush()


def _follow_load(control: Control, job: dict[str, Any], key: str) -> dict[str, Any]:
    """Show `Loading <key> NN%` as LM Studio's progress changes (the SDK's onProgress); the final job."""
    spinner = Spinner()
    shown = -1
    try:
        while True:
            percent = round(float(job.get("progress", 0)) * 100)
            if job["status"] == "loaded" and shown != 100:
                percent = 100  # the SDK always reports 1.0 before success
            if percent != shown:
                spinner.show(f"Loading {key} {percent}%")
                shown = percent
            if job["status"] != "loading":
                return job
            time.sleep(0.05)
            status, latest = control.call("GET", f"/load/{job['job_id']}")
            if status != 200:
                raise LmsError("Error: lost track of the load.")
            job.update(latest)
    finally:
        spinner.stop()


def _not_found(logger: Logger, key: str) -> int:
    logger.error_without_prefix(
        f'Model not found\n\nNo model found that matches model key "{key}".\n\n'
        "To see a list of all downloaded models, run:\n\n    lms ls\n\n"
        "To select a model interactively, remove the --yes flag:\n\n    lms load"
    )
    return 1


def _estimate(control: Control, logger: Logger, key: str, args: argparse.Namespace) -> int:
    status, estimate = control.call(
        "POST", "/estimate", {"model": key, "context_length": args.context_length, "gpu": args.gpu}
    )
    if status != 200 or not isinstance(estimate, dict):
        raise LmsError(f"Error: {((estimate or {}).get('error') or {}).get('message', f'HTTP {status}')}")
    memory = estimate["memory"]
    logger.info(f"Model: {estimate['model']}")
    if args.context_length is not None:
        logger.info(f"Context Length: {args.context_length:,}")
    if args.gpu is not None:
        logger.info(f"GPU Offload: {js_number(args.gpu * 100)}%")
    logger.info(f"Estimated GPU Memory:   {fmt_memory(memory['totalVramBytes'])}")
    logger.info(f"Estimated Total Memory: {fmt_memory(memory['totalBytes'])}")
    if memory["confidence"] == "low":
        logger.info("Confidence: LOW")
    logger.info("\nEstimate: " + (FITS if estimate["passesGuardrails"] else DOES_NOT_FIT))
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    logger = Logger(args)
    control = connect(args, logger)
    state = control.state()
    if not args.model_key:
        raise LmsError("Error: Please specify a model key to load (interactive selection needs a terminal).")
    matches = match_model(state["downloaded"], args.model_key)
    if not matches:
        return _not_found(logger, args.model_key)
    if len(matches) > 1 and not args.yes:
        names = "\n".join(f"  · {m['modelKey']}" for m in matches)
        raise LmsError(f'Error: "{args.model_key}" matches several models; use -y to pick the first:\n{names}')
    chosen = matches[0]
    key = args.model_key if args.model_key in chosen.get("variants", []) else chosen["modelKey"]
    if args.estimate_only:
        return _estimate(control, logger, chosen["modelKey"], args)
    body: dict[str, Any] = {"model": key}
    for name in ("context_length", "identifier", "ttl", "gpu", "parallel"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    started = time.monotonic()
    status, job = control.call("POST", "/load", body)
    if status != 202 or not isinstance(job, dict):
        message = job["error"]["message"] if isinstance(job, dict) and "error" in job else f"HTTP {status}"
        raise LmsError(f"Error: {message}")
    try:
        job = _follow_load(control, job, chosen["modelKey"])
    except KeyboardInterrupt:
        # Ctrl-C aborts the load in LM Studio, not just the CLI.
        control.call("POST", f"/load/{job['job_id']}/cancel")
        logger.warn("Load cancelled.")
        return 1
    if job["status"] != "loaded":
        raise LmsError(f"Error: {job.get('error') or 'Failed to load the model.'}")
    elapsed = fmt_elapsed(time.monotonic() - started)
    logger.info(f"Model loaded successfully in {elapsed}.\n({fmt_memory(job['size_bytes'])})")
    logger.info(f'To use the model in the API/SDK, use the identifier "{job["identifier"]}".')
    return 0


def cmd_unload(args: argparse.Namespace) -> int:
    logger = Logger(args)
    control = connect(args, logger)
    if args.all:
        loaded = control.state()["loaded"]
        if not loaded:
            logger.info("No models to unload.")
            return 0
        for m in loaded:
            logger.info(f'Unloading "{m["identifier"]}"...')
            control.call("POST", "/unload", {"identifier": m["identifier"]})
        logger.info(f"Unloaded {len(loaded)} model{'s' if len(loaded) != 1 else ''}.")
        return 0
    if not args.identifier:
        raise LmsError("Error: Please specify a model identifier to unload, or use --all.")
    status, _ = control.call("POST", "/unload", {"identifier": args.identifier})
    if status != 200:
        # The real CLI returns without an error code here.
        logger.info(f'Model Not Found: Cannot find a model with the identifier "{args.identifier}".')
        return 0
    logger.info(f'Model "{args.identifier}" unloaded.')
    return 0
