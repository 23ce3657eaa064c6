"""Row-level security: the database itself keeps tenants apart.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

A role ``leaddb_app`` (no login, no superuser, not the tables' owner) gets exactly the rights the
repositories use; every pooled connection of leaddb assumes it once (SET ROLE), so policies hold
even when the service logs in as a superuser or as the owner. Every tenant table has RLS enabled
and FORCEd, with one policy: ``organization_id`` must equal the transaction-local setting
``leaddb.tenant``; an unset or empty setting matches nothing. Platform units of work set
``leaddb.platform = on`` instead, which lets them read users (to log in) and write the audit rows
of organizations, and nothing else of a tenant.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "leaddb_app"

TENANT_TABLES = (
    "users",
    "leads",
    "workflows",
    "workflow_executions",
    "activity_logs",
    "lead_scoring_rules",
    "lead_score_history",
    "communications",
    "campaigns",
    "campaign_leads",
    "integrations",
    "lead_assignments",
    "lead_notes",
)
ALL_TABLES = ("organizations", *TENANT_TABLES)
VIEWS = ("lead_pipeline", "campaign_performance")

CURRENT_TENANT = "NULLIF(current_setting('leaddb.tenant', true), '')::uuid"
PLATFORM = "current_setting('leaddb.platform', true) = 'on'"


def upgrade() -> None:
    # Roles belong to the whole server, so another database may have created it already.
    op.execute(
        f"DO $$ BEGIN CREATE ROLE {ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    # The migrating login (the service's own, usually) must be able to SET ROLE to it.
    op.execute(
        f"DO $$ BEGIN EXECUTE format('GRANT {ROLE} TO %I', current_user); "
        "EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN NULL; END $$"
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    op.execute(
        f"DO $$ BEGIN EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO {ROLE}', "
        "current_database()); END $$"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(ALL_TABLES)} TO {ROLE}")
    op.execute(f"GRANT SELECT ON {', '.join(VIEWS)} TO {ROLE}")
    op.execute(f"GRANT EXECUTE ON FUNCTION leaddb_uuid7() TO {ROLE}")
    for view in VIEWS:
        # Without security_invoker a view reads with its owner's rights, past every policy.
        op.execute(f"ALTER VIEW {view} SET (security_invoker = true)")
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING (organization_id = {CURRENT_TENANT}) "
            f"WITH CHECK (organization_id = {CURRENT_TENANT})"
        )
    op.execute(f"CREATE POLICY platform_login ON users FOR SELECT USING ({PLATFORM})")
    op.execute(f"CREATE POLICY platform_audit ON activity_logs FOR INSERT WITH CHECK ({PLATFORM})")


def downgrade() -> None:
    op.execute("DROP POLICY IF EXISTS platform_audit ON activity_logs")
    op.execute("DROP POLICY IF EXISTS platform_login ON users")
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    for view in VIEWS:
        op.execute(f"ALTER VIEW {view} RESET (security_invoker)")
    op.execute(f"REVOKE ALL ON {', '.join(ALL_TABLES)} FROM {ROLE}")
    op.execute(f"REVOKE ALL ON {', '.join(VIEWS)} FROM {ROLE}")
    op.execute(f"REVOKE ALL ON FUNCTION leaddb_uuid7() FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {ROLE}")
    op.execute(
        f"DO $$ BEGIN EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM {ROLE}', "
        "current_database()); END $$"
    )
    # Other databases of the server may still use the role; then it stays.
    op.execute(
        f"DO $$ BEGIN DROP ROLE {ROLE}; "
        "EXCEPTION WHEN dependent_objects_still_exist OR undefined_object THEN NULL; END $$"
    )
