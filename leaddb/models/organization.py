"""Organizations: the tenants. The only table without ``organization_id``."""

import uuid
from typing import TYPE_CHECKING, Annotated, ClassVar, Final, Self

import sqlalchemy as sa
from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from sqlmodel import Field, SQLModel

from leaddb.models.base import (
    CreateSchema,
    EntityModel,
    ReadSchema,
    TimestampsMixin,
    TimestampsRead,
    UpdateSchema,
    VersionMixin,
    VersionRead,
    as_read,
    navigation,
    new_id,
    patch_of,
)
from leaddb.models.enums import LeadTemperature, SubscriptionTier
from leaddb.models.fields import (
    JsonObject,
    Name,
    OptionalEmail,
    Score,
    db_default,
    enum_field,
    json_field,
    text_field,
)

__all__ = [
    "DEFAULT_TEMPERATURE_THRESHOLDS",
    "SLUG_PATTERN",
    "TEMPERATURE_SETTINGS_KEY",
    "Organization",
    "OrganizationBase",
    "OrganizationCreate",
    "OrganizationRead",
    "OrganizationSettings",
    "OrganizationUpdate",
    "Slug",
    "TemperatureThresholds",
]

SLUG_PATTERN: Final = r"^[a-z0-9]+(-[a-z0-9]+)*$"
"""Lowercase letters and digits in dash-separated groups; valid for pydantic and PostgreSQL."""

Slug = Annotated[str, text_field(63, min_length=1, pattern=SLUG_PATTERN)]

TEMPERATURE_SETTINGS_KEY: Final = "lead_temperature"
"""Key of :class:`TemperatureThresholds` inside ``Organization.settings``."""


if TYPE_CHECKING:
    from leaddb.models.campaign import Campaign
    from leaddb.models.lead import Lead
    from leaddb.models.user import User


class TemperatureThresholds(BaseModel):
    """Score bands of lead temperature: ``cold < warm_min <= warm < hot_min <= hot``.

    Stored in ``Organization.settings["lead_temperature"]`` as ``{"warm_min": 30, "hot_min": 70}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    warm_min: Score = 30
    hot_min: Score = 70

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.warm_min < self.hot_min:
            raise ValueError("warm_min must be below hot_min")
        return self

    def classify(self, score: int) -> LeadTemperature:
        """The temperature of a lead with this score."""
        if score >= self.hot_min:
            return LeadTemperature.HOT
        if score >= self.warm_min:
            return LeadTemperature.WARM
        return LeadTemperature.COLD


DEFAULT_TEMPERATURE_THRESHOLDS: Final = TemperatureThresholds()


def _check_settings(settings: JsonObject) -> JsonObject:
    """Reject settings whose temperature thresholds are malformed (other keys are free-form)."""
    if TEMPERATURE_SETTINGS_KEY in settings:
        TemperatureThresholds.model_validate(settings[TEMPERATURE_SETTINGS_KEY])
    return settings


OrganizationSettings = Annotated[JsonObject, AfterValidator(_check_settings)]


class OrganizationBase(SQLModel):
    """Fields of an organization shared by the table and its schemas."""

    name: Name
    slug: Slug
    subscription_tier: SubscriptionTier = enum_field(
        SubscriptionTier, default=SubscriptionTier.FREE
    )
    billing_email: OptionalEmail = None
    settings: OrganizationSettings = json_field()
    is_active: bool = db_default(True)

    def temperature_thresholds(self) -> TemperatureThresholds:
        """The organization's lead-temperature bands (defaults: cold < 30 <= warm < 70 <= hot)."""
        raw = self.settings.get(TEMPERATURE_SETTINGS_KEY)
        if raw is None:
            return DEFAULT_TEMPERATURE_THRESHOLDS
        return TemperatureThresholds.model_validate(raw)


class _OrganizationKey(EntityModel):
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)


class Organization(VersionMixin, TimestampsMixin, OrganizationBase, _OrganizationKey, table=True):
    """A tenant. Platform-level: not tenant-scoped, so its repository takes no tenant."""

    __tablename__ = "organizations"
    __entity_name__: ClassVar[str] = "organization"
    users: list["User"] = navigation()
    leads: list["Lead"] = navigation()
    campaigns: list["Campaign"] = navigation()
    __table_args__ = (
        sa.UniqueConstraint("slug"),
        sa.CheckConstraint(f"slug ~ '{SLUG_PATTERN}'", name="slug_format"),
    )


class OrganizationCreate(OrganizationBase, CreateSchema):
    """Payload to create an organization."""


@patch_of(OrganizationBase)
class OrganizationUpdate(UpdateSchema):
    """Partial update of an organization; omitted fields stay as they are."""


@as_read
class _OrganizationIdRead(_OrganizationKey):
    """``id`` as read back."""


class OrganizationRead(
    VersionRead, TimestampsRead, OrganizationBase, ReadSchema, _OrganizationIdRead
):
    """An organization as returned to callers."""
