"""The demo's data beyond organizations, users and leads: scoring rules, n8n workflows and their
runs, campaigns with enrollments, communications and notes.

Written once per organization, in one unit of work through the repositories (``create_many``
where there are many rows): an organization that already has campaigns is left as it is, so the
demo can run again and again on the same data directory.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from pydantic import JsonValue

from leaddb.db import LeadDB
from leaddb.models import (
    CampaignCreate,
    CampaignLeadCreate,
    CampaignLeadStatus,
    CampaignStatus,
    CampaignType,
    CommunicationChannel,
    CommunicationCreate,
    CommunicationDirection,
    CommunicationStatus,
    Lead,
    LeadNoteCreate,
    LeadScoringRuleCreate,
    Organization,
    ScoringOperator,
    User,
    WorkflowCreate,
    WorkflowExecutionCreate,
    WorkflowExecutionStatus,
    WorkflowTrigger,
)
from leaddb.seeding.fake import day_anchor, vocabulary
from leaddb.uow import TenantUnitOfWork

OUTBOUND_CAMPAIGN: Final = "Q3 outbound sequence"
"""The campaign the demo enrolls more leads into."""

_O = ScoringOperator
SCORING_RULES: Final[tuple[tuple[str, str, ScoringOperator, JsonValue, int], ...]] = (
    ("Late-stage pipeline", "status", _O.IN, ["qualified", "proposal", "negotiation"], 25),
    ("Referral", "source", _O.EQ, "referral", 15),
    ("Big deal", "estimated_value", _O.GTE, 50_000, 20),
    ("Engaged this fortnight", "last_engagement_at", _O.WITHIN_DAYS, 14, 20),
    ("Gone quiet", "last_engagement_at", _O.OLDER_THAN_DAYS, 90, -15),
    ("Flagged priority", "tags", _O.CONTAINS, "priority", 10),
    ("Manager title", "job_title", _O.CONTAINS, "manager", 10),
    ("Large company", "custom_fields.employees", _O.GTE, 1_000, 10),
    ("Lost", "status", _O.EQ, "lost", -40),
)

_WORKFLOWS: Final = (
    ("Welcome sequence", WorkflowTrigger.LEAD_CREATED),
    ("Hot lead alert to Slack", WorkflowTrigger.SCORE_CHANGED),
    ("Re-engage stale leads", WorkflowTrigger.SCHEDULE),
)
_RUN_STATUSES: Final = (
    WorkflowExecutionStatus.SUCCEEDED,
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.CANCELLED,
)

_CAMPAIGNS: Final = (
    ("Spring webinar", CampaignType.EVENT, CampaignStatus.COMPLETED, 0.25),
    (OUTBOUND_CAMPAIGN, CampaignType.SEQUENCE, CampaignStatus.ACTIVE, 0.30),
    ("Product launch newsletter", CampaignType.EMAIL, CampaignStatus.ACTIVE, 0.40),
)
_ENROLLMENT_STATUSES: Final = tuple(CampaignLeadStatus)
_ENROLLMENT_WEIGHTS: Final = (40, 30, 14, 8, 5, 3)
_REACHED: Final = {
    CampaignLeadStatus.CONTACTED: CommunicationStatus.DELIVERED,
    CampaignLeadStatus.RESPONDED: CommunicationStatus.REPLIED,
    CampaignLeadStatus.CONVERTED: CommunicationStatus.REPLIED,
    CampaignLeadStatus.UNSUBSCRIBED: CommunicationStatus.OPENED,
    CampaignLeadStatus.BOUNCED: CommunicationStatus.BOUNCED,
}


@dataclass(frozen=True)
class ActivityCounts:
    """Rows the demo wrote for one organization (all zero when it had them already)."""

    scoring_rules: int = 0
    workflows: int = 0
    executions: int = 0
    campaigns: int = 0
    enrollments: int = 0
    communications: int = 0
    notes: int = 0

    @property
    def total(self) -> int:
        return (
            self.scoring_rules
            + self.workflows
            + self.executions
            + self.campaigns
            + self.enrollments
            + self.communications
            + self.notes
        )


async def all_leads(uow: TenantUnitOfWork) -> list[Lead]:
    """Every live lead of the tenant, a keyset page of 1,000 at a time."""
    leads: list[Lead] = []
    after: str | None = None
    while True:
        page = await uow.leads.list(limit=1000, after=after)
        leads.extend(page.items)
        if page.next_cursor is None:
            return leads
        after = page.next_cursor


async def populate(db: LeadDB, organization: Organization, users: Sequence[User]) -> ActivityCounts:
    """Give the organization its rules, workflows, campaigns and history, unless it has them."""
    actor = users[0].id if users else None
    async with db.tenant(organization.id, actor=actor) as uow:
        if await uow.campaigns.exists():
            return ActivityCounts()
        rng = random.Random(f"demo/{organization.slug}")  # noqa: S311 (repeatable fake data)
        leads = await all_leads(uow)
        user_ids = [user.id for user in users]
        now = day_anchor()
        rules = await uow.scoring_rules.create_many(
            [
                LeadScoringRuleCreate(
                    name=name,
                    field=field,
                    operator=operator,
                    value=value,
                    points=points,
                    priority=10 * index,
                )
                for index, (name, field, operator, value, points) in enumerate(SCORING_RULES)
            ]
        )
        workflows, executions = await _workflows(uow, rng, leads, now)
        campaigns, enrollments, communications = await _campaigns(uow, rng, leads, user_ids, now)
        notes = await _notes(uow, rng, leads, user_ids)
        await uow.commit()
    return ActivityCounts(
        scoring_rules=len(rules),
        workflows=workflows,
        executions=executions,
        campaigns=campaigns,
        enrollments=enrollments,
        communications=communications,
        notes=notes,
    )


async def _workflows(
    uow: TenantUnitOfWork, rng: random.Random, leads: Sequence[Lead], now: datetime
) -> tuple[int, int]:
    runs: list[WorkflowExecutionCreate] = []
    created = 0
    for name, trigger in _WORKFLOWS:
        workflow = await uow.workflows.create(
            WorkflowCreate(
                name=name,
                n8n_workflow_id=f"wf-{rng.getrandbits(40):010x}",
                trigger=trigger,
                definition={"nodes": rng.randint(3, 12), "version": 1},
            )
        )
        created += 1
        for _ in range(rng.randint(60, 140)):
            started = now - timedelta(minutes=rng.randint(5, 30 * 24 * 60))
            status = rng.choices(_RUN_STATUSES, weights=(85, 11, 4))[0]
            runs.append(
                WorkflowExecutionCreate(
                    workflow_id=workflow.id,
                    lead_id=rng.choice(leads).id if leads else None,
                    status=status,
                    started_at=started,
                    finished_at=started + timedelta(milliseconds=rng.randint(200, 45_000)),
                    n8n_execution_id=str(rng.randint(10_000, 9_999_999)),
                    error="HTTP 502 from CRM webhook"
                    if status is WorkflowExecutionStatus.FAILED
                    else None,
                )
            )
    executions = await uow.workflow_executions.create_many(runs)
    return created, len(executions)


async def _campaigns(
    uow: TenantUnitOfWork,
    rng: random.Random,
    leads: Sequence[Lead],
    users: Sequence[uuid.UUID],
    now: datetime,
) -> tuple[int, int, int]:
    enrollments: list[CampaignLeadCreate] = []
    messages: list[CommunicationCreate] = []
    sentences = vocabulary().sentences
    for name, kind, status, share in _CAMPAIGNS:
        campaign = await uow.campaigns.create(
            CampaignCreate(
                name=name,
                campaign_type=kind,
                status=status,
                start_date=(now - timedelta(days=rng.randint(20, 60))).date(),
                budget=Decimal(rng.randrange(2_000, 40_000, 500)),
                owner_id=rng.choice(users) if users else None,
            )
        )
        for lead in rng.sample(list(leads), int(len(leads) * share)):
            progress = rng.choices(_ENROLLMENT_STATUSES, weights=_ENROLLMENT_WEIGHTS)[0]
            contacted = now - timedelta(hours=rng.randint(1, 40 * 24))
            reached = progress is not CampaignLeadStatus.ENROLLED
            enrollments.append(
                CampaignLeadCreate(
                    campaign_id=campaign.id,
                    lead_id=lead.id,
                    status=progress,
                    last_contacted_at=contacted if reached else None,
                )
            )
            if reached:
                messages.extend(
                    _messages(campaign.id, lead, progress, contacted, rng, users, sentences)
                )
    created = await uow.campaign_leads.create_many(enrollments)
    sent = await uow.communications.create_many(messages)
    return len(_CAMPAIGNS), len(created), len(sent)


def _messages(
    campaign_id: uuid.UUID,
    lead: Lead,
    progress: CampaignLeadStatus,
    sent_at: datetime,
    rng: random.Random,
    users: Sequence[uuid.UUID],
    sentences: Sequence[str],
) -> list[CommunicationCreate]:
    delivery = _REACHED[progress]
    outbound = CommunicationCreate(
        lead_id=lead.id,
        campaign_id=campaign_id,
        user_id=rng.choice(users) if users else None,
        channel=CommunicationChannel.EMAIL,
        direction=CommunicationDirection.OUTBOUND,
        status=delivery,
        subject=f"{lead.first_name or 'Hello'}, {rng.choice(sentences)[:60].rstrip('.')}",
        body=" ".join(rng.sample(list(sentences), 3)),
        sent_at=sent_at,
        delivered_at=None if delivery is CommunicationStatus.BOUNCED else sent_at,
        opened_at=sent_at + timedelta(hours=2)
        if delivery in (CommunicationStatus.OPENED, CommunicationStatus.REPLIED)
        else None,
        replied_at=sent_at + timedelta(hours=9)
        if delivery is CommunicationStatus.REPLIED
        else None,
    )
    if delivery is not CommunicationStatus.REPLIED:
        return [outbound]
    reply = CommunicationCreate(
        lead_id=lead.id,
        campaign_id=campaign_id,
        channel=CommunicationChannel.EMAIL,
        direction=CommunicationDirection.INBOUND,
        status=CommunicationStatus.DELIVERED,
        subject=f"Re: {outbound.subject}",
        body=rng.choice(sentences),
        sent_at=sent_at + timedelta(hours=9),
        delivered_at=sent_at + timedelta(hours=9),
    )
    return [outbound, reply]


async def _notes(
    uow: TenantUnitOfWork,
    rng: random.Random,
    leads: Sequence[Lead],
    users: Sequence[uuid.UUID],
) -> int:
    sentences = vocabulary().sentences
    notes = [
        LeadNoteCreate(
            lead_id=lead.id,
            author_user_id=rng.choice(users) if users else None,
            body=" ".join(rng.sample(list(sentences), rng.randint(1, 3))),
            is_pinned=rng.random() < 0.1,
        )
        for lead in rng.sample(list(leads), len(leads) // 4)
    ]
    return len(await uow.notes.create_many(notes))
