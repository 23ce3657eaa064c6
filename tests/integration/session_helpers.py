"""The session tests' shared pieces: stores over the test's Redis (and over none), and checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_CLIENTS, TestServers

from leaddb import LeadDBSettings
from leaddb.connections.lean_redis import LeanRedis
from leaddb.connections.redis_topology import AnyRedis, create_client, parse_redis_url
from leaddb.connections.redis_transport import RedisPyTransport
from leaddb.sessions import SessionStore

DEAD_REDIS = "redis://127.0.0.1:1/0"

MakeStore = Callable[[LeadDBSettings], SessionStore]


@pytest.fixture
async def make_store(redis_client: AnyRedis, servers: TestServers) -> AsyncIterator[MakeStore]:
    """``make_store(settings)``: a store over the test's Redis through redis-py, closed after the
    test. Over one Redis it is ``SessionStore(redis_client, settings)``; a ``RedisCluster``'s
    replies can be made raw only on a client of the transport's own (RedisPyTransport), so on a
    cluster each store gets one, as leaddb's own sessions do."""
    made: list[SessionStore] = []

    def make(settings: LeadDBSettings) -> SessionStore:
        if isinstance(redis_client, aioredis.Redis):
            return SessionStore(redis_client, settings)
        client = create_client(
            parse_redis_url(servers.redis_url),
            timeout=settings.redis_socket_timeout_seconds,
            retries=False,
        )
        store = SessionStore(RedisPyTransport(client, owned=True), settings)
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            await store.close()


@pytest.fixture(params=REDIS_CLIENTS)
async def store(
    request: pytest.FixtureRequest,
    make_store: MakeStore,
    settings: LeadDBSettings,
    servers: TestServers,
) -> AsyncIterator[SessionStore]:
    """A store over the test's Redis, once per transport (LEADDB_REDIS_CLIENT)."""
    if request.param == "redis-py":
        yield make_store(settings)
        return
    lean = LeanRedis(servers.redis_url, timeout=settings.redis_socket_timeout_seconds)
    try:
        yield SessionStore(lean, settings)
    finally:
        await lean.close()


@pytest.fixture
async def dead_store(settings: LeadDBSettings) -> AsyncIterator[SessionStore]:
    """A store whose Redis refuses every connection."""
    client = aioredis.Redis.from_url(DEAD_REDIS, socket_connect_timeout=1)
    try:
        yield SessionStore(client, settings)
    finally:
        await client.aclose()


def short_lived(settings: LeadDBSettings, **lifetimes: int) -> LeadDBSettings:
    return settings.model_copy(update=lifetimes)


def near(value: datetime, expected: datetime, seconds: float = 1.0) -> bool:
    return abs((value - expected).total_seconds()) <= seconds


def as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return repr(value).encode()


async def all_keys(redis: AnyRedis) -> list[bytes]:
    """Every key of the database (of every master, on a cluster)."""
    return [key async for key in redis.scan_iter(count=1000)]
