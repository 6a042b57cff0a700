"""Team tests share the router's pool fixture (several emulators behind a real endpoint)."""

from tests.routing.conftest import pool_factory  # noqa: F401  (fixture)
