"""The few Redis commands the cache sends, as one interface with two implementations.

``RedisTransport`` is what the cache talks to: a command and its reply, and a Lua script by its
SHA1. Calls from many coroutines may be in flight at once; each implementation pipelines them
on its connection(s). ``LEADDB_REDIS_CLIENT`` picks the implementation:

* ``lean`` (the default): ``LeanRedis``, one pipelined connection to a single Redis, parsed by
  hiredis. A GET costs ~105 µs here against ~240 µs through redis-py (docs/architecture.md).
* ``redis-py``: redis-py's asyncio client, for what LeanRedis cannot do (Redis Cluster and
  Sentinel, in the scale-out work). The cache gets a client of its own that never retries a
  command: redis-py's default retries (three, with backoff) would make a dead Redis cost
  seconds per call, where the cache's breaker (leaddb.connections.retry) decides when Redis
  is tried again.

Both raise redis-py's exception classes (``redis.exceptions.RedisError`` and its subclasses,
or ``OSError``), so the cache handles either alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from leaddb.connections.lean_redis import LeanRedis

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from leaddb.settings import LeadDBSettings


class RedisTransport(Protocol):
    """What the cache needs of a Redis client."""

    async def call(self, *args: Any) -> Any:
        """Send one command; its reply as RESP2 gives it (bytes, int, list, None)."""
        ...

    async def evalsha(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its SHA1, loading it first when Redis does not know it."""
        ...

    async def close(self) -> None: ...


class RedisPyTransport:
    """``RedisTransport`` over a redis-py asyncio client (``decode_responses=False``)."""

    def __init__(self, client: aioredis.Redis, *, owned: bool = False) -> None:
        self._client = client
        self._owned = owned
        self._scripts: dict[str, AsyncScript] = {}

    async def call(self, *args: Any) -> Any:
        # redis-py's response callbacks still apply (SET answers True where LeanRedis gives
        # b"OK"): the cache reads the replies of MGET, GET and scripts only, which none change.
        # redis-py leaves execute_command unannotated.
        return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def evalsha(self, script: str, keys: list[str], args: list[Any]) -> Any:
        registered = self._scripts.get(script)
        if registered is None:
            # redis-py's Script sends EVALSHA and loads the script on NOSCRIPT, as LeanRedis does.
            registered = self._scripts[script] = self._client.register_script(script)
        return await registered(keys=keys, args=args)

    async def close(self) -> None:
        if self._owned:
            await self._client.aclose()


def cache_transport(settings: LeadDBSettings) -> RedisTransport:
    """The cache's transport, as ``settings.redis_client`` chooses."""
    timeout = settings.redis_socket_timeout_seconds
    if settings.redis_client == "redis-py":
        client = aioredis.Redis.from_url(
            settings.redis_url_value(),
            socket_timeout=timeout,
            socket_connect_timeout=max(timeout, 1.0),
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        return RedisPyTransport(client, owned=True)
    return LeanRedis(settings.redis_url_value(), timeout=timeout)
