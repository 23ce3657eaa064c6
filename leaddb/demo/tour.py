"""What a service does with leaddb, step by step, each step a row in a rich table.

Every function opens its own units of work exactly as request handlers would: one per request,
scoped to the tenant, with the acting user recorded in the audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rich.table import Table

from leaddb.db import LeadDB
from leaddb.demo.data import OUTBOUND_CAMPAIGN
from leaddb.errors import StaleVersionError
from leaddb.models import (
    CampaignPerformance,
    CommunicationChannel,
    CommunicationCreate,
    CommunicationDirection,
    CommunicationStatus,
    Lead,
    LeadCreate,
    LeadNoteCreate,
    LeadSource,
    LeadStatus,
    LeadUpdate,
    Organization,
    User,
    WorkflowExecutionStatus,
)
from leaddb.repositories.filters import keyword


@dataclass(frozen=True)
class Tenant:
    """One organization of the demo and the user who acts in it."""

    organization: Organization
    users: Sequence[User]

    @property
    def actor(self) -> User:
        return self.users[0]


def ms(started: float) -> str:
    """Milliseconds since ``started`` (a ``perf_counter`` value), for a table cell."""
    return f"{(time.perf_counter() - started) * 1000:.1f}"


def steps_table(title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("step", overflow="fold")
    # Folded, not cut: a step, an id or an email must stay whole at 80 columns.
    table.add_column("result", overflow="fold")
    table.add_column("ms", justify="right")
    return table


def describe(lead: Lead) -> str:
    name = " ".join(part for part in (lead.first_name, lead.last_name) if part) or lead.email
    return f"{name} <{lead.email}> v{lead.version}"


async def reads_and_writes(db: LeadDB, tenant: Tenant) -> Table:
    """Create (upsert), get, list a keyset page and the next, update with a version, a stale
    update refused, search, assign, a communication, a note and a workflow run."""
    org, actor = tenant.organization, tenant.actor
    table = steps_table(f"tenant-scoped reads and writes: {org.name}")

    started = time.perf_counter()
    async with db.tenant(org.id, actor=actor.id) as uow:
        lead = await uow.leads.upsert(
            LeadCreate(
                email="grace.hopper@cobol.dev",
                first_name="Grace",
                last_name="Hopper",
                company="Compiler Systems",
                job_title="Engineering Manager",
                source=LeadSource.REFERRAL,
                tags=["priority"],
            )
        )
        await uow.commit()
    table.add_row("leads.upsert(LeadCreate) + commit", describe(lead), ms(started))

    started = time.perf_counter()
    async with db.tenant(org.id, actor=actor.id) as uow:
        found = await uow.leads.get(lead.id)
    table.add_row("leads.get(id)", describe(found) if found else "None", ms(started))

    started = time.perf_counter()
    async with db.tenant(org.id, actor=actor.id) as uow:
        page = await uow.leads.list(status=LeadStatus.QUALIFIED, limit=25)
        more = await uow.leads.list(status=LeadStatus.QUALIFIED, limit=25, after=page.next_cursor)
    table.add_row(
        "leads.list(status=qualified, limit=25) + next page",
        f"{len(page.items)} + {len(more.items)} leads; page 2 starts at "
        f"{more.items[0].email if more.items else '-'}",
        ms(started),
    )

    started = time.perf_counter()
    async with db.tenant(org.id, actor=actor.id) as uow:
        current = await uow.leads.get_one(lead.id)
        updated = await uow.leads.update(
            lead.id,
            LeadUpdate(status=LeadStatus.QUALIFIED, estimated_value=None),
            expected_version=current.version,
        )
        await uow.commit()
    table.add_row(
        f"leads.update(..., expected_version={current.version})",
        f"status {updated.status}, version {current.version} -> {updated.version}",
        ms(started),
    )

    started = time.perf_counter()
    async with db.tenant(org.id, actor=actor.id) as uow:
        try:
            await uow.leads.update(
                lead.id, LeadUpdate(status=LeadStatus.LOST), expected_version=current.version
            )
            stale = "accepted (unexpected)"
        except StaleVersionError as error:
            stale = f"StaleVersionError: now v{error.actual}, not v{error.expected}"
    table.add_row(f"same update again with version {current.version}", stale, ms(started))

    term = (await _some_company(db, tenant)) or "Hopper"
    started = time.perf_counter()
    async with db.tenant(org.id, actor=actor.id) as uow:
        hits = await uow.leads.search(term, limit=10)
    table.add_row(
        f"leads.search({term!r})",
        f"{len(hits)} leads, e.g. {hits[0].company or hits[0].email}" if hits else "none",
        ms(started),
    )

    started = time.perf_counter()
    agent = tenant.users[-1]
    async with db.tenant(org.id, actor=actor.id) as uow:
        assignment = await uow.leads.assign(lead.id, agent.id)
        await uow.leads.record_communication(
            CommunicationCreate(
                lead_id=lead.id,
                user_id=agent.id,
                channel=CommunicationChannel.CALL,
                direction=CommunicationDirection.OUTBOUND,
                status=CommunicationStatus.DELIVERED,
                subject="Intro call",
                sent_at=datetime.now(UTC),
            )
        )
        await uow.notes.create(
            LeadNoteCreate(
                lead_id=lead.id, author_user_id=agent.id, body="Wants a demo of the n8n sync."
            )
        )
        await uow.commit()
    table.add_row(
        "assign + record_communication + note, one commit",
        f"owner {agent.full_name} (assignment {str(assignment.id)[:8]}…)",
        ms(started),
    )

    started = time.perf_counter()
    async with db.tenant(org.id, actor=actor.id) as uow:
        workflows = await uow.workflows.list(limit=1)
        outcome = "no workflow"
        if workflows.items:
            workflow = workflows.items[0]
            run = await uow.workflow_executions.start(workflow.id, lead_id=lead.id)
            run = await uow.workflow_executions.finish(
                run.id, WorkflowExecutionStatus.SUCCEEDED, output={"slack": "posted"}
            )
            outcome = f"{workflow.name}: {run.status}"
        await uow.commit()
    table.add_row("workflow_executions.start / finish", outcome, ms(started))
    return table


async def _some_company(db: LeadDB, tenant: Tenant) -> str | None:
    """A word from a real company name of the tenant, to search for."""
    async with db.tenant(tenant.organization.id) as uow:
        leads = await uow.leads.top_scored(limit=1)
    if not leads or not leads[0].company:
        return None
    return leads[0].company.replace(",", " ").split()[0]


@dataclass(frozen=True)
class RescoreOutcome:
    scored: int
    changed: int
    seconds: float


async def rescore(db: LeadDB, tenant: Tenant) -> tuple[Table, RescoreOutcome]:
    """``uow.scoring.rescore_organization()``: one set-based statement, then the top leads."""
    org = tenant.organization
    started = time.perf_counter()
    async with db.tenant(org.id, actor=tenant.actor.id) as uow:
        rules = await uow.scoring_rules.active()
        summary = await uow.scoring.rescore_organization()
        await uow.commit()
    outcome = RescoreOutcome(summary.scored, summary.changed, time.perf_counter() - started)
    async with db.tenant(org.id) as uow:
        top = await uow.leads.top_scored(limit=3)
    table = Table(title=f"rescoring: {org.name}", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("active rules", str(len(rules)))
    table.add_row("leads scored", f"{outcome.scored:,}")
    table.add_row("scores or temperatures changed", f"{outcome.changed:,}")
    table.add_row("time (one statement + history rows)", f"{outcome.seconds * 1000:.0f} ms")
    for rank, lead in enumerate(top, 1):
        table.add_row(f"top lead #{rank}", f"{describe(lead)}: {lead.score} ({lead.temperature})")
    return table, outcome


async def enroll(db: LeadDB, tenant: Tenant) -> Table:
    """Enroll open leads gone quiet into the outbound campaign; show its funnel."""
    org = tenant.organization
    started = time.perf_counter()
    async with db.tenant(org.id, actor=tenant.actor.id) as uow:
        campaigns = await uow.campaigns.list(keyword("name", OUTBOUND_CAMPAIGN), limit=1)
        if not campaigns.items:
            return steps_table("campaign enrollment: no campaign")
        campaign = campaigns.items[0]
        quiet = await uow.leads.stale(datetime.now(UTC) - timedelta(days=30), limit=200)
        enrolled = await uow.campaigns.enroll(campaign.id, [lead.id for lead in quiet.items])
        funnel = await uow.campaigns.funnel(campaign.id)
        await uow.commit()
    elapsed = ms(started)
    table = Table(title=f"campaign enrollment and funnel: {campaign.name}", title_justify="left")
    table.add_column("stage")
    table.add_column("leads", justify="right")
    table.add_row(
        "[bold]enrolled now[/]",
        f"{len(enrolled)} new of {len(quiet.items)} quiet leads ({elapsed} ms)",
    )
    for stage, count in funnel.counts.items():
        table.add_row(str(stage), f"{count:,}")
    table.add_row("[bold]total[/]", f"{funnel.enrolled:,}")
    return table


async def views(db: LeadDB, tenant: Tenant) -> list[Table]:
    """The ``lead_pipeline`` and ``campaign_performance`` views, and the workflows' stats."""
    org = tenant.organization
    async with db.tenant(org.id) as uow:
        pipeline = await uow.views.pipeline()
        performance = await uow.views.campaign_performance()
        workflow_stats = await uow.workflows.stats()
    order = {status: index for index, status in enumerate(LeadStatus)}
    stages = Table(title=f"pipeline view: {org.name}", title_justify="left")
    for name in ("status", "leads", "avg score", "est. value", "won", "lost"):
        stages.add_column(name, justify="left" if name == "status" else "right")
    for row in sorted(pipeline, key=lambda row: order[row.status]):
        stages.add_row(
            str(row.status),
            f"{row.lead_count:,}",
            f"{row.average_score:.1f}",
            f"{row.total_estimated_value:,.0f}",
            str(row.won_count),
            str(row.lost_count),
        )
    # One column per campaign, a row per measure: eight measures side by side need more than
    # the 80 columns a terminal (or a pipe) has, and came out as "campai… enroll… contac…".
    campaigns = Table(title=f"campaign performance view: {org.name}", title_justify="left")
    campaigns.add_column("")
    for item in performance:
        campaigns.add_column(item.name, justify="right", overflow="fold")
    measures: list[tuple[str, Callable[[CampaignPerformance], str]]] = [
        ("enrolled", lambda item: f"{item.enrolled:,}"),
        ("contacted", lambda item: f"{item.contacted:,}"),
        ("responded", lambda item: f"{item.responded:,}"),
        ("converted", lambda item: f"{item.converted:,}"),
        ("messages sent", lambda item: f"{item.communications_sent:,}"),
        ("response rate", lambda item: f"{item.response_rate:.1%}"),
        ("conversion rate", lambda item: f"{item.conversion_rate:.1%}"),
    ]
    for label, measure in measures:
        campaigns.add_row(label, *(measure(item) for item in performance))
    workflows = Table(title=f"n8n workflows: {org.name}", title_justify="left")
    for name in ("workflow", "runs", "succeeded", "failed", "mean duration"):
        workflows.add_column(name, justify="left" if name == "workflow" else "right")
    for stats in workflow_stats:
        mean = stats.mean_duration_seconds
        workflows.add_row(
            stats.name,
            f"{stats.executions:,}",
            f"{stats.succeeded:,}",
            f"{stats.failed:,}",
            "-" if mean is None else f"{mean:.1f}s",
        )
    return [stages, campaigns, workflows]
