"""Fixtures shared by the integration tests beyond those of tests/conftest.py."""

from .own_redis import own_redis

__all__ = ["own_redis"]
