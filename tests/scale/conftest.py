"""The scale-out topologies of ``nox -s scale`` (LEADDB_SCALE=1), started once per run.

PostgreSQL's (PgBouncer, a synchronous replica) use the run's Redis (LEADDB_TEST_REDIS_URL, else
the embedded one of tests/conftest.py); the Redis ones (a 3-master Cluster, a primary + replica
+ Sentinel) are started from the machine's redis-server, per test module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import asyncpg
import pytest
import redis.asyncio as aioredis
from conftest import run_settings

from leaddb import LeadDB, LeadDBSettings
from leaddb import migrate as migrations
from leaddb.db import create_engine

from . import postgres_topology
from .redis_topology import RedisCluster3, RedisSentinelSet

if TYPE_CHECKING:
    from conftest import TestServers

    from .postgres_topology import PostgresTopology


@pytest.fixture(scope="session")
def pg_topology() -> Iterator[PostgresTopology]:
    topology = postgres_topology.start()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
async def migrated(pg_topology: PostgresTopology, servers: TestServers) -> PostgresTopology:
    engine = create_engine(run_settings(pg_topology.primary_url, servers.redis_url))
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()
    return pg_topology


@pytest.fixture
async def clean_scale(migrated: PostgresTopology, servers: TestServers) -> PostgresTopology:
    """Empty tables on the primary and an empty Redis database before each test."""
    connection = await asyncpg.connect(migrated.primary_url)
    try:
        names = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
        quoted = ", ".join(f'"{row["tablename"]}"' for row in names)
        await connection.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()
    client = aioredis.Redis.from_url(servers.redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return migrated


@pytest.fixture
def bouncer_settings(clean_scale: PostgresTopology, servers: TestServers) -> LeadDBSettings:
    """leaddb through PgBouncer; a pool larger than PgBouncer's, so its clients share."""
    return run_settings(
        clean_scale.bouncer_url,
        servers.redis_url,
        transaction_pooler=True,
        pool_size=25,
        max_overflow=25,
    )


@pytest.fixture
async def bouncer_db(bouncer_settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    database = await LeadDB.connect(bouncer_settings)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster3]:
    """A 3-master Redis Cluster for this module (a test may kill one of its masters)."""
    started = RedisCluster3.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def sentinel_set() -> Iterator[RedisSentinelSet]:
    """A Redis primary, its replica and a Sentinel, for this module."""
    started = RedisSentinelSet.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def cluster_settings(
    cluster: RedisCluster3, database_url: str, clean_servers: None
) -> LeadDBSettings:
    cluster.wait_ok()
    cluster.flush()
    return run_settings(database_url, cluster.url)


@pytest.fixture
def sentinel_settings(
    sentinel_set: RedisSentinelSet, database_url: str, clean_servers: None
) -> LeadDBSettings:
    sentinel_set.flush()
    return run_settings(database_url, sentinel_set.url())


@pytest.fixture
async def cluster_db(cluster_settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    database = await LeadDB.connect(cluster_settings)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def sentinel_db(sentinel_settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    database = await LeadDB.connect(sentinel_settings)
    try:
        yield database
    finally:
        await database.close()
