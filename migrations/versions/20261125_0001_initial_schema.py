"""Initial schema: fourteen tables, their enums, indexes and views, and leaddb_uuid7().

Revision ID: 0001
Revises:
Create Date: 2026-11-25 21:36:34.167476
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Core PostgreSQL has no UUIDv7 generator before version 18; this one (RFC 9562 layout: 48-bit
# Unix milliseconds, version and variant bits, random rest) lets set-based statements give
# rows and audit entries time-ordered ids without a round trip per row.
UUID7_FUNCTION = """
CREATE OR REPLACE FUNCTION leaddb_uuid7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
        52, 1), 53, 1),
    'hex')::uuid
$$
"""

LEAD_PIPELINE_VIEW = """
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
GROUP BY l.organization_id, l.status
"""

CAMPAIGN_PERFORMANCE_VIEW = """
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
WHERE c.deleted_at IS NULL
"""


def _create_enum(name: str, values: list[str]) -> None:
    """CREATE TYPE that is a no-op when the type exists (works offline too, unlike checkfirst)."""
    labels = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    op.execute(
        f"DO $$ BEGIN CREATE TYPE {name} AS ENUM ({labels}); "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )


def upgrade() -> None:
    op.execute(UUID7_FUNCTION)
    _create_enum(
        "workflow_execution_status", ["pending", "running", "succeeded", "failed", "cancelled"]
    )
    _create_enum(
        "workflow_trigger",
        ["manual", "lead_created", "status_changed", "score_changed", "schedule", "webhook"],
    )
    _create_enum("user_role", ["owner", "admin", "manager", "agent", "viewer"])
    _create_enum(
        "scoring_operator",
        [
            "eq",
            "ne",
            "gt",
            "gte",
            "lt",
            "lte",
            "in",
            "not_in",
            "contains",
            "exists",
            "within_days",
            "older_than_days",
        ],
    )
    _create_enum("subscription_tier", ["free", "starter", "pro", "enterprise"])
    _create_enum("lead_temperature", ["cold", "warm", "hot"])
    _create_enum(
        "lead_status", ["new", "contacted", "qualified", "proposal", "negotiation", "won", "lost"]
    )
    _create_enum(
        "lead_source",
        ["web", "referral", "import", "linkedin", "event", "outbound", "api", "other"],
    )
    _create_enum("integration_status", ["active", "paused", "error", "disconnected"])
    _create_enum(
        "integration_provider",
        ["n8n", "hubspot", "salesforce", "gmail", "outlook", "slack", "zapier", "webhook", "other"],
    )
    _create_enum(
        "communication_status",
        ["queued", "sent", "delivered", "opened", "clicked", "replied", "bounced", "failed"],
    )
    _create_enum("communication_direction", ["inbound", "outbound"])
    _create_enum("communication_channel", ["email", "sms", "call", "linkedin", "meeting", "other"])
    _create_enum(
        "campaign_lead_status",
        ["enrolled", "contacted", "responded", "converted", "unsubscribed", "bounced"],
    )
    _create_enum("campaign_status", ["draft", "active", "paused", "completed", "archived"])
    _create_enum("campaign_type", ["email", "sequence", "event", "ads", "other"])
    _create_enum(
        "activity_action",
        [
            "created",
            "updated",
            "deleted",
            "restored",
            "rescored",
            "assigned",
            "unassigned",
            "status_changed",
            "enrolled",
            "logged_in",
            "exported",
        ],
    )
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=63), nullable=False),
        sa.Column(
            "subscription_tier",
            postgresql.ENUM(
                "free", "starter", "pro", "enterprise", name="subscription_tier", create_type=False
            ),
            server_default="free",
            nullable=False,
        ),
        sa.Column("billing_email", sa.String(length=254), nullable=True),
        sa.Column(
            "settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.CheckConstraint(
            "slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name=op.f("ck_organizations_slug_format")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("slug", name=op.f("uq_organizations_slug")),
    )
    op.create_table(
        "integrations",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "provider",
            postgresql.ENUM(
                "n8n",
                "hubspot",
                "salesforce",
                "gmail",
                "outlook",
                "slack",
                "zapier",
                "webhook",
                "other",
                name="integration_provider",
                create_type=False,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "config",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "status",
            postgresql.ENUM(
                "active",
                "paused",
                "error",
                "disconnected",
                name="integration_status",
                create_type=False,
            ),
            server_default="active",
            nullable=False,
        ),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=10000), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("credentials_encrypted", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint(
            "octet_length(credentials_encrypted) <= 65536",
            name=op.f("ck_integrations_credentials_size"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_integrations_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_integrations")),
    )
    op.create_table(
        "lead_scoring_rules",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("field", sa.String(length=100), nullable=False),
        sa.Column(
            "operator",
            postgresql.ENUM(
                "eq",
                "ne",
                "gt",
                "gte",
                "lt",
                "lte",
                "in",
                "not_in",
                "contains",
                "exists",
                "within_days",
                "older_than_days",
                name="scoring_operator",
                create_type=False,
            ),
            nullable=False,
        ),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.CheckConstraint(
            "points BETWEEN -100 AND 100", name=op.f("ck_lead_scoring_rules_points_range")
        ),
        sa.CheckConstraint(
            "priority BETWEEN 0 AND 10000", name=op.f("ck_lead_scoring_rules_priority_range")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_lead_scoring_rules_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_lead_scoring_rules")),
    )
    op.create_index(
        op.f("ix_lead_scoring_rules_organization_id_is_active_priority"),
        "lead_scoring_rules",
        ["organization_id", "is_active", "priority"],
        unique=False,
    )
    op.create_table(
        "users",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            postgresql.ENUM(
                "owner", "admin", "manager", "agent", "viewer", name="user_role", create_type=False
            ),
            server_default="agent",
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column(
            "preferences",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("avatar_url", sa.String(length=2048), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_users_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_users")),
    )
    op.create_index(
        "ix_users_organization_id_lower_email",
        "users",
        ["organization_id", sa.literal_column("lower(email)")],
        unique=True,
    )
    op.create_table(
        "workflows",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("n8n_workflow_id", sa.String(length=64), nullable=False),
        sa.Column(
            "trigger",
            postgresql.ENUM(
                "manual",
                "lead_created",
                "status_changed",
                "score_changed",
                "schedule",
                "webhook",
                name="workflow_trigger",
                create_type=False,
            ),
            server_default="manual",
            nullable=False,
        ),
        sa.Column(
            "definition",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_workflows_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_workflows")),
    )
    op.create_index(
        op.f("ix_workflows_organization_id_trigger_is_active"),
        "workflows",
        ["organization_id", "trigger", "is_active"],
        unique=False,
    )
    op.create_table(
        "activity_logs",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("actor_user_id", sa.Uuid(), nullable=True),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column(
            "action",
            postgresql.ENUM(
                "created",
                "updated",
                "deleted",
                "restored",
                "rescored",
                "assigned",
                "unassigned",
                "status_changed",
                "enrolled",
                "logged_in",
                "exported",
                name="activity_action",
                create_type=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "changes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "actor_user_id"],
            ["users.organization_id", "users.id"],
            name=op.f("fk_activity_logs_actor_user_id_users"),
            ondelete="SET NULL (actor_user_id)",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_activity_logs_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_activity_logs")),
    )
    op.create_index(
        "ix_activity_logs_entity_history",
        "activity_logs",
        ["organization_id", "entity_type", "entity_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_activity_logs_organization_id_actor_user_id"),
        "activity_logs",
        ["organization_id", "actor_user_id"],
        unique=False,
    )
    op.create_table(
        "campaigns",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column(
            "campaign_type",
            postgresql.ENUM(
                "email",
                "sequence",
                "event",
                "ads",
                "other",
                name="campaign_type",
                create_type=False,
            ),
            server_default="email",
            nullable=False,
        ),
        sa.Column(
            "status",
            postgresql.ENUM(
                "draft",
                "active",
                "paused",
                "completed",
                "archived",
                name="campaign_status",
                create_type=False,
            ),
            server_default="draft",
            nullable=False,
        ),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("budget", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column(
            "settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("budget >= 0", name=op.f("ck_campaigns_budget_non_negative")),
        sa.CheckConstraint("end_date >= start_date", name=op.f("ck_campaigns_date_range")),
        sa.ForeignKeyConstraint(
            ["organization_id", "owner_id"],
            ["users.organization_id", "users.id"],
            name=op.f("fk_campaigns_owner_id_users"),
            ondelete="SET NULL (owner_id)",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_campaigns_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_campaigns")),
    )
    op.create_index(
        op.f("ix_campaigns_organization_id_owner_id"),
        "campaigns",
        ["organization_id", "owner_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_campaigns_organization_id_status_created_at_id"),
        "campaigns",
        ["organization_id", "status", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "leads",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("last_name", sa.String(length=100), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("company", sa.String(length=200), nullable=True),
        sa.Column("job_title", sa.String(length=200), nullable=True),
        sa.Column("linkedin_url", sa.String(length=2048), nullable=True),
        sa.Column(
            "source",
            postgresql.ENUM(
                "web",
                "referral",
                "import",
                "linkedin",
                "event",
                "outbound",
                "api",
                "other",
                name="lead_source",
                create_type=False,
            ),
            server_default="other",
            nullable=False,
        ),
        sa.Column(
            "status",
            postgresql.ENUM(
                "new",
                "contacted",
                "qualified",
                "proposal",
                "negotiation",
                "won",
                "lost",
                name="lead_status",
                create_type=False,
            ),
            server_default="new",
            nullable=False,
        ),
        sa.Column("score", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "temperature",
            postgresql.ENUM("cold", "warm", "hot", name="lead_temperature", create_type=False),
            server_default="cold",
            nullable=False,
        ),
        sa.Column("estimated_value", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("expected_close_date", sa.Date(), nullable=True),
        sa.Column("last_engagement_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.String(length=64)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "custom_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "estimated_value >= 0", name=op.f("ck_leads_estimated_value_non_negative")
        ),
        sa.CheckConstraint("score BETWEEN 0 AND 100", name=op.f("ck_leads_score_range")),
        sa.ForeignKeyConstraint(
            ["organization_id", "owner_id"],
            ["users.organization_id", "users.id"],
            name=op.f("fk_leads_owner_id_users"),
            ondelete="SET NULL (owner_id)",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_leads_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_leads")),
    )
    op.create_index(
        op.f("ix_leads_custom_fields"),
        "leads",
        ["custom_fields"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        op.f("ix_leads_organization_id_last_engagement_at"),
        "leads",
        ["organization_id", "last_engagement_at"],
        unique=False,
    )
    op.create_index(
        "ix_leads_organization_id_lower_email",
        "leads",
        ["organization_id", sa.literal_column("lower(email)")],
        unique=True,
    )
    op.create_index(
        op.f("ix_leads_organization_id_owner_id"),
        "leads",
        ["organization_id", "owner_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_leads_organization_id_score"),
        "leads",
        ["organization_id", sa.literal_column("score DESC")],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        op.f("ix_leads_organization_id_status_created_at_id"),
        "leads",
        ["organization_id", "status", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_leads_search",
        "leads",
        [
            sa.literal_column(
                "to_tsvector('simple'::regconfig, coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(company, ''))"
            )
        ],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(op.f("ix_leads_tags"), "leads", ["tags"], unique=False, postgresql_using="gin")
    op.create_table(
        "campaign_leads",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            postgresql.ENUM(
                "enrolled",
                "contacted",
                "responded",
                "converted",
                "unsubscribed",
                "bounced",
                name="campaign_lead_status",
                create_type=False,
            ),
            server_default="enrolled",
            nullable=False,
        ),
        sa.Column("last_contacted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "enrolled_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "campaign_id"],
            ["campaigns.organization_id", "campaigns.id"],
            name=op.f("fk_campaign_leads_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "lead_id"],
            ["leads.organization_id", "leads.id"],
            name=op.f("fk_campaign_leads_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_campaign_leads_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_campaign_leads")),
        sa.UniqueConstraint(
            "organization_id",
            "campaign_id",
            "lead_id",
            name=op.f("uq_campaign_leads_organization_id_campaign_id_lead_id"),
        ),
    )
    op.create_index(
        op.f("ix_campaign_leads_organization_id_lead_id"),
        "campaign_leads",
        ["organization_id", "lead_id"],
        unique=False,
    )
    op.create_table(
        "communications",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column(
            "channel",
            postgresql.ENUM(
                "email",
                "sms",
                "call",
                "linkedin",
                "meeting",
                "other",
                name="communication_channel",
                create_type=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "direction",
            postgresql.ENUM(
                "inbound", "outbound", name="communication_direction", create_type=False
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            postgresql.ENUM(
                "queued",
                "sent",
                "delivered",
                "opened",
                "clicked",
                "replied",
                "bounced",
                "failed",
                name="communication_status",
                create_type=False,
            ),
            server_default="queued",
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=998), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column(
            "meta",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "char_length(body) <= 100000", name=op.f("ck_communications_body_length")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "campaign_id"],
            ["campaigns.organization_id", "campaigns.id"],
            name=op.f("fk_communications_campaign_id_campaigns"),
            ondelete="SET NULL (campaign_id)",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "lead_id"],
            ["leads.organization_id", "leads.id"],
            name=op.f("fk_communications_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "user_id"],
            ["users.organization_id", "users.id"],
            name=op.f("fk_communications_user_id_users"),
            ondelete="SET NULL (user_id)",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_communications_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_communications")),
    )
    op.create_index(
        op.f("ix_communications_organization_id_campaign_id"),
        "communications",
        ["organization_id", "campaign_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_communications_organization_id_lead_id_created_at"),
        "communications",
        ["organization_id", "lead_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_communications_organization_id_user_id"),
        "communications",
        ["organization_id", "user_id"],
        unique=False,
    )
    op.create_table(
        "lead_assignments",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("assigned_by_user_id", sa.Uuid(), nullable=True),
        sa.Column("unassigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "assigned_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "unassigned_at >= assigned_at",
            name=op.f("ck_lead_assignments_unassigned_after_assigned"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "assigned_by_user_id"],
            ["users.organization_id", "users.id"],
            name=op.f("fk_lead_assignments_assigned_by_user_id_users"),
            ondelete="SET NULL (assigned_by_user_id)",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "lead_id"],
            ["leads.organization_id", "leads.id"],
            name=op.f("fk_lead_assignments_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "user_id"],
            ["users.organization_id", "users.id"],
            name=op.f("fk_lead_assignments_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_lead_assignments_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_lead_assignments")),
    )
    op.create_index(
        "ix_lead_assignments_one_active_per_lead",
        "lead_assignments",
        ["organization_id", "lead_id"],
        unique=True,
        postgresql_where=sa.text("unassigned_at IS NULL"),
    )
    op.create_index(
        op.f("ix_lead_assignments_organization_id_assigned_by_user_id"),
        "lead_assignments",
        ["organization_id", "assigned_by_user_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_lead_assignments_organization_id_lead_id_assigned_at"),
        "lead_assignments",
        ["organization_id", "lead_id", "assigned_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_lead_assignments_organization_id_user_id"),
        "lead_assignments",
        ["organization_id", "user_id"],
        unique=False,
    )
    op.create_table(
        "lead_notes",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("author_user_id", sa.Uuid(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("is_pinned", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.CheckConstraint("char_length(body) <= 100000", name=op.f("ck_lead_notes_body_length")),
        sa.ForeignKeyConstraint(
            ["organization_id", "author_user_id"],
            ["users.organization_id", "users.id"],
            name=op.f("fk_lead_notes_author_user_id_users"),
            ondelete="SET NULL (author_user_id)",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "lead_id"],
            ["leads.organization_id", "leads.id"],
            name=op.f("fk_lead_notes_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_lead_notes_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_lead_notes")),
    )
    op.create_index(
        op.f("ix_lead_notes_organization_id_author_user_id"),
        "lead_notes",
        ["organization_id", "author_user_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_lead_notes_organization_id_lead_id_created_at"),
        "lead_notes",
        ["organization_id", "lead_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "lead_score_history",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("old_score", sa.Integer(), nullable=False),
        sa.Column("new_score", sa.Integer(), nullable=False),
        sa.Column(
            "old_temperature",
            postgresql.ENUM("cold", "warm", "hot", name="lead_temperature", create_type=False),
            nullable=False,
        ),
        sa.Column(
            "new_temperature",
            postgresql.ENUM("cold", "warm", "hot", name="lead_temperature", create_type=False),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column(
            "breakdown",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "new_score BETWEEN 0 AND 100", name=op.f("ck_lead_score_history_new_score_range")
        ),
        sa.CheckConstraint(
            "old_score BETWEEN 0 AND 100", name=op.f("ck_lead_score_history_old_score_range")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "lead_id"],
            ["leads.organization_id", "leads.id"],
            name=op.f("fk_lead_score_history_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_lead_score_history_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_lead_score_history")),
    )
    op.create_index(
        op.f("ix_lead_score_history_organization_id_lead_id_created_at"),
        "lead_score_history",
        ["organization_id", "lead_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "workflow_executions",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=True),
        sa.Column(
            "status",
            postgresql.ENUM(
                "pending",
                "running",
                "succeeded",
                "failed",
                "cancelled",
                name="workflow_execution_status",
                create_type=False,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "input",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "output",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("error", sa.String(length=10000), nullable=True),
        sa.Column("n8n_execution_id", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "finished_at >= started_at", name=op.f("ck_workflow_executions_finished_after_started")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "lead_id"],
            ["leads.organization_id", "leads.id"],
            name=op.f("fk_workflow_executions_lead_id_leads"),
            ondelete="SET NULL (lead_id)",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "workflow_id"],
            ["workflows.organization_id", "workflows.id"],
            name=op.f("fk_workflow_executions_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_workflow_executions_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_workflow_executions")),
    )
    op.create_index(
        op.f("ix_workflow_executions_organization_id_lead_id"),
        "workflow_executions",
        ["organization_id", "lead_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_workflow_executions_organization_id_workflow_id_created_at"),
        "workflow_executions",
        ["organization_id", "workflow_id", "created_at"],
        unique=False,
    )
    op.execute(LEAD_PIPELINE_VIEW)
    op.execute(CAMPAIGN_PERFORMANCE_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS campaign_performance")
    op.execute("DROP VIEW IF EXISTS lead_pipeline")
    op.drop_index(
        op.f("ix_workflow_executions_organization_id_workflow_id_created_at"),
        table_name="workflow_executions",
    )
    op.drop_index(
        op.f("ix_workflow_executions_organization_id_lead_id"), table_name="workflow_executions"
    )
    op.drop_table("workflow_executions")
    op.drop_index(
        op.f("ix_lead_score_history_organization_id_lead_id_created_at"),
        table_name="lead_score_history",
    )
    op.drop_table("lead_score_history")
    op.drop_index(op.f("ix_lead_notes_organization_id_lead_id_created_at"), table_name="lead_notes")
    op.drop_index(op.f("ix_lead_notes_organization_id_author_user_id"), table_name="lead_notes")
    op.drop_table("lead_notes")
    op.drop_index(
        op.f("ix_lead_assignments_organization_id_user_id"), table_name="lead_assignments"
    )
    op.drop_index(
        op.f("ix_lead_assignments_organization_id_lead_id_assigned_at"),
        table_name="lead_assignments",
    )
    op.drop_index(
        op.f("ix_lead_assignments_organization_id_assigned_by_user_id"),
        table_name="lead_assignments",
    )
    op.drop_index(
        "ix_lead_assignments_one_active_per_lead",
        table_name="lead_assignments",
        postgresql_where=sa.text("unassigned_at IS NULL"),
    )
    op.drop_table("lead_assignments")
    op.drop_index(op.f("ix_communications_organization_id_user_id"), table_name="communications")
    op.drop_index(
        op.f("ix_communications_organization_id_lead_id_created_at"), table_name="communications"
    )
    op.drop_index(
        op.f("ix_communications_organization_id_campaign_id"), table_name="communications"
    )
    op.drop_table("communications")
    op.drop_index(op.f("ix_campaign_leads_organization_id_lead_id"), table_name="campaign_leads")
    op.drop_table("campaign_leads")
    op.drop_index(op.f("ix_leads_tags"), table_name="leads", postgresql_using="gin")
    op.drop_index("ix_leads_search", table_name="leads", postgresql_using="gin")
    op.drop_index(op.f("ix_leads_organization_id_status_created_at_id"), table_name="leads")
    op.drop_index(
        op.f("ix_leads_organization_id_score"),
        table_name="leads",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(op.f("ix_leads_organization_id_owner_id"), table_name="leads")
    op.drop_index("ix_leads_organization_id_lower_email", table_name="leads")
    op.drop_index(op.f("ix_leads_organization_id_last_engagement_at"), table_name="leads")
    op.drop_index(op.f("ix_leads_custom_fields"), table_name="leads", postgresql_using="gin")
    op.drop_table("leads")
    op.drop_index(op.f("ix_campaigns_organization_id_status_created_at_id"), table_name="campaigns")
    op.drop_index(op.f("ix_campaigns_organization_id_owner_id"), table_name="campaigns")
    op.drop_table("campaigns")
    op.drop_index(
        op.f("ix_activity_logs_organization_id_actor_user_id"), table_name="activity_logs"
    )
    op.drop_index("ix_activity_logs_entity_history", table_name="activity_logs")
    op.drop_table("activity_logs")
    op.drop_index(op.f("ix_workflows_organization_id_trigger_is_active"), table_name="workflows")
    op.drop_table("workflows")
    op.drop_index("ix_users_organization_id_lower_email", table_name="users")
    op.drop_table("users")
    op.drop_index(
        op.f("ix_lead_scoring_rules_organization_id_is_active_priority"),
        table_name="lead_scoring_rules",
    )
    op.drop_table("lead_scoring_rules")
    op.drop_table("integrations")
    op.drop_table("organizations")
    op.execute("DROP TYPE IF EXISTS activity_action")
    op.execute("DROP TYPE IF EXISTS campaign_type")
    op.execute("DROP TYPE IF EXISTS campaign_status")
    op.execute("DROP TYPE IF EXISTS campaign_lead_status")
    op.execute("DROP TYPE IF EXISTS communication_channel")
    op.execute("DROP TYPE IF EXISTS communication_direction")
    op.execute("DROP TYPE IF EXISTS communication_status")
    op.execute("DROP TYPE IF EXISTS integration_provider")
    op.execute("DROP TYPE IF EXISTS integration_status")
    op.execute("DROP TYPE IF EXISTS lead_source")
    op.execute("DROP TYPE IF EXISTS lead_status")
    op.execute("DROP TYPE IF EXISTS lead_temperature")
    op.execute("DROP TYPE IF EXISTS subscription_tier")
    op.execute("DROP TYPE IF EXISTS scoring_operator")
    op.execute("DROP TYPE IF EXISTS user_role")
    op.execute("DROP TYPE IF EXISTS workflow_trigger")
    op.execute("DROP TYPE IF EXISTS workflow_execution_status")
    op.execute("DROP FUNCTION IF EXISTS leaddb_uuid7()")
