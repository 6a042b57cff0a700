"""`lmstudio-tray doctor [--export FILE] [--json]`: what works, what does not, and how to fix it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from lmstudio_tray.cli._common import EXIT_FAILURE, EXIT_OK, RegisteringStore, config_path, fail, print_json
from lmstudio_tray.diagnostics.checks import CheckResult, Diagnosis, Status, run_checks

MARKS = {Status.OK: "✓", Status.WARN: "!", Status.FAIL: "✗", Status.SKIP: "-"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check config, keyring, lms, instances, tray, notifications and endpoint")
    p.add_argument("--export", metavar="FILE", help="also write a debug zip (no secrets) to FILE for a bug report")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = config_path(args)
    diagnosis = run_checks(path)
    exported: Path | None = None
    if args.export:
        from lmstudio_tray.diagnostics.export import ExportError, export

        try:
            exported = export(Path(args.export), diagnosis, path, _status(diagnosis, args))
        except ExportError as exc:
            fail(str(exc))
    if args.json:
        data = diagnosis.to_json()
        data["export"] = str(exported) if exported else None
        print_json(data)
    else:
        print(render(diagnosis.results))
        if exported:
            print(f"\nDebug export written to {exported} (secrets removed; read it before sharing).")
    return EXIT_FAILURE if diagnosis.failed else EXIT_OK


def render(results: list[CheckResult]) -> str:
    width = max((len(r.title) for r in results), default=0)
    lines: list[str] = []
    for r in results:
        lines.append(f"{MARKS[r.status]} {r.title:<{width}}  {r.detail}")
        if r.fix and r.status in (Status.FAIL, Status.WARN):
            lines.append(f"  {'':<{width}}  fix: {r.fix}")
    failed = sum(r.status is Status.FAIL for r in results)
    warned = sum(r.status is Status.WARN for r in results)
    summary = "all checks passed" if not failed and not warned else f"{failed} failed, {warned} warning(s)"
    return "\n".join([*lines, "", summary])


def _status(diagnosis: Diagnosis, args: argparse.Namespace) -> dict[str, Any] | None:
    """Every instance's status through a one-shot core (the same as `status --json`)."""
    if diagnosis.config is None:
        return None
    from lmstudio_tray.core.runtime import Core

    core = Core(diagnosis.config, config_path=config_path(args), secrets=RegisteringStore(), teams=diagnosis.teams)

    async def body() -> dict[str, Any]:
        try:
            await core.monitor.warm_up()
            return core.status().to_json()
        finally:
            await core.monitor.stop()

    try:
        return asyncio.run(body())
    except Exception as exc:  # the export must still be written when a status poll breaks
        print(f"lmstudio-tray: could not collect the status for the export: {exc}", file=sys.stderr)
        return {"available": False, "why": str(exc)}
