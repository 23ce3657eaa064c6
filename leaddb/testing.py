"""A pytest plugin for services that use leaddb: ``pytest -p leaddb.testing``.

What it gives a test (fixtures):

* ``leaddb``: a migrated ``LeadDB``, connected once per run and shared, with every leaddb table
  and every ``leaddb:*`` Redis key emptied before each test that asks for it (other keys of the
  Redis database are left alone);
* ``leaddb_factories``: organizations with users and leads, made through leaddb's public API;
* ``leaddb_settings``: settings for a ``LeadDB`` of the test's own on the same database
  (``LeadDB.connect(leaddb_settings.model_copy(update={...}))``), after the same cleaning;
* ``leaddb_servers``, ``leaddb_database_url``, ``leaddb_clean``: the pieces the above are made
  of, for suites that need them.

Servers: ``LEADDB_TEST_DATABASE_URL`` (a PostgreSQL server where the run may create and drop a
database) and ``LEADDB_TEST_REDIS_URL`` (a Redis database the run may write ``leaddb:*`` keys
in, as ``LEADDB_REDIS_URL`` names one: a ``redis+cluster://`` URL's keys are emptied on every
master); unset, an embedded PostgreSQL and Redis (extra ``embedded``) are started for the run.
Either way the run creates a database of its own, migrates it once and drops it at the end.
``redis_for_url`` gives a test redis-py's client of such a URL, to look at what leaddb wrote.

``LEADDB_TEST_POOLER_URL`` (opt-in; e.g. ``postgresql://postgres@127.0.0.1:6432``): a transaction
pooler (PgBouncer with ``pool_mode = transaction``) in front of ``LEADDB_TEST_DATABASE_URL``'s
server that passes any database name through. Set, the ``LeadDB``s of ``leaddb`` and
``leaddb_settings`` reach the run's database through its host and port, with
``transaction_pooler=True``; creating, migrating, cleaning and dropping the database stay on the
direct URL (``leaddb_database_url`` is that one). ``nox -s scale`` runs leaddb's tenancy,
row-level-security, cache and bulk suites so (tests/scale/run_through_pooler.py).

Event loops: whatever loop scopes the service configured for pytest-asyncio, ``leaddb`` is a
``LeadDB`` of the loop the test runs on. With ``asyncio_default_fixture_loop_scope`` and
``asyncio_default_test_loop_scope`` set to ``session``, that is one ``LeadDB`` for the whole run;
with pytest-asyncio's defaults (a loop per test), each test connects one of its own and closes
it (a few milliseconds more per test), since a pool's connections cannot cross loops.

Opt-in (``-p leaddb.testing``, ``addopts = "-p leaddb.testing"``, or ``pytest_plugins`` in the
top conftest.py) rather than a ``pytest11`` entry point: a plugin loaded automatically would
import leaddb into, and add its fixtures to, every suite of an environment where leaddb happens
to be installed.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from leaddb import LeadDB, LeadDBSettings
    from leaddb.connections.redis_topology import AnyRedis
    from leaddb.embedded import EmbeddedPostgres, EmbeddedRedis
    from leaddb.models import Lead, Organization, User

# Deletes every key of leaddb's (cache rows, tokens, generations, epochs, sessions and their
# indexes: all start with "leaddb:") in one round trip, and nothing else of the database. On a
# Redis Cluster it runs on every master, each deleting its own keys: one UNLINK per key, since
# an UNLINK of keys of several slots is refused there (CROSSSLOT, even inside a script).
_DELETE_LEADDB_KEYS = """
local cursor = '0'
local deleted = 0
repeat
  local reply = redis.call('SCAN', cursor, 'MATCH', 'leaddb:*', 'COUNT', 1000)
  cursor = reply[1]
  for _, key in ipairs(reply[2]) do
    deleted = deleted + redis.call('UNLINK', key)
  end
until cursor == '0'
return deleted
"""


@dataclass
class Servers:
    """The servers of this run: an admin URL that may create databases, and a Redis URL."""

    __test__ = False  # a dataclass, not a test class, whatever name a suite imports it under

    admin_url: str
    redis_url: str
    embedded_postgres: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None
    scratch: Path | None = field(default=None)


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy-style URL as a DSN asyncpg accepts (``leaddb.settings.asyncpg_dsn``)."""
    from leaddb.settings import asyncpg_dsn as dsn

    return dsn(url)


def run_settings(database_url: str, redis_url: str, **overrides: object) -> LeadDBSettings:
    """Settings for a test: the run's servers, a small pool, nothing from a .env file."""
    from pydantic import SecretStr

    from leaddb import LeadDBSettings

    values: dict[str, object] = {
        "database_url": SecretStr(database_url),
        "redis_url": SecretStr(redis_url),
        "pool_size": 5,
        "max_overflow": 5,
        **overrides,
    }
    return LeadDBSettings.model_validate(values)


def redis_for_url(url: str) -> AnyRedis:
    """redis-py's asyncio client of a Redis URL as ``LEADDB_REDIS_URL`` takes it, for a test to
    look at what leaddb wrote: ``redis.asyncio.Redis`` for one Redis (``redis://``,
    ``unix://``), ``RedisCluster`` for ``redis+cluster://``, the Sentinel-managed primary for
    ``redis+sentinel://``. Replies as redis-py parses them; close it with ``close_redis``."""
    import redis.asyncio as aioredis

    from leaddb.connections.redis_topology import create_client, parse_redis_url

    topology = parse_redis_url(url)
    if topology.kind == "single":
        return aioredis.Redis.from_url(url)
    return create_client(topology, timeout=5.0, retries=True)


async def close_redis(client: AnyRedis) -> None:
    """Close a client of ``redis_for_url`` (and a Sentinel-managed one's Sentinel connections)."""
    from leaddb.connections.redis_topology import close_client

    await close_client(client)


def _fixture_settings(database_url: str, redis_url: str) -> LeadDBSettings:
    """``run_settings`` for the ``LeadDB``s the fixtures open: through ``LEADDB_TEST_POOLER_URL``'s
    host and port with ``transaction_pooler=True`` when that is set, else on ``database_url``."""
    pooler = os.environ.get("LEADDB_TEST_POOLER_URL", "").strip()
    if not pooler:
        return run_settings(database_url, redis_url)
    from sqlalchemy.engine import make_url

    through = make_url(pooler)
    url = make_url(database_url).set(host=through.host, port=through.port)
    return run_settings(url.render_as_string(False), redis_url, transaction_pooler=True)


@pytest.fixture(scope="session")
def leaddb_servers() -> Iterator[Servers]:
    """``LEADDB_TEST_DATABASE_URL`` / ``LEADDB_TEST_REDIS_URL``, or embedded servers."""
    from leaddb.embedded import start_missing

    started = start_missing(
        os.environ.get("LEADDB_TEST_DATABASE_URL", "").strip() or None,
        os.environ.get("LEADDB_TEST_REDIS_URL", "").strip() or None,
        prefix="ldbt",
    )
    try:
        yield Servers(
            started.database_url,
            started.redis_url,
            started.postgres,
            started.redis,
            started.scratch,
        )
    finally:
        started.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def leaddb_database_url(leaddb_servers: Servers) -> AsyncIterator[str]:
    """A database of this run's own, migrated to head once, dropped at the end."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from leaddb import migrate
    from leaddb.db import create_engine

    name = f"leaddb_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(leaddb_servers.admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(leaddb_servers.admin_url).set(database=name).render_as_string(False)
    try:
        engine = create_engine(run_settings(url, leaddb_servers.redis_url))
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
        yield url
    finally:
        admin = await asyncpg.connect(asyncpg_dsn(leaddb_servers.admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class Cleaner:
    """Empties leaddb's tables and Redis keys, holding its two connections for the whole run.

    DELETE, not TRUNCATE: a TRUNCATE replaces each table's files and takes an exclusive lock,
    which measured 30x slower than deleting a test's few rows (python -m bench.testing_cleanup).
    Deleting in any order needs the foreign keys' triggers skipped, which
    ``session_replication_role = replica`` does for a superuser (the embedded server's login,
    and usually a test server's); for another login it falls back to TRUNCATE.
    """

    tables: Sequence[str]
    connection: Any  # asyncpg.Connection
    redis: Any  # redis.asyncio.Redis or RedisCluster (redis_for_url)
    truncate: bool = False

    async def clean(self) -> None:
        await self.clean_tables()
        await self.clean_redis()

    async def clean_redis(self) -> None:
        from redis.asyncio.cluster import RedisCluster

        if not isinstance(self.redis, RedisCluster):
            await self.redis.eval(_DELETE_LEADDB_KEYS, 0)
            return
        # Each master's keys on that master, all at once (a script sees its own node's keys).
        # initialize() learns the masters on first use and is a no-op after.
        await self.redis.initialize()
        await asyncio.gather(
            *(
                self.redis.execute_command("EVAL", _DELETE_LEADDB_KEYS, 0, target_nodes=node)
                for node in self.redis.get_primaries()
            )
        )

    async def clean_tables(self) -> None:
        import asyncpg

        quoted = self.tables  # already quoted and schema-qualified
        if not self.truncate:
            # One message, one round trip: simple protocol runs the statements in order.
            deletes = "; ".join(f"DELETE FROM {table}" for table in quoted)  # noqa: S608
            try:
                await self.connection.execute(
                    f"BEGIN; SET LOCAL session_replication_role = replica; {deletes}; COMMIT"
                )
                return
            except asyncpg.InsufficientPrivilegeError:
                await self.connection.execute("ROLLBACK")
                self.truncate = True
        await self.connection.execute(f"TRUNCATE {', '.join(quoted)} RESTART IDENTITY CASCADE")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def leaddb_cleaner(
    leaddb_servers: Servers, leaddb_database_url: str
) -> AsyncIterator[Cleaner]:
    import asyncpg

    connection = await asyncpg.connect(asyncpg_dsn(leaddb_database_url))
    client = redis_for_url(leaddb_servers.redis_url)
    try:
        # leaddb's tables, and the lists in leaddb_private that rows leave behind (not its keys).
        rows = await connection.fetch(
            "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables "
            "WHERE (schemaname = 'public' AND tablename <> 'alembic_version') "
            "OR (schemaname = 'leaddb_private' "
            "AND tablename IN ('deleted_organizations', 'pending_invalidations')) "
            "ORDER BY schemaname, tablename"
        )
        yield Cleaner([row["name"] for row in rows], connection, client)
    finally:
        await close_redis(client)
        await connection.close()


@pytest_asyncio.fixture(loop_scope="session")
async def leaddb_clean(leaddb_cleaner: Cleaner) -> None:
    """Empty leaddb's tables and leaddb's Redis keys before the test."""
    await leaddb_cleaner.clean()


@pytest.fixture
def leaddb_settings(
    leaddb_servers: Servers, leaddb_database_url: str, leaddb_clean: None
) -> LeadDBSettings:
    """Settings for a ``LeadDB`` on this run's database, emptied for this test (through
    ``LEADDB_TEST_POOLER_URL`` when that is set)."""
    return _fixture_settings(leaddb_database_url, leaddb_servers.redis_url)


@dataclass(frozen=True)
class _Shared:
    db: LeadDB
    loop: asyncio.AbstractEventLoop


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def leaddb_shared(
    leaddb_servers: Servers, leaddb_database_url: str
) -> AsyncIterator[_Shared]:
    from leaddb import LeadDB

    settings = _fixture_settings(leaddb_database_url, leaddb_servers.redis_url)
    # It lives through every test: a poll of the durable list, every second, would be a
    # transaction of its own in whichever test it fell (an open transaction, a connection in
    # use, rows read between a test's statements). The list is still applied after this
    # process sees Redis fail (leaddb.pending), as in every LeadDB.
    database = await LeadDB.connect(settings.model_copy(update={"pending_poll_seconds": 0}))
    try:
        yield _Shared(database, asyncio.get_running_loop())
    finally:
        await database.close()


@pytest_asyncio.fixture
async def leaddb(leaddb_shared: _Shared, leaddb_settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    """The run's migrated ``LeadDB``, its tables and leaddb's Redis keys emptied for this test,
    its cache counters at zero (``leaddb.cache.stats()`` counts this test's calls only).

    On pytest-asyncio's session loop it is one ``LeadDB`` for the run, which does not poll the
    durable list between tests (``pending_poll_seconds=0``); on a loop of the test's own, a
    ``LeadDB`` connected for the test (see the module docstring)."""
    if asyncio.get_running_loop() is leaddb_shared.loop:
        leaddb_shared.db.cache.reset_stats()
        yield leaddb_shared.db
        return
    from leaddb import LeadDB

    database = await LeadDB.connect(leaddb_settings)
    try:
        yield database
    finally:
        await database.close()


@dataclass(frozen=True)
class OrganizationWithData:
    """What ``leaddb_factories.organization()`` made."""

    organization: Organization
    users: list[User]
    leads: list[Lead]

    @property
    def id(self) -> uuid.UUID:
        return self.organization.id


class Factories:
    """Committed rows made through leaddb's public API, unique per call."""

    def __init__(self, db: LeadDB) -> None:
        self.db = db

    async def organization(
        self, *, users: int = 1, leads: int = 3, name: str | None = None
    ) -> OrganizationWithData:
        """An organization with ``users`` users and ``leads`` leads, in two units of work."""
        from leaddb.models import LeadCreate, OrganizationCreate, UserCreate

        suffix = uuid.uuid4().hex[:10]
        async with self.db.platform() as uow:
            organization = await uow.organizations.create(
                OrganizationCreate(name=name or f"Org {suffix}", slug=f"org-{suffix}")
            )
            await uow.commit()
        async with self.db.tenant(organization.id) as uow:
            made_users = [
                await uow.users.create(
                    UserCreate(email=f"user{n}-{suffix}@example.com", full_name=f"User {n}")
                )
                for n in range(users)
            ]
            made_leads = [
                await uow.leads.create(
                    LeadCreate(email=f"lead{n}-{suffix}@example.com", first_name=f"Lead{n}")
                )
                for n in range(leads)
            ]
            await uow.commit()
        return OrganizationWithData(organization, made_users, made_leads)

    async def lead(self, organization_id: uuid.UUID, **fields: Any) -> Lead:
        """One committed lead; ``fields`` as ``LeadCreate`` takes them (a unique email if none)."""
        from leaddb.models import LeadCreate

        fields.setdefault("email", f"lead-{uuid.uuid4().hex[:10]}@example.com")
        async with self.db.tenant(organization_id) as uow:
            lead = await uow.leads.create(LeadCreate.model_validate(fields))
            await uow.commit()
        return lead

    async def user(self, organization_id: uuid.UUID, **fields: Any) -> User:
        """One committed user; ``fields`` as ``UserCreate`` takes them."""
        from leaddb.models import UserCreate

        fields.setdefault("email", f"user-{uuid.uuid4().hex[:10]}@example.com")
        fields.setdefault("full_name", "Test User")
        async with self.db.tenant(organization_id) as uow:
            user = await uow.users.create(UserCreate.model_validate(fields))
            await uow.commit()
        return user


@pytest.fixture
def leaddb_factories(leaddb: LeadDB) -> Factories:
    """Organizations with users and leads (``await leaddb_factories.organization(leads=5)``)."""
    return Factories(leaddb)
