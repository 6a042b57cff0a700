"""Fixtures of the core tests."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import pytest

from tests.core.http_servers import Handler, Server


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(handler, ssl_context))
        return servers[-1]

    yield start
    for s in servers:
        s.close()
