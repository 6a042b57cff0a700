"""`load`, `unload`, `switch` and `models list`: the model actions from a terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from lmstudio_tray.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    fail,
    human_size,
    instance_arg,
    pick_instance,
    print_json,
    run_with_core,
)
from lmstudio_tray.core.actions import ActionError, LoadResult
from lmstudio_tray.core.events import Event, LoadProgressed, LoadStarted
from lmstudio_tray.core.models import InstanceSnapshot
from lmstudio_tray.core.runtime import Core


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("load", help="load a model (shows progress and ETA)")
    p.add_argument("model", help="model key, e.g. qwen/qwen3-4b-2507")
    p.add_argument("--context-length", "-c", type=int, metavar="N", help="context length to load with")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    instance_arg(p)
    p.set_defaults(func=run_load, switch=False)

    p = sub.add_parser("switch", help="load a model, then unload the other chat models")
    p.add_argument("model")
    p.add_argument("--context-length", "-c", type=int, metavar="N")
    p.add_argument("--json", action="store_true")
    instance_arg(p)
    p.set_defaults(func=run_load, switch=True)

    p = sub.add_parser("unload", help="unload a model (by key or instance id), or --all")
    p.add_argument("target", nargs="?", help="model key or instance id (e.g. qwen/qwen3-4b-2507:2)")
    p.add_argument("--all", "-a", action="store_true", help="unload every loaded model")
    instance_arg(p)
    p.set_defaults(func=run_unload)

    p = sub.add_parser("models", help="downloaded and loaded models")
    msub = p.add_subparsers(dest="models_command", metavar="COMMAND")
    lp = msub.add_parser("list", help="list downloaded models and what is loaded")
    lp.add_argument("--json", action="store_true")
    lp.add_argument("--loaded", action="store_true", help="only loaded models")
    instance_arg(lp)
    lp.set_defaults(func=run_list)
    p.set_defaults(func=run_list, json=False, loaded=False, instance=None)


def run_load(args: argparse.Namespace) -> int:
    async def body(core: Core) -> LoadResult:
        name = pick_instance(core, args.instance)
        with _Progress(core, enabled=not args.json and sys.stderr.isatty()) as _:
            if args.switch:
                return await core.actions.switch(name, args.model, context_length=args.context_length)
            return await core.actions.load(name, args.model, context_length=args.context_length)

    try:
        result = run_with_core(args, body)
    except ActionError as exc:
        fail(str(exc))
        return EXIT_FAILURE
    if args.json:
        print_json(result.to_json())
    elif result.already_loaded:
        print(f"{result.model} is already loaded as {result.instance_id} on {result.instance}.")
    else:
        ctx = f", context {result.context_length}" if result.context_length else ""
        print(f"Loaded {result.model} as {result.instance_id} on {result.instance} in {result.seconds:.1f} s{ctx}.")
    return EXIT_OK


def run_unload(args: argparse.Namespace) -> int:
    if not args.all and not args.target:
        fail("name a model key or instance id to unload, or pass --all", 2)

    async def body(core: Core) -> list[str]:
        name = pick_instance(core, args.instance)
        if args.all:
            return await core.actions.unload_all(name)
        return await core.actions.unload(name, args.target)

    try:
        ids = run_with_core(args, body)
    except ActionError as exc:
        fail(str(exc))
        return EXIT_FAILURE
    print("Unloaded " + (", ".join(ids) if ids else "nothing (no model was loaded)") + ".")
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    async def body(core: Core) -> InstanceSnapshot:
        name = pick_instance(core, args.instance)
        return await core.monitor.get(name)

    snap = run_with_core(args, body)
    models = [m for m in snap.models if m.loaded or not args.loaded]
    if args.json:
        print_json({"instance": snap.name, "state": snap.state.value, "models": [m.to_json() for m in models]})
        return EXIT_OK if snap.failure is None else EXIT_FAILURE
    if snap.failure is not None:
        print(f"{snap.name}: {snap.state.value} — {snap.error}", file=sys.stderr)
        return EXIT_FAILURE
    for m in sorted(models, key=lambda m: (not m.loaded, m.type, m.key)):
        mark = "●" if m.loaded else " "
        ctx = f"max ctx {m.max_context_length}" if m.max_context_length else ""
        loaded = ", ".join(f"{i.id} (ctx {i.context_length})" for i in m.instances)
        print(f"{mark} {m.key:<45} {m.type:<9} {human_size(m.size_bytes):>9}  {ctx}  {loaded}".rstrip())
    return EXIT_OK


def _noop() -> None:
    return None


class _Progress:
    """A rich progress bar with ETA fed by the core's load events (only on a terminal)."""

    def __init__(self, core: Core, *, enabled: bool) -> None:
        self.core = core
        self.enabled = enabled
        self._unsubscribe: Callable[[], None] = _noop
        self._progress: Any = None

    def __enter__(self) -> _Progress:
        if not self.enabled:
            return self
        from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=True,
        )
        tasks: dict[str, TaskID] = {}

        def on_event(event: Event) -> None:
            if isinstance(event, LoadStarted):
                tasks[event.model] = progress.add_task(f"Loading {event.model}", total=100)
            elif isinstance(event, LoadProgressed) and event.model in tasks and event.progress is not None:
                progress.update(tasks[event.model], completed=event.progress * 100)

        progress.start()
        self._progress = progress
        self._unsubscribe = self.core.bus.subscribe(on_event, LoadStarted, LoadProgressed)
        return self

    def __exit__(self, *exc: object) -> None:
        self._unsubscribe()
        if self.enabled:
            self._progress.stop()
