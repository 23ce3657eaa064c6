"""Which Redis ``LEADDB_REDIS_URL`` names, and redis-py's client for it.

* ``redis://``, ``rediss://``, ``unix://``: one Redis (the cache's LeanRedis may talk to it).
* ``redis+cluster://[user:password@]host:port,host:port``: a Redis Cluster, through redis-py's
  ``RedisCluster``. Every multi-key command and script leaddb sends names keys of one hash tag
  (``{<org_id>}`` for the cache, ``{u:<user_id>}`` / ``{o:<org_id>}`` for the sessions), so each
  stays in one slot.
* ``redis+sentinel://[user:password@]host:port,host:port/<service>/<db>``: the primary that the
  Sentinels name ``<service>``, through redis-py's Sentinel client. ``master_for`` builds a new
  connection pool per call, so leaddb calls it once per client it keeps.

After a Sentinel failover the new primary may lack the last writes of the old one (replication
is asynchronous), the cache's invalidations among them. Every connection to the primary checks,
as it connects, whether the server is the primary that set ``PRIMARY_KEY``; a different server
(or the same one restarted) gets a fresh value, and the cache includes that value in the header
of every value it fills and reads it in the same MGET, so every value written before the change
of primary is stale from then on (leaddb.cache.store).
"""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from leaddb.settings import RedisTopology, parse_redis_url

__all__ = [
    "PRIMARY_KEY",
    "AnyRedis",
    "RedisTopology",
    "close_client",
    "create_client",
    "parse_redis_url",
]

AnyRedis = aioredis.Redis | RedisCluster
"""A redis-py asyncio client of one Redis, a Sentinel-managed primary or a Redis Cluster."""

PRIMARY_KEY = "leaddb:primary"
"""``<run_id of the primary that set it>.<random token>``; see the module docstring."""


def create_client(
    topology: RedisTopology, *, timeout: float, retries: bool, watch_primary: bool = False
) -> AnyRedis:
    """redis-py's client for ``topology``: short timeouts, because the cache must never stall.

    ``retries=False`` makes a client that never retries a command (the cache's: its breaker
    decides when Redis is tried again). ``watch_primary`` (Sentinel only) runs the change of
    primary check on every new connection.
    """
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": max(timeout, 1.0),
        "decode_responses": False,
    }
    if topology.kind != "single":
        # A single Redis takes its credentials from its URL, as redis-py reads it.
        common |= {"username": topology.username, "password": topology.password}
    if not retries:
        # A dead master (or its slots) gets an error at once, not after seconds of retries:
        # the cache then reads PostgreSQL. Otherwise redis-py's own default retries apply.
        common["retry"] = Retry(NoBackoff(), 0)
    if topology.kind == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in topology.nodes], **common
        )
    if topology.kind == "sentinel":
        sentinel = Sentinel(
            list(topology.nodes),
            sentinel_kwargs={
                "socket_timeout": max(timeout, 1.0),
                "socket_connect_timeout": max(timeout, 1.0),
                "username": topology.username,
                "password": topology.password,
            },
        )
        extra: dict[str, Any] = {}
        if watch_primary:
            extra["redis_connect_func"] = _check_primary
        primary: aioredis.Redis = sentinel.master_for(
            topology.service, redis_class=aioredis.Redis, db=topology.db, **common, **extra
        )
        return primary
    return aioredis.Redis.from_url(topology.url, **common)


async def replicated_call(
    client: AnyRedis, script: Any, keys: list[str], args: list[Any], timeout_ms: int
) -> tuple[Any, int]:
    """Run a registered script and ``WAIT 1`` on the same connection: its reply and how many
    replicas acknowledged it. Behind Sentinel an invalidation no replica took may be lost by
    a failover, so the cache treats it as lost (its tenant's epoch is replaced later)."""
    pipeline = client.pipeline(transaction=False)
    await script(keys=keys, args=args, client=pipeline)
    pipeline.execute_command("WAIT", 1, timeout_ms)
    reply, acknowledged = await pipeline.execute()
    return reply, int(acknowledged)


async def close_client(client: AnyRedis) -> None:
    """Close ``client`` and, for a Sentinel-managed one, its connections to the Sentinels."""
    await client.aclose()
    pool = client.connection_pool if isinstance(client, aioredis.Redis) else None
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


async def _check_primary(connection: Connection) -> None:
    """On a new connection to the primary: is this server the one that set ``PRIMARY_KEY``?

    If not (a failover, or a restart that reloaded an older dataset), set a fresh value before
    the connection serves anything, so no cached value filled before it is valid any more.
    """
    await connection.on_connect()
    # redis-py's SentinelManagedConnection keeps its pool in ``connection_pool``, and the pool
    # the primary's address Sentinel gave last in ``master_address`` (public attributes;
    # tests/unit/test_redis_topology.py fails if an upgrade renames them). A connection that
    # resolved the old primary's address before a failover and finished connecting after it
    # must not serve: it would read what the new primary's invalidations never reach.
    pool = getattr(connection, "connection_pool", None)
    expected = getattr(pool, "master_address", None)
    if expected is not None and (connection.host, connection.port) != tuple(expected):
        raise RedisConnectionError("connected to a former primary: Sentinel names another")
    await connection.send_command("INFO", "server")
    info = await connection.read_response()
    run_id = _run_id(info)
    await connection.send_command("GET", PRIMARY_KEY)
    current = await connection.read_response()
    if isinstance(current, bytes) and current.decode().split(".", 1)[0] == run_id:
        return
    await connection.send_command("SET", PRIMARY_KEY, f"{run_id}.{uuid.uuid4().hex}")
    await connection.read_response()
    if pool is not None:
        # The pool's other connections may still reach the old primary, which serves reads
        # until Sentinel demotes it (seconds): one process must not talk to two primaries.
        # In-flight commands on them fail, which the cache treats as Redis failing (an
        # invalidation among them is then lost and replayed on this primary). This connection
        # is closed too and reconnects on its first command; the check then finds its token.
        await pool.disconnect(inuse_connections=True)


def _run_id(info: object) -> str:
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip()
    raise ValueError("INFO server gave no run_id")
