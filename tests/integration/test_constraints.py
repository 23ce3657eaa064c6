"""Every entity written, read back and updated through the public API; every check constraint
refusing what it should, named; composite foreign keys refusing cross-tenant references; and
each foreign key's ON DELETE behaviour, against the real migrated database.

The module builds its organizations (one row of every table each) once, on a database of its
own; tests that change them do it in a rolled-back transaction or on their own rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import sqlalchemy as sa
from asyncpg.exceptions import CheckViolationError, ForeignKeyViolationError
from conftest import asyncpg_dsn, run_settings
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import leaddb.models as m
from leaddb import LeadDB
from leaddb import migrate as migrations
from leaddb.db import create_engine
from leaddb.errors import ConflictError, ConstraintViolationError

if TYPE_CHECKING:
    from conftest import TestServers

NOW = datetime.now(UTC)
# Every foreign key between tenant tables, (organization_id, x) -> parent (organization_id, id).
FK_PARAMS = sorted(
    (pytest.param(fk, id=str(fk.name)) for table in m.metadata.tables.values()
     for fk in table.foreign_key_constraints if len(fk.columns) == 2),
    key=lambda param: str(param.id),
)  # fmt: skip


@dataclass
class World:
    """One organization with one row of every table, made through the public API."""

    org: uuid.UUID
    rows: dict[str, Any]
    """The row each create returned, by table name (``users``: the main user)."""


async def build_world(db: LeadDB, slug: str) -> World:
    async with db.platform() as uow:
        org = await uow.organizations.create(m.OrganizationCreate(name=slug, slug=slug))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        user = await uow.users.create(
            m.UserCreate(email=f"Ada@{slug}.example", full_name="Ada", timezone="Europe/Paris")
        )
        # Another user, so deleting the main one never removes the assignment through its
        # CASCADE user_id while the SET NULL assigned_by_user_id is under test.
        assignee = await uow.users.create(m.UserCreate(email=f"gh@{slug}.example", full_name="G"))
        await uow.commit()
    rows: dict[str, Any] = {"organizations": org, "users": user}
    async with db.tenant(org.id, actor=user.id) as uow:
        lead = await uow.leads.create(
            m.LeadCreate.model_validate(
                {"email": f"lead@{slug}.example", "first_name": "Linus", "company": "Acme",
                 "owner_id": user.id, "score": 40, "estimated_value": "1234.50",
                 "expected_close_date": date(2030, 1, 31), "tags": ["vip", "eu"],
                 "custom_fields": {"fleet": 7}}
            )
        )  # fmt: skip
        campaign = await uow.campaigns.create(
            m.CampaignCreate(name="Spring", owner_id=user.id, start_date=date(2030, 3, 1),
                             end_date=date(2030, 4, 1), budget=Decimal("500.00"))
        )  # fmt: skip
        workflow = await uow.workflows.create(m.WorkflowCreate(name="W", n8n_workflow_id="w1"))
        rows |= {"leads": lead, "campaigns": campaign, "workflows": workflow}
        creates: dict[str, tuple[str, SQLModel]] = {  # table -> (repository, payload)
            "lead_notes": ("notes", m.LeadNoteCreate(
                lead_id=lead.id, author_user_id=user.id, body="Called.")),
            "lead_assignments": ("assignments", m.LeadAssignmentCreate(
                lead_id=lead.id, user_id=assignee.id, assigned_by_user_id=user.id)),
            "lead_scoring_rules": ("scoring_rules", m.LeadScoringRuleCreate(
                name="Acme", field="company", operator=m.ScoringOperator.EQ, value="Acme",
                points=10)),
            "lead_score_history": ("score_history", m.LeadScoreHistoryCreate(
                lead_id=lead.id, old_score=30, new_score=40, reason="rule Acme",
                old_temperature=m.LeadTemperature.WARM, new_temperature=m.LeadTemperature.WARM)),
            "campaign_leads": ("campaign_leads", m.CampaignLeadCreate(
                campaign_id=campaign.id, lead_id=lead.id)),
            "communications": ("communications", m.CommunicationCreate(
                lead_id=lead.id, campaign_id=campaign.id, user_id=user.id, subject="Hello",
                channel=m.CommunicationChannel.EMAIL, body="Hello Linus", sent_at=NOW,
                direction=m.CommunicationDirection.OUTBOUND)),
            "workflow_executions": ("workflow_executions", m.WorkflowExecutionCreate(
                workflow_id=workflow.id, lead_id=lead.id, started_at=NOW)),
            "integrations": ("integrations", m.IntegrationCreate(
                provider=m.IntegrationProvider.HUBSPOT, name="CRM")),
        }  # fmt: skip
        for table, (repository, payload) in creates.items():
            rows[table] = await getattr(uow, repository).create(payload)
        await uow.commit()
    async with db.tenant(org.id) as uow:
        rows["activity_logs"] = (await uow.activity.for_entity("lead", lead.id)).items[0]
    return World(org.id, rows)


Worlds = dict[str, World]


@pytest.fixture(scope="module")
async def scratch_url(servers: TestServers) -> AsyncIterator[str]:
    """A migrated database of this module's own: the worlds below are built once, and every
    test that changes them does so in a transaction it rolls back."""
    name = f"leaddb_ck_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(servers.admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(servers.admin_url).set(database=name).render_as_string(hide_password=False)
        engine = create_engine(run_settings(url, servers.redis_url))
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="module")
async def db(servers: TestServers, scratch_url: str) -> AsyncIterator[LeadDB]:
    database = await LeadDB.connect(run_settings(scratch_url, servers.redis_url))
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(scope="module")
async def worlds(db: LeadDB) -> Worlds:
    """Three organizations; "initech" is only for the round trips, which change rows for good."""
    return {slug: await build_world(db, slug) for slug in ("acme", "globex", "initech")}


@pytest.fixture
def world(worlds: Worlds) -> World:
    return worlds["acme"]


@pytest.fixture
async def pg(scratch_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection inside a transaction that is rolled back after the test."""
    connection = await asyncpg.connect(asyncpg_dsn(scratch_url))
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield connection
    finally:
        await transaction.rollback()
        await connection.close()


# --- insert, read back, update -----------------------------------------------------------------

# table -> (unit-of-work attribute, patch, field the patch sets); None: append-only or read-only.
UPDATES: dict[str, tuple[str, SQLModel | None, str]] = {
    "users": ("users", m.UserUpdate(full_name="Ada L."), "full_name"),
    "leads": ("leads", m.LeadUpdate(score=80, tags=["vip"]), "score"),
    "lead_notes": ("notes", m.LeadNoteUpdate(is_pinned=True), "is_pinned"),
    "lead_assignments": ("assignments", m.LeadAssignmentUpdate(
        unassigned_at=NOW + timedelta(days=1)), "unassigned_at"),
    "lead_scoring_rules": ("scoring_rules", m.LeadScoringRuleUpdate(points=-5), "points"),
    "lead_score_history": ("score_history", None, "reason"),
    "campaigns": ("campaigns", m.CampaignUpdate(status=m.CampaignStatus.ACTIVE), "status"),
    "campaign_leads": ("campaign_leads", m.CampaignLeadUpdate(
        status=m.CampaignLeadStatus.CONTACTED), "status"),
    "communications": ("communications", m.CommunicationUpdate(
        status=m.CommunicationStatus.OPENED), "status"),
    "workflows": ("workflows", m.WorkflowUpdate(is_active=False), "is_active"),
    "workflow_executions": ("workflow_executions", m.WorkflowExecutionUpdate(
        status=m.WorkflowExecutionStatus.SUCCEEDED), "status"),
    "integrations": ("integrations", m.IntegrationUpdate(
        status=m.IntegrationStatus.PAUSED), "status"),
    "activity_logs": ("activity", None, "action"),
}  # fmt: skip


def test_every_tenant_table_has_a_round_trip_case() -> None:
    assert set(UPDATES) == set(m.metadata.tables) - {"organizations"}


async def test_organization_is_written_read_back_and_updated(db: LeadDB, worlds: Worlds) -> None:
    world = worlds["initech"]
    created = world.rows["organizations"]
    async with db.platform() as uow:
        assert (await uow.organizations.get_one(world.org)).model_dump() == created.model_dump()
        patch = m.OrganizationUpdate(subscription_tier=m.SubscriptionTier.PRO)
        updated = await uow.organizations.update(world.org, patch, expected_version=1)
        await uow.commit()
    assert (updated.subscription_tier, updated.version) == (m.SubscriptionTier.PRO, 2)


@pytest.mark.parametrize("table", sorted(UPDATES))
async def test_entity_is_written_read_back_and_updated(
    db: LeadDB, worlds: Worlds, pg: asyncpg.Connection, table: str
) -> None:
    world = worlds["initech"]
    attribute, patch, field = UPDATES[table]
    created = world.rows[table]
    async with db.tenant(world.org) as uow:
        repository = getattr(uow, attribute)
        read = await repository.get_one(created.id)
        assert read.model_dump() == created.model_dump()
        if patch is None:
            assert not hasattr(repository, "update")
            return
        updated = await repository.update(created.id, patch)
        await uow.commit()
    expected = getattr(patch, field)
    assert getattr(updated, field) == expected
    assert updated.created_at == created.created_at
    if m.is_versioned(type(created)):
        assert updated.version == created.version + 1
    stored = await pg.fetchval(  # the database holds what the API said it wrote
        f"SELECT {field} FROM {table} WHERE organization_id = $1 AND id = $2",
        world.org,
        created.id,
    )
    assert stored == expected


# --- check constraints -------------------------------------------------------------------------

# Each check constraint with an UPDATE (SET clause) of the world's row that it must refuse.
CHECKS: dict[str, tuple[str, str]] = {
    "ck_organizations_slug_format": ("organizations", "slug = 'Not A Slug'"),
    "ck_integrations_credentials_size": (
        "integrations", "credentials_encrypted = decode(repeat('00', 65537), 'hex')"),
    "ck_lead_scoring_rules_points_range": ("lead_scoring_rules", "points = 101"),
    "ck_lead_scoring_rules_priority_range": ("lead_scoring_rules", "priority = -1"),
    "ck_leads_score_range": ("leads", "score = 101"),
    "ck_leads_estimated_value_non_negative": ("leads", "estimated_value = -0.01"),
    "ck_campaigns_date_range": ("campaigns", "end_date = start_date - 1"),
    "ck_campaigns_budget_non_negative": ("campaigns", "budget = -1"),
    "ck_lead_notes_body_length": ("lead_notes", "body = repeat('x', 100001)"),
    "ck_communications_body_length": ("communications", "body = repeat('x', 100001)"),
    "ck_lead_assignments_unassigned_after_assigned": (
        "lead_assignments", "unassigned_at = assigned_at - interval '1 second'"),
    "ck_lead_score_history_old_score_range": ("lead_score_history", "old_score = -1"),
    "ck_lead_score_history_new_score_range": ("lead_score_history", "new_score = 101"),
    "ck_workflow_executions_finished_after_started": (
        "workflow_executions", "finished_at = started_at - interval '1 hour'"),
}  # fmt: skip


def test_every_check_constraint_has_a_case() -> None:
    names = {
        str(constraint.name)
        for table in m.metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, sa.CheckConstraint)
    }
    assert set(CHECKS) == names


@pytest.mark.parametrize("constraint", sorted(CHECKS))
async def test_check_constraint_refuses_and_is_named(
    world: World, pg: asyncpg.Connection, constraint: str
) -> None:
    table, assignment = CHECKS[constraint]
    column = "id" if table == "organizations" else "organization_id"
    with pytest.raises(CheckViolationError) as caught:
        await pg.execute(f"UPDATE {table} SET {assignment} WHERE {column} = $1", world.org)
    assert caught.value.constraint_name == constraint


async def test_checks_the_schemas_cannot_see_are_named_through_the_api(
    db: LeadDB, world: World
) -> None:
    execution = m.WorkflowExecutionCreate(
        workflow_id=world.rows["workflows"].id, started_at=NOW, finished_at=NOW - timedelta(1)
    )
    unassign = m.LeadAssignmentUpdate(unassigned_at=datetime(2000, 1, 1, tzinfo=UTC))
    cases: list[tuple[str, Any]] = [
        ("ck_campaigns_date_range", lambda uow: uow.campaigns.create(m.CampaignCreate(
            name="Late", start_date=date(2030, 5, 2), end_date=date(2030, 5, 1)))),
        ("ck_workflow_executions_finished_after_started",
         lambda uow: uow.workflow_executions.create(execution)),
        ("ck_lead_assignments_unassigned_after_assigned",
         lambda uow: uow.assignments.update(world.rows["lead_assignments"].id, unassign)),
    ]  # fmt: skip
    for constraint, write in cases:
        async with db.tenant(world.org) as uow:
            with pytest.raises(ConstraintViolationError) as caught:
                await write(uow)
        assert caught.value.constraint == constraint


async def test_unique_keys_are_conflicts_named_through_the_api(db: LeadDB, world: World) -> None:
    lead, campaign = world.rows["leads"], world.rows["campaigns"]
    cases: list[tuple[str, Any]] = [
        ("ix_leads_organization_id_lower_email", lambda uow: uow.leads.create(
            m.LeadCreate(email=lead.email.upper()))),
        ("ix_users_organization_id_lower_email", lambda uow: uow.users.create(
            m.UserCreate(email="ADA@acme.example", full_name="Twin"))),
        ("uq_campaign_leads_organization_id_campaign_id_lead_id", lambda uow: (
            uow.campaign_leads.create(m.CampaignLeadCreate(campaign_id=campaign.id,
                                                           lead_id=lead.id)))),
        ("ix_lead_assignments_one_active_per_lead", lambda uow: uow.assignments.create(
            m.LeadAssignmentCreate(lead_id=lead.id, user_id=world.rows["users"].id))),
    ]  # fmt: skip
    for constraint, write in cases:
        async with db.tenant(world.org) as uow:
            with pytest.raises(ConflictError) as caught:
                await write(uow)
        assert caught.value.constraint == constraint
    async with db.platform() as platform:
        with pytest.raises(ConflictError) as caught:
            await platform.organizations.create(m.OrganizationCreate(name="Again", slug="acme"))
    assert caught.value.constraint == "uq_organizations_slug"


# --- tenants and foreign keys ------------------------------------------------------------------


@pytest.mark.parametrize("fk", FK_PARAMS)
async def test_composite_foreign_key_refuses_a_reference_into_another_tenant(
    worlds: Worlds, pg: asyncpg.Connection, fk: sa.ForeignKeyConstraint
) -> None:
    world, other = worlds["acme"], worlds["globex"]
    column, parent = fk.columns.keys()[1], fk.referred_table.name
    foreign_id = world.rows[parent].id
    with pytest.raises(ForeignKeyViolationError) as caught:
        await pg.execute(
            f"UPDATE {fk.table.name} SET {column} = $1 WHERE organization_id = $2",
            foreign_id,
            other.org,
        )
    assert caught.value.constraint_name == fk.name


async def test_the_api_refuses_a_note_on_another_tenants_lead(db: LeadDB, worlds: Worlds) -> None:
    world, other = worlds["acme"], worlds["globex"]
    async with db.tenant(other.org) as uow:
        with pytest.raises(ConflictError) as caught:
            await uow.notes.create(m.LeadNoteCreate(lead_id=world.rows["leads"].id, body="x"))
    assert caught.value.constraint == "fk_lead_notes_lead_id_leads"


@pytest.mark.parametrize("fk", FK_PARAMS)
async def test_deleting_the_referenced_row_does_what_on_delete_says(
    world: World, pg: asyncpg.Connection, fk: sa.ForeignKeyConstraint
) -> None:
    child, column, parent = fk.table.name, fk.columns.keys()[1], fk.referred_table.name
    referencing = await pg.fetch(
        f"SELECT id, {column} AS target FROM {child} "
        f"WHERE organization_id = $1 AND {column} IS NOT NULL",
        world.org,
    )
    assert referencing, f"the world has no {child} row with {column}"
    target = referencing[0]["target"]
    ids = [row["id"] for row in referencing if row["target"] == target]
    await pg.execute(
        f"DELETE FROM {parent} WHERE organization_id = $1 AND id = $2",
        world.org,
        target,
    )
    after = await pg.fetch(
        f"SELECT organization_id, {column} AS target FROM {child} WHERE id = ANY($1)",
        ids,
    )
    if fk.ondelete == "CASCADE":
        assert after == []
    else:
        assert fk.ondelete == f"SET NULL ({column})"
        assert [(row["organization_id"], row["target"]) for row in after] == [
            (world.org, None)
        ] * len(ids)


async def test_deleting_an_organization_removes_its_rows_and_no_other(
    worlds: Worlds, pg: asyncpg.Connection
) -> None:
    world, other = worlds["acme"], worlds["globex"]
    await pg.execute("DELETE FROM organizations WHERE id = $1", world.org)
    for table in sorted(set(m.metadata.tables) - {"organizations"}):
        counts = await pg.fetchrow(
            f"SELECT count(*) FILTER (WHERE organization_id = $1) AS gone, "
            f"count(*) FILTER (WHERE organization_id = $2) AS kept FROM {table}",
            world.org,
            other.org,
        )
        assert counts is not None
        assert (counts["gone"], counts["kept"] > 0) == (0, True), table
