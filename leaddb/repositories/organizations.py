"""Organizations: the tenants themselves, managed from a platform unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import ClassVar

from sqlalchemy import select

from leaddb.connections.driver_errors import run
from leaddb.models import Organization, OrganizationCreate, OrganizationUpdate
from leaddb.repositories.base import Repository
from leaddb.sql.compile import compile_cached


class OrganizationRepository(Repository[Organization, OrganizationCreate, OrganizationUpdate]):
    """Organizations; their audit rows are filed under the organization itself."""

    model: ClassVar[type[Organization]] = Organization
    # The audit rows of an organization are deleted with it, so its deletion cannot be audited.
    audit_deletes: ClassVar[bool] = False

    async def update(
        self,
        id: uuid.UUID,
        patch: OrganizationUpdate,
        *,
        expected_version: int | None = None,
    ) -> Organization:
        """Update an organization; deactivating it ends its users' sessions once committed."""
        organization = await super().update(id, patch, expected_version=expected_version)
        if not organization.is_active:
            self._revoke_sessions_after_commit(organization.id)
        return organization

    async def update_many(
        self, ids: Collection[uuid.UUID], patch: OrganizationUpdate
    ) -> list[Organization]:
        """Update several organizations; deactivating them ends their users' sessions."""
        organizations = await super().update_many(ids, patch)
        if patch.is_active is False:
            for organization in organizations:
                self._revoke_sessions_after_commit(organization.id)
        return organizations

    async def delete(self, id: uuid.UUID, *, expected_version: int | None = None) -> None:
        """Delete an organization and everything it owns (not audited: the trail goes too)."""
        await super().delete(id, expected_version=expected_version)
        self._revoke_sessions_after_commit(id)

    def _revoke_sessions_after_commit(self, organization_id: uuid.UUID) -> None:
        sessions = self._uow.sessions
        self._uow.after_commit(lambda: sessions.revoke_organization(organization_id))

    async def get_by_slug(self, slug: str) -> Organization | None:
        """The organization with this slug."""
        table = self.table
        compiled, args = compile_cached(select(*table.c).where(table.c.slug == slug))
        connection = await self._connection()
        row = await run(connection.fetchrow, compiled.text, *args)
        return None if row is None else self._hydrator.one(row)
