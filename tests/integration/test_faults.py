"""Cancellation, a restarted PostgreSQL, an exhausted pool and slow statements: each ends in a
typed leaddb error, loses nothing committed, leaks no connection and no open transaction."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pgserver
import pytest
from pydantic import SecretStr

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import (
    ConnectionFailedError,
    LeadDBError,
    PoolTimeoutError,
    StatementTimeoutError,
)
from leaddb.models import LeadCreate, LeadUpdate, Organization, OrganizationCreate

CANCELLED_UNITS = 1000


async def _organization(db: LeadDB, slug: str) -> Organization:
    async with db.platform() as uow:
        organization = await uow.organizations.create(OrganizationCreate(name=slug, slug=slug))
        await uow.commit()
    return organization


async def _stuck_transactions(pg: asyncpg.Connection) -> int:
    value = await pg.fetchval(
        # This run's database only: other runs on the same server have their own.
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'leaddb' AND state LIKE 'idle in transaction%'"
    )
    return int(value)


async def test_cancelling_units_of_work_at_random_points_leaks_nothing(
    settings: LeadDBSettings, pg: asyncpg.Connection
) -> None:
    rng = random.Random(7)
    two_connections = settings.model_copy(update={"pool_size": 2, "max_overflow": 0})
    async with await LeadDB.connect(two_connections) as db:
        organization = await _organization(db, "cancel")

        async def work(index: int) -> None:
            async with db.tenant(organization.id) as uow:
                lead = await uow.leads.create(LeadCreate(email=f"c{index}@example.com"))
                await uow.leads.get(lead.id)
                lead = await uow.leads.update(lead.id, LeadUpdate(score=index % 100))
                await uow.leads.list(limit=5)
                await uow.commit()
            async with db.tenant(organization.id) as uow:
                await uow.leads.get(lead.id)

        finished = cancelled = 0
        for start in range(0, CANCELLED_UNITS, 4):
            tasks = [asyncio.create_task(work(index)) for index in range(start, start + 4)]
            # Cancel after a random number of event-loop steps: inside acquire, BEGIN, a
            # statement, COMMIT, the cache invalidation or the release.
            for _ in range(rng.randrange(0, 40)):
                await asyncio.sleep(0)
            for task in tasks:
                if rng.random() < 0.8:
                    task.cancel()
            for task in tasks:
                try:
                    await task
                    finished += 1
                except asyncio.CancelledError:
                    cancelled += 1
        assert finished > 0
        assert cancelled > 0
        assert await _stuck_transactions(pg) == 0
        # The pool of two serves the next unit of work at once.
        async with db.tenant(organization.id) as uow:
            await asyncio.wait_for(uow.leads.count(), timeout=2)
        assert db._pool.get_size() <= 2

    # Every lead is whole: created with its audit row, and updated at most once with its row.
    leads = await pg.fetch(
        "SELECT id, version, score FROM leads WHERE organization_id = $1", organization.id
    )
    audit = await pg.fetch(
        "SELECT entity_id, action::text AS action, count(*) AS n FROM activity_logs "
        "WHERE organization_id = $1 AND entity_type = 'lead' GROUP BY 1, 2",
        organization.id,
    )
    counts = {(row["entity_id"], row["action"]): row["n"] for row in audit}
    for lead in leads:
        assert counts.get((lead["id"], "created")) == 1
        assert counts.get((lead["id"], "updated"), 0) == lead["version"] - 1
    assert sum(n for (_, action), n in counts.items() if action == "created") == len(leads)
    print(f"\ncancellation: {finished} finished, {cancelled} cancelled, {len(leads)} leads whole")


async def test_exhausted_pool_raises_a_typed_error_and_nested_work_does_not_hang(
    settings: LeadDBSettings,
) -> None:
    one = settings.model_copy(update={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.3})
    async with await LeadDB.connect(one) as db:
        organization = await _organization(db, "pool")
        async with db.tenant(organization.id) as outer:
            await outer.leads.count()
            async with db.tenant(organization.id) as inner:
                with pytest.raises(PoolTimeoutError, match="LEADDB_POOL_TIMEOUT"):
                    await inner.leads.count()
            assert await outer.leads.count() == 0
        async with db.tenant(organization.id) as uow:
            assert await uow.leads.count() == 0


async def test_statement_timeout_is_typed_and_leaves_the_connection_usable(
    settings: LeadDBSettings, pg: asyncpg.Connection
) -> None:
    quick = settings.model_copy(
        update={"statement_timeout_seconds": 0.2, "pool_size": 1, "max_overflow": 0}
    )
    async with await LeadDB.connect(quick) as db:
        organization = await _organization(db, "slow")
        async with db.tenant(organization.id) as uow:
            with pytest.raises(StatementTimeoutError):
                await uow.execute("SELECT pg_sleep(2)")
        async with db.tenant(organization.id) as uow:
            assert await uow.leads.count() == 0
    assert await _stuck_transactions(pg) == 0


@pytest.fixture
async def own_postgres() -> AsyncIterator[tuple[Path, str]]:
    """A PostgreSQL this test may stop and start: a server of its own, whatever the run uses."""
    data_dir = Path(tempfile.mkdtemp(prefix="ldbr", dir="/tmp")) / "pg"
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    server.psql("CREATE DATABASE leaddb;")
    try:
        yield data_dir, f"postgresql://postgres@/leaddb?host={data_dir}"
    finally:
        pgserver.get_server(data_dir, cleanup_mode="delete").cleanup()
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def _on(settings: LeadDBSettings, url: str) -> LeadDBSettings:
    return settings.model_copy(update={"database_url": SecretStr(url)})


async def test_postgres_restart_fails_work_in_flight_typed_and_the_next_unit_succeeds(
    own_postgres: tuple[Path, str], settings: LeadDBSettings
) -> None:
    data_dir, url = own_postgres
    async with await LeadDB.connect(_on(settings, url)) as db:
        await db.migrate()
        organization = await _organization(db, "restart")
        async with db.tenant(organization.id) as uow:
            lead = await uow.leads.create(LeadCreate(email="kept@example.com"))
            await uow.commit()

        in_flight = db.tenant(organization.id)
        await in_flight.leads.count()
        pgserver.get_server(data_dir, cleanup_mode="stop").cleanup()
        with pytest.raises(ConnectionFailedError):
            await in_flight.leads.get(lead.id)
        await in_flight.rollback()
        pgserver.get_server(data_dir, cleanup_mode="stop")

        # The same LeadDB: dead pooled connections are noticed and replaced.
        for _ in range(3):
            async with db.tenant(organization.id) as uow:
                found = await uow.leads.get(lead.id)
                assert found is not None
                assert found.email == "kept@example.com"


async def test_nothing_raw_escapes_when_postgres_is_gone(
    own_postgres: tuple[Path, str], settings: LeadDBSettings
) -> None:
    data_dir, url = own_postgres
    async with await LeadDB.connect(_on(settings, url)) as db:
        await db.migrate()
        organization = await _organization(db, "gone")
        pgserver.get_server(data_dir, cleanup_mode="stop").cleanup()

        async def create_one(attempt: int) -> None:
            async with db.tenant(organization.id) as uow:
                await uow.leads.create(LeadCreate(email=f"x{attempt}@example.com"))
                await uow.commit()

        for attempt in range(3):
            with pytest.raises(LeadDBError):
                await create_one(attempt)
        with contextlib.suppress(LeadDBError):
            async with db.platform() as uow:
                await uow.organizations.get(uuid.uuid4())
        pgserver.get_server(data_dir, cleanup_mode="stop")
