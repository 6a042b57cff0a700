"""`lms get`: download a model through LM Studio (the SDK's download planner), which works whatever the
version, unlike REST `POST /api/v1/models/download` (0.4.0+). Texts from src/subcommands/get.ts,
handleDownloadWithProgressBar.ts and downloadPbUpdater.ts; the plan tree and terminal control codes the real
CLI draws are left out."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from lmstudio_tray.emulator.lms.base import Control, LmsError, Logger, fmt_size
from lmstudio_tray.emulator.lms.connect import connect
from lmstudio_tray.emulator.lms.models import SPINNER_FRAMES

BAR_BLOCKS = 22
PARTIAL_BLOCKS = "▏▎▍▌▋▊▉█"
POLL_SECONDS = 0.05


def _split_quant(name: str) -> str:
    parts = name.strip().split("@")
    if len(parts) >= 3:
        raise LmsError("Error: You cannot have more than 2 @'s in the model name argument.")
    return parts[0].strip()


def _resolve(logger: Logger, name: str, offered: list[dict[str, Any]], yes: bool) -> str:
    """A Hugging Face URL or `owner/name` is asked for as is; anything else searches the staff picks."""
    if name.startswith("https://") or "/" in name:
        return name.lower() if "/" in name and not name.startswith("https://") else name
    logger.info(f"Searching staff picks with the term {name}")
    needle = name.lower()
    picks = [str(m["modelKey"]) for m in offered if needle in str(m["modelKey"]).lower()]
    if not picks:
        raise LmsError("Error: No staff picks found with the specified search criteria.")
    exact = [key for key in picks if key.split("/")[-1].lower() == needle]
    if exact:
        return exact[0]
    if len(picks) > 1:
        if not yes:
            raise LmsError("Error: Several staff picks match; choosing one needs a terminal (use -y for the first).")
        logger.info("Multiple staff picks found. Automatically selecting the first one due to --yes.")
    return picks[0]


def _bar(ratio: float) -> str:
    if ratio >= 1:
        return "█" * BAR_BLOCKS
    done = int(ratio * BAR_BLOCKS)
    per_block = 1 / BAR_BLOCKS
    partial = int(((ratio % per_block) / per_block) * 8)
    return "█" * done + PARTIAL_BLOCKS[partial] + " " * (BAR_BLOCKS - done - 1)


def _remaining(seconds: int) -> str:
    hours, minutes, secs = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{hours:02d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_line(job: dict[str, Any], frame: int) -> str:
    """One frame of the progress bar, as `createDownloadPbUpdater` fills it in."""
    total = max(1, int(job["total_size_bytes"]))
    done = int(job.get("downloaded_bytes", 0))
    speed = float(job.get("bytes_per_second") or 0)
    eta = _remaining(round((total - done) / speed)) if speed else "--:--"
    ratio = min(1.0, done / total)
    return (
        f"{SPINNER_FRAMES[frame % len(SPINNER_FRAMES)]} [{_bar(ratio)}] {ratio * 100:.2f}% | "
        f"{fmt_size(done)} / {fmt_size(total)} | {fmt_size(speed)}/s | ETA {eta}"
    )


def _follow(control: Control, logger: Logger, job: dict[str, Any]) -> int:
    frame = 0
    while job["status"] in ("downloading", "paused"):
        sys.stdout.write("\r" + progress_line(job, frame))
        sys.stdout.flush()
        frame += 1
        time.sleep(POLL_SECONDS)
        status, latest = control.call("GET", f"/download/{job['job_id']}")
        if status != 200 or not isinstance(latest, dict):
            raise LmsError("Error: lost track of the download.")
        job = latest
    sys.stdout.write("\r" + progress_line(job, frame) + "\n")
    sys.stdout.flush()
    if job["status"] == "failed":
        raise LmsError(f"Error: {job.get('error') or 'Download failed.'}")
    logger.info("Finalizing download...")
    logger.info("Download completed.")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    logger = Logger(args)
    if args.select and args.yes:
        raise LmsError("Error: The --select flag cannot be used with --yes.")
    if args.select:
        raise LmsError("Error: The --select flag requires an interactive terminal.")
    if not args.name:
        raise LmsError("Error: Please name the model to download (the interactive search needs a terminal).")
    name = _split_quant(args.name)
    control = connect(args, logger)
    target = _resolve(logger, name, control.state().get("offered", []), bool(args.yes))
    status, job = control.call("POST", "/download", {"model": target})
    if status != 200 or not isinstance(job, dict):
        message = ((job or {}).get("error") or {}).get("message") if isinstance(job, dict) else None
        raise LmsError(f"Error: {message or f'HTTP {status}'}")
    if job["status"] == "already_downloaded":
        command_target = job["model"] if target.startswith("https://") else target
        logger.info(f"Model already downloaded. To use, run: lms load {command_target}")
        return 0
    size = fmt_size(job["total_size_bytes"])
    # Without a terminal the CLI does not ask before it downloads.
    print(f"Resolution completed. Downloading {size}..." if args.yes else f"About to download {size}.", flush=True)
    return _follow(control, logger, job)
