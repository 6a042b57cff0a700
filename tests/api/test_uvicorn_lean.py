"""The endpoint embeds uvicorn's server without loading uvicorn's command line (click, multiprocessing)."""

from __future__ import annotations

import json
import subprocess
import sys


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
    # imported the way the tray does: the endpoint package first
    assert json.loads(run("import lmstudio_tray.api; " + code)) == [[], True]


def test_uvicorns_own_entry_points_still_work_in_the_same_process() -> None:
    out = run("import lmstudio_tray.api, uvicorn, sys; sys.argv = ['uvicorn', '--version']; "
              "import contextlib\nwith contextlib.suppress(SystemExit): uvicorn.main()\n"
              "print(uvicorn.run.__module__, 'click' in sys.modules)")
    assert out == "uvicorn.main True"
