"""Assignments: which user works a lead, and since when; at most one active per lead."""

import uuid
from datetime import datetime
from typing import ClassVar

import sqlalchemy as sa
from pydantic import AwareDatetime
from sqlmodel import SQLModel

from leaddb.models.base import (
    CreatedAtMixin,
    CreatedAtRead,
    CreateSchema,
    ReadSchema,
    TenantMixin,
    TenantRead,
    UpdateSchema,
    as_read,
    fk_index,
    patch_of,
    tenant_fk,
    tenant_table_args,
)
from leaddb.models.fields import (
    server_timestamp_field,
    timestamp_field,
)

__all__ = [
    "LeadAssignment",
    "LeadAssignmentBase",
    "LeadAssignmentCreate",
    "LeadAssignmentRead",
    "LeadAssignmentUpdate",
]


class LeadAssignmentBase(SQLModel):
    """Fields of an assignment shared by the table and its schemas."""

    lead_id: uuid.UUID
    user_id: uuid.UUID
    assigned_by_user_id: uuid.UUID | None = None
    unassigned_at: AwareDatetime | None = timestamp_field()


class _AssignedAt(SQLModel):
    assigned_at: datetime = server_timestamp_field()


class LeadAssignment(_AssignedAt, CreatedAtMixin, LeadAssignmentBase, TenantMixin, table=True):
    """An assignment of a lead to a user; it ends when ``unassigned_at`` is set."""

    __tablename__ = "lead_assignments"
    __entity_name__: ClassVar[str] = "lead_assignment"
    __table_args__ = tenant_table_args(
        # A lead's assignments go with the lead.
        tenant_fk("lead_id", "leads", on_delete="cascade"),
        # An assignment means nothing without its assignee: it goes with the user.
        tenant_fk("user_id", "users", on_delete="cascade"),
        # The assignment outlives whoever made it; only assigned_by_user_id is cleared.
        tenant_fk("assigned_by_user_id", "users", on_delete="set_null"),
        # A lead's assignment history; also the index of the lead FK.
        fk_index("lead_id", "assigned_at"),
        fk_index("user_id"),
        fk_index("assigned_by_user_id"),
        sa.CheckConstraint("unassigned_at >= assigned_at", name="unassigned_after_assigned"),
        # At most one active assignment per lead.
        sa.Index(
            "ix_lead_assignments_one_active_per_lead",
            "organization_id",
            "lead_id",
            unique=True,
            postgresql_where=sa.text("unassigned_at IS NULL"),
        ),
    )


class LeadAssignmentCreate(LeadAssignmentBase, CreateSchema):
    """Payload to assign a lead; ``assigned_at`` is stamped by the database."""


@patch_of(LeadAssignmentBase, exclude=("lead_id", "user_id", "assigned_by_user_id"))
class LeadAssignmentUpdate(UpdateSchema):
    """Partial update of an assignment (usually ending it with ``unassigned_at``)."""


@as_read
class _AssignedAtRead(_AssignedAt):
    """``assigned_at`` as read back."""


class LeadAssignmentRead(
    _AssignedAtRead, CreatedAtRead, LeadAssignmentBase, ReadSchema, TenantRead
):
    """An assignment as returned to callers."""
