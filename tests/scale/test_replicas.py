"""Read-only units of work on a streaming replica, with read-your-writes across processes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import pytest
from conftest import run_settings
from integration.factories import make_org

from leaddb import LeadDB, LeadDBSettings
from leaddb.connections.replicas import PositionLookup
from leaddb.errors import ReadOnlyError
from leaddb.models import LeadCreate, OrganizationCreate

if TYPE_CHECKING:
    from conftest import TestServers

    from .postgres_topology import PostgresTopology

IN_RECOVERY = "SELECT pg_is_in_recovery()"


def _dead_url(topology: PostgresTopology) -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return topology.url(port)  # nothing listens there once the probe is closed


@pytest.fixture
def replica_settings(clean_scale: PostgresTopology, servers: TestServers) -> LeadDBSettings:
    return run_settings(
        clean_scale.primary_url,
        servers.redis_url,
        replica_urls=f"{_dead_url(clean_scale)},{clean_scale.replica_url}",
        replica_poll_ms=5,
    )


@pytest.fixture
async def two_processes(replica_settings: LeadDBSettings) -> AsyncIterator[tuple[LeadDB, LeadDB]]:
    """Two LeadDBs sharing Redis, as two processes of one service would."""
    writer = await LeadDB.connect(replica_settings)
    reader = await LeadDB.connect(replica_settings)
    try:
        yield writer, reader
    finally:
        await reader.close()
        await writer.close()


@contextlib.asynccontextmanager
async def _replica_applying_late(topology: PostgresTopology) -> AsyncIterator[None]:
    """The replica applies what it receives 3 s late (``recovery_min_apply_delay``) while the
    block runs, from 0.3 s after it begins (the setting reloaded)."""
    admin = await asyncpg.connect(topology.url(topology.replica_port, "postgres"))
    try:
        await admin.execute("ALTER SYSTEM SET recovery_min_apply_delay = '3s'")
        await admin.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.3)
        yield
    finally:
        await admin.execute("ALTER SYSTEM RESET recovery_min_apply_delay")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.close()


async def _where(db: LeadDB, org_id: uuid.UUID, lead_id: uuid.UUID) -> tuple[bool, bool]:
    """(served by the replica, the lead was there)."""
    async with db.tenant(org_id, read_only=True) as uow:
        found = await uow.leads.get(lead_id)
        on_replica = bool(await uow.fetchval(IN_RECOVERY))
    return on_replica, found is not None


async def test_a_read_after_a_commit_in_another_process_always_sees_it(
    two_processes: tuple[LeadDB, LeadDB],
) -> None:
    writer, reader = two_processes
    org = await make_org(writer)
    served_by_replica = 0
    for index in range(60):
        async with writer.tenant(org.id) as uow:
            lead = await uow.leads.create(LeadCreate(email=f"l{index}@example.com"))
            await uow.commit()
        on_replica, found = await _where(reader, org.id, lead.id)
        assert found, f"read {index} missed the write it followed (replica: {on_replica})"
        served_by_replica += on_replica
        # A read a little later, once the background poll has seen the replica replay the
        # write (a read right after it may or may not find that yet, by timing alone).
        await asyncio.sleep(0.05)
        later_on_replica, found = await _where(reader, org.id, lead.id)
        assert found
        served_by_replica += later_on_replica
    assert served_by_replica > 0


async def test_a_lagging_replica_is_skipped_for_the_tenant_that_wrote(
    two_processes: tuple[LeadDB, LeadDB], clean_scale: PostgresTopology
) -> None:
    writer, reader = two_processes
    org = await make_org(writer)
    quiet = await make_org(writer)
    async with _replica_applying_late(clean_scale):
        async with writer.tenant(org.id) as uow:
            lead = await uow.leads.create(LeadCreate(email="late@example.com"))
            await uow.commit()
        for _ in range(20):
            assert await _where(reader, org.id, lead.id) == (False, True)
            await asyncio.sleep(0.02)
        # A tenant with nothing new is still served by the replica meanwhile.
        async with reader.tenant(quiet.id, read_only=True) as uow:
            assert await uow.fetchval(IN_RECOVERY) is True


async def test_a_write_in_a_read_only_unit_of_work_is_refused_on_replica_and_primary(
    two_processes: tuple[LeadDB, LeadDB],
) -> None:
    writer, reader = two_processes
    org = await make_org(writer)
    await asyncio.sleep(0.1)  # the replica has replayed the organization by now
    places = set()
    for db in (reader, writer):
        for _ in range(10):
            async with db.tenant(org.id, read_only=True) as uow:
                places.add(await uow.fetchval(IN_RECOVERY))
                with pytest.raises(ReadOnlyError):
                    await uow.leads.create(LeadCreate(email="no@example.com"))
    async with writer.platform(read_only=True) as uow:
        with pytest.raises(ReadOnlyError):
            await uow.organizations.create(OrganizationCreate(name="No", slug="no-org"))
    assert True in places


async def test_read_only_units_of_work_go_to_the_primary_when_redis_is_unreachable(
    clean_scale: PostgresTopology, replica_settings: LeadDBSettings
) -> None:
    writer = await LeadDB.connect(replica_settings)
    try:
        org = await make_org(writer)
    finally:
        await writer.close()
    no_redis = replica_settings.model_copy(
        update={"redis_url": run_settings("postgresql://x/y", "redis://127.0.0.1:1/0").redis_url}
    )
    db = await LeadDB.connect(no_redis)
    try:
        for _ in range(10):
            async with db.tenant(org.id, read_only=True) as uow:
                assert await uow.fetchval(IN_RECOVERY) is False
            await asyncio.sleep(0.01)
    finally:
        await db.close()


async def test_a_read_only_unit_of_work_fills_no_cache_entry(
    two_processes: tuple[LeadDB, LeadDB],
) -> None:
    writer, reader = two_processes
    org = await make_org(writer)
    async with writer.tenant(org.id) as uow:
        lead = await uow.leads.create(LeadCreate(email="cached@example.com"))
        await uow.commit()
    for _ in range(100):
        on_replica, found = await _where(reader, org.id, lead.id)
        assert found
        if on_replica:
            break
        await asyncio.sleep(0.02)
    assert on_replica
    assert reader.cache.stats_counters.fills == 0
    async with reader.tenant(org.id) as uow:  # not read-only: fills
        assert await uow.leads.get(lead.id) is not None
    assert reader.cache.stats_counters.fills == 1


async def _replica_sessions_in_transaction(topology: PostgresTopology) -> int:
    admin = await asyncpg.connect(topology.url(topology.replica_port, "postgres"))
    try:
        count = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
            "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()",
            topology.database,
        )
    finally:
        await admin.close()
    return int(count)


def _replica_pool_settled(db: LeadDB) -> bool:
    router = db._router
    assert router is not None
    pools = [replica.pool for replica in router.replicas]
    return all(pool.get_size() == pool.get_idle_size() for pool in pools)


async def test_a_speculative_begin_on_a_replica_behind_is_given_back_rolled_back(
    two_processes: tuple[LeadDB, LeadDB], clean_scale: PostgresTopology
) -> None:
    """The reader begins on the replica while it reads the tenant's position; the replica is
    behind the other process's write, so the read runs on the primary and the replica's
    connection goes back to its pool, rolled back."""
    writer, reader = two_processes
    org = await make_org(writer)
    await _where(reader, org.id, org.id)  # the reader starts polling the replica
    await asyncio.sleep(0.1)
    async with _replica_applying_late(clean_scale):
        async with writer.tenant(org.id) as uow:
            lead = await uow.leads.create(LeadCreate(email="behind@example.com"))
            await uow.commit()
        router = reader._router
        assert router is not None
        lookups = 0
        lookup = router.lookup

        def counted(tenant: uuid.UUID | None) -> PositionLookup:
            nonlocal lookups
            lookups += 1
            return lookup(tenant)

        router.lookup = counted  # type: ignore[method-assign]
        for _ in range(10):
            assert await _where(reader, org.id, lead.id) == (False, True)
        assert lookups == 10  # each began on the replica first (it knows of no write)
        for _ in range(50):
            if _replica_pool_settled(reader):
                break
            await asyncio.sleep(0.01)
        assert _replica_pool_settled(reader)
        assert await _replica_sessions_in_transaction(clean_scale) == 0


async def test_a_process_that_wrote_reads_the_primary_without_asking_redis(
    two_processes: tuple[LeadDB, LeadDB],
) -> None:
    writer, _ = two_processes
    org = await make_org(writer)
    router = writer._router
    assert router is not None
    asked = 0
    lookup = router.lookup

    def counted(tenant: uuid.UUID | None) -> PositionLookup:
        nonlocal asked
        asked += 1
        return lookup(tenant)

    router.lookup = counted  # type: ignore[method-assign]
    async with writer.tenant(org.id) as uow:
        lead = await uow.leads.create(LeadCreate(email="mine@example.com"))
        await uow.commit()
    # Right after its own commit, before the poll can have seen the replica replay it.
    assert await _where(writer, org.id, lead.id) == (False, True)
    assert asked == 0


async def test_read_only_units_of_work_cancelled_while_routing_leave_no_transaction_open(
    two_processes: tuple[LeadDB, LeadDB], clean_scale: PostgresTopology
) -> None:
    writer, reader = two_processes
    org = await make_org(writer)
    await _where(reader, org.id, org.id)  # the reader starts polling the replica
    await asyncio.sleep(0.1)

    async def one() -> None:
        async with reader.tenant(org.id, read_only=True) as uow:
            await uow.fetchval("SELECT 1")

    for index in range(60):
        task = asyncio.create_task(one())
        # Cancelled at every stage: before the BEGIN, during it, during the GET, after both.
        for _ in range(index % 6):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.2)
    assert _replica_pool_settled(reader)
    assert await _replica_sessions_in_transaction(clean_scale) == 0
    assert await _where(reader, org.id, org.id) is not None  # the pools still serve
