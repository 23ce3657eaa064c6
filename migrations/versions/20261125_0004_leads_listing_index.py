"""Index the default lead listing: live leads of a tenant in keyset order (created_at, id).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Without it a list with no status filter reads every live lead of the tenant and sorts them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_leads_organization_id_created_at_id"


def upgrade() -> None:
    op.create_index(
        INDEX,
        "leads",
        ["organization_id", "created_at", "id"],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="leads")
