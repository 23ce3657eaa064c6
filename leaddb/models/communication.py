"""Communications: every email, call, message or meeting with a lead."""

import uuid
from typing import Annotated, ClassVar

from pydantic import AwareDatetime
from sqlmodel import SQLModel

from leaddb.models.base import (
    CreateSchema,
    ReadSchema,
    TenantMixin,
    TenantRead,
    TimestampsMixin,
    TimestampsRead,
    UpdateSchema,
    fk_index,
    patch_of,
    tenant_fk,
    tenant_table_args,
)
from leaddb.models.enums import CommunicationChannel, CommunicationDirection, CommunicationStatus
from leaddb.models.fields import (
    BODY_MAX_LENGTH,
    JsonObject,
    char_length_check,
    enum_field,
    json_field,
    long_text_field,
    text_field,
    timestamp_field,
)

__all__ = [
    "Channel",
    "Communication",
    "CommunicationBase",
    "CommunicationBody",
    "CommunicationCreate",
    "CommunicationRead",
    "CommunicationUpdate",
    "Direction",
    "ExternalId",
    "Subject",
]

Channel = Annotated[CommunicationChannel, enum_field(CommunicationChannel)]
Direction = Annotated[CommunicationDirection, enum_field(CommunicationDirection)]
Subject = Annotated[str | None, text_field(998)]
"""At most one RFC 5322 line."""
CommunicationBody = Annotated[str | None, long_text_field(BODY_MAX_LENGTH)]
ExternalId = Annotated[str | None, text_field(255)]
"""The provider's id of the message or call (Gmail, Twilio, ...)."""


class CommunicationBase(SQLModel):
    """Fields of a communication shared by the table and its schemas."""

    lead_id: uuid.UUID
    campaign_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    channel: Channel
    direction: Direction
    status: CommunicationStatus = enum_field(
        CommunicationStatus, default=CommunicationStatus.QUEUED
    )
    subject: Subject = None
    body: CommunicationBody = None
    sent_at: AwareDatetime | None = timestamp_field()
    delivered_at: AwareDatetime | None = timestamp_field()
    opened_at: AwareDatetime | None = timestamp_field()
    replied_at: AwareDatetime | None = timestamp_field()
    external_id: ExternalId = None
    # Provider payloads, headers, call recordings... (`metadata` is reserved on SQLModel).
    meta: JsonObject = json_field()


class Communication(TimestampsMixin, CommunicationBase, TenantMixin, table=True):
    """One communication with a lead, optionally within a campaign."""

    __tablename__ = "communications"
    __entity_name__: ClassVar[str] = "communication"
    __table_args__ = tenant_table_args(
        # A lead's communications go with the lead.
        tenant_fk("lead_id", "leads", on_delete="cascade"),
        # They outlive a (hard-)deleted campaign; only campaign_id is cleared.
        tenant_fk("campaign_id", "campaigns", on_delete="set_null"),
        # They outlive the user who sent them; only user_id is cleared.
        tenant_fk("user_id", "users", on_delete="set_null"),
        # A lead's timeline; also the index of the lead FK.
        fk_index("lead_id", "created_at"),
        fk_index("campaign_id"),
        fk_index("user_id"),
        char_length_check("body", BODY_MAX_LENGTH),
    )


class CommunicationCreate(CommunicationBase, CreateSchema):
    """Payload to record a communication."""


@patch_of(CommunicationBase, exclude=("lead_id",))
class CommunicationUpdate(UpdateSchema):
    """Partial update of a communication (delivery progress, mostly); its lead is fixed."""


class CommunicationRead(TimestampsRead, CommunicationBase, ReadSchema, TenantRead):
    """A communication as returned to callers."""
