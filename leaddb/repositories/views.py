"""The read-only reporting views, scoped to the tenant like everything else."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from leaddb.connections.driver_errors import run
from leaddb.models import CampaignPerformance, LeadPipeline

if TYPE_CHECKING:
    from leaddb.repositories.work import Work

_PIPELINE_SQL = (
    "SELECT organization_id, status, lead_count, average_score, total_estimated_value, "
    "won_count, lost_count FROM lead_pipeline WHERE organization_id = $1 ORDER BY status"
)
_CAMPAIGNS_SQL = (
    "SELECT organization_id, campaign_id, name, enrolled, contacted, responded, converted, "
    "communications_sent, opened, replied, response_rate, conversion_rate "
    "FROM campaign_performance WHERE organization_id = $1"
)


class ViewRepository:
    """``lead_pipeline`` and ``campaign_performance`` for this tenant."""

    def __init__(self, uow: Work) -> None:
        self._uow = uow

    async def pipeline(self) -> list[LeadPipeline]:
        """Live leads by status: count, average score, total value, won and lost."""
        connection = await self._uow.statement_connection()
        rows = await run(connection.fetch, _PIPELINE_SQL, self._uow.require_tenant())
        return [LeadPipeline.model_validate(dict(row)) for row in rows]

    async def campaign_performance(
        self, campaign_id: uuid.UUID | None = None
    ) -> list[CampaignPerformance]:
        """Enrollment funnel, communications and rates per live campaign."""
        sql, args = _CAMPAIGNS_SQL, [self._uow.require_tenant()]
        if campaign_id is not None:
            sql, args = sql + " AND campaign_id = $2", [*args, campaign_id]
        connection = await self._uow.statement_connection()
        rows = await run(connection.fetch, sql + " ORDER BY name, campaign_id", *args)
        return [CampaignPerformance.model_validate(dict(row)) for row in rows]
