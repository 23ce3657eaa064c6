"""``uow.session``: SQLModel's AsyncSession on a unit of work's own connection and transaction.

The repositories stay the fast path; this is the full ORM beside them, with their guarantees:

* One transaction. The session runs on the connection the unit of work already holds, through
  an engine whose pool only borrows it (``BorrowedPool``) and with ``AUTOCOMMIT`` so that
  SQLAlchemy's asyncpg adapter starts no transaction of its own (NOTES.md, "An AsyncSession on
  a unit of work's own asyncpg connection"). What a repository wrote is visible to the session
  and the other way round; ``uow.commit()`` flushes the session and commits both; leaving the
  unit of work without committing rolls both back.
* The tenant, by the ORM itself: every ORM statement of a tenant unit of work gets
  ``with_loader_criteria`` on every tenant model (relationship loads included), on top of
  row-level security; a flush stamps ``organization_id`` on new rows and refuses a row of
  another tenant (TenantViolationError, from ``before_flush``).
* Flushed writes as the repositories write: audit rows in the same transaction (same shape),
  ``version`` / ``updated_at`` bumped (``version_id_col`` on the table classes, StaleVersionError
  on conflict), soft delete for soft-deletable models, and the touched keys recorded on the unit
  of work so ``commit()`` invalidates the cache. Bulk ORM UPDATE / DELETE mark the entity as
  bulk-written (the cache drops every entry of that entity for the tenant).
* An instance a repository returned can be ``add``-ed: it is made detached-with-identity first,
  so its flush is an UPDATE, not a duplicate INSERT.

Nothing of this is created for a unit of work that never touches ``uow.session``.
"""

from __future__ import annotations

import contextvars
import functools
import uuid
import weakref
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg
import sqlalchemy as sa
from pydantic_core import to_jsonable_python
from sqlalchemy import event
from sqlalchemy.engine import Connection as SyncConnection
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import ORMExecuteState, QueryableAttribute, UOWTransaction, with_loader_criteria
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.session import make_transient_to_detached
from sqlalchemy.pool import ConnectionPoolEntry, Pool
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.util import await_only
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from leaddb.connections.driver_errors import translate
from leaddb.errors import StaleVersionError, TenantViolationError
from leaddb.models.activity import ActivityLog
from leaddb.models.base import TENANT_COLUMN, EntityModel, TenantMixin, new_id
from leaddb.models.organization import Organization
from leaddb.sql.statements import SECRET_COLUMNS

if TYPE_CHECKING:
    from leaddb.connections.pool import ConnectionPool
    from leaddb.repositories.work import Connection
    from leaddb.settings import LeadDBSettings

__all__ = ["UNAUDITED_ENTITIES", "SessionOwner", "open_session", "related"]

# The entities whose repositories write no audit row (``audited = False``, and the audit trail
# itself); tests/unit/test_orm_session.py checks this against the repositories.
UNAUDITED_ENTITIES = frozenset({"activity_log", "lead_score_history"})

# The asyncpg connection a unit of work is handing to its session's engine, read by the pool
# while SQLAlchemy checks a connection out (inside SQLAlchemy's greenlet, which shares the
# calling task's context).
_handoff: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "leaddb_orm_handoff", default=None
)


class SessionOwner(Protocol):
    """What a session takes from the unit of work it runs in (``UnitOfWork`` is one): its tenant
    and actor, its connection, and the record of what the session's statements wrote."""

    @property
    def tenant_id(self) -> uuid.UUID | None: ...

    @property
    def actor_id(self) -> uuid.UUID | None: ...

    async def transaction_connection(self) -> Connection: ...

    def note_raw_sql(self) -> None: ...

    def record_write(self, entity: str, ids: Iterable[uuid.UUID]) -> None: ...

    def record_created(self, entity: str, ids: Iterable[uuid.UUID]) -> None: ...

    def record_bulk_write(self, entity: str) -> None: ...


async def _borrowed_connection() -> Connection:
    connection = _handoff.get()
    if connection is None:  # pragma: no cover - only the session's get_bind checks out
        raise RuntimeError("leaddb's ORM engine only runs on a unit of work's connection")
    return connection


class BorrowedPool(Pool):
    """A pool that owns no connection: it wraps the unit of work's connection in hand, once per
    physical connection (so SQLAlchemy's prepared-statement cache and its on-connect work
    survive from one unit of work to the next), and never closes it on return.

    Written as SQLAlchemy writes its own pools (NullPool, StaticPool): overriding ``_do_get`` /
    ``_do_return_conn`` and calling ``_create_connection``; SQLAlchemy offers no public way to
    lend an engine a connection it does not own. tests/unit/test_orm_session.py fails loudly if
    an upgrade renames these, and the integration tests count the wrapped connections.
    """

    def __init__(self, creator: Any, **kw: Any) -> None:
        super().__init__(creator, **kw)
        self._entries: dict[int, tuple[Connection, ConnectionPoolEntry]] = {}

    @property
    def wrapped(self) -> int:
        """How many physical connections this pool has wrapped (and keeps)."""
        return len(self._entries)

    def status(self) -> str:
        return f"BorrowedPool({self.wrapped} wrapped)"

    def _do_get(self) -> ConnectionPoolEntry:
        connection = _handoff.get()
        if connection is None:  # pragma: no cover - see _borrowed_connection
            raise RuntimeError("leaddb's ORM engine only runs on a unit of work's connection")
        known = self._entries.get(id(connection))
        if known is not None and known[0] is connection:
            return known[1]
        # A connection the pool closed since is forgotten here (its id may be reused).
        for key, (held, _) in list(self._entries.items()):
            if held.is_closed():
                del self._entries[key]
        entry = self._create_connection()
        self._entries[id(connection)] = (connection, entry)
        return entry

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        # Kept: the connection belongs to leaddb's own pool, which the unit of work returns it to.
        pass

    def dispose(self) -> None:
        self._entries.clear()

    def recreate(self) -> BorrowedPool:
        return BorrowedPool(
            self._creator,
            echo=self.echo,
            reset_on_return=self._reset_on_return,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )


async def _no_codec(connection: Any) -> None:
    # leaddb's pool sets orjson json/jsonb codecs on every connection it opens; the dialect's
    # own (json.loads, one catalog round trip each) would replace them for the raw path too.
    return None


_engines: weakref.WeakKeyDictionary[ConnectionPool, AsyncEngine] = weakref.WeakKeyDictionary()


def orm_engine(pool: ConnectionPool, settings: LeadDBSettings) -> AsyncEngine:
    """The engine of the sessions of units of work drawing from ``pool`` (one per LeadDB)."""
    engine = _engines.get(pool)
    if engine is not None:
        return engine
    engine = create_async_engine(
        settings.sqlalchemy_url(),
        async_creator=_borrowed_connection,
        poolclass=BorrowedPool,
        pool_reset_on_return=None,
        isolation_level="AUTOCOMMIT",
        echo=settings.echo_sql,
    )
    dialect = engine.sync_engine.dialect
    # Documented as the dialect's overridable hooks ("can be overridden by third party
    # dialects"); set on this engine's own dialect instance only. JSON values then go to the
    # driver as Python objects, which the pool's codec encodes (and decodes) with orjson, the
    # same as for the repositories. tests/integration/test_orm_session.py round-trips a JSONB
    # column through both paths and fails if an upgrade changes either hook.
    dialect.setup_asyncpg_json_codec = _no_codec  # type: ignore[attr-defined]
    dialect.setup_asyncpg_jsonb_codec = _no_codec  # type: ignore[attr-defined]
    dialect.supports_native_json_serialization = True
    event.listen(engine.sync_engine, "handle_error", _translate_error)
    _engines[pool] = engine
    return engine


def _translate_error(context: ExceptionContext) -> None:
    # Driver errors come out as leaddb's typed errors, as they do from the repositories.
    original = context.original_exception
    driver = original.__cause__ if original.__cause__ is not None else original
    if isinstance(driver, asyncpg.PostgresError | asyncpg.InterfaceError):
        translated = translate(driver)
        if translated is not None:
            raise translated from original


class UnitSession(Session):
    """The synchronous session behind ``uow.session``: bound to the unit of work's connection."""

    def get_bind(self, *args: Any, **kw: Any) -> Any:
        bound: SyncConnection | None = self.info.get("leaddb_connection")
        if bound is not None:
            return bound
        uow: SessionOwner = self.info["leaddb_uow"]
        engine: AsyncEngine = self.info["leaddb_engine"]
        # Inside SQLAlchemy's greenlet: the unit of work's connection (acquired and begun now if
        # this is its first statement) is awaited from here.
        connection = await_only(uow.transaction_connection())
        token = _handoff.set(connection)
        try:
            bound = engine.sync_engine.connect()
        finally:
            _handoff.reset(token)
        self.info["leaddb_connection"] = bound
        return bound

    def add(self, instance: object, _warn: bool = True) -> None:
        _attach_identity(instance)
        super().add(instance, _warn=_warn)

    def flush(self, objects: Sequence[Any] | None = None) -> None:
        try:
            super().flush(objects)
        except StaleDataError as error:
            raise _stale(self) from error

    def close(self) -> None:
        try:
            super().close()
        finally:
            bound = self.info.pop("leaddb_connection", None)
            if bound is not None:
                bound.close()


def _attach_identity(instance: object) -> None:
    """A row the database returned (a repository's instance) becomes detached-with-identity, so
    that the session updates it instead of inserting it again. Such instances carry the
    database-filled ``created_at`` (leaddb.models.base); one built in Python does not yet."""
    state = sa.inspect(instance, raiseerr=False)
    if state is None or not isinstance(instance, EntityModel):
        return
    if state.transient and getattr(instance, "created_at", None) is not None:
        make_transient_to_detached(instance)


def _stale(session: sa.orm.Session) -> StaleVersionError:
    candidates = [
        obj
        for obj in (*session.dirty, *session.deleted)
        if isinstance(obj, EntityModel) and hasattr(obj, "version")
    ]
    if not candidates:
        return StaleVersionError("row", uuid.UUID(int=0), 0, None)
    obj = candidates[0]
    history = sa.inspect(obj).attrs.version.history
    expected = (history.deleted or history.unchanged or [0])[0]
    return StaleVersionError(
        obj.__entity_name__, getattr(obj, "id", uuid.UUID(int=0)), expected, None
    )


def related(attribute: object) -> QueryableAttribute[Any]:
    """A relationship attribute as the loader options take it:
    ``selectinload(related(Lead.notes))``.

    SQLModel types ``Lead.notes`` as the instances' ``list[LeadNote]``, which mypy refuses as an
    argument of ``selectinload`` / ``joinedload``; on the class it is SQLAlchemy's attribute.
    """
    if not isinstance(attribute, QueryableAttribute):
        raise TypeError(f"related() takes a relationship of a table class, not {attribute!r}")
    return attribute


def open_session(uow: SessionOwner, pool: ConnectionPool, settings: LeadDBSettings) -> AsyncSession:
    """A new session for ``uow`` (called once, on the first use of ``uow.session``)."""
    engine = orm_engine(pool, settings)
    return AsyncSession(
        engine,
        sync_session_class=UnitSession,
        expire_on_commit=False,
        autoflush=True,
        info={"leaddb_uow": uow, "leaddb_engine": engine},
    )


# -- the tenant ---------------------------------------------------------------------------------


def _uow_of(session: sa.orm.Session) -> SessionOwner:
    uow: SessionOwner = session.info["leaddb_uow"]
    return uow


@event.listens_for(UnitSession, "do_orm_execute")
def _restrict_to_tenant(state: ORMExecuteState) -> Any:
    uow = _uow_of(state.session)
    if isinstance(state.statement, TextClause):
        # Text through the session is raw SQL like any other (leaddb.uow.base.connection).
        uow.note_raw_sql()
        return None
    softened = state.is_delete and _soften(state)
    tenant = uow.tenant_id
    if (
        tenant is not None
        and (state.is_select or state.is_update or state.is_delete)
        # Relationship and column loads carry the options of the statement that loaded the
        # instances already (SQLAlchemy propagates them).
        and not state.is_relationship_load
        and not state.is_column_load
    ):
        state.statement = state.statement.options(*_tenant_criteria(tenant))
    if state.is_update or state.is_delete:
        return _keyed_bulk(state, uow, softened=softened)
    return None


@functools.lru_cache(maxsize=4096)
def _tenant_criteria(tenant: uuid.UUID) -> tuple[Any, ...]:
    """The loader criteria of one tenant, built once: the options are immutable, and building
    fourteen of them was a measurable share of a small query. The tenant is a closure variable
    of the lambdas, so SQLAlchemy binds it as a parameter and one compiled statement serves
    every tenant."""
    return (
        *(
            with_loader_criteria(
                model, lambda cls: cls.organization_id == tenant, include_aliases=True
            )
            for model in _tenant_models()
        ),
        # The tenant sees its own organization only.
        with_loader_criteria(Organization, lambda cls: cls.id == tenant, include_aliases=True),
    )


_NOT_AUDITED_COLUMNS = frozenset({"version", "updated_at", "created_at"}) | SECRET_COLUMNS


def _keyed_bulk(state: ORMExecuteState, uow: SessionOwner, *, softened: bool) -> Any:
    """A bulk ORM UPDATE / DELETE, keyed: the rows it matches are read and locked first, the
    statement runs on exactly those rows, and each gets its audit row and its cache key, as
    the repositories' update_many does. Two more round trips than the bare statement."""
    mapper = state.bind_mapper
    statement = state.statement
    cls = None if mapper is None else mapper.class_
    if (
        cls is None
        or not issubclass(cls, EntityModel)
        or not isinstance(statement, sa.Update | sa.Delete)
        or not isinstance(state.parameters, dict | None)  # executemany by key: not listed
    ):
        if cls is not None and issubclass(cls, EntityModel):
            uow.record_bulk_write(cls.__entity_name__)
        return None
    assert mapper is not None
    names = [attr.key for attr in mapper.column_attrs]
    columns = [getattr(cls, name) for name in names]
    key = getattr(cls, "id")  # noqa: B009 - EntityModel declares no id; every table has one
    probe = sa.select(*columns).with_for_update()
    if statement.whereclause is not None:
        probe = probe.where(statement.whereclause)
    session = state.session
    before = {row.id: dict(row._mapping) for row in session.execute(probe, state.parameters)}
    ids = list(before)
    result = state.invoke_statement(statement=statement.where(key.in_(ids)))
    after = (
        {}
        if isinstance(statement, sa.Delete)
        else {
            row.id: dict(row._mapping)
            for row in session.execute(sa.select(*columns).where(key.in_(ids)))
        }
    )
    entity = cls.__entity_name__
    uow.record_write(entity, ids)
    if entity in UNAUDITED_ENTITIES or not ids:
        return result
    rows = []
    for id_, old in before.items():
        new = after.get(id_)
        if new is None:
            action, changes = "deleted", {"before": _jsonable(old)}
        else:
            changed = [n for n in names if n not in _NOT_AUDITED_COLUMNS and old[n] != new[n]]
            action = "deleted" if softened else "updated"
            changes = {
                "before": _jsonable({n: old[n] for n in changed}),
                "after": _jsonable({n: new[n] for n in changed}),
            }
        organization = old.get(TENANT_COLUMN) or id_
        rows.append(_audit_row(uow, entity, organization, id_, action, changes))
    session.connection().execute(sa.insert(ActivityLog.__table__), rows)  # type: ignore[attr-defined]
    return result


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {
        name: to_jsonable_python(value)
        for name, value in values.items()
        if name not in SECRET_COLUMNS
    }


def _audit_row(
    uow: SessionOwner,
    entity: str,
    organization: uuid.UUID,
    entity_id: uuid.UUID,
    action: str,
    changes: dict[str, Any],
) -> dict[str, Any]:
    """One activity_logs row, in the shape the repositories' statements write."""
    return {
        "organization_id": organization,
        "id": new_id(),
        "actor_user_id": uow.actor_id,
        "entity_type": entity,
        "entity_id": entity_id,
        "action": action,
        "changes": changes,
    }


def _soften(state: ORMExecuteState) -> bool:
    """A bulk DELETE of a soft-deletable model stamps ``deleted_at`` instead, as the
    repositories' delete does (rows already deleted keep their stamp)."""
    mapper = state.bind_mapper
    statement = state.statement
    if mapper is None or "deleted_at" not in mapper.columns or not isinstance(statement, sa.Delete):
        return False
    deleted_at = mapper.columns["deleted_at"]
    soft = sa.update(mapper.class_).where(deleted_at.is_(None)).values(deleted_at=sa.func.now())
    if statement.whereclause is not None:
        soft = soft.where(statement.whereclause)
    state.statement = soft.execution_options(**statement.get_execution_options())
    return True


@functools.cache
def _tenant_models() -> tuple[type[TenantMixin], ...]:
    """Every mapped table class with the tenant column (all of them but organizations)."""
    found: list[type[TenantMixin]] = []
    pending: list[type[Any]] = [TenantMixin]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "__table__" in cls.__dict__ and cls not in found:
            found.append(cls)
    return tuple(found)


@event.listens_for(UnitSession, "before_flush")
def _before_flush(session: sa.orm.Session, flush: UOWTransaction, instances: object) -> None:
    uow = _uow_of(session)
    tenant = uow.tenant_id
    for obj in session.new:
        if isinstance(obj, TenantMixin):
            if tenant is None:
                raise TenantViolationError("tenant rows are written in a tenant unit of work")
            if obj.organization_id is None:
                obj.organization_id = tenant
            elif obj.organization_id != tenant:
                raise TenantViolationError(
                    f"{obj.__entity_name__} {obj.id} belongs to another organization"
                )
    soft_deleted: list[EntityModel] = []
    for obj in list(session.deleted):
        _check_tenant(obj, tenant)
        if isinstance(obj, EntityModel) and "deleted_at" in sa.inspect(type(obj)).columns:
            # Soft delete: the row stays, stamped, and the session updates it instead.
            session.add(obj)
            setattr(obj, "deleted_at", datetime.now(UTC))  # noqa: B010 - not on EntityModel
            soft_deleted.append(obj)
    for obj in session.dirty:
        _check_tenant(obj, tenant)
    session.info["leaddb_soft_deleted"] = {id(obj) for obj in soft_deleted}


def _check_tenant(obj: object, tenant: uuid.UUID | None) -> None:
    if tenant is None or not isinstance(obj, TenantMixin):
        return
    history = sa.inspect(obj).attrs[TENANT_COLUMN].history
    owners = {*history.deleted, *history.unchanged, *history.added}
    if owners != {tenant}:
        raise TenantViolationError(
            f"{obj.__entity_name__} {obj.id} belongs to another organization"
        )


# -- audit and cache bookkeeping ----------------------------------------------------------------


def _values(obj: EntityModel, names: Iterable[str]) -> dict[str, Any]:
    return {
        name: to_jsonable_python(getattr(obj, name)) for name in names if name not in SECRET_COLUMNS
    }


@event.listens_for(UnitSession, "after_flush")
def _after_flush(session: sa.orm.Session, flush: UOWTransaction) -> None:
    uow = _uow_of(session)
    soft_deleted: set[int] = session.info.pop("leaddb_soft_deleted", set())
    audit: list[dict[str, Any]] = []

    def log(obj: EntityModel, action: str, changes: dict[str, Any]) -> None:
        if obj.__entity_name__ in UNAUDITED_ENTITIES:
            return
        organization = getattr(obj, TENANT_COLUMN, None) or obj.id  # type: ignore[attr-defined]
        audit.append(
            _audit_row(uow, obj.__entity_name__, organization, obj.id, action, changes)  # type: ignore[attr-defined]
        )

    for obj in session.new:
        if isinstance(obj, EntityModel):
            columns = sa.inspect(type(obj)).columns.keys()
            uow.record_created(obj.__entity_name__, [obj.id])  # type: ignore[attr-defined]
            log(obj, "created", {"after": _values(obj, columns)})
    for obj in session.dirty:
        if not isinstance(obj, EntityModel) or not session.is_modified(obj):
            continue
        state = sa.inspect(obj)
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for attr in state.mapper.column_attrs:
            history = state.attrs[attr.key].history
            if history.added and attr.key not in SECRET_COLUMNS:
                before[attr.key] = to_jsonable_python(
                    history.deleted[0] if history.deleted else None
                )
                after[attr.key] = to_jsonable_python(history.added[0])
        uow.record_write(obj.__entity_name__, [obj.id])  # type: ignore[attr-defined]
        action = "deleted" if id(obj) in soft_deleted else "updated"
        log(obj, action, {"before": before, "after": after})
    for obj in session.deleted:
        if isinstance(obj, EntityModel):
            columns = sa.inspect(type(obj)).columns.keys()
            uow.record_write(obj.__entity_name__, [obj.id])  # type: ignore[attr-defined]
            log(obj, "deleted", {"before": _values(obj, columns)})
    if audit:
        session.connection().execute(sa.insert(ActivityLog.__table__), audit)  # type: ignore[attr-defined]
