"""`lmstudio-tray status`: what every instance is doing right now."""

from __future__ import annotations

import argparse

from lmstudio_tray.cli._common import EXIT_FAILURE, EXIT_OK, human_size, print_json, run_with_core
from lmstudio_tray.core.models import InstanceState, StatusReport
from lmstudio_tray.core.runtime import Core


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="show the state of every LM Studio instance")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def body(core: Core) -> StatusReport:
        return core.status()

    report = run_with_core(args, body)
    if args.json:
        print_json(report.to_json())
    else:
        print(format_report(report))
    healthy = {InstanceState.IDLE, InstanceState.READY, InstanceState.LOADING}
    return EXIT_OK if all(s.state in healthy for s in report.instances) else EXIT_FAILURE


def format_report(report: StatusReport) -> str:
    lines: list[str] = [f"profile: {report.profile}"] if report.profile else []
    for snap in report.instances:
        marker = " (active)" if snap.name == report.active and len(report.instances) > 1 else ""
        lines.append(f"{snap.name}{marker}: {snap.state.value} — {snap.url}")
        if snap.error:
            lines.append(f"  {snap.error}")
        for model in snap.loaded_models:
            for inst in model.instances:
                ctx = f"ctx {inst.context_length}" if inst.context_length else "ctx ?"
                lines.append(f"  ● {inst.id}  ({ctx}, {human_size(model.size_bytes)})")
        for load in snap.loads:
            pct = f"{load.progress * 100:.0f}%" if load.progress is not None else "…"
            eta = f", ~{load.eta_seconds:.0f} s left" if load.eta_seconds is not None else ""
            lines.append(f"  ◌ loading {load.model} {pct}{eta}")
        if snap.state is InstanceState.IDLE:
            lines.append("  no model loaded")
    return "\n".join(lines) if lines else "no instances configured"
