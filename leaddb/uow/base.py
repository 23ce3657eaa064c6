"""The unit of work: one database transaction, its repositories, and what its writes touched.

A unit of work takes a pooled connection only when its first statement needs one (a unit of
work served entirely from the cache never opens a transaction), begins the transaction there,
and gives the connection back when it ends. ``commit()`` commits and then invalidates the cache
keys the writes touched; leaving the block without ``commit()`` rolls back and invalidates
nothing. Using it afterwards raises UnitOfWorkClosedError.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self, cast

import asyncpg

from leaddb import telemetry
from leaddb.connections.driver_errors import mapped
from leaddb.connections.pooler import SCRUB, transaction_settings
from leaddb.connections.raw import RawConnection
from leaddb.connections.retry import FRESH_CONNECTION_ATTEMPTS
from leaddb.connections.session_role import APP_ROLE
from leaddb.errors import (
    ConnectionFailedError,
    PoolTimeoutError,
    TenantViolationError,
    TransactionFailedError,
    UnitOfWorkClosedError,
)
from leaddb.sql import system
from leaddb.uow.orm import open_session

if TYPE_CHECKING:
    from asyncpg import Record
    from sqlmodel.ext.asyncio.session import AsyncSession

    from leaddb.cache.unit import UnitCache
    from leaddb.connections.pool import ConnectionPool
    from leaddb.connections.replicas import RecordInFlight, ReplicaRouter
    from leaddb.connections.session_role import SessionRoles
    from leaddb.connections.tenant_context import ContextSigner
    from leaddb.repositories.pagination import CursorCodec
    from leaddb.repositories.work import Connection
    from leaddb.sessions import SessionStore
    from leaddb.settings import LeadDBSettings

logger = logging.getLogger("leaddb")

_savepoint_names = itertools.count(1)

_ROLLED_BACK = (
    "the transaction was rolled back because one of its statements failed; nothing was committed"
)
# What the WAL position's report after a COMMIT raises when it cannot run (migration 0008
# undone, or its privilege revoked); the COMMIT before it has then been answered.
_REPORT_MISSING = (
    asyncpg.UndefinedFunctionError
    | asyncpg.InsufficientPrivilegeError
    | asyncpg.InvalidSchemaNameError
)


class Host(Protocol):
    """What a unit of work takes from the ``LeadDB`` that opened it (``LeadDB`` is one)."""

    @property
    def settings(self) -> LeadDBSettings: ...

    @property
    def cursors(self) -> CursorCodec: ...

    @property
    def signer(self) -> ContextSigner | None: ...

    @property
    def session_roles(self) -> SessionRoles: ...

    @property
    def assumes_app_role(self) -> bool: ...

    @property
    def sessions(self) -> SessionStore: ...

    def cache_unit(self) -> UnitCache | None: ...


class UnitOfWork:
    """Base of the tenant and platform units of work; see the module docstring."""

    def __init__(
        self,
        db: Host,
        pool: ConnectionPool,
        *,
        tenant_id: uuid.UUID | None,
        actor_id: uuid.UUID | None,
        read_only: bool = False,
        router: ReplicaRouter | None = None,
    ) -> None:
        self._db = db
        self.read_only = read_only
        # Read-only units of work may run on a replica (leaddb.connections.replicas); those
        # that write record the primary's position for them.
        self._router = router
        self._primary = pool
        # Handed in, not reached through the facade: the pool is not public (a connection
        # borrowed from it would skip the tenant context and the reset of raw SQL's leftovers).
        self._pool = pool
        self.tenant_id = tenant_id
        self.actor_id = actor_id
        self._connection: Connection | None = None
        self._begun = False  # whether the BEGIN on self._connection has been answered
        self._raw = False  # whether the connection was handed out for raw SQL
        self._raw_connection: RawConnection | None = None
        self._closed = False
        self.commit_sent = False
        """Whether COMMIT was sent: after a failure, it may have committed (never retried)."""
        self._written: dict[str, set[uuid.UUID]] = {}
        self._created: dict[str, set[uuid.UUID]] = {}
        self._bulk_written: set[str] = set()
        self._wiped_tenants: set[uuid.UUID] = set()
        self._after_commit: list[Callable[[], Awaitable[object]]] = []
        self.cache: UnitCache | None = db.cache_unit()
        self._trace: telemetry.UnitTrace | None = None
        self._session: AsyncSession | None = None
        if read_only and router is not None and self.cache is not None:
            # It may run on a replica, chosen at its first statement, which can come after the
            # cache lookup it serves: it fills nothing and shares no load (UnitCache.fills).
            self.cache.fills = False

    # -- lifecycle ------------------------------------------------------------------------

    traced = True
    """Whether telemetry records this unit of work: leaddb's own background work (the durable
    list's polling) is not the service's, and would put a span in its traces every second."""

    async def __aenter__(self) -> Self:
        if telemetry.on and self.traced:
            self._trace = telemetry.start_unit(self.tenant_id, self.actor_id)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._trace is not None:
            await self._exit_traced(exc)
            return
        if self._closed:
            return
        if self._connection is None:
            # Nothing to roll back (a unit of work served by the cache alone): closed without
            # the two coroutines rollback() would await.
            self._closed = True
            return
        await self.rollback()

    async def _exit_traced(self, error: BaseException | None) -> None:
        trace, self._trace = self._trace, None
        try:
            await self.__aexit__(type(error) if error else None, error, None)
        finally:
            if trace is not None:
                trace.end(error)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def has_written(self) -> bool:
        return self._raw or bool(
            self._written or self._created or self._bulk_written or self._wiped_tenants
        )

    @property
    def settings(self) -> LeadDBSettings:
        return self._db.settings

    @property
    def cursors(self) -> CursorCodec:
        return self._db.cursors

    def require_tenant(self) -> uuid.UUID:
        if self.tenant_id is None:
            raise TenantViolationError("this unit of work has no tenant")
        return self.tenant_id

    def check_open(self) -> None:
        """UnitOfWorkClosedError once the unit of work has been committed or rolled back."""
        if self._closed:
            raise UnitOfWorkClosedError("this unit of work has been committed or rolled back")

    @property
    def session(self) -> AsyncSession:
        """SQLModel's AsyncSession on this unit of work's transaction (leaddb.uow.orm): the
        tenant applies to every statement, flushed writes are audited and invalidate the cache
        like repository writes, and ``commit()`` flushes it first. Created on first use."""
        if self._session is None:
            self.check_open()
            self._session = open_session(self, self._pool, self._db.settings)
        return self._session

    def note_raw_sql(self) -> None:
        """Mark the unit of work untrusted, as ``connection()`` does (raw SQL ran)."""
        if not self._raw:
            self._raw = True
            if self._connection is not None:
                self._db.session_roles.forget(self._connection)

    async def connection(self) -> Connection:
        """The transaction's connection, for raw SQL; acquired and begun on first use.

        What comes back works until the unit of work ends, then raises UnitOfWorkClosedError
        (leaddb.raw). Raw SQL makes the unit of work untrusted: it fills no cache entry, its
        commit invalidates everything of its tenant, and what that SQL left on the session
        (settings, role, temporary tables, cursors, listeners, advisory locks) is cleared
        before anyone else gets the connection.
        """
        connection = await self.statement_connection()
        self.note_raw_sql()
        if self._raw_connection is None:
            self._raw_connection = RawConnection(connection, lambda: not self._closed)
        # Typed as the asyncpg connection it stands for: every call is passed on, checked.
        return cast("Connection", self._raw_connection)

    async def statement_connection(self) -> Connection:
        """The transaction's connection for leaddb's own statements, which leave the session as
        they found it. Not for raw SQL: the pool trusts a session this handed out to still hold
        the application role, so raw SQL goes through ``connection()``.

        Changes pending in ``uow.session`` are flushed first (autoflush, as for the session's
        own queries), so what the session holds is what the repositories read."""
        session = self._session
        if session is not None and (session.new or session.dirty or session.deleted):
            await session.flush()
        return await self.transaction_connection()

    async def transaction_connection(self) -> Connection:
        """``statement_connection()`` without the session's autoflush (the session's own way
        to the connection, during its flush)."""
        if self._connection is not None:
            return self._connection
        self.check_open()
        router = self._router
        if not self.read_only or router is None:
            return await self._begin(router)
        replica = router.candidate(self.tenant_id)
        if replica is None:
            self._pool = self._primary
            return await self._begin(router)
        # Speculative: the Redis GET of the tenant's position runs while the transaction begins
        # on the replica that has replayed the most; both answers are awaited, not one after
        # the other. If that replica turns out to be behind (or Redis could not tell), its
        # connection goes back, rolled back, and the unit of work begins on the primary.
        lookup = router.lookup(self.tenant_id)
        self._pool = replica.pool
        try:
            connection = await self._begin(router)
        except BaseException:
            lookup.abandon()
            raise
        if self._pool is not replica.pool:
            lookup.abandon()
            return connection  # the replica failed: begun on the primary already
        # A cancellation here leaves the begun connection to __aexit__, which returns it.
        needed = await lookup.needed()
        if router.serves(replica, needed):
            return connection
        self._connection = None
        self._begun = False
        router.give_back(replica, connection)
        self._pool = self._primary
        return await self._begin(router)

    async def _begin(self, router: ReplicaRouter | None) -> Connection:
        """Acquire a connection of ``self._pool`` and begin the transaction on it."""
        # A pooled connection may have died since it was last used (the server restarted);
        # nothing has happened in this unit of work yet, so one fresh connection is safe to try.
        for attempt in range(1, FRESH_CONNECTION_ATTEMPTS + 1):
            try:
                connection = await self._acquire()
            except ConnectionFailedError:
                if self._pool is self._primary or router is None:
                    raise
                router.failed(self._pool)  # a replica down: the primary serves, at once
                self._pool = self._primary
                connection = await self._acquire()
            # Owned from here: __aexit__ gives it back whatever happens, cancellation included.
            self._connection = connection
            try:
                sql = self._begin_sql(connection)
                await (
                    telemetry.statement(connection.execute, (sql,))
                    if telemetry.on
                    else connection.execute(sql)
                )
                self._begun = True
                if self._raw:  # text the ORM session sent before its first statement
                    self._db.session_roles.forget(connection)
            except Exception as error:
                failure = mapped(error)
                if isinstance(failure, ConnectionFailedError):
                    # Its idle siblings most likely lost the same server: none is tried again.
                    self._pool.drop_idle()
                if attempt < FRESH_CONNECTION_ATTEMPTS and isinstance(
                    failure, ConnectionFailedError
                ):
                    self._connection = None
                    await self._return_to_pool(connection)
                    if self._pool is not self._primary and router is not None:
                        router.failed(self._pool)
                        self._pool = self._primary
                    continue
                raise failure from error
            return connection
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self) -> Connection:
        # The timeout costs nothing when an idle connection is there: only waiting sets it up.
        try:
            connection = await self._pool.acquire(timeout=self._db.settings.pool_timeout)
        except TimeoutError:
            raise PoolTimeoutError(
                f"no database connection became free within {self._db.settings.pool_timeout}s "
                "(LEADDB_POOL_TIMEOUT; LEADDB_POOL_SIZE + LEADDB_MAX_OVERFLOW bound the pool)"
            ) from None
        except Exception as error:
            raise mapped(error) from error
        return connection

    async def fetch(self, query: str, *args: object) -> list[Record]:
        """Run raw SQL in this transaction (tenant context and row-level security included);
        driver errors come out as leaddb errors. Pass values as ``$n`` arguments."""
        connection = await self.connection()
        try:
            return await connection.fetch(query, *args)
        except Exception as error:
            raise mapped(error) from error

    async def fetchval(self, query: str, *args: object) -> object:
        """Like ``fetch``, returning the first column of the first row."""
        connection = await self.connection()
        try:
            return await connection.fetchval(query, *args)
        except Exception as error:
            raise mapped(error) from error

    async def execute(self, query: str, *args: object) -> str:
        """Like ``fetch`` for statements without rows; returns the command tag."""
        connection = await self.connection()
        try:
            return await connection.execute(query, *args)
        except Exception as error:
            raise mapped(error) from error

    def _begin_sql(self, connection: Connection) -> str:
        """What starts the transaction: BEGIN and the row-level-security context, sent as one
        simple-protocol message, so setting the tenant costs no round trip of its own."""
        # The role is named only where the session may not hold it (connections.session_role).
        role = (
            f"SET LOCAL ROLE {APP_ROLE}; "
            if self._db.assumes_app_role and not self._db.session_roles.holds(connection)
            else ""
        )
        settings = self._db.settings
        if settings.transaction_pooler:
            # No session to keep them in (leaddb.connections.pooler).
            role += transaction_settings(int(settings.statement_timeout_seconds * 1000))
        signer = self._db.signer
        # Signed (leaddb.tenant_context): the policies trust no value that SQL can make up.
        # Both are hex digits, dashes and a dot: nothing to escape. SET LOCAL rather than
        # SELECT set_config(): a utility command, no plan and no row.
        begin = "BEGIN READ ONLY" if self.read_only else "BEGIN"
        if self.tenant_id is not None:
            context = str(self.tenant_id) if signer is None else signer.tenant(self.tenant_id)
            return f"{begin}; {role}SET LOCAL leaddb.tenant = '{context}'"
        platform = "" if signer is None else signer.platform
        return f"{begin}; {role}SET LOCAL leaddb.platform = '{platform}'"

    async def commit(self) -> None:
        """Commit the transaction, then invalidate what it changed in the cache."""
        self.check_open()
        if self._trace is not None:
            self._trace.outcome = "committing"
        session = self._session
        if session is not None and (session.new or session.dirty or session.deleted):
            try:
                await session.flush()
            except BaseException:
                await self.rollback()
                raise
        connection = self._connection
        # Whether the transaction may have committed. A COMMIT whose answer never arrived (the
        # caller cancelled, the connection dropped) may well have, so only the server's own
        # "no" clears it: otherwise the rows it wrote would stay cached with their old values.
        maybe_committed = True
        record: RecordInFlight | None = None
        try:
            if connection is not None:
                if self._raw and self.cache is not None:
                    await self._invalidate_after_raw_sql(connection)
                if self._raw and self.settings.transaction_pooler:
                    await self._scrub_before_commit(connection)
                router = self._router if self.has_written else None
                # With replicas, the COMMIT's message also reports the WAL position after it,
                # as a notice (migration 0008): no round trip of its own.
                notice = None if router is None else router.position_notice()
                self.commit_sent = True
                try:
                    if notice is not None:
                        connection.add_log_listener(notice)
                    sql = "COMMIT" if notice is None else notice.commit_sql
                    status = await (
                        # The span is named after the COMMIT: the report's nonce would make
                        # each text a shape of its own.
                        telemetry.statement(lambda _text: connection.execute(sql), ("COMMIT",))
                        if telemetry.on
                        else connection.execute(sql)
                    )
                except asyncpg.PostgresError as error:
                    # The server's "no", unless the connection failed (class 08) or the server
                    # ended the session (class 57, a shutdown): both may follow the commit.
                    maybe_committed = isinstance(
                        error, asyncpg.PostgresConnectionError | asyncpg.OperatorInterventionError
                    )
                    if notice is not None:
                        if isinstance(error, asyncpg.InFailedSQLTransactionError):
                            # The message's first statement found the transaction aborted: the
                            # rest was skipped, COMMIT included (the release rolls back).
                            raise TransactionFailedError(_ROLLED_BACK) from error
                        if isinstance(error, _REPORT_MISSING):
                            # The report after the COMMIT failed (0008 undone?): committed,
                            # most likely. Positions are read by their own query from now on.
                            maybe_committed = True
                            assert router is not None
                            router.notice_failed(error)
                    raise mapped(error) from error
                except Exception as error:
                    raise mapped(error) from error
                finally:
                    if notice is not None:
                        connection.remove_log_listener(notice)
                # PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK, no error.
                # (With the report, the status is the report's: an aborted transaction raised.)
                if notice is None and status != "COMMIT":
                    maybe_committed = False
                    raise TransactionFailedError(_ROLLED_BACK)
                if router is not None:
                    position = None if notice is None else notice.position
                    record = await self._record_position(connection, router, position)
        finally:
            self._closed = True
            if maybe_committed and self.cache is not None and self._cached_rows_changed():
                # Shielded as one: a cancellation during COMMIT or the release must not cut
                # the invalidation short.
                await asyncio.shield(self._release_and_invalidate(self.cache, record))
            else:
                await self._release()
                if record is not None:
                    await asyncio.shield(record.finish())
        if self._trace is not None:
            self._trace.outcome = "committed"
        for action in self._after_commit:
            try:
                await asyncio.shield(action())
            except ConnectionFailedError as error:
                # Committed all the same: a session revocation Redis missed is on the durable
                # list its trigger wrote (leaddb.pending), applied once Redis answers.
                logger.warning("after commit, Redis missed: %s (it is applied later)", error)

    async def _invalidate_after_raw_sql(self, connection: Connection) -> None:
        """Raw SQL may have changed any row its context can reach, unseen by the cache: its
        commit invalidates all of it. For a tenant, that is the tenant; for the platform, every
        organization there is, and every one this transaction deleted (leaddb_private's list,
        which the application role can only read)."""
        if self.tenant_id is not None:
            self._wiped_tenants.add(self.tenant_id)
            return
        if self._db.signer is None:  # not migrated to 0007: nothing there to cache
            return
        try:
            rows = await connection.fetch(system.TOUCHED_ORGANIZATIONS.text)
        except Exception as error:
            raise mapped(error) from error
        self._wiped_tenants.update(row[0] for row in rows)

    async def _record_position(
        self, connection: Connection, router: ReplicaRouter, reported: str | None
    ) -> RecordInFlight | None:
        """After COMMIT, before the cache's invalidation: the WAL position read-only units of
        work must find replayed (leaddb.connections.replicas). Reported by the COMMIT's own
        message when it could be; else one more round trip, on a connection no longer in a
        transaction, so the position is past the commit's record. When the cache invalidates
        next, the position goes ahead of it on the cache's connection, answered with it (the
        record in flight is returned, to be finished then)."""
        position = reported
        if position is None:
            try:
                position = await router.read_position(connection)
            except Exception as error:
                # Committed all the same; without the position, readers of this tenant may
                # read a replica that lacks the commit, so the failure is not kept quiet.
                logger.warning("committed, but the WAL position was not read: %s", error)
                return None
        cache = self.cache
        if cache is not None and self._cached_rows_changed():
            transport = cache.pipeline_transport()
            if transport is not None:
                record = router.record_beside(transport, self.tenant_id, position)
                if record is not None:
                    return record
        await router.record(self.tenant_id, position)
        return None

    async def _scrub_before_commit(self, connection: Connection) -> None:
        """Behind a transaction pooler, clear what raw SQL left on the session while the
        transaction still holds its server connection, then set the context again for the
        commit's own deferred work (leaddb.connections.pooler)."""
        if not connection.is_in_transaction():
            return  # the raw SQL ended the transaction itself: the session is out of reach
        try:
            await connection.execute(f"{SCRUB}; {self._begin_sql(connection).split('; ', 1)[1]}")
        except Exception as error:
            raise mapped(error) from error

    def after_commit(self, action: Callable[[], Awaitable[object]]) -> None:
        """Run ``action`` once the transaction has committed (never after a rollback)."""
        self._after_commit.append(action)

    @property
    def sessions(self) -> SessionStore:
        return self._db.sessions

    async def rollback(self) -> None:
        """Roll back; the cache is left exactly as it was."""
        if self._closed:
            return
        self._closed = True
        await self._release()

    def _cached_rows_changed(self) -> bool:
        return bool(self._written or self._bulk_written or self._wiped_tenants)

    async def _release_and_invalidate(
        self, cache: UnitCache, record: RecordInFlight | None
    ) -> None:
        try:
            await self._release()
            await cache.invalidate(
                self.tenant_id, self._written, self._bulk_written, self._wiped_tenants
            )
        finally:
            if record is not None:
                await record.finish()

    async def _release(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            # Forgets its instances' states and gives the wrapped connection back. No I/O (the
            # engine is in AUTOCOMMIT, so SQLAlchemy holds no transaction of its own), hence
            # nothing a cancellation could interrupt, and no shield to pay for.
            with contextlib.suppress(Exception):
                await session.close()
        if self._raw_connection is not None:
            self._raw_connection.detach()
        connection, self._connection = self._connection, None
        begun, self._begun = self._begun, False
        if connection is None:
            return
        if not begun:
            # Cancelled while its BEGIN was on the wire: the pool would wait for the server's
            # answer to the cancellation and then roll back. A fresh connection is cheaper than
            # both, and this happens only to a cancelled unit of work.
            with contextlib.suppress(Exception):
                connection.terminate()
            with contextlib.suppress(Exception):
                await self._pool.release(connection)
            return
        if not self._raw and not connection.is_closed() and not connection.is_in_transaction():
            # Nothing to roll back or reset: the pool takes a clean connection back without awaiting
            # (and shields the rollback of one whose last statement was cancelled in flight).
            with contextlib.suppress(Exception):  # see the end of _return_to_pool
                await self._pool.release(connection)
            return
        # Shielded: a cancellation arriving now must not interrupt the rollback half-way; the
        # caller sees the CancelledError while the connection is still cleaned up and returned.
        await asyncio.shield(self._return_to_pool(connection))

    async def _return_to_pool(self, connection: Connection) -> None:
        # A connection goes back to the pool only outside a transaction, and with its session
        # as it started if raw SQL had it. When the rollback or the reset cannot finish
        # (connection broken, another operation in progress after a cancelled statement), it
        # is closed instead, so no one ever gets one with a transaction open or a role shed;
        # the pool then frees its slot.
        try:
            if self._raw and self.settings.transaction_pooler:
                # One message, so the pooler keeps the same server connection for the scrub:
                # a later one could reach any other (leaddb.connections.pooler).
                if not connection.is_closed():
                    await connection.execute(f"ROLLBACK; {SCRUB}")
            elif not connection.is_closed() and connection.is_in_transaction():
                await (
                    telemetry.statement(connection.execute, ("ROLLBACK",))
                    if telemetry.on
                    else connection.execute("ROLLBACK")
                )
            if self._raw and not self.settings.transaction_pooler and not connection.is_closed():
                await self._db.session_roles.reset(connection, assume=self._db.assumes_app_role)
        except Exception:
            with contextlib.suppress(Exception):
                connection.terminate()
        # The pool's release can still fail (the connection was given back already, the pool
        # is closed). The unit of work has ended either way, and a COMMIT that returned
        # stands, so nothing of the release may reach the caller.
        with contextlib.suppress(Exception):
            await self._pool.release(connection)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Nested work: an exception inside rolls back to here and propagates."""
        connection = await self.statement_connection()
        name = f"leaddb_sp_{next(_savepoint_names)}"
        try:
            await connection.execute(f"SAVEPOINT {name}")
        except Exception as error:
            raise mapped(error) from error
        try:
            yield
        except BaseException:
            if self._connection is not None and not connection.is_closed():
                try:
                    await connection.execute(f"ROLLBACK TO SAVEPOINT {name}")
                except Exception as error:
                    raise mapped(error) from error
            raise
        else:
            try:
                await connection.execute(f"RELEASE SAVEPOINT {name}")
            except Exception as error:
                raise mapped(error) from error

    # -- bookkeeping for the cache --------------------------------------------------------

    def record_write(self, entity: str, ids: Iterable[uuid.UUID]) -> None:
        """Rows changed: invalidated after commit, read from the transaction until then."""
        self._written.setdefault(entity, set()).update(ids)

    def record_created(self, entity: str, ids: Iterable[uuid.UUID]) -> None:
        """New rows: nothing cached to invalidate, but read from the transaction until commit."""
        self._created.setdefault(entity, set()).update(ids)

    def record_bulk_write(self, entity: str) -> None:
        """Rows changed that were not listed (set-based statements, cascades)."""
        self._bulk_written.add(entity)

    def record_tenant_wipe(self, organization_id: uuid.UUID) -> None:
        """Everything of an organization changed (it was deleted)."""
        self._wiped_tenants.add(organization_id)

    def wrote(self, entity: str, id: uuid.UUID) -> bool:
        """Whether this unit of work changed that row (its reads then skip the cache); after
        raw SQL, any row may have changed."""
        return (
            self._raw
            or entity in self._bulk_written
            or id in self._written.get(entity, ())
            or id in self._created.get(entity, ())
            or bool(self._wiped_tenants)
        )
