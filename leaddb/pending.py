"""What Redis must still be told, kept in PostgreSQL until it has been (migration 0007).

Two things must reach Redis after a commit, and Redis may be unreachable just then: the end of
every session of a user or organization that was deactivated or deleted, and a tenant's cache
invalidation. PostgreSQL keeps both in ``leaddb_private.pending_invalidations``: triggers list
revocations in the deactivating transaction itself (whatever statement made it: a repository,
raw SQL, the ORM), and a process whose invalidation Redis refused lists the tenant.

Every process applies the list: before its cache or its sessions serve anything again after it
saw Redis fail, and every ``pending_poll_seconds`` otherwise (a process that never saw the
outage still learns of what another process could not deliver, within that bound). Applying an
entry twice does no harm, so processes need not coordinate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Protocol

from leaddb.errors import LeadDBError
from leaddb.sql import system

if TYPE_CHECKING:
    from leaddb.cache.store import CacheStore
    from leaddb.connections.tenant_context import ContextSigner
    from leaddb.sessions import SessionStore
    from leaddb.uow import PlatformUnitOfWork

logger = logging.getLogger("leaddb")

_PENDING = system.PENDING_INVALIDATIONS.text
_APPLIED = system.INVALIDATIONS_APPLIED.text
_NOTE_EPOCH = system.NOTE_EPOCH.text


class Database(Protocol):
    """What the list needs of the ``LeadDB`` that holds it (so this module imports no ``db``)."""

    @property
    def signer(self) -> ContextSigner | None: ...

    @property
    def cache(self) -> CacheStore: ...

    @property
    def sessions(self) -> SessionStore: ...

    def platform(self) -> PlatformUnitOfWork: ...


class PendingInvalidations:
    """The durable list of one database, as one ``LeadDB`` records and applies it."""

    def __init__(self, db: Database, poll_seconds: float) -> None:
        self._db = db
        self._poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._repair: asyncio.Task[bool] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        """Poll in the background (nothing when polling is off or the schema predates 0007)."""
        if self._poll_seconds > 0 and self._db.signer is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        for task in (self._task, self._repair):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._repair = None

    async def repair(self) -> bool:
        """Whether everything listed has been applied since this was first asked; if not, it
        is being applied in the background and this answers False (the cache is then passed
        by, a session is not served) until it has. Never waits: the caller may hold the pool's
        last connection, which applying needs."""
        task = self._repair
        if task is not None and task.done():
            self._repair = None
            if not task.cancelled() and task.exception() is None and task.result():
                return True
        if self._repair is None:
            self._repair = asyncio.get_running_loop().create_task(self.apply())
        return False

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.apply()
            except Exception:  # a poller must outlive any one failure; apply() logs it
                logger.debug("applying pending invalidations failed", exc_info=True)

    def _untraced(self) -> PlatformUnitOfWork:
        uow = self._db.platform()
        uow.traced = False
        return uow

    async def note_epoch(self, tenant: uuid.UUID) -> None:
        """List a tenant whose invalidation Redis did not take. Best effort: if PostgreSQL
        cannot take it either, this process still bumps the epoch once Redis answers."""
        if self._db.signer is None:
            return
        try:
            async with self._untraced() as uow:
                connection = await uow.statement_connection()
                await connection.execute(_NOTE_EPOCH, tenant)
                await uow.commit()
        except Exception as error:
            logger.warning("could not list the lost invalidation of tenant %s: %s", tenant, error)

    async def apply(self) -> bool:
        """Tell Redis everything listed, and strike what it took; whether none is left.

        One caller at a time in a process: the others wait for its outcome.
        """
        if self._db.signer is None:
            return True
        async with self._lock:
            try:
                return await self._apply()
            except (LeadDBError, OSError) as error:
                logger.warning("pending invalidations not applied yet: %s", error)
                return False

    async def _apply(self) -> bool:
        db = self._db
        async with self._untraced() as uow:
            connection = await uow.statement_connection()
            rows = await connection.fetch(_PENDING)
            if not rows:
                return True
            epochs: set[uuid.UUID] = set()
            users: set[uuid.UUID] = set()
            organizations: set[uuid.UUID] = set()
            for _id, kind, organization_id, user_id in rows:
                if kind == "epoch":
                    epochs.add(organization_id)
                elif kind == "user_sessions":
                    users.add(user_id)
                else:
                    organizations.add(organization_id)
            if not await db.cache.bump_epochs(sorted(epochs)):
                return False
            for user in users:
                await db.sessions.revoke_all(user)
            for organization in organizations:
                await db.sessions.revoke_organization(organization)
            await connection.execute(_APPLIED, [row[0] for row in rows])
            await uow.commit()
        logger.info(
            "applied %d pending invalidations (%d epochs, %d users, %d organizations)",
            len(rows),
            len(epochs),
            len(users),
            len(organizations),
        )
        return len(rows) < 1000 or await self._apply()
