"""Campaigns and the leads enrolled in them."""

import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, ClassVar, Optional

import sqlalchemy as sa
from pydantic import AwareDatetime
from sqlmodel import SQLModel

from leaddb.models.base import (
    CreatedAtMixin,
    CreatedAtRead,
    CreateSchema,
    ReadSchema,
    SoftDeleteMixin,
    SoftDeleteRead,
    TenantMixin,
    TenantRead,
    TimestampsMixin,
    TimestampsRead,
    UpdateSchema,
    VersionMixin,
    VersionRead,
    as_read,
    fk_index,
    navigation,
    patch_of,
    tenant_fk,
    tenant_table_args,
)
from leaddb.models.enums import CampaignLeadStatus, CampaignStatus, CampaignType
from leaddb.models.fields import (
    JsonObject,
    Name,
    OptionalMoney,
    enum_field,
    json_field,
    server_timestamp_field,
    text_field,
    timestamp_field,
)

__all__ = [
    "Campaign",
    "CampaignBase",
    "CampaignCreate",
    "CampaignDescription",
    "CampaignLead",
    "CampaignLeadBase",
    "CampaignLeadCreate",
    "CampaignLeadRead",
    "CampaignLeadUpdate",
    "CampaignRead",
    "CampaignUpdate",
]

CampaignDescription = Annotated[str | None, text_field(2000)]

if TYPE_CHECKING:
    from leaddb.models.lead import Lead


class CampaignBase(SQLModel):
    """Fields of a campaign shared by the table and its schemas."""

    name: Name
    description: CampaignDescription = None
    campaign_type: CampaignType = enum_field(CampaignType, default=CampaignType.EMAIL)
    status: CampaignStatus = enum_field(CampaignStatus, default=CampaignStatus.DRAFT)
    start_date: date | None = None
    end_date: date | None = None
    budget: OptionalMoney = None
    settings: JsonObject = json_field()
    owner_id: uuid.UUID | None = None


class Campaign(
    SoftDeleteMixin, VersionMixin, TimestampsMixin, CampaignBase, TenantMixin, table=True
):
    """A campaign; soft-deleted, so its enrolments and communications survive a delete."""

    __tablename__ = "campaigns"
    __entity_name__: ClassVar[str] = "campaign"
    enrollments: list["CampaignLead"] = navigation()
    __table_args__ = tenant_table_args(
        # The owner's campaigns stay when the owner is deleted; only owner_id is cleared.
        tenant_fk("owner_id", "users", on_delete="set_null"),
        fk_index("owner_id"),
        sa.CheckConstraint("end_date >= start_date", name="date_range"),
        sa.CheckConstraint("budget >= 0", name="budget_non_negative"),
        sa.Index(None, "organization_id", "status", "created_at", "id"),
    )


class CampaignCreate(CampaignBase, CreateSchema):
    """Payload to create a campaign."""


@patch_of(CampaignBase)
class CampaignUpdate(UpdateSchema):
    """Partial update of a campaign."""


class CampaignRead(
    SoftDeleteRead, VersionRead, TimestampsRead, CampaignBase, ReadSchema, TenantRead
):
    """A campaign as returned to callers."""


class CampaignLeadBase(SQLModel):
    """Fields of an enrolment shared by the table and its schemas."""

    campaign_id: uuid.UUID
    lead_id: uuid.UUID
    status: CampaignLeadStatus = enum_field(CampaignLeadStatus, default=CampaignLeadStatus.ENROLLED)
    last_contacted_at: AwareDatetime | None = timestamp_field()


class _EnrolledAt(SQLModel):
    enrolled_at: datetime = server_timestamp_field()


class CampaignLead(_EnrolledAt, CreatedAtMixin, CampaignLeadBase, TenantMixin, table=True):
    """One lead enrolled in one campaign (at most once)."""

    __tablename__ = "campaign_leads"
    __entity_name__: ClassVar[str] = "campaign_lead"
    lead: Optional["Lead"] = navigation()
    campaign: Optional["Campaign"] = navigation()
    __table_args__ = tenant_table_args(
        # Enrolments go with their campaign (hard delete only; campaigns are soft-deleted).
        tenant_fk("campaign_id", "campaigns", on_delete="cascade"),
        # ... and with their lead.
        tenant_fk("lead_id", "leads", on_delete="cascade"),
        # Also the index of the campaign FK.
        sa.UniqueConstraint("organization_id", "campaign_id", "lead_id"),
        fk_index("lead_id"),
    )


class CampaignLeadCreate(CampaignLeadBase, CreateSchema):
    """Payload to enrol a lead; ``enrolled_at`` is stamped by the database."""


@patch_of(CampaignLeadBase, exclude=("campaign_id", "lead_id"))
class CampaignLeadUpdate(UpdateSchema):
    """Partial update of an enrolment (its progress)."""


@as_read
class _EnrolledAtRead(_EnrolledAt):
    """``enrolled_at`` as read back."""


class CampaignLeadRead(_EnrolledAtRead, CreatedAtRead, CampaignLeadBase, ReadSchema, TenantRead):
    """An enrolment as returned to callers."""
