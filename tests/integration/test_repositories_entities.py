"""The entities' own queries: lead search, stale and top leads, assignment, communications,
campaign enrolment and funnel, workflow runs and stats, pinned notes, and the reporting views."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from leaddb import LeadDB
from leaddb.errors import ConflictError, NotFoundError
from leaddb.models import (
    CampaignCreate,
    CampaignLeadStatus,
    CampaignLeadUpdate,
    CommunicationChannel,
    CommunicationCreate,
    CommunicationDirection,
    CommunicationStatus,
    LeadCreate,
    LeadNoteCreate,
    LeadStatus,
    WorkflowCreate,
    WorkflowExecutionCreate,
    WorkflowExecutionStatus,
)

from .factories import make_lead, make_org, make_user


async def test_search_finds_leads_by_name_and_company(db: LeadDB) -> None:
    org = await make_org(db)
    ada = await make_lead(db, org.id, first_name="Ada", last_name="Lovelace", company="Engines")
    grace = await make_lead(db, org.id, first_name="Grace", last_name="Hopper", company="Navy")
    other = await make_org(db)
    await make_lead(db, other.id, first_name="Ada", last_name="Lovelace")
    async with db.tenant(org.id) as uow:
        assert [lead.id for lead in await uow.leads.search("lovelace")] == [ada.id]
        assert [lead.id for lead in await uow.leads.search("navy")] == [grace.id]
        found = {lead.id for lead in await uow.leads.search("ada or grace")}
        assert found == {ada.id, grace.id}
        assert await uow.leads.search("babbage") == []
        by_email = await uow.leads.get_by_email(grace.email.upper())
        assert by_email is not None
        assert by_email.id == grace.id


async def test_stale_lists_open_leads_not_engaged_since_a_date(db: LeadDB) -> None:
    org = await make_org(db)
    now = datetime.now(UTC)
    old = await make_lead(db, org.id, last_engagement_at=now - timedelta(days=30))
    never = await make_lead(db, org.id, status=LeadStatus.CONTACTED)
    await make_lead(db, org.id, last_engagement_at=now - timedelta(days=1))
    await make_lead(db, org.id, status=LeadStatus.WON, last_engagement_at=now - timedelta(days=30))
    gone = await make_lead(db, org.id, last_engagement_at=now - timedelta(days=30))
    async with db.tenant(org.id) as uow:
        await uow.leads.delete(gone.id)
        page = await uow.leads.stale(now - timedelta(days=7))
    assert {lead.id for lead in page.items} == {old.id, never.id}


async def test_top_scored_ranks_live_leads_by_score(db: LeadDB) -> None:
    org = await make_org(db)
    low = await make_lead(db, org.id, score=10)
    high = await make_lead(db, org.id, score=90)
    middle = await make_lead(db, org.id, score=50)
    deleted = await make_lead(db, org.id, score=100)
    async with db.tenant(org.id) as uow:
        await uow.leads.delete(deleted.id)
        await uow.commit()
    async with db.tenant(org.id) as uow:
        assert [lead.id for lead in await uow.leads.top_scored(limit=2)] == [high.id, middle.id]
        assert [lead.id for lead in await uow.leads.top_scored()] == [high.id, middle.id, low.id]


async def test_assign_closes_the_previous_assignment_and_sets_the_owner(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    first, second = await make_user(db, org.id), await make_user(db, org.id)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id, actor=first.id) as uow:
        opened = await uow.leads.assign(lead.id, first.id)
        await uow.commit()
    assert (opened.lead_id, opened.user_id, opened.unassigned_at) == (lead.id, first.id, None)
    assert opened.assigned_by_user_id == first.id
    async with db.tenant(org.id) as uow:
        current = await uow.leads.assign(lead.id, second.id, assigned_by=first.id)
        await uow.commit()
    rows = await pg.fetch(
        "SELECT id, user_id, unassigned_at FROM lead_assignments WHERE lead_id = $1", lead.id
    )
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == {opened.id, current.id}
    assert by_id[opened.id]["unassigned_at"] is not None
    assert by_id[current.id]["unassigned_at"] is None
    assert sum(row["unassigned_at"] is None for row in rows) == 1
    assert await pg.fetchval("SELECT owner_id FROM leads WHERE id = $1", lead.id) == second.id
    async with db.tenant(org.id) as uow:
        active = await uow.assignments.active(lead.id)
        assert active is not None
        assert active.id == current.id
        owned = await uow.leads.get_one(lead.id)
        assert owned.owner_id == second.id
        assert owned.version == lead.version + 2


async def test_assign_refuses_leads_and_users_of_another_tenant(db: LeadDB) -> None:
    org, other = await make_org(db), await make_org(db)
    user, stranger = await make_user(db, org.id), await make_user(db, other.id)
    lead, foreign_lead = await make_lead(db, org.id), await make_lead(db, other.id)
    async with db.tenant(org.id) as uow:
        with pytest.raises(NotFoundError):
            await uow.leads.assign(foreign_lead.id, user.id)
        with pytest.raises(ConflictError):
            await uow.leads.assign(lead.id, stranger.id)


async def test_record_communication_moves_last_engagement_forward_only(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    sent = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)

    def email(at: datetime) -> CommunicationCreate:
        return CommunicationCreate(
            lead_id=lead.id,
            channel=CommunicationChannel.EMAIL,
            direction=CommunicationDirection.OUTBOUND,
            status=CommunicationStatus.SENT,
            subject="Hello",
            sent_at=at,
        )

    async def engaged() -> datetime | None:
        value: datetime | None = await pg.fetchval(
            "SELECT last_engagement_at FROM leads WHERE id = $1", lead.id
        )
        return value

    async with db.tenant(org.id) as uow:
        first = await uow.leads.record_communication(email(sent))
        await uow.commit()
    assert (first.lead_id, first.sent_at) == (lead.id, sent)
    assert await engaged() == sent
    async with db.tenant(org.id) as uow:
        await uow.leads.record_communication(email(sent - timedelta(days=3)))
        await uow.commit()
    assert await engaged() == sent
    async with db.tenant(org.id) as uow:
        await uow.leads.record_communication(email(sent + timedelta(hours=2)))
        await uow.commit()
    assert await engaged() == sent + timedelta(hours=2)
    async with db.tenant(org.id) as uow:
        current = await uow.leads.get_one(lead.id)
        history = await uow.communications.for_lead(lead.id)
    assert current.last_engagement_at == sent + timedelta(hours=2)
    assert [item.sent_at for item in history.items] == [
        sent + timedelta(hours=2),
        sent - timedelta(days=3),
        sent,
    ]


async def test_enroll_skips_enrolled_deleted_and_foreign_leads_and_funnel_counts(
    db: LeadDB,
) -> None:
    org, other = await make_org(db), await make_org(db)
    leads = [await make_lead(db, org.id) for _ in range(3)]
    gone = await make_lead(db, org.id)
    foreign = await make_lead(db, other.id)
    async with db.tenant(org.id) as uow:
        await uow.leads.delete(gone.id)
        campaign = await uow.campaigns.create(CampaignCreate(name="Spring launch"))
        first = await uow.campaigns.enroll(campaign.id, [leads[0].id, leads[1].id])
        await uow.commit()
    assert sorted(item.lead_id for item in first) == sorted([leads[0].id, leads[1].id])
    assert all(item.campaign_id == campaign.id for item in first)
    async with db.tenant(org.id) as uow:
        again = await uow.campaigns.enroll(
            campaign.id,
            [lead.id for lead in leads] + [gone.id, foreign.id, uuid.uuid4(), leads[2].id],
        )
        await uow.campaign_leads.update(
            first[0].id, CampaignLeadUpdate(status=CampaignLeadStatus.CONVERTED)
        )
        await uow.commit()
    assert [item.lead_id for item in again] == [leads[2].id]
    async with db.tenant(org.id) as uow:
        funnel = await uow.campaigns.funnel(campaign.id)
        enrolled = await uow.campaign_leads.for_campaign(campaign.id)
    assert funnel.campaign_id == campaign.id
    assert funnel.enrolled == 3
    assert funnel.counts[CampaignLeadStatus.ENROLLED] == 2
    assert funnel.counts[CampaignLeadStatus.CONVERTED] == 1
    assert funnel.counts[CampaignLeadStatus.BOUNCED] == 0
    assert {item.lead_id for item in enrolled.items} == {lead.id for lead in leads}
    async with db.tenant(other.id) as uow:
        assert await uow.campaigns.enroll(campaign.id, [foreign.id]) == []
        assert (await uow.campaigns.funnel(campaign.id)).enrolled == 0


async def test_workflow_runs_start_finish_and_stats(db: LeadDB) -> None:
    org, other = await make_org(db), await make_org(db)
    lead = await make_lead(db, org.id)
    base = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    async with db.tenant(org.id) as uow:
        nurture = await uow.workflows.create(WorkflowCreate(name="Nurture", n8n_workflow_id="w1"))
        scoring = await uow.workflows.create(WorkflowCreate(name="Score", n8n_workflow_id="w2"))
        for status, seconds in (
            (WorkflowExecutionStatus.SUCCEEDED, 10),
            (WorkflowExecutionStatus.SUCCEEDED, 30),
            (WorkflowExecutionStatus.FAILED, 20),
        ):
            await uow.workflow_executions.create(
                WorkflowExecutionCreate(
                    workflow_id=nurture.id,
                    status=status,
                    started_at=base,
                    finished_at=base + timedelta(seconds=seconds),
                )
            )
        run = await uow.workflow_executions.start(scoring.id, lead_id=lead.id, input={"k": 1})
        await uow.commit()
    assert (run.status, run.lead_id, run.finished_at) == (
        WorkflowExecutionStatus.RUNNING,
        lead.id,
        None,
    )
    assert run.started_at is not None
    async with db.tenant(org.id) as uow:
        done = await uow.workflow_executions.finish(
            run.id, WorkflowExecutionStatus.FAILED, error="n8n timeout"
        )
        await uow.commit()
    assert (done.status, done.error) == (WorkflowExecutionStatus.FAILED, "n8n timeout")
    assert done.finished_at is not None
    assert done.finished_at >= run.started_at
    async with db.tenant(other.id) as uow:
        await uow.workflows.create(WorkflowCreate(name="Theirs", n8n_workflow_id="w9"))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        stats = {item.workflow_id: item for item in await uow.workflows.stats()}
    assert set(stats) == {nurture.id, scoring.id}
    assert (stats[nurture.id].executions, stats[nurture.id].succeeded) == (3, 2)
    assert stats[nurture.id].success_rate == pytest.approx(2 / 3)
    assert stats[nurture.id].mean_duration_seconds == pytest.approx(20.0)
    assert (stats[scoring.id].executions, stats[scoring.id].failed) == (1, 1)
    assert stats[scoring.id].success_rate == 0.0


async def test_notes_for_a_lead_come_pinned_first_then_newest(db: LeadDB) -> None:
    org = await make_org(db)
    lead, other_lead = await make_lead(db, org.id), await make_lead(db, org.id)
    ids = []
    for body, pinned in (("oldest", False), ("pinned", True), ("newest", False)):
        async with db.tenant(org.id) as uow:
            note = await uow.notes.create(
                LeadNoteCreate(lead_id=lead.id, body=body, is_pinned=pinned)
            )
            await uow.notes.create(LeadNoteCreate(lead_id=other_lead.id, body="elsewhere"))
            await uow.commit()
        ids.append(note.id)
    async with db.tenant(org.id) as uow:
        notes = await uow.notes.for_lead(lead.id)
    assert [note.body for note in notes] == ["pinned", "newest", "oldest"]
    assert [note.id for note in notes] == [ids[1], ids[2], ids[0]]


async def test_views_report_the_tenants_own_pipeline_and_campaigns(db: LeadDB) -> None:
    org, other = await make_org(db), await make_org(db)
    async with db.tenant(org.id) as uow:
        new_leads = await uow.leads.create_many(
            [
                LeadCreate(email="a@example.com", score=10, estimated_value=Decimal("100.50")),
                LeadCreate(email="b@example.com", score=30, estimated_value=Decimal("200")),
            ]
        )
        won = await uow.leads.create(LeadCreate(email="c@example.com", status=LeadStatus.WON))
        campaign = await uow.campaigns.create(CampaignCreate(name="Autumn"))
        enrolled = await uow.campaigns.enroll(campaign.id, [lead.id for lead in new_leads])
        await uow.campaigns.enroll(campaign.id, [won.id])
        await uow.campaign_leads.update(
            enrolled[0].id, CampaignLeadUpdate(status=CampaignLeadStatus.CONVERTED)
        )
        for lead, opened in ((new_leads[0], True), (new_leads[1], False)):
            await uow.communications.create(
                CommunicationCreate(
                    lead_id=lead.id,
                    campaign_id=campaign.id,
                    channel=CommunicationChannel.EMAIL,
                    direction=CommunicationDirection.OUTBOUND,
                    status=CommunicationStatus.OPENED if opened else CommunicationStatus.SENT,
                    sent_at=datetime.now(UTC),
                )
            )
        await uow.commit()
    async with db.tenant(other.id) as uow:
        theirs = await uow.leads.create(LeadCreate(email="z@example.com", score=99))
        their_campaign = await uow.campaigns.create(CampaignCreate(name="Theirs"))
        await uow.campaigns.enroll(their_campaign.id, [theirs.id])
        await uow.commit()
    async with db.tenant(org.id) as uow:
        pipeline = {row.status: row for row in await uow.views.pipeline()}
        performance = await uow.views.campaign_performance()
        only = await uow.views.campaign_performance(campaign.id)
    assert set(pipeline) == {LeadStatus.NEW, LeadStatus.WON}
    assert all(row.organization_id == org.id for row in pipeline.values())
    assert (pipeline[LeadStatus.NEW].lead_count, pipeline[LeadStatus.NEW].won_count) == (2, 0)
    assert pipeline[LeadStatus.NEW].average_score == Decimal("20.00")
    assert pipeline[LeadStatus.NEW].total_estimated_value == Decimal("300.50")
    assert (pipeline[LeadStatus.WON].lead_count, pipeline[LeadStatus.WON].won_count) == (1, 1)
    assert [row.campaign_id for row in performance] == [campaign.id]
    assert only == performance
    row = performance[0]
    assert (row.organization_id, row.name) == (org.id, "Autumn")
    assert (row.enrolled, row.converted) == (3, 1)
    assert (row.communications_sent, row.opened) == (2, 1)
    assert row.conversion_rate == Decimal("0.3333")
