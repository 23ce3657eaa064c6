"""What a session is, as the store hands it out: frozen pydantic models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from leaddb.models.fields import JsonObject

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class SessionMetadata(BaseModel):
    """Where a session came from, for a "your devices" page and for audits.

    Recorded as given at creation; leaddb interprets none of it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ip_address: str | None = None
    user_agent: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)


class Session(BaseModel):
    """One live session of one user.

    ``id`` is public and stable for the session's whole life (rotation keeps it): show it in a
    device list and pass it to ``SessionStore.revoke_session``. It is not the token and does not
    lead to it. ``expires_at`` is ``min(last_seen_at + idle ttl, absolute_expires_at)``.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: uuid.UUID
    organization_id: uuid.UUID
    created_at: AwareDatetime
    last_seen_at: AwareDatetime
    expires_at: AwareDatetime
    absolute_expires_at: AwareDatetime
    data: dict[str, JsonValue] = Field(default_factory=dict)
    metadata: SessionMetadata = Field(default_factory=SessionMetadata)


class StoredRecord(BaseModel):
    """The part of a session that never changes, stored as JSON in the session's ``rec`` field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: uuid.UUID
    organization_id: uuid.UUID
    # NaN and Infinity are refused: JSON has no spelling for them (pydantic would write null).
    data: JsonObject
    metadata: SessionMetadata


def from_ms(value: int) -> datetime:
    """A UTC datetime from milliseconds since the epoch, exactly (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=value)
