"""Communications with leads: emails, calls, messages."""

from __future__ import annotations

import uuid
from typing import ClassVar

from leaddb.models import Communication, CommunicationCreate, CommunicationUpdate
from leaddb.repositories.base import Repository
from leaddb.repositories.filters import keyword
from leaddb.repositories.pagination import Page


class CommunicationRepository(Repository[Communication, CommunicationCreate, CommunicationUpdate]):
    """Communications of one organization (``uow.leads.record_communication`` also moves the
    lead's last engagement)."""

    model: ClassVar[type[Communication]] = Communication

    async def for_lead(
        self, lead_id: uuid.UUID, *, limit: int = 50, after: str | None = None
    ) -> Page[Communication]:
        """A lead's communications, newest first."""
        return await self.list(
            keyword("lead_id", lead_id), limit=limit, after=after, descending=True
        )
