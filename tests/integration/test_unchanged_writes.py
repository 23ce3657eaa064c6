"""A write that changes nothing is no write: an upsert or an update to the values a row holds
keeps its version, adds no audit row and leaves its cached copy in place (issue 25, item 9)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
import redis.asyncio as aioredis

from leaddb import LeadDB
from leaddb.cache.keys import value_key
from leaddb.errors import StaleVersionError
from leaddb.models import Lead, LeadCreate, LeadStatus, LeadUpdate

from .factories import make_lead, make_org


async def audit_rows(pg: asyncpg.Connection, lead_id: uuid.UUID) -> int:
    count = await pg.fetchval("SELECT count(*) FROM activity_logs WHERE entity_id = $1", lead_id)
    return int(count)


async def cached(db: LeadDB, redis_client: aioredis.Redis, lead: Lead) -> bytes | None:
    """Read the lead through the cache, then its cached value (None: not cached)."""
    async with db.tenant(lead.organization_id) as uow:
        assert await uow.leads.get(lead.id) is not None
    value = await redis_client.get(value_key(lead.organization_id, "lead", lead.id))
    return value if isinstance(value, bytes) else None


async def test_the_quick_starts_upsert_and_update_run_twice_make_one_version_each(
    db: LeadDB, pg: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    org = await make_org(db)

    async def quick_start() -> Lead:
        async with db.tenant(org.id) as uow:
            lead = await uow.leads.upsert(
                LeadCreate(email="grace@navy.example", first_name="Grace", company="US Navy")
            )
            lead = await uow.leads.update(
                lead.id, LeadUpdate(score=80), expected_version=lead.version
            )
            await uow.commit()
        return lead

    first = await quick_start()
    rows = await audit_rows(pg, first.id)
    value = await cached(db, redis_client, first)
    assert value is not None
    again = await quick_start()
    assert (again.version, again.score) == (first.version, 80) == (2, 80)
    assert again.updated_at == first.updated_at
    assert await audit_rows(pg, first.id) == rows == 2  # created, then the score
    # Nothing was invalidated: the cached copy is still there, as it was.
    assert await redis_client.get(value_key(org.id, "lead", first.id)) == value


async def test_an_upsert_changes_only_the_fields_it_sets_and_only_when_they_differ(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        lead = await uow.leads.upsert(LeadCreate(email="ada@example.com", first_name="Ada"))
        lead = await uow.leads.update(lead.id, LeadUpdate(score=55, status=LeadStatus.CONTACTED))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        same = await uow.leads.upsert(LeadCreate(email="ADA@example.com", first_name="Ada"))
        await uow.commit()
    # The email's case differs: that is a change, and the score and status it did not set stay.
    assert same.version == lead.version + 1
    assert (same.email, same.score, same.status) == ("ADA@example.com", 55, LeadStatus.CONTACTED)
    rows = await audit_rows(pg, lead.id)
    async with db.tenant(org.id) as uow:
        unchanged = await uow.leads.upsert(LeadCreate(email="ADA@example.com", first_name="Ada"))
        await uow.commit()
    assert unchanged == same
    assert await audit_rows(pg, lead.id) == rows


async def test_an_upsert_revives_a_deleted_lead_even_with_the_same_values(db: LeadDB) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, email="back@example.com", first_name="Back")
    async with db.tenant(org.id) as uow:
        await uow.leads.delete(lead.id)
        await uow.commit()
    async with db.tenant(org.id) as uow:
        revived = await uow.leads.upsert(LeadCreate(email="back@example.com", first_name="Back"))
        await uow.commit()
    assert revived.deleted_at is None
    assert revived.version == lead.version + 2
    async with db.tenant(org.id) as uow:
        assert await uow.leads.get(lead.id) == revived


async def test_an_update_to_the_same_values_keeps_the_version_the_audit_and_the_cache(
    db: LeadDB, pg: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, score=80, first_name="Grace")
    rows = await audit_rows(pg, lead.id)
    value = await cached(db, redis_client, lead)
    assert value is not None
    async with db.tenant(org.id) as uow:
        same = await uow.leads.update(
            lead.id, LeadUpdate(score=80, first_name="Grace"), expected_version=lead.version
        )
        assert await uow.leads.update_many([lead.id], LeadUpdate(score=80)) == [same]
        await uow.commit()
    assert same == lead
    assert await audit_rows(pg, lead.id) == rows
    assert await redis_client.get(value_key(org.id, "lead", lead.id)) == value
    # A real change: a new version, an audit row, and the cached copy is gone.
    async with db.tenant(org.id) as uow:
        changed = await uow.leads.update(lead.id, LeadUpdate(score=81))
        await uow.commit()
    assert changed.version == lead.version + 1
    assert await audit_rows(pg, lead.id) == rows + 1
    assert await redis_client.get(value_key(org.id, "lead", lead.id)) != value


async def test_an_unchanged_update_with_a_stale_version_is_still_refused(db: LeadDB) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, score=10)
    async with db.tenant(org.id) as uow:
        lead = await uow.leads.update(lead.id, LeadUpdate(score=20))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        with pytest.raises(StaleVersionError) as refused:
            await uow.leads.update(lead.id, LeadUpdate(score=20), expected_version=1)
    assert (refused.value.expected, refused.value.actual) == (1, lead.version)


async def test_update_many_returns_unchanged_rows_and_audits_only_the_changed(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    kept = await make_lead(db, org.id, score=30)
    moved = await make_lead(db, org.id, score=10)
    async with db.tenant(org.id) as uow:
        result = await uow.leads.update_many([moved.id, kept.id], LeadUpdate(score=30))
        await uow.commit()
    assert [lead.id for lead in result] == [moved.id, kept.id]
    assert [lead.version for lead in result] == [moved.version + 1, kept.version]
    assert await audit_rows(pg, kept.id) == 1  # its creation only
    assert await audit_rows(pg, moved.id) == 2
