from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from lmstudio_tray.emulator import Emulator
from tests.emulator.helpers import client_for


@pytest.fixture
def client(emulator: Emulator) -> Iterator[httpx.Client]:
    with client_for(emulator.api_url) as c:
        yield c
