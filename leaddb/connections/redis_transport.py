"""The few Redis commands the cache sends, as one interface with two implementations.

``RedisTransport`` is what the cache talks to: a command and its reply, and a Lua script by its
SHA1. Calls from many coroutines may be in flight at once; each implementation pipelines them
on its connection(s). ``LEADDB_REDIS_CLIENT`` picks the implementation:

* ``lean`` (the default): ``LeanRedis``, one pipelined connection to a single Redis, parsed by
  hiredis. A GET costs ~105 µs here against ~240 µs through redis-py (docs/architecture.md).
* ``redis-py``: redis-py's asyncio client, for what LeanRedis cannot do (Redis Cluster and
  Sentinel, in the scale-out work). Its client never retries a command, as LeanRedis does not:
  redis-py's default retries (three, with backoff) made a dead Redis cost seconds per call;
  the cache's breaker (leaddb.connections.retry) decides when Redis is tried again, and the
  sessions report the failure to their caller.

The cache and the sessions talk to Redis through one of these each.

Both raise redis-py's exception classes (``redis.exceptions.RedisError`` and its subclasses,
or ``OSError``), so the cache handles either alike.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    async def evalsha_many(
        self, script: str, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Run a script once per (keys, args), pipelined; the replies in the same order."""
        ...

    async def close(self) -> None: ...


class RedisPyTransport:
    """``RedisTransport`` over a redis-py asyncio client (``decode_responses=False``).

    It sends through a client of its own over ``client``'s connection pool, with no response
    callbacks, so every reply is what the server sent, as LeanRedis gives it (SET answers
    b"OK", ZSCAN a cursor and a flat list); ``client`` itself keeps its callbacks.
    """

    def __init__(self, client: aioredis.Redis, *, owned: bool = False) -> None:
        self._client = aioredis.Redis(connection_pool=client.connection_pool)
        self._client.response_callbacks.clear()
        self._owner = client if owned else None
        self._scripts: dict[str, AsyncScript] = {}

    async def call(self, *args: Any) -> Any:
        # redis-py leaves execute_command unannotated.
        return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    def _script(self, script: str) -> AsyncScript:
        registered = self._scripts.get(script)
        if registered is None:
            # redis-py's Script sends EVALSHA and loads the script on NOSCRIPT, as LeanRedis does.
            registered = self._scripts[script] = self._client.register_script(script)
        return registered

    async def evalsha(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return await self._script(script)(keys=keys, args=args)

    async def evalsha_many(
        self, script: str, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        # One pipeline on one connection (calls in flight at once would each take a
        # connection of the pool); redis-py loads the script before the pipeline runs.
        registered = self._script(script)
        pipeline = self._client.pipeline(transaction=False)
        for keys, args in calls:
            await registered(keys=keys, args=args, client=pipeline)
        replies: list[Any] = await pipeline.execute()
        return replies

    async def close(self) -> None:
        await self._client.aclose()  # leaves the pool it was given alone
        if self._owner is not None:
            await self._owner.aclose()


def open_transport(settings: LeadDBSettings) -> RedisTransport:
    """A transport of its own, as ``settings.redis_client`` chooses (the cache and the
    sessions each get one, so a slow session script never holds up a cache hit)."""
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
