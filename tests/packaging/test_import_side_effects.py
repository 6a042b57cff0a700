"""Importing lmstudio_tray changes nothing process-wide: what the program needs is done by its entry points
(lmstudio_tray.platform.process), never as a side effect of an import."""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a fresh interpreter: imports every module of the package (but `__main__`, which runs the program)
# and reports what changed in the process meanwhile.
PROBE = r'''
import gc, importlib, importlib.machinery, json, logging, os, pkgutil, signal, socket, sys, threading, warnings

def loggers():
    found = {"(root)": logging.root}
    found.update((n, lg) for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger))
    return {n: [lg.level, [repr(h) for h in lg.handlers], lg.propagate, lg.disabled] for n, lg in found.items()}

def handlers():
    return {s.name: repr(signal.getsignal(s)) for s in signal.valid_signals() if isinstance(s, signal.Signals)
            and s not in (signal.SIGKILL, getattr(signal, "SIGSTOP", None))}

def process():
    return {"switch interval": sys.getswitchinterval(), "recursion limit": sys.getrecursionlimit(),
            "gc": [gc.isenabled(), gc.get_threshold()], "socket timeout": socket.getdefaulttimeout(),
            "excepthook": repr(sys.excepthook), "thread excepthook": repr(threading.excepthook),
            "environment": dict(os.environ), "sys.path": list(sys.path), "warning filters": len(warnings.filters),
            "logging disabled": logging.root.manager.disable, "signals": handlers()}

def stand_in(name, module):
    """A module object put into sys.modules in place of one that is not imported (no spec of its own)."""
    if getattr(module, "__spec__", None) is not None:
        return False
    parent = name.rpartition(".")[0]
    if parent:  # a submodule of a real package (not of an extension module such as pyexpat)
        return parent not in sys.modules or hasattr(sys.modules[parent], "__path__")
    return importlib.machinery.PathFinder.find_spec(name) is not None  # a top-level module that is on disk

import lmstudio_tray
modules_before, loggers_before, process_before = set(sys.modules), loggers(), process()
names = [m.name for m in pkgutil.walk_packages(lmstudio_tray.__path__, "lmstudio_tray.")
         if not m.name.endswith(".__main__")]
for name in names:
    importlib.import_module(name)
loggers_after, process_after = loggers(), process()
print(json.dumps({
    "imported": names,
    "stand_ins": sorted(n for n in set(sys.modules) - modules_before if stand_in(n, sys.modules[n])),
    "process": {k: [process_before[k], v] for k, v in process_after.items() if process_before[k] != v},
    "loggers": {n: [loggers_before.get(n), v] for n, v in loggers_after.items()
                if loggers_before.get(n, [logging.NOTSET, [], True, False]) != v},
}))
'''


def test_importing_every_module_changes_nothing_process_wide() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "lmstudio_tray.api.server" in report["imported"] and "lmstudio_tray.cli.commands.serve" in report["imported"]
    assert report["stand_ins"] == [], "modules put into sys.modules by an import (call them from an entry point)"
    assert report["process"] == {}, "process-wide settings changed by an import (switch interval, signals, ...)"
    assert report["loggers"] == {}, "logger levels or handlers changed by an import"
