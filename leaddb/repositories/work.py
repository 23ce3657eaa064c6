"""What a repository (and the scoring engine) needs of the unit of work it runs in.

Declared here, below the units of work, so that the repositories never import them:
``leaddb.uow.UnitOfWork`` implements ``Work``. A repository that needs a sibling is handed it
when it is built; nothing is looked up on the unit of work by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    import asyncpg
    from asyncpg import Record

    from leaddb.cache.unit import UnitCache
    from leaddb.repositories.pagination import CursorCodec
    from leaddb.settings import LeadDBSettings

    Connection: TypeAlias = asyncpg.Connection[Record]
    """A pooled asyncpg connection, as a unit of work holds it."""


class SessionRevoker(Protocol):
    """The part of the session store a repository uses: ending sessions after a commit."""

    def revoke_all(self, user_id: uuid.UUID) -> Awaitable[int]: ...

    def revoke_organization(self, organization_id: uuid.UUID) -> Awaitable[int]: ...


class Work(Protocol):
    """A unit of work as its repositories see it: the transaction's connection for leaddb's own
    statements, the tenant and actor, the cache, and the record of what was written."""

    @property
    def tenant_id(self) -> uuid.UUID | None: ...

    @property
    def actor_id(self) -> uuid.UUID | None: ...

    @property
    def cache(self) -> UnitCache | None: ...

    @property
    def settings(self) -> LeadDBSettings: ...

    @property
    def cursors(self) -> CursorCodec: ...

    @property
    def sessions(self) -> SessionRevoker: ...

    @property
    def has_written(self) -> bool: ...

    def require_tenant(self) -> uuid.UUID: ...

    def check_open(self) -> None: ...

    async def statement_connection(self) -> Connection:
        """The transaction's connection for statements that leave the session as they found
        it (raw SQL goes through the unit of work's ``connection()`` instead)."""
        ...

    def after_commit(self, action: Callable[[], Awaitable[object]]) -> None: ...

    def record_write(self, entity: str, ids: Iterable[uuid.UUID]) -> None: ...

    def record_created(self, entity: str, ids: Iterable[uuid.UUID]) -> None: ...

    def record_bulk_write(self, entity: str) -> None: ...

    def record_tenant_wipe(self, organization_id: uuid.UUID) -> None: ...

    def wrote(self, entity: str, id: uuid.UUID) -> bool: ...


class TenantWork(Work, Protocol):
    """A unit of work with a tenant: its ``tenant_id`` is never None."""

    @property
    def tenant_id(self) -> uuid.UUID: ...
