"""Freed start-up memory goes back to the OS: resident memory falls after `release_free_memory`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lmstudio_tray.platform.memory import release_free_memory

CODE = """
from lmstudio_tray.platform.memory import release_free_memory
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
blocks = [bytes(2000) + bytes([i % 256]) for i in range(40_000)]   # ~80 MB of malloc'd blocks
keep = blocks[-1:] + blocks[::500]                                  # a few survivors pin the heap
del blocks
before = rss()
trimmed = release_free_memory()
print(trimmed, round(before - rss(), 1))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_freed_heap_pages_are_returned() -> None:
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, check=True)
    trimmed, freed_mib = done.stdout.split()
    assert trimmed == "True"
    assert float(freed_mib) > 20  # most of the ~80 MB freed above was still resident before the trim


def test_other_platforms_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert release_free_memory() is False
