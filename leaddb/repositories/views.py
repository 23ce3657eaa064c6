"""The read-only reporting views, scoped to the tenant like everything else."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import Uuid, column, select, table

from leaddb.connections.driver_errors import run
from leaddb.models import CampaignPerformance, LeadPipeline
from leaddb.sql.compile import Positional, compile_positional, param

if TYPE_CHECKING:
    from leaddb.repositories.work import Work

# The views as Core sees them: their names and the columns leaddb reads (the models' views
# module defines them).
_PIPELINE = table(
    "lead_pipeline",
    *(column(name) for name in LeadPipeline.model_fields),
)
_CAMPAIGNS = table(
    "campaign_performance",
    *(column(name) for name in CampaignPerformance.model_fields),
)


def _pipeline() -> Positional:
    statement = (
        select(*_PIPELINE.c)
        .where(_PIPELINE.c.organization_id == param("tenant", Uuid()))
        .order_by(_PIPELINE.c.status)
    )
    return compile_positional(statement, ("tenant",))


def _campaigns(*, one: bool) -> Positional:
    statement = select(*_CAMPAIGNS.c).where(_CAMPAIGNS.c.organization_id == param("tenant", Uuid()))
    if one:
        statement = statement.where(_CAMPAIGNS.c.campaign_id == param("campaign", Uuid()))
    statement = statement.order_by(_CAMPAIGNS.c.name, _CAMPAIGNS.c.campaign_id)
    return compile_positional(statement, ("tenant", "campaign") if one else ("tenant",))


_PIPELINE_SQL = _pipeline()
_CAMPAIGNS_SQL = {one: _campaigns(one=one) for one in (False, True)}


class ViewRepository:
    """``lead_pipeline`` and ``campaign_performance`` for this tenant."""

    def __init__(self, uow: Work) -> None:
        self._uow = uow

    async def pipeline(self) -> list[LeadPipeline]:
        """Live leads by status: count, average score, total value, won and lost."""
        connection = await self._uow.statement_connection()
        rows = await run(
            connection.fetch, _PIPELINE_SQL.text, *_PIPELINE_SQL.args((self._uow.require_tenant(),))
        )
        return [LeadPipeline.model_validate(dict(row)) for row in rows]

    async def campaign_performance(
        self, campaign_id: uuid.UUID | None = None
    ) -> list[CampaignPerformance]:
        """Enrollment funnel, communications and rates per live campaign."""
        args: list[object] = [self._uow.require_tenant()]
        if campaign_id is not None:
            args.append(campaign_id)
        sql = _CAMPAIGNS_SQL[campaign_id is not None]
        connection = await self._uow.statement_connection()
        rows = await run(connection.fetch, sql.text, *sql.args(args))
        return [CampaignPerformance.model_validate(dict(row)) for row in rows]
