"""Fixtures shared by the integration tests beyond those of tests/conftest.py."""

from .own_redis import own_redis
from .pool_helpers import connect, make_pool

__all__ = ["connect", "make_pool", "own_redis"]
