"""Make rescoring a whole organization cheap: HOT updates of leads, one key check per history row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

PostgreSQL can update a row without touching any index (a HOT update) only when no indexed
column changes and the new version fits on the row's page. With an index on ``score``, every
rescored lead became a new entry in all ten indexes of ``leads`` (three of them GIN, one
recomputing the full-text vector). So:

* ``ix_leads_organization_id_score`` goes. The top-scored leads of an organization are found by
  reading its live leads through another index and keeping the best few (the query-plan tests
  measure it).
* ``leads`` pages are filled to half, so that each lead's new version fits next to the old one.
  This applies to pages written from now on; an existing table gets there as its rows are
  updated, or at once with ``VACUUM FULL leads`` (which locks the table while it runs).
* ``lead_score_history`` loses its own foreign key to ``organizations``: its composite key to
  the lead already names an existing organization, and cascades from it through the lead, while
  the second check per inserted row cost a 100,000-lead rescore about 0.6 s.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCORE_INDEX = "ix_leads_organization_id_score"
HISTORY_TO_ORGANIZATIONS = "fk_lead_score_history_organization_id_organizations"
FILLFACTOR = 50


def upgrade() -> None:
    op.drop_index(SCORE_INDEX, table_name="leads")
    op.execute(f"ALTER TABLE leads SET (fillfactor = {FILLFACTOR})")
    op.drop_constraint(HISTORY_TO_ORGANIZATIONS, "lead_score_history", type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key(
        HISTORY_TO_ORGANIZATIONS,
        "lead_score_history",
        "organizations",
        ["organization_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.execute("ALTER TABLE leads RESET (fillfactor)")
    op.create_index(
        SCORE_INDEX,
        "leads",
        ["organization_id", sa.literal_column("score DESC")],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
