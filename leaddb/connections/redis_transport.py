"""The few Redis commands the cache sends, as one interface with two implementations.

``RedisTransport`` is what the cache talks to: a command and its reply, and a Lua script by its
SHA1. Calls from many coroutines may be in flight at once; each implementation pipelines them
on its connection(s). ``LEADDB_REDIS_CLIENT`` picks the implementation:

* ``lean`` (the default): ``LeanRedis``, one pipelined connection to a single Redis, parsed by
  hiredis. A GET costs ~105 µs here against ~240 µs through redis-py (docs/architecture.md).
* ``redis-py``: redis-py's asyncio client, for what LeanRedis cannot do. A
  ``redis+cluster://`` or ``redis+sentinel://`` URL (leaddb.connections.redis_topology) always
  takes it, over redis-py's ``RedisCluster`` or Sentinel-managed primary. Its client never
  retries a command, as LeanRedis does not:
  redis-py's default retries (three, with backoff) made a dead Redis cost seconds per call;
  the cache's breaker (leaddb.connections.retry) decides when Redis is tried again, and the
  sessions report the failure to their caller.

The cache and the sessions talk to Redis through one of these each.

Both raise redis-py's exception classes (``redis.exceptions.RedisError`` and its subclasses,
or ``OSError``), so the cache handles either alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from leaddb.connections.lean_redis import LeanRedis, PendingReply
from leaddb.connections.redis_topology import (
    AnyRedis,
    close_client,
    create_client,
    parse_redis_url,
    replicated_call,
)

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from leaddb.settings import LeadDBSettings


class RedisTransport(Protocol):
    """What the cache needs of a Redis client."""

    async def call(self, *args: Any) -> Any:
        """Send one command; its reply as RESP2 gives it (bytes, int, list, None)."""
        ...

    def send_now(self, *args: Any) -> PendingReply | None:
        """Write one command at once and await its reply later, so the caller can do other I/O
        meanwhile; None when this transport cannot (then ``call``)."""
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


CLUSTER_CALLS_IN_FLIGHT: Final = 32
"""Scripts ``evalsha_many`` runs at once on a Redis Cluster (see there)."""


class RedisPyTransport:
    """``RedisTransport`` over a redis-py asyncio client (``decode_responses=False``): one
    Redis, a Sentinel-managed primary or a ``RedisCluster``.

    Every reply is what the server sent, as LeanRedis gives it (SET answers b"OK", ZSCAN a
    cursor and a flat list). Over a ``redis.asyncio.Redis`` (one Redis or a Sentinel-managed
    primary) it sends through a client of its own over ``client``'s connection pool, with no
    response callbacks, so ``client`` itself keeps its callbacks (a Sentinel pool keeps its
    connect hook, which checks the primary). A ``RedisCluster`` shares one callback dict with
    every node it builds and has no second client over its nodes, so the callbacks of the
    commands leaddb sends are removed from ``client`` itself: only an owned cluster is taken.
    """

    def __init__(self, client: AnyRedis, *, owned: bool = False) -> None:
        self._client: AnyRedis
        self._owner: AnyRedis | None = None
        if isinstance(client, RedisCluster):
            if not owned:
                raise ValueError("a RedisCluster's replies can be made raw only on its own client")
            _drop_reply_callbacks(client.response_callbacks)
            self._client = client
        else:
            self._client = aioredis.Redis(connection_pool=client.connection_pool)
            self._client.response_callbacks.clear()
            self._owner = client if owned else None
        self._scripts: dict[str, AsyncScript] = {}

    async def call(self, *args: Any) -> Any:
        return await self._client.execute_command(*args)

    def send_now(self, *args: Any) -> PendingReply | None:
        # redis-py writes a command only as its coroutine runs.
        return None

    def _script(self, script: str) -> AsyncScript:
        registered = self._scripts.get(script)
        if registered is None:
            # redis-py's Script sends EVALSHA and loads the script on NOSCRIPT, as LeanRedis does.
            registered = self._scripts[script] = self._client.register_script(script)
        return registered

    async def evalsha(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return await self._script(script)(keys=keys, args=args)

    async def evalsha_replicated(
        self, script: str, keys: list[str], args: list[Any], timeout_ms: int
    ) -> tuple[Any, int]:
        """``evalsha``, then ``WAIT 1`` on the same connection: (reply, replicas that took it)."""
        return await replicated_call(self._client, self._script(script), keys, args, timeout_ms)

    async def evalsha_many(
        self, script: str, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        registered = self._script(script)
        if isinstance(self._client, RedisCluster):
            # A cluster pipeline sends EVALSHA to each node and fails with NOSCRIPT on a node
            # that has not seen the script yet (redis-py loads it where the pipeline is made,
            # not on every node): concurrent calls, each loading the script where it runs.
            # Each call in flight holds a connection of its node's pool, which redis-py caps
            # (100 by default) with MaxConnectionsError rather than a wait: so at most
            # CLUSTER_CALLS_IN_FLIGHT at once. An organization's 256 users, spread over
            # three masters by their slots, put more than 100 on one of them now and then.
            in_flight = asyncio.Semaphore(CLUSTER_CALLS_IN_FLIGHT)

            async def call(keys: list[str], args: list[Any]) -> Any:
                async with in_flight:
                    return await registered(keys=keys, args=args)

            replies = await asyncio.gather(*(call(keys, args) for keys, args in calls))
            return list(replies)
        # One pipeline on one connection (calls in flight at once would each take a
        # connection of the pool); redis-py loads the script before the pipeline runs.
        pipeline = self._client.pipeline(transaction=False)
        for keys, args in calls:
            await registered(keys=keys, args=args, client=pipeline)
        result: list[Any] = await pipeline.execute()
        return result

    async def close(self) -> None:
        # Over a pool it was given, its own client leaves that pool alone.
        await self._client.aclose()
        if self._owner is not None:
            await close_client(self._owner)


# What RedisCluster itself reads through its callbacks (its topology and its command table)
# stays parsed; every other command's reply is left as the server sent it.
_CLUSTER_OWN_CALLBACKS = ("CLUSTER", "COMMAND")


def _drop_reply_callbacks(callbacks: dict[str, Any]) -> None:
    for command in [name for name in callbacks if not name.startswith(_CLUSTER_OWN_CALLBACKS)]:
        del callbacks[command]


def open_transport(settings: LeadDBSettings) -> RedisTransport:
    """A transport of its own, as ``settings.redis_client`` chooses (the cache and the
    sessions each get one, so a slow session script never holds up a cache hit); redis-py's
    cluster or Sentinel client for a ``redis+cluster://`` or ``redis+sentinel://`` URL, which
    LeanRedis cannot speak to."""
    timeout = settings.redis_socket_timeout_seconds
    topology = parse_redis_url(settings.redis_url_value())
    if settings.redis_client == "redis-py" or topology.kind != "single":
        client = create_client(topology, timeout=timeout, retries=False, watch_primary=True)
        return RedisPyTransport(client, owned=True)
    return LeanRedis(settings.redis_url_value(), timeout=timeout)
