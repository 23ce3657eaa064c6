"""Tenant scoping and error mapping: another organization's rows are simply not there, a
payload cannot name another organization, and database errors arrive as leaddb errors."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from leaddb import LeadDB
from leaddb.errors import (
    ConflictError,
    ConstraintViolationError,
    LeadDBError,
    NotFoundError,
    TenantViolationError,
)
from leaddb.models import (
    CampaignCreate,
    LeadCreate,
    LeadNoteCreate,
    LeadUpdate,
    UserCreate,
    WorkflowCreate,
    WorkflowExecutionCreate,
)
from leaddb.repositories.filters import Eq

from .factories import PASSWORD, assert_leaddb_error, make_lead, make_org, make_user


class LeadImport(LeadCreate):
    """A caller's own payload type that carries an organization (e.g. from an import file)."""

    organization_id: uuid.UUID


class LeadMove(LeadUpdate):
    """A caller's own patch type that tries to move a lead to another organization."""

    organization_id: uuid.UUID


async def test_a_lead_of_another_tenant_is_invisible(db: LeadDB) -> None:
    org_a, org_b = await make_org(db), await make_org(db)
    theirs = await make_lead(db, org_a.id, email="shared@example.com")
    mine = await make_lead(db, org_b.id)
    async with db.tenant(org_b.id) as uow:
        assert await uow.leads.get(theirs.id) is None
        assert await uow.leads.get(theirs.id, include_deleted=True) is None
        assert await uow.leads.get_by_email("shared@example.com") is None
        assert [lead.id for lead in await uow.leads.get_many([theirs.id, mine.id])] == [mine.id]
        assert [lead.id for lead in (await uow.leads.list(include_deleted=True)).items] == [mine.id]
        assert await uow.leads.count(include_deleted=True) == 1
        assert not await uow.leads.exists(Eq("id", theirs.id))
        with pytest.raises(NotFoundError):
            await uow.leads.get_one(theirs.id)


async def test_writes_to_another_tenants_lead_are_not_found_and_change_nothing(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org_a, org_b = await make_org(db), await make_org(db)
    theirs = await make_lead(db, org_a.id, first_name="Ada")
    deleted = await make_lead(db, org_a.id)
    async with db.tenant(org_a.id) as uow:
        await uow.leads.delete(deleted.id)
        await uow.commit()
    async with db.tenant(org_b.id) as uow:
        with pytest.raises(NotFoundError) as caught:
            await uow.leads.update(theirs.id, LeadUpdate(first_name="Eve"))
        assert_leaddb_error(caught)
        with pytest.raises(NotFoundError):
            await uow.leads.update(theirs.id, LeadUpdate(first_name="Eve"), expected_version=1)
        with pytest.raises(NotFoundError):
            await uow.leads.delete(theirs.id)
        with pytest.raises(NotFoundError):
            await uow.leads.delete(theirs.id, expected_version=1)
        with pytest.raises(NotFoundError):
            await uow.leads.restore(deleted.id)
        assert await uow.leads.update_many([theirs.id], LeadUpdate(first_name="Eve")) == []
        await uow.commit()
    row = await pg.fetchrow(
        "SELECT first_name, version, deleted_at FROM leads WHERE id = $1", theirs.id
    )
    assert row is not None
    assert (row["first_name"], row["version"], row["deleted_at"]) == ("Ada", 1, None)
    assert await pg.fetchval("SELECT deleted_at IS NOT NULL FROM leads WHERE id = $1", deleted.id)
    # Nothing was written in B's name either: no audit row about any lead.
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM activity_logs WHERE organization_id = $1 "
            "AND entity_type = 'lead'",
            org_b.id,
        )
        == 0
    )


async def test_upsert_of_another_tenants_email_creates_this_tenants_own_lead(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org_a, org_b = await make_org(db), await make_org(db)
    theirs = await make_lead(db, org_a.id, email="ada@example.com", first_name="Ada")
    async with db.tenant(org_b.id) as uow:
        mine = await uow.leads.upsert(LeadCreate(email="ADA@example.com", first_name="Other"))
        await uow.commit()
    assert mine.id != theirs.id
    assert mine.organization_id == org_b.id
    assert mine.version == 1
    assert await pg.fetchval("SELECT first_name FROM leads WHERE id = $1", theirs.id) == "Ada"


async def test_a_payload_naming_another_organization_is_a_tenant_violation(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org_a, org_b = await make_org(db), await make_org(db)
    lead = await make_lead(db, org_a.id)
    async with db.tenant(org_a.id) as uow:
        foreign = LeadImport(email="x@example.com", organization_id=org_b.id)
        many = [LeadImport(email=f"{n}@example.com", organization_id=org_b.id) for n in range(300)]
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "create": lambda: uow.leads.create(foreign),
            "upsert": lambda: uow.leads.upsert(foreign),
            "create_many (few)": lambda: uow.leads.create_many([foreign]),
            "create_many (COPY)": lambda: uow.leads.create_many(many),
            "update": lambda: uow.leads.update(lead.id, LeadMove(organization_id=org_b.id)),
        }
        not_refused = []
        for name, call in calls.items():
            try:
                await call()
            except TenantViolationError:
                continue
            not_refused.append(name)
        assert not_refused == []
        # Naming its own organization is fine.
        own = await uow.leads.create(LeadImport(email="own@example.com", organization_id=org_a.id))
        assert own.organization_id == org_a.id
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", org_b.id) == 0
    assert await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", org_a.id) == 2


async def test_a_model_constructed_payload_cannot_move_a_lead_to_another_tenant(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org_a, org_b = await make_org(db), await make_org(db)
    async with db.tenant(org_a.id) as uow:
        # model_construct skips validation; whatever it keeps, the row lands in this tenant
        # or the call is refused.
        payload = LeadCreate.model_construct(email="mc@example.com", organization_id=org_b.id)
        with contextlib.suppress(TenantViolationError):
            await uow.leads.create(payload)
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", org_b.id) == 0


async def test_a_tenant_must_be_an_organization_uuid(db: LeadDB) -> None:
    not_a_uuid: Any = "not-a-uuid"
    with pytest.raises(TenantViolationError) as caught:
        db.tenant(not_a_uuid)
    assert_leaddb_error(caught)
    nothing: Any = None
    with pytest.raises(TenantViolationError):
        db.tenant(nothing)


async def test_the_platform_unit_of_work_has_no_tenant_repositories(db: LeadDB) -> None:
    async with db.platform() as uow:
        for name in ("leads", "campaigns", "notes", "workflows", "integrations", "activity"):
            with pytest.raises(AttributeError):
                getattr(uow, name)


async def test_platform_finds_and_authenticates_users_across_organizations(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org_a, org_b = await make_org(db), await make_org(db)
    in_a = await make_user(db, org_a.id, "sam@example.com", password=PASSWORD)
    in_b = await make_user(db, org_b.id, "Sam@Example.com", password="another password 42")
    await make_user(db, org_b.id, "someone@example.com", password=PASSWORD)
    stored = await pg.fetchval("SELECT password_hash FROM users WHERE id = $1", in_a.id)
    assert stored.startswith("scrypt$")
    assert PASSWORD not in stored
    async with db.platform() as uow:
        found = await uow.users.find_by_email("SAM@example.com")
        assert {user.id for user in found} == {in_a.id, in_b.id}
        assert [user.id for user in await uow.users.authenticate("sam@example.com", PASSWORD)] == [
            in_a.id
        ]
        assert await uow.users.authenticate("sam@example.com", "wrong password") == []
        assert await uow.users.authenticate("nobody@example.com", PASSWORD) == []


async def test_duplicate_email_in_another_case_is_a_conflict_on_email(db: LeadDB) -> None:
    org = await make_org(db)
    await make_lead(db, org.id, email="ada@example.com")
    async with db.tenant(org.id) as uow:
        with pytest.raises(ConflictError) as caught:
            await uow.leads.create(LeadCreate(email="ADA@Example.com"))
    assert_leaddb_error(caught)
    assert caught.value.field == "email"
    async with db.tenant(org.id) as uow:
        await uow.users.create(UserCreate(email="u@example.com", full_name="U"))
        with pytest.raises(ConflictError) as user_conflict:
            await uow.users.create(UserCreate(email="U@EXAMPLE.COM", full_name="U2"))
    assert user_conflict.value.field == "email"


async def test_a_note_on_another_tenants_lead_is_refused_by_the_composite_key(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org_a, org_b = await make_org(db), await make_org(db)
    theirs = await make_lead(db, org_a.id)
    async with db.tenant(org_b.id) as uow:
        with pytest.raises(ConflictError) as caught:
            await uow.notes.create(LeadNoteCreate(lead_id=theirs.id, body="sneaky"))
    assert_leaddb_error(caught)
    assert caught.value.field == "lead_id"
    assert await pg.fetchval("SELECT count(*) FROM lead_notes") == 0


async def test_check_constraint_violations_name_the_constraint(db: LeadDB) -> None:
    org = await make_org(db)
    now = datetime.now(UTC)
    async with db.tenant(org.id) as uow:
        workflow = await uow.workflows.create(WorkflowCreate(name="Nurture", n8n_workflow_id="n1"))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        with pytest.raises(ConstraintViolationError) as caught:
            await uow.workflow_executions.create(
                WorkflowExecutionCreate(
                    workflow_id=workflow.id, started_at=now, finished_at=now - timedelta(seconds=5)
                )
            )
    assert_leaddb_error(caught)
    assert caught.value.constraint == "ck_workflow_executions_finished_after_started"
    async with db.tenant(org.id) as uow:
        spring = CampaignCreate(
            name="Spring", start_date=date(2025, 3, 1), end_date=date(2025, 2, 1)
        )
        with pytest.raises(ConstraintViolationError) as dates:
            await uow.campaigns.create(spring)
    assert dates.value.constraint == "ck_campaigns_date_range"
    async with db.tenant(org.id) as uow:
        with pytest.raises(ConstraintViolationError) as score:
            await uow.leads.create(LeadCreate.model_construct(email="s@example.com", score=150))
    assert score.value.constraint == "ck_leads_score_range"


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
async def test_database_errors_never_escape_as_driver_exceptions(db: LeadDB) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    bad_payloads: list[LeadCreate] = [
        LeadCreate.model_construct(email="bad-status@example.com", status="bogus"),
        LeadCreate.model_construct(email=None),
        LeadCreate.model_construct(email="x" * 300 + "@example.com"),
    ]
    for payload in bad_payloads:
        async with db.tenant(org.id) as uow:
            with pytest.raises(LeadDBError) as caught:
                await uow.leads.create(payload)
            assert_leaddb_error(caught)
    # The schema refuses a null for a NOT NULL column, naming it...
    with pytest.raises(ValidationError, match="email"):
        LeadUpdate.model_validate({"email": None})
    # ... and past the schema, PostgreSQL's refusal is still a typed error naming it.
    async with db.tenant(org.id) as uow:
        with pytest.raises(ConstraintViolationError) as cleared:
            await uow.leads.update(lead.id, LeadUpdate.model_construct(email=None))
        assert_leaddb_error(cleared)
        assert "email" in str(cleared.value)
