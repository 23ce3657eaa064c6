"""Deleting an organization deletes its audit trail, which has no foreign key of its own to
organizations (migration 0006): a trigger does what the key's cascade did, whoever deletes."""

from __future__ import annotations

import uuid

import asyncpg

from leaddb import LeadDB
from leaddb.models import LeadUpdate

from .factories import lead_payloads, make_lead, make_org


async def _trail(pg: asyncpg.Connection, organization_id: uuid.UUID) -> int:
    count: int = await pg.fetchval(
        "SELECT count(*) FROM activity_logs WHERE organization_id = $1", organization_id
    )
    return count


async def _audited_work(db: LeadDB, organization_id: uuid.UUID) -> None:
    lead = await make_lead(db, organization_id)
    async with db.tenant(organization_id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(score=42))
        await uow.leads.create_many(lead_payloads(250, prefix=f"purge-{organization_id.hex[:6]}"))
        await uow.commit()


async def test_the_audit_trail_has_no_key_of_its_own_to_organizations(
    pg: asyncpg.Connection,
) -> None:
    targets = await pg.fetch(
        "SELECT confrelid::regclass::text FROM pg_constraint "
        "WHERE conrelid = 'activity_logs'::regclass AND contype = 'f'"
    )
    assert [row[0] for row in targets] == ["users"]


async def test_deleting_an_organization_through_the_platform_deletes_its_trail_only(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    doomed, kept = await make_org(db), await make_org(db)
    await _audited_work(db, doomed.id)
    await _audited_work(db, kept.id)
    kept_trail = await _trail(pg, kept.id)
    # The organizations' own creation rows, a lead, its update and 250 more.
    assert await _trail(pg, doomed.id) == kept_trail >= 253
    async with db.platform() as uow:
        await uow.organizations.delete(doomed.id)
        await uow.commit()
    assert await _trail(pg, doomed.id) == 0
    assert await _trail(pg, kept.id) == kept_trail


async def test_a_rolled_back_organization_delete_keeps_its_trail(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    await _audited_work(db, org.id)
    before = await _trail(pg, org.id)
    async with db.platform() as uow:
        await uow.organizations.delete(org.id)
        # Gone inside the transaction (the trigger ran as leaddb_app, under the policies)...
        connection = await uow.connection()
        remaining = "SELECT count(*) FROM organizations WHERE id = $1"
        assert await connection.fetchval(remaining, org.id) == 0
    # ...and back, trail included, when it rolls back.
    assert await _trail(pg, org.id) == before > 0


async def test_an_organization_deleted_in_plain_sql_takes_its_trail_too(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    await _audited_work(db, org.id)
    assert await _trail(pg, org.id) > 0
    await pg.execute("DELETE FROM organizations WHERE id = $1", org.id)
    assert await _trail(pg, org.id) == 0


async def test_the_trigger_works_as_the_deleted_tenant_for_itself_only(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org, other = await make_org(db), await make_org(db)
    await _audited_work(db, org.id)
    await _audited_work(db, other.id)
    async with db.platform() as uow:
        connection = await uow.connection()
        platform_context = await connection.fetchval("SELECT current_setting('leaddb.platform')")
        await connection.execute("DELETE FROM organizations WHERE id = $1", org.id)
        # The trigger's own tenant context ended with it: the platform's is back, unchanged.
        assert await connection.fetchval("SELECT current_setting('leaddb.tenant', true)") in (
            None,
            "",
        )
        assert await connection.fetchval("SELECT current_setting('leaddb.platform')") == (
            platform_context
        )
        # Still the platform's transaction: no tenant's trail is in reach.
        assert await connection.fetchval("SELECT count(*) FROM activity_logs") == 0
        await uow.commit()
    assert await _trail(pg, org.id) == 0
    assert await _trail(pg, other.id) > 0
