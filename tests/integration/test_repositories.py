"""The generic repository against real PostgreSQL: CRUD, partial updates, optimistic locking,
soft and hard delete, upsert and bulk inserts (leads, notes, organizations)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from leaddb import LeadDB
from leaddb.errors import NotFoundError, StaleVersionError
from leaddb.models import (
    Lead,
    LeadCreate,
    LeadNote,
    LeadNoteCreate,
    LeadNoteUpdate,
    LeadStatus,
    LeadUpdate,
    Organization,
    OrganizationCreate,
    OrganizationUpdate,
)
from leaddb.repositories.filters import Eq

from .factories import (
    assert_leaddb_error,
    lead_payloads,
    make_lead,
    make_org,
)


async def test_create_returns_the_lead_with_database_stamped_fields(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        lead = await uow.leads.create(
            LeadCreate(email="ada@example.com", first_name="Ada", tags=["vip"])
        )
        await uow.commit()
    assert isinstance(lead, Lead)
    assert lead.organization_id == org.id
    assert lead.id.version == 7
    assert lead.version == 1
    assert lead.deleted_at is None
    assert lead.status is LeadStatus.NEW
    assert lead.tags == ["vip"]
    row = await pg.fetchrow("SELECT * FROM leads WHERE id = $1", lead.id)
    assert row is not None
    assert row["organization_id"] == org.id
    assert row["created_at"] == lead.created_at == lead.updated_at
    assert lead.created_at.tzinfo is not None
    assert row["first_name"] == "Ada"


async def test_get_finds_a_lead_and_returns_none_for_unknown_ids(db: LeadDB) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, first_name="Ada")
    async with db.tenant(org.id) as uow:
        found = await uow.leads.get(lead.id)
        assert found is not None
        assert (found.id, found.email, found.first_name) == (lead.id, lead.email, "Ada")
        assert await uow.leads.get(uuid.uuid4()) is None
        assert (await uow.leads.get_one(lead.id)).id == lead.id
        with pytest.raises(NotFoundError) as caught:
            await uow.leads.get_one(uuid.uuid4())
        assert caught.value.entity == "lead"


async def test_get_many_keeps_the_order_given_and_skips_unknown_ids(db: LeadDB) -> None:
    org = await make_org(db)
    first, second, third = [await make_lead(db, org.id) for _ in range(3)]
    async with db.tenant(org.id) as uow:
        found = await uow.leads.get_many([third.id, uuid.uuid4(), first.id, second.id])
        assert [lead.id for lead in found] == [third.id, first.id, second.id]
        assert await uow.leads.get_many([]) == []


async def test_list_count_and_exists_see_the_tenants_live_leads(db: LeadDB) -> None:
    org = await make_org(db)
    leads = [await make_lead(db, org.id, status=LeadStatus.WON) for _ in range(3)]
    other = await make_lead(db, org.id, status=LeadStatus.LOST)
    async with db.tenant(org.id) as uow:
        page = await uow.leads.list()
        assert {lead.id for lead in page.items} == {lead.id for lead in [*leads, other]}
        assert page.next_cursor is None
        assert await uow.leads.count() == 4
        assert await uow.leads.count(Eq("status", LeadStatus.WON)) == 3
        assert await uow.leads.exists(Eq("email", other.email))
        assert not await uow.leads.exists(Eq("email", "nobody@example.com"))


async def test_update_changes_only_the_patched_fields_and_bumps_the_version(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(
        db, org.id, first_name="Ada", last_name="Lovelace", phone="+44 20 7946 0000", company="A"
    )
    async with db.tenant(org.id) as uow:
        updated = await uow.leads.update(lead.id, LeadUpdate(company="Analytical", phone=None))
        await uow.commit()
    assert (updated.first_name, updated.last_name) == ("Ada", "Lovelace")
    assert updated.company == "Analytical"
    assert updated.phone is None
    assert updated.version == lead.version + 1
    assert updated.updated_at > lead.updated_at
    assert updated.created_at == lead.created_at
    async with db.tenant(org.id) as uow:
        again = await uow.leads.update(lead.id, LeadUpdate(score=40))
        await uow.commit()
    assert again.version == lead.version + 2
    assert again.updated_at > updated.updated_at
    assert (again.company, again.phone, again.score) == ("Analytical", None, 40)
    row = await pg.fetchrow(
        "SELECT first_name, last_name, company, phone, score, version FROM leads WHERE id = $1",
        lead.id,
    )
    assert row is not None
    assert dict(row) == {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical",
        "phone": None,
        "score": 40,
        "version": 3,
    }


async def test_update_with_the_current_expected_version_succeeds(db: LeadDB) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        updated = await uow.leads.update(
            lead.id, LeadUpdate(score=10), expected_version=lead.version
        )
        await uow.commit()
    assert (updated.score, updated.version) == (10, lead.version + 1)


async def test_update_with_an_old_expected_version_is_stale_and_changes_nothing(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, first_name="Ada")
    async with db.tenant(org.id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(score=5))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        with pytest.raises(StaleVersionError) as caught:
            await uow.leads.update(lead.id, LeadUpdate(first_name="Eve"), expected_version=1)
        assert_leaddb_error(caught)
        assert (caught.value.expected, caught.value.actual) == (1, 2)
        # The failure is not a database error: the unit of work goes on and commits.
        await uow.commit()
    row = await pg.fetchrow("SELECT first_name, version FROM leads WHERE id = $1", lead.id)
    assert row is not None
    assert (row["first_name"], row["version"]) == ("Ada", 2)
    updates = await pg.fetchval(
        "SELECT count(*) FROM activity_logs WHERE entity_id = $1 AND action = 'updated'", lead.id
    )
    assert updates == 1


async def test_delete_with_an_old_expected_version_is_stale_and_keeps_the_lead(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(score=5))
        with pytest.raises(StaleVersionError) as caught:
            await uow.leads.delete(lead.id, expected_version=lead.version)
        assert (caught.value.expected, caught.value.actual) == (1, 2)
        await uow.commit()
    row = await pg.fetchrow("SELECT deleted_at, version FROM leads WHERE id = $1", lead.id)
    assert row is not None
    assert (row["deleted_at"], row["version"]) == (None, 2)


async def test_update_many_applies_one_patch_and_skips_unknown_ids(db: LeadDB) -> None:
    org = await make_org(db)
    first, second, untouched = [await make_lead(db, org.id) for _ in range(3)]
    async with db.tenant(org.id) as uow:
        updated = await uow.leads.update_many(
            [first.id, uuid.uuid4(), second.id], LeadUpdate(status=LeadStatus.QUALIFIED)
        )
        await uow.commit()
    assert [lead.id for lead in updated] == [first.id, second.id]
    assert all(lead.status is LeadStatus.QUALIFIED and lead.version == 2 for lead in updated)
    async with db.tenant(org.id) as uow:
        still = await uow.leads.get_one(untouched.id)
    assert (still.status, still.version) == (LeadStatus.NEW, 1)


async def test_soft_deleted_lead_is_hidden_until_restored(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead, kept = await make_lead(db, org.id), await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        await uow.leads.delete(lead.id)
        await uow.commit()
    assert await pg.fetchval("SELECT deleted_at IS NOT NULL FROM leads WHERE id = $1", lead.id)
    async with db.tenant(org.id) as uow:
        assert await uow.leads.get(lead.id) is None
        assert await uow.leads.get_many([lead.id, kept.id]) == [await uow.leads.get(kept.id)]
        assert [item.id for item in (await uow.leads.list()).items] == [kept.id]
        assert await uow.leads.count() == 1
        assert not await uow.leads.exists(Eq("id", lead.id))
        listed = await uow.leads.list(include_deleted=True)
        assert {item.id for item in listed.items} == {lead.id, kept.id}
        assert await uow.leads.count(include_deleted=True) == 2
        hidden = await uow.leads.get(lead.id, include_deleted=True)
        assert hidden is not None
        assert hidden.deleted_at is not None
        with pytest.raises(NotFoundError):
            await uow.leads.delete(lead.id)
        with pytest.raises(NotFoundError):
            await uow.leads.update(lead.id, LeadUpdate(score=1))
        restored = await uow.leads.restore(lead.id)
        await uow.commit()
    assert restored.deleted_at is None
    async with db.tenant(org.id) as uow:
        assert await uow.leads.get(lead.id) is not None
        assert await uow.leads.count() == 2


async def test_deleting_a_note_removes_the_row(db: LeadDB, pg: asyncpg.Connection) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        note = await uow.notes.create(LeadNoteCreate(lead_id=lead.id, body="Call back Monday"))
        kept = await uow.notes.create(LeadNoteCreate(lead_id=lead.id, body="Likes tea"))
        await uow.commit()
    assert isinstance(note, LeadNote)
    async with db.tenant(org.id) as uow:
        edited = await uow.notes.update(note.id, LeadNoteUpdate(is_pinned=True))
        assert (edited.is_pinned, edited.body, edited.version) == (True, "Call back Monday", 2)
        with pytest.raises(StaleVersionError) as stale:
            await uow.notes.delete(note.id, expected_version=note.version)
        assert (stale.value.expected, stale.value.actual) == (1, 2)
        await uow.notes.delete(note.id, expected_version=edited.version)
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM lead_notes WHERE id = $1", note.id) == 0
    async with db.tenant(org.id) as uow:
        assert await uow.notes.get(note.id) is None
        assert await uow.notes.get(note.id, include_deleted=True) is None
        assert [item.id for item in (await uow.notes.list()).items] == [kept.id]
        with pytest.raises(NotFoundError):
            await uow.notes.delete(note.id)
        with pytest.raises(NotFoundError):
            await uow.notes.restore(kept.id)


async def test_upsert_creates_then_updates_the_lead_with_the_same_email_in_any_case(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        created = await uow.leads.upsert(LeadCreate(email="ada@example.com", first_name="Ada"))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        updated = await uow.leads.upsert(
            LeadCreate(email="ADA@Example.COM", first_name="Augusta", score=70)
        )
        await uow.commit()
    assert updated.id == created.id
    assert (updated.first_name, updated.score) == ("Augusta", 70)
    assert updated.version == created.version + 1
    assert updated.created_at == created.created_at
    assert await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", org.id) == 1


async def test_upsert_revives_a_soft_deleted_lead(db: LeadDB) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, email="gone@example.com", first_name="Old")
    async with db.tenant(org.id) as uow:
        await uow.leads.delete(lead.id)
        await uow.commit()
    async with db.tenant(org.id) as uow:
        revived = await uow.leads.upsert(LeadCreate(email="Gone@example.com", first_name="New"))
        await uow.commit()
    assert revived.id == lead.id
    assert revived.deleted_at is None
    assert revived.first_name == "New"
    async with db.tenant(org.id) as uow:
        assert await uow.leads.get(lead.id) is not None
        assert await uow.leads.count() == 1


async def test_create_many_of_1000_leads_returns_them_with_one_audit_row_each(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    payloads = lead_payloads(1000, status=LeadStatus.CONTACTED)
    async with db.tenant(org.id) as uow:
        created = await uow.leads.create_many(payloads)
        await uow.commit()
    assert len(created) == 1000
    assert all(isinstance(lead, Lead) for lead in created)
    assert {lead.email for lead in created} == {payload.email for payload in payloads}
    assert all(lead.organization_id == org.id and lead.version == 1 for lead in created)
    assert all(lead.status is LeadStatus.CONTACTED for lead in created)
    stamped = {
        row["id"]: row["created_at"]
        for row in await pg.fetch(
            "SELECT id, created_at FROM leads WHERE organization_id = $1", org.id
        )
    }
    assert {lead.id: lead.created_at for lead in created} == stamped
    audited = await pg.fetch(
        "SELECT entity_id FROM activity_logs WHERE organization_id = $1 "
        "AND entity_type = 'lead' AND action = 'created'",
        org.id,
    )
    assert len(audited) == 1000
    assert {row["entity_id"] for row in audited} == set(stamped)


async def test_create_many_below_the_copy_threshold_inserts_every_item(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        created = await uow.leads.create_many(lead_payloads(5, prefix="few"))
        assert await uow.leads.create_many([]) == []
        await uow.commit()
    assert sorted(lead.email for lead in created) == [
        f"few-{index:05d}@example.com" for index in range(5)
    ]
    assert await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", org.id) == 5
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM activity_logs WHERE entity_type = 'lead' AND action = 'created'"
        )
        == 5
    )


async def test_organizations_are_managed_through_the_platform(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    async with db.platform() as uow:
        acme = await uow.organizations.create(OrganizationCreate(name="Acme", slug="acme"))
        globex = await uow.organizations.create(OrganizationCreate(name="Globex", slug="globex"))
        await uow.commit()
    assert isinstance(acme, Organization)
    assert acme.version == 1
    async with db.platform() as uow:
        assert (await uow.organizations.get_one(acme.id)).slug == "acme"
        by_slug = await uow.organizations.get_by_slug("globex")
        assert by_slug is not None
        assert by_slug.id == globex.id
        renamed = await uow.organizations.update(
            acme.id, OrganizationUpdate(name="Acme Corp"), expected_version=acme.version
        )
        assert (renamed.name, renamed.slug, renamed.version) == ("Acme Corp", "acme", 2)
        assert {org.id for org in (await uow.organizations.list()).items} == {acme.id, globex.id}
        assert await uow.organizations.count() == 2
        await uow.organizations.delete(globex.id)
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM organizations WHERE id = $1", globex.id) == 0
    async with db.platform() as uow:
        assert await uow.organizations.get(globex.id) is None
        current = await uow.organizations.get(acme.id)
        assert current is not None
        assert current.name == "Acme Corp"
