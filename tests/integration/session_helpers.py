"""The session tests' shared pieces: stores over the test's Redis (and over none), and checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_CLIENTS, TestServers

from leaddb import LeadDBSettings
from leaddb.connections.lean_redis import LeanRedis
from leaddb.sessions import SessionStore

DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(params=REDIS_CLIENTS)
async def store(
    request: pytest.FixtureRequest,
    redis_client: aioredis.Redis,
    settings: LeadDBSettings,
    servers: TestServers,
) -> AsyncIterator[SessionStore]:
    """A store over the test's Redis, once per transport (LEADDB_REDIS_CLIENT)."""
    if request.param == "redis-py":
        yield SessionStore(redis_client, settings)
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


async def all_keys(redis: aioredis.Redis) -> list[bytes]:
    return [key async for key in redis.scan_iter(count=1000)]
