"""leaddb through PgBouncer 1.18 in transaction mode, two server connections for 50 clients:
each unit of work sees its own tenant, role and rows only; raw SQL's leftovers reach no one;
bulk COPY, the cache and row-level security hold; no prepared statement goes missing."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from integration.factories import lead_payloads, make_org

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import ConnectionFailedError
from leaddb.models import LeadCreate, LeadUpdate, Organization

from .postgres_topology import PostgresTopology

TENANTS = 50


async def _orgs(db: LeadDB) -> list[Organization]:
    return [await make_org(db) for _ in range(TENANTS)]


async def test_fifty_concurrent_tenants_see_only_their_own_context_role_and_rows(
    bouncer_db: LeadDB,
) -> None:
    orgs = await _orgs(bouncer_db)

    async def one(org: Organization) -> None:
        async with bouncer_db.tenant(org.id) as uow:
            lead = await uow.leads.create(LeadCreate(email=f"{org.slug}@example.com", score=1))
            await uow.commit()
        async with bouncer_db.tenant(org.id) as uow:
            # A sleep inside the transaction, so the others queue for its server connection.
            row = (
                await uow.fetch(
                    "SELECT split_part(current_setting('leaddb.tenant'), '.', 1) AS tenant, "
                    "current_user AS role, current_setting('search_path') AS path, "
                    "(SELECT count(*) FROM leads) AS visible, pg_sleep(0.005)::text"
                )
            )[0]
            assert (row["tenant"], row["role"], row["visible"]) == (str(org.id), "leaddb_app", 1)
            assert row["path"].endswith("pg_temp")
        assert (await _get(bouncer_db, org, lead.id)) == 1  # fills the cache
        async with bouncer_db.tenant(org.id) as uow:
            await uow.leads.update(lead.id, LeadUpdate(score=2), expected_version=lead.version)
            await uow.commit()
        assert (await _get(bouncer_db, org, lead.id)) == 2  # the commit invalidated it
        async with bouncer_db.tenant(org.id) as uow:
            page = await uow.leads.list(limit=100)
            assert [item.organization_id for item in page.items] == [org.id]

    await asyncio.gather(*(one(org) for org in orgs))


async def _get(db: LeadDB, org: Organization, lead_id: uuid.UUID) -> int | None:
    async with db.tenant(org.id) as uow:
        lead = await uow.leads.get(lead_id)
        return None if lead is None else lead.score


async def test_raw_sql_leftovers_reach_no_other_unit_of_work_through_the_pooler(
    bouncer_db: LeadDB, clean_scale: PostgresTopology
) -> None:
    orgs = await _orgs(bouncer_db)
    leftovers = (
        "SET application_name = 'leaked'; SET search_path = pg_temp, public; "
        "CREATE TEMP TABLE leads (id uuid); SELECT pg_advisory_lock(42); "
        "PREPARE leftover AS SELECT 1; LISTEN leaddb_leak; "
        "DECLARE kept CURSOR WITH HOLD FOR SELECT 1"
    )
    seen: list[tuple[object, ...]] = []

    async def leave(org: Organization, commit: bool) -> None:
        async with bouncer_db.tenant(org.id) as uow:
            await uow.execute(leftovers)
            if commit:
                await uow.commit()

    async def look(org: Organization) -> None:
        async with bouncer_db.tenant(org.id) as uow:
            row = (
                await uow.fetch(
                    "SELECT current_setting('application_name') = 'leaked' AS leaked, "
                    "to_regclass('pg_temp.leads') IS NULL AS no_temp, "
                    "(SELECT count(*) FROM pg_prepared_statements WHERE from_sql) AS prepared, "
                    "(SELECT count(*) FROM pg_cursors WHERE is_holdable) AS cursors, "
                    "(SELECT count(*) FROM pg_listening_channels()) AS listening, "
                    "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    " AND pid = pg_backend_pid()) AS locks"
                )
            )[0]
            seen.append(tuple(row.values()))

    work = []
    for index, org in enumerate(orgs):
        work.append(leave(org, commit=index % 2 == 0) if index % 3 == 0 else look(org))
    await asyncio.gather(*work)
    await asyncio.gather(*(look(org) for org in orgs))
    # application_name itself may read '' where a scrub's RESET ALL ran: PgBouncer sets it
    # per client only when it thinks the server's differs (docs/scaling.md).
    assert len(seen) > TENANTS
    assert set(seen) == {(False, True, 0, 0, 0, 0)}
    admin = await asyncpg.connect(clean_scale.primary_url)
    try:
        assert (
            await admin.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
        )
    finally:
        await admin.close()


async def test_fifty_concurrent_bulk_copies_through_the_pooler(bouncer_db: LeadDB) -> None:
    orgs = await _orgs(bouncer_db)

    async def copy(org: Organization) -> int:
        async with bouncer_db.tenant(org.id) as uow:
            created = await uow.leads.create_many(lead_payloads(200, prefix=org.slug))
            await uow.commit()
        async with bouncer_db.tenant(org.id) as uow:
            page = await uow.leads.list(limit=1000)
            assert {lead.organization_id for lead in page.items} == {org.id}
            return len(created) + len(page.items)

    assert await asyncio.gather(*(copy(org) for org in orgs)) == [400] * TENANTS


async def test_without_transaction_pooler_pgbouncer_refuses_leaddbs_session_settings(
    bouncer_settings: LeadDBSettings,
) -> None:
    # The startup settings leaddb sends a server directly: PgBouncer refuses them.
    plain = bouncer_settings.model_copy(update={"transaction_pooler": False})
    with pytest.raises(ConnectionFailedError, match="unsupported startup parameter"):
        await LeadDB.connect(plain)
