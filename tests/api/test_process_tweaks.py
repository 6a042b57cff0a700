"""The entry points' import trims (platform.process): uvicorn's and httpx's command lines stay out, and the
libraries' own entry points still work in the same process."""

from __future__ import annotations

import json
import subprocess
import sys

SKIP_UVICORN = "from lmstudio_tray.platform.process import skip_uvicorn_command_line; skip_uvicorn_command_line(); "


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_endpoint_loads_without_uvicorns_command_line() -> None:
    code = ("import json, sys, uvicorn.server; from lmstudio_tray.api.server import EndpointServer, _Server; "
            "print(json.dumps([sorted(m for m in ('click', 'uvicorn.supervisors', 'uvicorn._subprocess') "
            "if m in sys.modules), _Server.__mro__[1] is uvicorn.server.Server]))")
    # (not `multiprocessing` itself: coverage imports it into measured subprocesses; uvicorn imports it only
    # through `uvicorn._subprocess`)
    # the way the entry points do it: the trim first, then the endpoint package
    assert json.loads(run(SKIP_UVICORN + "import lmstudio_tray.api; " + code)) == [[], True]


def test_uvicorns_own_entry_points_still_work_in_the_same_process() -> None:
    out = run(SKIP_UVICORN + "import lmstudio_tray.api, uvicorn, sys; sys.argv = ['uvicorn', '--version']; "
              "import contextlib\nwith contextlib.suppress(SystemExit): uvicorn.main()\n"
              "print(uvicorn.run.__module__, 'click' in sys.modules)")
    assert out == "uvicorn.main True"


def test_the_command_line_trims_both_before_any_command_runs() -> None:
    code = ("import json, sys; from lmstudio_tray.cli import main\n"
            "import contextlib\nwith contextlib.suppress(SystemExit): main(['--version'])\n"
            "import httpx, lmstudio_tray.api.server\n"
            "print(json.dumps(sorted(m for m in ('click', 'rich', 'pygments', 'uvicorn.supervisors') "
            "if m in sys.modules)))")
    assert json.loads(run(code)) == []


def test_the_switch_interval_is_shortened_only_when_asked_and_never_lengthened() -> None:
    code = ("import json, sys; from lmstudio_tray.platform.process import shorten_switch_interval\n"
            "import lmstudio_tray.api.server, lmstudio_tray.cli.commands.serve, lmstudio_tray.cli.commands.tray\n"
            "seen = [sys.getswitchinterval()]\n"
            "seen += [shorten_switch_interval(), sys.getswitchinterval(), shorten_switch_interval()]\n"
            "sys.setswitchinterval(0.0001); seen += [shorten_switch_interval(), sys.getswitchinterval() < 0.0005]\n"
            "print(json.dumps(seen))")
    assert json.loads(run(code)) == [0.005, True, 0.0005, False, False, True]
