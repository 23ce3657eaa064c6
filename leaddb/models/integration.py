"""Integrations: connections of an organization to external systems (n8n, CRMs, mail)."""

from typing import Annotated, ClassVar, Final

import sqlalchemy as sa
from pydantic import AwareDatetime, SecretStr
from pydantic import Field as PydanticField
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
    patch_of,
    tenant_table_args,
)
from leaddb.models.enums import IntegrationProvider, IntegrationStatus
from leaddb.models.fields import (
    JsonObject,
    Name,
    enum_field,
    json_field,
    secret_field,
    text_field,
    timestamp_field,
)

__all__ = [
    "CREDENTIALS_MAX_BYTES",
    "Credentials",
    "Integration",
    "IntegrationBase",
    "IntegrationCreate",
    "IntegrationCredentials",
    "IntegrationRead",
    "IntegrationUpdate",
    "LastError",
    "Provider",
]

CREDENTIALS_MAX_BYTES: Final = 64 * 1024
"""Upper bound of the encrypted credentials blob."""

Provider = Annotated[IntegrationProvider, enum_field(IntegrationProvider)]
LastError = Annotated[str | None, text_field(10_000)]
Credentials = Annotated[dict[str, SecretStr], PydanticField(max_length=50)]
"""Plain secrets (API keys, OAuth tokens) by name, as a caller submits them. The repository
encrypts them into ``credentials_encrypted``; they are never a column and never read back."""


class IntegrationBase(SQLModel):
    """Fields of an integration shared by the table and its schemas (no secrets)."""

    provider: Provider
    name: Name
    # Non-secret settings: base URLs, account ids, field mappings.
    config: JsonObject = json_field()
    status: IntegrationStatus = enum_field(IntegrationStatus, default=IntegrationStatus.ACTIVE)
    last_synced_at: AwareDatetime | None = timestamp_field()
    last_error: LastError = None


class Integration(VersionMixin, TimestampsMixin, IntegrationBase, TenantMixin, table=True):
    """An organization's connection to one external system."""

    __tablename__ = "integrations"
    __entity_name__: ClassVar[str] = "integration"
    __table_args__ = tenant_table_args(
        sa.CheckConstraint(
            f"octet_length(credentials_encrypted) <= {CREDENTIALS_MAX_BYTES}",
            name="credentials_size",
        ),
    )

    # Ciphertext (Fernet) of the credentials. Never in a Read schema, a repr, a log line or the
    # cache; NULL when the integration needs no secret.
    credentials_encrypted: bytes | None = secret_field()


class IntegrationCredentials(SQLModel):
    """Plain ``credentials`` a Create or Update schema may carry: the repository encrypts them
    into ``credentials_encrypted``; they are never a column and never read back."""

    credentials: Credentials | None = None


class IntegrationCreate(IntegrationBase, CreateSchema, IntegrationCredentials):
    """Payload to connect an integration; ``credentials`` are encrypted by the repository."""


@patch_of(IntegrationBase)
class IntegrationUpdate(UpdateSchema, IntegrationCredentials):
    """Partial update of an integration; new ``credentials`` replace the stored ones."""


class IntegrationRead(VersionRead, TimestampsRead, IntegrationBase, ReadSchema, TenantRead):
    """An integration as returned to callers: no credentials, encrypted or not."""
