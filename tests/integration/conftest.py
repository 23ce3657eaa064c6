"""Fixtures shared by the integration tests beyond those of tests/conftest.py."""

from .own_redis import own_redis
from .pool_helpers import connect, make_pool
from .session_helpers import dead_store, make_store, store

__all__ = ["connect", "dead_store", "make_pool", "make_store", "own_redis", "store"]
