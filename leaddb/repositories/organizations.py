"""Organizations: the tenants themselves, managed from a platform unit of work."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import select

from leaddb.models import Organization, OrganizationCreate, OrganizationUpdate
from leaddb.repositories.base import Repository
from leaddb.repositories.reads import _run
from leaddb.repositories.sql import compile_sql


class OrganizationRepository(Repository[Organization, OrganizationCreate, OrganizationUpdate]):
    """Organizations; their audit rows are filed under the organization itself."""

    model: ClassVar[type[Organization]] = Organization

    async def get_by_slug(self, slug: str) -> Organization | None:
        """The organization with this slug."""
        table = self.table
        compiled = compile_sql(select(*table.c).where(table.c.slug == slug))
        connection = await self._connection()
        row = await _run(connection.fetchrow(compiled.text, *compiled.args({})))
        return None if row is None else self._hydrator.one(row)
