"""Fixtures for the diagnostics tests: our log handlers and secret registry never leak between tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from lmstudio_tray.core import logging_setup


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    logging_setup.forget_secrets()
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging_setup.forget_secrets()
