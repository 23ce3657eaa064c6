"""The audit trail without its own foreign key to organizations; an organization's deletion
still takes its trail with it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Every audited write inserts an ``activity_logs`` row, and the row's key check against
``organizations`` cost each of them a lookup and a ``FOR KEY SHARE`` lock on the organization's
row: one more WAL record per single-row write, and concurrent writers of one tenant sharing that
lock through multixacts. The check guarded nothing leaddb does not already guarantee: an audit
row is written by the same statement as the row it describes, whose own key to its organization
was checked (or, for a delete, existed). So the key goes, as it went from ``lead_score_history``
in 0005.

What it did on delete stays: deleting an organization deletes its trail, from a trigger that
runs before the organization's row goes. The deleter may be leaddb's platform unit of work,
working as ``leaddb_app`` under row-level security, where no audit row is visible; so the
trigger's function works as the tenant being deleted, the one tenant whose rows the existing
policy then shows it. Its ``SET`` clause makes that last only while it runs: PostgreSQL restores
the setting when the function returns, whatever the function set it to.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TO_ORGANIZATIONS = "fk_activity_logs_organization_id_organizations"


def upgrade() -> None:
    op.drop_constraint(TO_ORGANIZATIONS, "activity_logs", type_="foreignkey")
    op.execute(
        "CREATE FUNCTION leaddb_purge_activity() RETURNS trigger LANGUAGE plpgsql "
        "SET leaddb.tenant = '' AS $$ BEGIN "
        "PERFORM set_config('leaddb.tenant', OLD.id::text, true); "
        "DELETE FROM activity_logs WHERE organization_id = OLD.id; RETURN OLD; END $$"
    )
    op.execute(
        "CREATE TRIGGER organizations_purge_activity BEFORE DELETE ON organizations "
        "FOR EACH ROW EXECUTE FUNCTION leaddb_purge_activity()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS organizations_purge_activity ON organizations")
    op.execute("DROP FUNCTION IF EXISTS leaddb_purge_activity()")
    # Rows of organizations deleted without the trigger (it was dropped, or row-level security
    # hid them from a deleter) would stop the key from being added.
    op.execute(
        "DELETE FROM activity_logs a "
        "WHERE NOT EXISTS (SELECT FROM organizations o WHERE o.id = a.organization_id)"
    )
    op.create_foreign_key(
        TO_ORGANIZATIONS,
        "activity_logs",
        "organizations",
        ["organization_id"],
        ["id"],
        ondelete="CASCADE",
    )
