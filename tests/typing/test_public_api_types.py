"""A consumer of leaddb's public API, checked by ``mypy --strict`` and run against the database.

Every ``assert_type`` states the exact type a service gets back from a public method; mypy
fails the type check when a signature drifts (to ``Any``, a base class, a missing ``| None``),
and pytest runs the same calls for real. A method that returns nothing is checked through its
coroutine type, ``Coroutine[Any, Any, None]``, then awaited.
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, assert_type

import pytest
from pydantic import SecretStr, ValidationError

from leaddb import LeadDB
from leaddb.errors import NotFoundError
from leaddb.models import (
    ActivityLog,
    Campaign,
    CampaignCreate,
    CampaignLead,
    CampaignLeadStatus,
    CampaignLeadUpdate,
    CampaignPerformance,
    Communication,
    CommunicationChannel,
    CommunicationCreate,
    CommunicationDirection,
    Integration,
    IntegrationCreate,
    IntegrationProvider,
    Lead,
    LeadAssignment,
    LeadCreate,
    LeadNote,
    LeadNoteCreate,
    LeadNoteUpdate,
    LeadPipeline,
    LeadScoreHistory,
    LeadScoreHistoryCreate,
    LeadScoringRule,
    LeadScoringRuleCreate,
    LeadStatus,
    LeadTemperature,
    LeadUpdate,
    Organization,
    OrganizationCreate,
    OrganizationUpdate,
    ScoringOperator,
    User,
    UserCreate,
    UserUpdate,
    Workflow,
    WorkflowCreate,
    WorkflowExecution,
    WorkflowExecutionStatus,
)
from leaddb.repositories.campaigns import Funnel
from leaddb.repositories.filters import Eq, Range
from leaddb.repositories.pagination import Page
from leaddb.repositories.workflows import WorkflowStats
from leaddb.sessions import Session
from leaddb.uow import PlatformUnitOfWork, TenantUnitOfWork

PASSWORD = "typing is documentation"


async def _organization(db: LeadDB, slug: str) -> Organization:
    async with db.platform() as uow:
        org = assert_type(
            await uow.organizations.create(OrganizationCreate(name=slug, slug=slug)), Organization
        )
        await uow.commit()
    return org


async def test_units_of_work_and_organizations_are_precisely_typed(db: LeadDB) -> None:
    assert_type(db.platform(), PlatformUnitOfWork)
    async with db.platform() as uow:
        assert_type(uow, PlatformUnitOfWork)
        org = assert_type(
            await uow.organizations.create(OrganizationCreate(name="Acme", slug="acme")),
            Organization,
        )
        assert_type(await uow.organizations.get(org.id), Organization | None)
        assert_type(await uow.organizations.get_one(org.id), Organization)
        assert_type(await uow.organizations.get_by_slug("acme"), Organization | None)
        assert_type(await uow.organizations.get_many([org.id]), list[Organization])
        page = assert_type(await uow.organizations.list(limit=10), Page[Organization])
        assert_type(page.items, list[Organization])
        assert_type(page.next_cursor, str | None)
        assert_type(await uow.organizations.count(), int)
        assert_type(await uow.organizations.exists(Eq("slug", "acme")), bool)
        renamed = assert_type(
            await uow.organizations.update(
                org.id, OrganizationUpdate(name="Acme Corp"), expected_version=org.version
            ),
            Organization,
        )
        assert renamed.name == "Acme Corp"
        with pytest.raises(NotFoundError):
            assert_type(await uow.organizations.restore(org.id), Organization)
        assert_type(uow.closed, bool)
        await assert_type(uow.commit(), Coroutine[Any, Any, None])
    assert_type(db.tenant(org.id), TenantUnitOfWork)
    async with db.tenant(org.id, actor=None) as tenant:
        assert_type(tenant, TenantUnitOfWork)
        assert_type(tenant.tenant_id, uuid.UUID)
        assert_type(tenant.actor_id, uuid.UUID | None)
        async with tenant.savepoint() as nothing:
            assert_type(nothing, None)
        await assert_type(tenant.rollback(), Coroutine[Any, Any, None])
    async with db.platform() as uow:
        await assert_type(uow.organizations.delete(org.id), Coroutine[Any, Any, None])
        await uow.commit()


async def test_users_and_sessions_are_precisely_typed(db: LeadDB) -> None:
    org = await _organization(db, "users")
    async with db.tenant(org.id) as uow:
        user = assert_type(
            await uow.users.create(
                UserCreate(email="u@example.com", full_name="U", password=SecretStr(PASSWORD))
            ),
            User,
        )
        assert_type(await uow.users.get_by_email("U@example.com"), User | None)
        assert_type(await uow.users.update(user.id, UserUpdate(full_name="Ursula")), User)
        await uow.commit()
    async with db.platform() as platform:
        found = assert_type(await platform.users.find_by_email("u@example.com"), list[User])
        assert [item.id for item in found] == [user.id]
        assert_type(await platform.users.authenticate("u@example.com", PASSWORD), list[User])
    token = assert_type(await db.sessions.create(user_id=user.id, organization_id=org.id), str)
    session = assert_type(await db.sessions.get(token), Session | None)
    assert session is not None
    async with db.tenant(org.id) as uow:
        await assert_type(uow.users.delete(user.id), Coroutine[Any, Any, None])
        await uow.commit()


async def test_lead_repository_methods_are_precisely_typed(db: LeadDB) -> None:
    org = await _organization(db, "leads")
    async with db.tenant(org.id) as uow:
        lead = assert_type(await uow.leads.create(LeadCreate(email="a@example.com")), Lead)
        many = assert_type(
            await uow.leads.create_many([LeadCreate(email=f"{n}@example.com") for n in range(3)]),
            list[Lead],
        )
        assert_type(await uow.leads.get(lead.id), Lead | None)
        assert_type(await uow.leads.get(lead.id, include_deleted=True), Lead | None)
        assert_type(await uow.leads.get_one(lead.id), Lead)
        assert_type(await uow.leads.get_many([item.id for item in many]), list[Lead])
        page = assert_type(
            await uow.leads.list(
                Eq("first_name", None),
                status=LeadStatus.NEW,
                score=Range(gte=0, lt=100),
                tags_any=["x"],
                limit=2,
            ),
            Page[Lead],
        )
        assert_type(page.items, list[Lead])
        assert_type(page.next_cursor, str | None)
        assert_type(await uow.leads.count(Eq("status", LeadStatus.NEW)), int)
        assert_type(await uow.leads.exists(), bool)
        updated = assert_type(
            await uow.leads.update(lead.id, LeadUpdate(score=5), expected_version=lead.version),
            Lead,
        )
        assert updated.version == lead.version + 1
        assert_type(
            await uow.leads.update_many([item.id for item in many], LeadUpdate(score=1)),
            list[Lead],
        )
        assert_type(await uow.leads.upsert(LeadCreate(email="A@example.com")), Lead)
        await assert_type(uow.leads.delete(lead.id), Coroutine[Any, Any, None])
        assert_type(await uow.leads.restore(lead.id), Lead)
        assert_type(await uow.leads.get_by_email("a@example.com"), Lead | None)
        assert_type(await uow.leads.search("example"), list[Lead])
        assert_type(await uow.leads.stale(datetime.now(UTC) - timedelta(days=1)), Page[Lead])
        assert_type(await uow.leads.top_scored(limit=3), list[Lead])
        await uow.commit()


async def test_lead_satellites_are_precisely_typed(db: LeadDB) -> None:
    org = await _organization(db, "satellites")
    async with db.tenant(org.id) as uow:
        user = await uow.users.create(UserCreate(email="owner@example.com", full_name="O"))
        lead = await uow.leads.create(LeadCreate(email="l@example.com"))
        note = assert_type(
            await uow.notes.create(LeadNoteCreate(lead_id=lead.id, body="hi", is_pinned=True)),
            LeadNote,
        )
        assert_type(await uow.notes.update(note.id, LeadNoteUpdate(body="hello")), LeadNote)
        assert_type(await uow.notes.for_lead(lead.id), list[LeadNote])
        await assert_type(uow.notes.delete(note.id), Coroutine[Any, Any, None])
        assignment = assert_type(await uow.leads.assign(lead.id, user.id), LeadAssignment)
        assert_type(await uow.assignments.active(lead.id), LeadAssignment | None)
        assert_type(await uow.assignments.get_one(assignment.id), LeadAssignment)
        assert_type(await uow.assignments.close_active(lead.id), LeadAssignment | None)
        communication = assert_type(
            await uow.leads.record_communication(
                CommunicationCreate(
                    lead_id=lead.id,
                    channel=CommunicationChannel.CALL,
                    direction=CommunicationDirection.INBOUND,
                    sent_at=datetime.now(UTC),
                )
            ),
            Communication,
        )
        assert_type(await uow.communications.get(communication.id), Communication | None)
        assert_type(await uow.communications.for_lead(lead.id), Page[Communication])
        history = assert_type(
            await uow.score_history.create(
                LeadScoreHistoryCreate(
                    lead_id=lead.id,
                    old_score=0,
                    new_score=10,
                    old_temperature=LeadTemperature.COLD,
                    new_temperature=LeadTemperature.COLD,
                )
            ),
            LeadScoreHistory,
        )
        assert history.new_score == 10
        assert_type(await uow.score_history.for_lead(lead.id), Page[LeadScoreHistory])
        rule = assert_type(
            await uow.scoring_rules.create(
                LeadScoringRuleCreate(
                    name="VIP",
                    field="tags",
                    operator=ScoringOperator.CONTAINS,
                    value="vip",
                    points=20,
                )
            ),
            LeadScoringRule,
        )
        assert [item.id for item in await uow.scoring_rules.active()] == [rule.id]
        assert_type(await uow.scoring_rules.active(), list[LeadScoringRule])
        logged = assert_type(await uow.activity.for_entity("lead", lead.id), Page[ActivityLog])
        assert logged.items
        assert_type(await uow.activity.list(limit=5), Page[ActivityLog])
        assert_type(await uow.activity.get(logged.items[0].id), ActivityLog | None)
        await uow.commit()


async def test_campaigns_workflows_integrations_and_views_are_precisely_typed(db: LeadDB) -> None:
    org = await _organization(db, "campaigns")
    async with db.tenant(org.id) as uow:
        lead = await uow.leads.create(LeadCreate(email="c@example.com"))
        campaign = assert_type(await uow.campaigns.create(CampaignCreate(name="C")), Campaign)
        enrolled = assert_type(
            await uow.campaigns.enroll(campaign.id, [lead.id]), list[CampaignLead]
        )
        assert_type(
            await uow.campaign_leads.update(
                enrolled[0].id, CampaignLeadUpdate(status=CampaignLeadStatus.CONTACTED)
            ),
            CampaignLead,
        )
        assert_type(await uow.campaign_leads.for_campaign(campaign.id), Page[CampaignLead])
        funnel = assert_type(await uow.campaigns.funnel(campaign.id), Funnel)
        assert_type(funnel.counts, dict[CampaignLeadStatus, int])
        assert_type(funnel.enrolled, int)
        workflow = assert_type(
            await uow.workflows.create(WorkflowCreate(name="W", n8n_workflow_id="w")), Workflow
        )
        run = assert_type(
            await uow.workflow_executions.start(workflow.id, lead_id=lead.id), WorkflowExecution
        )
        assert_type(
            await uow.workflow_executions.finish(run.id, WorkflowExecutionStatus.SUCCEEDED),
            WorkflowExecution,
        )
        stats = assert_type(await uow.workflows.stats(), list[WorkflowStats])
        assert_type(stats[0].success_rate, float | None)
        assert_type(stats[0].mean_duration_seconds, float | None)
        integration = assert_type(
            await uow.integrations.create(
                IntegrationCreate(provider=IntegrationProvider.WEBHOOK, name="Hook")
            ),
            Integration,
        )
        assert_type(await uow.integrations.credentials(integration.id), dict[str, SecretStr])
        assert_type(await uow.views.pipeline(), list[LeadPipeline])
        performance = assert_type(
            await uow.views.campaign_performance(campaign.id), list[CampaignPerformance]
        )
        assert [row.campaign_id for row in performance] == [campaign.id]
        await uow.commit()


def test_update_schemas_are_precisely_typed() -> None:
    """The Update schemas' fields come from their Base through ``patch_of``; leaddb's mypy plugin
    types them. Each ``type: ignore`` below is an error mypy must report (``--strict`` warns
    about an unused ignore), and pydantic refuses the same call at run time."""
    patch = assert_type(LeadUpdate(score=80, first_name=None, tags=["a"]), LeadUpdate)
    assert_type(patch.score, int | None)
    assert_type(patch.first_name, str | None)
    assert_type(patch.tags, list[str] | None)
    assert_type(UserUpdate(password=SecretStr("long enough")).password, SecretStr | None)
    assert_type(CampaignLeadUpdate().status, CampaignLeadStatus | None)
    assert patch.score == 80
    assert patch.email is None  # omitted: None, and left out of model_dump(exclude_unset=True)
    assert patch.model_dump(exclude_unset=True) == {"score": 80, "first_name": None, "tags": ["a"]}
    with pytest.raises(ValidationError):
        LeadUpdate(score="high")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        LeadUpdate(score=None)  # type: ignore[arg-type]  # NOT NULL: null is refused
    with pytest.raises(ValidationError):
        LeadUpdate(emial="typo@example.com")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        CampaignLeadUpdate(lead_id=uuid.uuid4())  # type: ignore[call-arg]  # immutable
    with pytest.raises(AttributeError):
        _ = patch.nope  # type: ignore[misc]
