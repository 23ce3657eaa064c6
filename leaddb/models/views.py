"""Read-only reporting views: the lead pipeline and campaign performance.

The migrations create the views from the SQL below; the ``Table`` objects describe their columns
for queries and live on their own ``views_metadata``, so Alembic autogenerate (which compares
``leaddb.models.metadata``) never tries to create them as tables. Soft-deleted leads and
campaigns are left out of both views.
"""

import uuid
from decimal import Decimal
from typing import Final

import sqlalchemy as sa

from leaddb.models.base import (
    ReadSchema,
)
from leaddb.models.enums import LeadStatus
from leaddb.models.fields import (
    enum_type,
)

__all__ = [
    "CAMPAIGN_PERFORMANCE_VIEW_SQL",
    "DROP_CAMPAIGN_PERFORMANCE_VIEW_SQL",
    "DROP_LEAD_PIPELINE_VIEW_SQL",
    "LEAD_PIPELINE_VIEW_SQL",
    "CampaignPerformance",
    "LeadPipeline",
    "campaign_performance_view",
    "lead_pipeline_view",
    "views_metadata",
]

# One row per organization and status that has live leads. Filtering on organization_id is
# pushed below the GROUP BY, so a tenant's pipeline reads only that tenant's leads.
LEAD_PIPELINE_VIEW_SQL: Final = """\
CREATE OR REPLACE VIEW lead_pipeline AS
SELECT
    l.organization_id,
    l.status,
    count(*) AS lead_count,
    round(avg(l.score), 2)::numeric(5, 2) AS average_score,
    coalesce(sum(l.estimated_value), 0)::numeric(16, 2) AS total_estimated_value,
    count(*) FILTER (WHERE l.status = 'won') AS won_count,
    count(*) FILTER (WHERE l.status = 'lost') AS lost_count
FROM leads AS l
WHERE l.deleted_at IS NULL
GROUP BY l.organization_id, l.status"""

# One row per live campaign. The LATERAL subqueries aggregate one campaign each through the
# (organization_id, campaign_id, ...) indexes, so a tenant's report reads only its rows.
# contacted: the enrolment moved past "enrolled" or was contacted; responded: responded or
# converted. Communications count outbound ones that left (sent_at, or a post-send status).
CAMPAIGN_PERFORMANCE_VIEW_SQL: Final = """\
CREATE OR REPLACE VIEW campaign_performance AS
SELECT
    c.organization_id,
    c.id AS campaign_id,
    c.name,
    e.enrolled,
    e.contacted,
    e.responded,
    e.converted,
    m.communications_sent,
    m.opened,
    m.replied,
    round(coalesce(e.responded::numeric / nullif(e.contacted, 0), 0), 4)::numeric(5, 4)
        AS response_rate,
    round(coalesce(e.converted::numeric / nullif(e.enrolled, 0), 0), 4)::numeric(5, 4)
        AS conversion_rate
FROM campaigns AS c
CROSS JOIN LATERAL (
    SELECT
        count(*) AS enrolled,
        count(*) FILTER (
            WHERE cl.status <> 'enrolled' OR cl.last_contacted_at IS NOT NULL
        ) AS contacted,
        count(*) FILTER (WHERE cl.status IN ('responded', 'converted')) AS responded,
        count(*) FILTER (WHERE cl.status = 'converted') AS converted
    FROM campaign_leads AS cl
    JOIN leads AS l ON l.organization_id = cl.organization_id AND l.id = cl.lead_id
    WHERE cl.organization_id = c.organization_id
      AND cl.campaign_id = c.id
      AND l.deleted_at IS NULL
) AS e
CROSS JOIN LATERAL (
    SELECT
        count(*) FILTER (
            WHERE cm.sent_at IS NOT NULL OR cm.status NOT IN ('queued', 'failed')
        ) AS communications_sent,
        count(*) FILTER (
            WHERE cm.opened_at IS NOT NULL OR cm.status IN ('opened', 'clicked', 'replied')
        ) AS opened,
        count(*) FILTER (WHERE cm.replied_at IS NOT NULL OR cm.status = 'replied') AS replied
    FROM communications AS cm
    JOIN leads AS l ON l.organization_id = cm.organization_id AND l.id = cm.lead_id
    WHERE cm.organization_id = c.organization_id
      AND cm.campaign_id = c.id
      AND cm.direction = 'outbound'
      AND l.deleted_at IS NULL
) AS m
WHERE c.deleted_at IS NULL"""

DROP_LEAD_PIPELINE_VIEW_SQL: Final = "DROP VIEW IF EXISTS lead_pipeline"
DROP_CAMPAIGN_PERFORMANCE_VIEW_SQL: Final = "DROP VIEW IF EXISTS campaign_performance"

views_metadata: Final = sa.MetaData()
"""Metadata of the views only; never passed to Alembic or ``create_all``."""

lead_pipeline_view: Final = sa.Table(
    "lead_pipeline",
    views_metadata,
    sa.Column("organization_id", sa.Uuid, nullable=False),
    sa.Column("status", enum_type(LeadStatus), nullable=False),
    sa.Column("lead_count", sa.BigInteger, nullable=False),
    sa.Column("average_score", sa.Numeric(5, 2), nullable=False),
    sa.Column("total_estimated_value", sa.Numeric(16, 2), nullable=False),
    sa.Column("won_count", sa.BigInteger, nullable=False),
    sa.Column("lost_count", sa.BigInteger, nullable=False),
)

campaign_performance_view: Final = sa.Table(
    "campaign_performance",
    views_metadata,
    sa.Column("organization_id", sa.Uuid, nullable=False),
    sa.Column("campaign_id", sa.Uuid, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("enrolled", sa.BigInteger, nullable=False),
    sa.Column("contacted", sa.BigInteger, nullable=False),
    sa.Column("responded", sa.BigInteger, nullable=False),
    sa.Column("converted", sa.BigInteger, nullable=False),
    sa.Column("communications_sent", sa.BigInteger, nullable=False),
    sa.Column("opened", sa.BigInteger, nullable=False),
    sa.Column("replied", sa.BigInteger, nullable=False),
    sa.Column("response_rate", sa.Numeric(5, 4), nullable=False),
    sa.Column("conversion_rate", sa.Numeric(5, 4), nullable=False),
)


class LeadPipeline(ReadSchema):
    """One row of ``lead_pipeline``: an organization's live leads in one status."""

    organization_id: uuid.UUID
    status: LeadStatus
    lead_count: int
    average_score: Decimal
    total_estimated_value: Decimal
    won_count: int
    lost_count: int


class CampaignPerformance(ReadSchema):
    """One row of ``campaign_performance``: the funnel and reach of one live campaign."""

    organization_id: uuid.UUID
    campaign_id: uuid.UUID
    name: str
    enrolled: int
    contacted: int
    responded: int
    converted: int
    communications_sent: int
    opened: int
    replied: int
    response_rate: Decimal
    conversion_rate: Decimal
