"""Campaigns and the leads enrolled in them."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import ClassVar

from pydantic import BaseModel
from sqlalchemy import and_, any_, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert

from leaddb.connections.driver_errors import run
from leaddb.errors import InvalidValueError
from leaddb.models import (
    ActivityAction,
    ActivityLog,
    Campaign,
    CampaignCreate,
    CampaignLead,
    CampaignLeadCreate,
    CampaignLeadStatus,
    CampaignLeadUpdate,
    CampaignUpdate,
    Lead,
)
from leaddb.models.base import table_of
from leaddb.repositories.base import Repository
from leaddb.repositories.filters import keyword
from leaddb.repositories.pagination import Page
from leaddb.repositories.reads import as_uuid
from leaddb.sql.compile import Positional, compile_positional, inline, param
from leaddb.sql.statements import aliased, insert_target

MAX_ENROLL = 50_000


class Funnel(BaseModel):
    """How many of a campaign's leads are at each stage."""

    campaign_id: uuid.UUID
    counts: dict[CampaignLeadStatus, int]

    @property
    def enrolled(self) -> int:
        return sum(self.counts.values())


class CampaignRepository(Repository[Campaign, CampaignCreate, CampaignUpdate]):
    """Campaigns of one organization."""

    model: ClassVar[type[Campaign]] = Campaign

    async def enroll(
        self, campaign_id: uuid.UUID, lead_ids: Collection[uuid.UUID]
    ) -> list[CampaignLead]:
        """Enroll many leads at once; those already enrolled (or unknown) are skipped.

        Returns the new enrollments. One statement, whatever the number of leads.
        """
        campaign = as_uuid(campaign_id)
        ids = list(dict.fromkeys(key for key in map(as_uuid, lead_ids) if key is not None))
        if campaign is None or not ids:
            return []
        if len(ids) > MAX_ENROLL:
            raise InvalidValueError(
                f"enroll at most {MAX_ENROLL} leads per call, not {len(ids)}", field="lead_ids"
            )
        connection = await self._connection()
        rows = await run(
            connection.fetch,
            _ENROLL_SQL.text,
            *_ENROLL_SQL.args((self._uow.require_tenant(), campaign, ids, self._uow.actor_id)),
        )
        enrolled = CampaignLeadRepository._hydrator.many(rows)
        self._uow.record_created("campaign_lead", [row.id for row in enrolled])
        return enrolled

    async def funnel(self, campaign_id: uuid.UUID) -> Funnel:
        """Counts of the campaign's enrollments by status (every status present, zeros too)."""
        campaign = as_uuid(campaign_id)
        counts = dict.fromkeys(CampaignLeadStatus, 0)
        if campaign is not None:
            connection = await self._connection()
            rows = await run(
                connection.fetch,
                _FUNNEL_SQL.text,
                *_FUNNEL_SQL.args((self._uow.require_tenant(), campaign)),
            )
            for row in rows:
                counts[CampaignLeadStatus(row["status"])] = int(row["n"])
        return Funnel(campaign_id=campaign or uuid.UUID(int=0), counts=counts)


class CampaignLeadRepository(Repository[CampaignLead, CampaignLeadCreate, CampaignLeadUpdate]):
    """Enrollments of leads in campaigns."""

    model: ClassVar[type[CampaignLead]] = CampaignLead
    default_order: ClassVar[tuple[str, ...]] = ("enrolled_at", "id")

    async def for_campaign(
        self, campaign_id: uuid.UUID, *, limit: int = 50, after: str | None = None
    ) -> Page[CampaignLead]:
        return await self.list(keyword("campaign_id", campaign_id), limit=limit, after=after)


def _enroll() -> Positional:
    """One statement: enroll every live lead of the list that is not enrolled yet, and audit
    each. Parameters: tenant, campaign, the lead ids, the actor."""
    shape = CampaignLeadRepository._shape
    enrollments = shape.table
    c = aliased(table_of(Campaign), "c")
    lead = aliased(table_of(Lead), "l")
    tenant = param("tenant", c.c.organization_id.type)
    chosen = and_(
        lead.c.organization_id == c.c.organization_id,
        lead.c.id == any_(param("ids", ARRAY(lead.c.id.type))),
    )
    rows = (
        select(
            tenant,
            func.leaddb_uuid7(),
            c.c.id,
            lead.c.id,
            inline(CampaignLeadStatus.ENROLLED.value),
        )
        .select_from(c.join(lead, chosen))
        .where(
            c.c.organization_id == tenant,
            c.c.id == param("campaign", c.c.id.type),
            c.c.deleted_at.is_(None),
            lead.c.deleted_at.is_(None),
        )
        .order_by(lead.c.id)
    )
    target = insert_target(enrollments)
    names = ["organization_id", "id", "campaign_id", "lead_id", "status"]
    written = (
        pg_insert(target)
        .from_select(names, rows)
        .on_conflict_do_nothing(index_elements=["organization_id", "campaign_id", "lead_id"])
        .returning(*target.c)
        .cte("w")
    )
    log = shape.audit_rows(
        written,
        written,
        action=inline(ActivityAction.CREATED.value),
        actor=param("actor", table_of(ActivityLog).c.actor_user_id.type),
        changes=func.jsonb_build_object(inline("after"), shape.redacted(written)),
        audit_id=func.leaddb_uuid7(),
    ).cte("log")
    statement = select(*written.c).add_cte(log)
    return compile_positional(statement, ("tenant", "campaign", "ids", "actor"))


def _funnel() -> Positional:
    """Enrollments by status; parameters: tenant, campaign."""
    enrollments = table_of(CampaignLead)
    statement = (
        select(enrollments.c.status, func.count().label("n"))
        .where(
            enrollments.c.organization_id == param("tenant", enrollments.c.organization_id.type),
            enrollments.c.campaign_id == param("campaign", enrollments.c.campaign_id.type),
        )
        .group_by(enrollments.c.status)
    )
    return compile_positional(statement, ("tenant", "campaign"))


_ENROLL_SQL = _enroll()
_FUNNEL_SQL = _funnel()
