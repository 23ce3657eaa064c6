"""The audit trail, read-only: rows are written by the repositories' own statements."""

from __future__ import annotations

import uuid
from typing import ClassVar

from leaddb.models import ActivityLog
from leaddb.repositories.filters import keyword
from leaddb.repositories.pagination import Page
from leaddb.repositories.reads import ReadRepository


class ActivityLogRepository(ReadRepository[ActivityLog]):
    """What happened in one organization, who did it, and what changed."""

    model: ClassVar[type[ActivityLog]] = ActivityLog

    async def for_entity(
        self, entity_type: str, entity_id: uuid.UUID, *, limit: int = 50, after: str | None = None
    ) -> Page[ActivityLog]:
        """The history of one row, oldest first."""
        return await self.list(
            keyword("entity_type", entity_type),
            keyword("entity_id", entity_id),
            limit=limit,
            after=after,
        )
