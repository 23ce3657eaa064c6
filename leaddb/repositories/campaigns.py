"""Campaigns and the leads enrolled in them."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import ClassVar

from pydantic import BaseModel

from leaddb.connections.driver_errors import run
from leaddb.errors import InvalidValueError
from leaddb.models import (
    Campaign,
    CampaignCreate,
    CampaignLead,
    CampaignLeadCreate,
    CampaignLeadStatus,
    CampaignLeadUpdate,
    CampaignUpdate,
)
from leaddb.repositories.base import Repository
from leaddb.repositories.filters import keyword
from leaddb.repositories.pagination import Page
from leaddb.repositories.reads import as_uuid

MAX_ENROLL = 50_000

# One statement: enroll every live lead of the list that is not enrolled yet, and audit each.
_ENROLL_SQL = """
WITH w AS (
    INSERT INTO campaign_leads (organization_id, id, campaign_id, lead_id, status)
    SELECT $1, leaddb_uuid7(), c.id, l.id, 'enrolled'
    FROM campaigns c
    JOIN leads l ON l.organization_id = c.organization_id AND l.id = ANY($3::uuid[])
    WHERE c.organization_id = $1 AND c.id = $2 AND c.deleted_at IS NULL AND l.deleted_at IS NULL
    ORDER BY l.id
    ON CONFLICT (organization_id, campaign_id, lead_id) DO NOTHING
    RETURNING *
), log AS (
    INSERT INTO activity_logs (organization_id, id, actor_user_id, entity_type, entity_id,
                               action, changes)
    SELECT w.organization_id, leaddb_uuid7(), $4, 'campaign_lead', w.id, 'created',
           jsonb_build_object('after', to_jsonb(w))
    FROM w
)
SELECT * FROM w
"""

_FUNNEL_SQL = """
SELECT status, count(*) AS n FROM campaign_leads
WHERE organization_id = $1 AND campaign_id = $2 GROUP BY status
"""


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
            _ENROLL_SQL,
            self._uow.require_tenant(),
            campaign,
            ids,
            self._uow.actor_id,
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
            rows = await run(connection.fetch, _FUNNEL_SQL, self._uow.require_tenant(), campaign)
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
