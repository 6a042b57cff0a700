"""Shared HTTP client: building an httpx.Client per call costs ~30 ms (TLS context), which adds up."""

from __future__ import annotations

import ssl

import httpx

TLS = ssl.create_default_context()
http = httpx.Client(timeout=5.0, verify=TLS)


def client_for(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=5.0, verify=TLS)
