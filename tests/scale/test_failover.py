"""Failover: the primary dies, the synchronous standby is promoted (``pg_ctl promote``), and
leaddb, given both hosts with ``target_session_attrs=read-write``, carries on there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from conftest import run_settings
from integration.factories import make_org

from leaddb import LeadDB
from leaddb import migrate as migrations
from leaddb.db import create_engine
from leaddb.errors import ConnectionFailedError
from leaddb.models import LeadCreate

from . import postgres_topology

if TYPE_CHECKING:
    from conftest import TestServers

    from leaddb.uow import TenantUnitOfWork

    from .postgres_topology import PostgresTopology


@pytest.fixture
async def own_topology(servers: TestServers) -> AsyncIterator[PostgresTopology]:
    """A topology of this test's own: it kills the primary."""
    topology = await asyncio.to_thread(postgres_topology.start)
    try:
        engine = create_engine(run_settings(topology.primary_url, servers.redis_url))
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()
        yield topology
    finally:
        await asyncio.to_thread(topology.stop)


async def test_after_the_primary_dies_units_of_work_reach_the_promoted_standby(
    own_topology: PostgresTopology, servers: TestServers
) -> None:
    settings = run_settings(own_topology.failover_url, servers.redis_url, cache_enabled=False)
    db = await LeadDB.connect(settings)
    try:
        org = await make_org(db)
        acknowledged = []
        for index in range(20):
            async with db.tenant(org.id) as uow:
                lead = await uow.leads.create(LeadCreate(email=f"acked{index}@example.com"))
                await uow.commit()
            acknowledged.append(lead.id)
        in_flight = db.tenant(org.id)
        await in_flight.__aenter__()
        doomed = await in_flight.leads.create(LeadCreate(email="in-flight@example.com"))

        await asyncio.to_thread(own_topology.pg_ctl, "stop", "-m", "immediate", "-w")
        with pytest.raises(ConnectionFailedError):
            await in_flight.commit()
        await in_flight.__aexit__(None, None, None)

        async def write(uow: TenantUnitOfWork) -> uuid.UUID:
            return (await uow.leads.create(LeadCreate(email="retried@example.com"))).id

        # Started before the promotion: it fails, waits, and is run again on the new primary.
        retried = asyncio.create_task(db.run_in_tenant(org.id, write))
        await asyncio.sleep(0.3)
        assert not retried.done()
        await asyncio.to_thread(own_topology.pg_ctl, "promote", "-w", data=own_topology.replica_dir)
        retried_id = await asyncio.wait_for(retried, timeout=30)

        async with db.tenant(org.id) as uow:
            assert await uow.fetchval("SELECT pg_is_in_recovery()") is False
            kept = await uow.leads.get_many([*acknowledged, retried_id, doomed.id])
        # Synchronous replication: every acknowledged commit survived; the one in flight did not.
        assert {lead.id for lead in kept} == {*acknowledged, retried_id}
    finally:
        await db.close()
