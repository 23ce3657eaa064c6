"""The audit trail: who did what to which entity, with the values before and after."""

import uuid
from typing import Annotated, ClassVar

import sqlalchemy as sa
from sqlmodel import SQLModel

from leaddb.models.base import (
    CreatedAtMixin,
    CreatedAtRead,
    CreateSchema,
    ReadSchema,
    TenantMixin,
    TenantRead,
    UpdateSchema,
    fk_index,
    tenant_fk,
    tenant_table_args,
)
from leaddb.models.enums import ActivityAction
from leaddb.models.fields import (
    JsonObject,
    enum_field,
    json_field,
    text_field,
)

__all__ = [
    "Action",
    "ActivityLog",
    "ActivityLogBase",
    "ActivityLogCreate",
    "ActivityLogRead",
    "ActivityLogUpdate",
    "EntityType",
]

EntityType = Annotated[str, text_field(64, min_length=1)]
"""The ``__entity_name__`` of the table the entry is about, e.g. ``"lead"``."""
Action = Annotated[ActivityAction, enum_field(ActivityAction)]


class ActivityLogBase(SQLModel):
    """Fields of an audit entry shared by the table and its schemas."""

    actor_user_id: uuid.UUID | None = None
    entity_type: EntityType
    # No foreign key: it points at rows of many tables, and the entry outlives them.
    entity_id: uuid.UUID
    action: Action
    # {"before": {...}, "after": {...}}, secrets left out.
    changes: JsonObject = json_field()


class ActivityLog(CreatedAtMixin, ActivityLogBase, TenantMixin, table=True):
    """Append-only: rows are inserted with the change they describe, never updated."""

    __tablename__ = "activity_logs"
    __entity_name__: ClassVar[str] = "activity_log"
    __table_args__ = tenant_table_args(
        # The trail outlives the user who acted; only actor_user_id is cleared.
        tenant_fk("actor_user_id", "users", on_delete="set_null"),
        fk_index("actor_user_id"),
        # The history of one entity (named explicitly: the generated name exceeds 63 bytes).
        sa.Index(
            "ix_activity_logs_entity_history",
            "organization_id",
            "entity_type",
            "entity_id",
            "created_at",
        ),
        # No foreign key of its own to organizations (migration 0006): each row is written by
        # the statement that writes the row it describes, whose key to its organization is
        # checked, while a check per audit row cost every write a lock on its organization's
        # row. Deleting an organization deletes its trail from a trigger instead of a cascade.
        organization_fk=False,
    )


class ActivityLogCreate(ActivityLogBase, CreateSchema):
    """Payload of one audit entry."""


class ActivityLogUpdate(UpdateSchema):
    """The audit trail is append-only: this schema has no field, so no update changes a row."""


class ActivityLogRead(CreatedAtRead, ActivityLogBase, ReadSchema, TenantRead):
    """An audit entry as returned to callers."""
