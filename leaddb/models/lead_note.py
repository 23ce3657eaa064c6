"""Notes: free text users write on a lead."""

import uuid
from typing import Annotated, ClassVar

from sqlmodel import SQLModel

from leaddb.models.base import (
    CreateSchema,
    ReadSchema,
    TenantMixin,
    TenantRead,
    TimestampsMixin,
    TimestampsRead,
    UpdateSchema,
    VersionMixin,
    VersionRead,
    fk_index,
    patch_of,
    tenant_fk,
    tenant_table_args,
)
from leaddb.models.fields import (
    BODY_MAX_LENGTH,
    char_length_check,
    db_default,
    long_text_field,
)

__all__ = [
    "LeadNote",
    "LeadNoteBase",
    "LeadNoteCreate",
    "LeadNoteRead",
    "LeadNoteUpdate",
    "NoteBody",
]

NoteBody = Annotated[str, long_text_field(BODY_MAX_LENGTH, min_length=1)]


class LeadNoteBase(SQLModel):
    """Fields of a note shared by the table and its schemas."""

    lead_id: uuid.UUID
    author_user_id: uuid.UUID | None = None
    body: NoteBody
    is_pinned: bool = db_default(False)


class LeadNote(VersionMixin, TimestampsMixin, LeadNoteBase, TenantMixin, table=True):
    """A note on a lead; deleting it removes it (no soft delete)."""

    __tablename__ = "lead_notes"
    __entity_name__: ClassVar[str] = "lead_note"
    __table_args__ = tenant_table_args(
        # A lead's notes go with the lead.
        tenant_fk("lead_id", "leads", on_delete="cascade"),
        # Notes outlive their author; only author_user_id is cleared.
        tenant_fk("author_user_id", "users", on_delete="set_null"),
        # A lead's notes in order; also the index of the lead FK.
        fk_index("lead_id", "created_at"),
        fk_index("author_user_id"),
        char_length_check("body", BODY_MAX_LENGTH),
    )


class LeadNoteCreate(LeadNoteBase, CreateSchema):
    """Payload to write a note."""


@patch_of(LeadNoteBase, exclude=("lead_id", "author_user_id"))
class LeadNoteUpdate(UpdateSchema):
    """Partial update of a note (its lead and author do not change)."""


class LeadNoteRead(VersionRead, TimestampsRead, LeadNoteBase, ReadSchema, TenantRead):
    """A note as returned to callers."""
