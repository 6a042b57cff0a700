from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from lmstudio_tray.emulator import Emulator


@pytest.fixture
def client(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.api_url, timeout=5.0) as c:
        yield c
