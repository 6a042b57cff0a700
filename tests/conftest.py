"""Shared fixtures. Every test runs with its own config, state and data directories."""

from __future__ import annotations

pytest_plugins = ["tests.emulator_fixtures"]
