"""`lmstudio-tray run` (also what `lmstudio-tray` with no command does): the tray icon.

`--demo` starts a built-in LM Studio emulator with a small catalog and points a one-instance config
at it, so the tray can be tried on a machine without LM Studio. Nothing is written to the real
config in that mode.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from lmstudio_tray.core.config.schema import Config, InstanceConfig

if TYPE_CHECKING:
    from lmstudio_tray.core.config.loader import TeamProfiles
    from lmstudio_tray.core.runtime import Core
    from lmstudio_tray.tray.app import BackendChoice

log = logging.getLogger(__name__)

DEMO_LOAD_SECONDS = 4.0  # long enough to see the progress ring and the "loading" bubble


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="start the tray icon (the default when no command is given)",
        description="Start the tray icon. Only one tray runs per user; a second start says so and exits.",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="try the tray without LM Studio: starts a built-in emulator and watches only that",
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="no icon: keep monitoring and show notifications only",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmstudio_tray.cli._common import config_path, read_config
    from lmstudio_tray.core.config.loader import TeamProfiles
    from lmstudio_tray.platform.process import shorten_switch_interval
    from lmstudio_tray.tray.app import BackendChoice, choose_backend

    shorten_switch_interval()  # the tray serves the endpoint next to its GUI thread (see platform.process)

    backend = (
        BackendChoice(None, "tray: --headless given; no icon, notifications only") if args.headless else None
    )
    if args.demo:
        return _run_demo(backend)
    teams = TeamProfiles()
    config = read_config(args, teams)
    return run_tray(config, config_path=config_path(args), backend=backend or choose_backend(), teams=teams)


def run_tray(config: Config, *, config_path: Path, backend: BackendChoice, core: Core | None = None,
             teams: TeamProfiles | None = None, about: str = "") -> int:
    """One tray per user: the core (this one, or a new one for `config` with the `teams` its load found),
    the surfaces attached by the composition root with the tray's endpoint optional, then the tray until
    Quit."""
    from lmstudio_tray.core.runtime import Core
    from lmstudio_tray.tray.app import TrayApp, single_tray
    from lmstudio_tray.wiring import attach_surfaces

    with single_tray() as refused:
        if refused is not None:
            return refused
        core = core or Core(config, config_path=config_path, teams=teams)
        # an endpoint that cannot start (its port taken, usually by a running `serve`) must not take the tray
        # down: the icon and notifications still work, and the plugin finds the other endpoint
        surfaces = attach_surfaces(core, command="run", endpoint_required=False)
        assert surfaces.notifications is not None  # notify=True
        app = TrayApp(config, core=core, reporter=surfaces.notifications, tips=surfaces.insights.tip_texts,
                      bench=surfaces.insights.bench_figures,
                      on_shutdown=surfaces.close, config_path=config_path, backend=backend, about=about)
        return app.run()


def _run_demo(backend: BackendChoice | None) -> int:
    from lmstudio_tray.core.runtime import Core
    from lmstudio_tray.emulator import Emulator, EmulatorSettings
    from lmstudio_tray.tray.app import choose_backend

    with tempfile.TemporaryDirectory(prefix="lmstudio-tray-demo-") as tmp:
        home = Path(tmp) / ".lmstudio"
        emulator = Emulator(EmulatorSettings(home=home, load_seconds=DEMO_LOAD_SECONDS)).start()
        try:
            config = Config(instances=[InstanceConfig(name="demo", url=emulator.api_url)])
            lms = home / "bin" / ("lms.cmd" if sys.platform == "win32" else "lms")
            core = Core(config, config_path=Path(tmp) / "config.toml", lms_path=lms if lms.exists() else None)
            print(f"lmstudio-tray demo: emulated LM Studio at {emulator.api_url}", file=sys.stderr)
            return run_tray(
                config,
                config_path=Path(tmp) / "config.toml",
                core=core,
                backend=backend or choose_backend(),
                about="Demo mode: the LM Studio here is a built-in emulator.",
            )
        finally:
            emulator.close()
