"""Users: the people of an organization who sign in and work its leads."""

from typing import Annotated, ClassVar

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
    table_of,
    tenant_table_args,
)
from leaddb.models.enums import UserRole
from leaddb.models.fields import (
    Email,
    JsonObject,
    Name,
    OptionalHttpUrl,
    Timezone,
    db_default,
    enum_field,
    json_field,
    secret_field,
    timestamp_field,
)

__all__ = ["Password", "User", "UserBase", "UserCreate", "UserPassword", "UserRead", "UserUpdate"]

Password = Annotated[SecretStr, PydanticField(min_length=8, max_length=128)]
"""A plain password as a caller submits it; the repository hashes it into ``password_hash``."""


class UserBase(SQLModel):
    """Fields of a user shared by the table and its schemas."""

    email: Email
    full_name: Name
    role: UserRole = enum_field(UserRole, default=UserRole.AGENT)
    is_active: bool = db_default(True)
    timezone: Timezone = "UTC"
    preferences: JsonObject = json_field()
    avatar_url: OptionalHttpUrl = None
    last_login_at: AwareDatetime | None = timestamp_field()


class User(VersionMixin, TimestampsMixin, UserBase, TenantMixin, table=True):
    """A user; ``email`` is unique per organization, ignoring case."""

    __tablename__ = "users"
    __entity_name__: ClassVar[str] = "user"
    __table_args__ = tenant_table_args()

    # Never in a Read schema, a repr, a log line or the cache. NULL for users who cannot sign in
    # with a password (invited, SSO only).
    password_hash: str | None = secret_field(255)


_users = table_of(User)
# Case-insensitive uniqueness without citext: (organization_id, lower(email)).
sa.Index(
    "ix_users_organization_id_lower_email",
    _users.c.organization_id,
    sa.func.lower(_users.c.email),
    unique=True,
)


class UserPassword(SQLModel):
    """A plain ``password`` a Create or Update schema may carry: the repository hashes it into
    ``password_hash``; it is never a column and never read back."""

    password: Password | None = None


class UserCreate(UserBase, CreateSchema, UserPassword):
    """Payload to create a user; ``password`` is hashed by the repository, never stored."""


@patch_of(UserBase)
class UserUpdate(UpdateSchema, UserPassword):
    """Partial update of a user; a ``password`` is re-hashed by the repository."""


class UserRead(VersionRead, TimestampsRead, UserBase, ReadSchema, TenantRead):
    """A user as returned to callers: no password hash."""
