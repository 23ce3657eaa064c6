"""The read-your-writes position reported by the COMMIT's own message (migration 0008): past
the commit's record, caught by its notice (no query of its own), through PgBouncer too, and read
by a query where the report cannot run."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from conftest import run_settings
from integration.factories import make_org

from leaddb import LeadDB, LeadDBSettings
from leaddb.connections.replicas import ReplicaRouter, lsn_value, token_key
from leaddb.errors import LeadDBError, TransactionFailedError
from leaddb.models import LeadCreate, LeadUpdate

if TYPE_CHECKING:
    from conftest import TestServers

    from .postgres_topology import PostgresTopology

IN_RECOVERY = "SELECT pg_is_in_recovery()"
REPORT = "leaddb_private.report_wal_position(text)"


def _router(db: LeadDB) -> ReplicaRouter:
    router = db._router
    assert router is not None
    return router


def _settings(
    url: str, topology: PostgresTopology, redis_url: str, **extra: object
) -> LeadDBSettings:
    return run_settings(
        url, redis_url, replica_urls=topology.replica_url, replica_poll_ms=5, **extra
    )


@pytest.fixture
async def direct_db(clean_scale: PostgresTopology, servers: TestServers) -> AsyncIterator[LeadDB]:
    db = await LeadDB.connect(_settings(clean_scale.primary_url, clean_scale, servers.redis_url))
    try:
        yield db
    finally:
        await db.close()


async def _stored(redis_url: str, tenant: uuid.UUID) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        raw = await client.get(token_key(tenant))
    finally:
        await client.aclose()
    assert raw is not None
    return int(raw, 16)


@contextlib.asynccontextmanager
async def _report_dropped(topology: PostgresTopology) -> AsyncIterator[asyncpg.Connection]:
    """Migration 0008's report dropped while the block runs, then made again as it was (its
    privileges too); yields the primary's admin connection."""
    admin = await asyncpg.connect(topology.primary_url)
    definition = await admin.fetchval(f"SELECT pg_get_functiondef('{REPORT}'::regprocedure)")
    await admin.execute(f"DROP FUNCTION {REPORT}")
    try:
        yield admin
    finally:
        await admin.execute(definition)
        await admin.execute(f"REVOKE ALL ON FUNCTION {REPORT} FROM PUBLIC")
        await admin.execute(f"GRANT EXECUTE ON FUNCTION {REPORT} TO leaddb_app")
        await admin.close()


async def test_the_reported_position_is_past_the_commit_record_and_needs_no_query(
    direct_db: LeadDB, clean_scale: PostgresTopology, servers: TestServers
) -> None:
    org = await make_org(direct_db)  # the first commit finds out (one query)
    admin = await asyncpg.connect(clean_scale.primary_url)
    try:
        await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        for index in range(20):
            async with direct_db.tenant(org.id) as uow:
                await uow.leads.create(LeadCreate(email=f"w{index}@example.com"))
                xid = int(str(await uow.fetchval("SELECT pg_current_xact_id()::text")))
                start = await uow.fetchval("SELECT pg_current_wal_insert_lsn()::text")
                await uow.commit()
            stored = await _stored(servers.redis_url, org.id)
            # The commit record of that transaction, as the WAL holds it.
            end = await admin.fetchval(
                "SELECT end_lsn::text FROM "
                "pg_get_wal_records_info_till_end_of_wal($1::text::pg_lsn) "
                "WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' "
                "AND xid = $2::text::xid",
                start,
                str(xid),
            )
            assert end is not None
            assert stored >= lsn_value(str(end))
    finally:
        await admin.execute("DROP EXTENSION IF EXISTS pg_walinspect")
        await admin.close()
    assert _router(direct_db).positions_queried == 1  # the first commit's, which found out


async def test_a_second_process_reads_its_write_through_pgbouncer_by_the_reported_position(
    clean_scale: PostgresTopology, servers: TestServers
) -> None:
    settings = _settings(
        clean_scale.bouncer_url, clean_scale, servers.redis_url, transaction_pooler=True
    )
    writer, reader = await LeadDB.connect(settings), await LeadDB.connect(settings)
    try:
        org = await make_org(writer)
        on_replica = 0
        for index in range(40):
            async with writer.tenant(org.id) as uow:
                lead = await uow.leads.create(LeadCreate(email=f"p{index}@example.com"))
                await uow.commit()
            async with reader.tenant(org.id, read_only=True) as uow:
                assert await uow.leads.get(lead.id) is not None, f"read {index} missed its write"
            await asyncio.sleep(0.03)
            async with reader.tenant(org.id, read_only=True) as uow:
                assert await uow.leads.get(lead.id) is not None
                on_replica += bool(await uow.fetchval(IN_RECOVERY))
        assert on_replica > 0
        assert _router(writer).positions_queried == 1
    finally:
        await reader.close()
        await writer.close()


async def test_an_aborted_transaction_still_fails_its_commit(direct_db: LeadDB) -> None:
    org = await make_org(direct_db)
    async with direct_db.tenant(org.id) as uow:
        await uow.leads.create(LeadCreate(email="kept-not@example.com"))
        with pytest.raises(LeadDBError):
            await uow.execute("SELECT 1/0")
        with pytest.raises(TransactionFailedError, match="nothing was committed"):
            await uow.commit()
    async with direct_db.tenant(org.id) as uow:
        assert (await uow.leads.list(limit=10)).items == []


async def test_without_the_report_positions_are_read_by_a_query(
    clean_scale: PostgresTopology, servers: TestServers
) -> None:
    async with _report_dropped(clean_scale) as admin:
        db = await LeadDB.connect(
            _settings(clean_scale.primary_url, clean_scale, servers.redis_url)
        )
        try:
            org = await make_org(db)
            for index in range(3):
                async with db.tenant(org.id) as uow:
                    await uow.leads.create(LeadCreate(email=f"q{index}@example.com"))
                    await uow.commit()
                end = await admin.fetchval("SELECT pg_current_wal_insert_lsn()::text")
                assert await _stored(servers.redis_url, org.id) <= lsn_value(end)
            assert _router(db).positions_queried == 4
        finally:
            await db.close()


async def test_a_report_gone_after_it_was_found_fails_that_commit_as_maybe_committed(
    direct_db: LeadDB, clean_scale: PostgresTopology
) -> None:
    org = await make_org(direct_db)  # found out: commits report from now on
    async with _report_dropped(clean_scale):
        async with direct_db.tenant(org.id) as uow:
            await uow.leads.create(LeadCreate(email="gone@example.com"))
            with pytest.raises(LeadDBError):
                await uow.commit()
            assert uow.commit_sent
        async with direct_db.tenant(org.id) as uow:  # committed all the same
            assert len((await uow.leads.list(limit=10)).items) == 1
            await uow.leads.create(LeadCreate(email="after@example.com"))
            await uow.commit()  # by a query now
        assert _router(direct_db).positions_queried == 2


async def test_with_the_cache_on_the_position_rides_with_the_invalidation(
    clean_scale: PostgresTopology, servers: TestServers
) -> None:
    settings = _settings(clean_scale.primary_url, clean_scale, servers.redis_url)
    assert settings.cache_enabled
    writer, reader = await LeadDB.connect(settings), await LeadDB.connect(settings)
    try:
        org = await make_org(writer)
        async with writer.tenant(org.id) as uow:
            lead = await uow.leads.create(LeadCreate(email="rides@example.com", score=0))
            await uow.commit()
        async with writer.tenant(org.id) as uow:  # the writer's cache connection is up
            await uow.leads.get(lead.id)
        router = _router(writer)
        own_calls = 0
        evalsha = router._redis.evalsha

        async def counted(script: str, keys: list[str], args: list[Any]) -> Any:
            nonlocal own_calls
            own_calls += 1
            return await evalsha(script, keys, args)

        router._redis.evalsha = counted  # type: ignore[method-assign]
        for score in range(1, 21):
            async with reader.tenant(org.id) as uow:  # fills the cache
                assert (await uow.leads.get(lead.id)) is not None
            async with writer.tenant(org.id) as uow:
                await uow.leads.update(lead.id, LeadUpdate(score=score))
                await uow.commit()
            stored = await _stored(servers.redis_url, org.id)
            async with reader.tenant(org.id, read_only=True) as uow:
                found = await uow.leads.get(lead.id)
                assert found is not None
                assert found.score == score, f"update {score} not seen"
        assert own_calls == 0  # every position went out on the cache's connection
        assert stored > 0
    finally:
        await reader.close()
        await writer.close()
