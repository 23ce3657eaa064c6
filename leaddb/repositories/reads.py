"""The generic repository's reads: by key, by filters, keyset pages, counts.

Written once for every entity. A tenant-scoped repository puts ``organization_id = $tenant``
into every statement it sends and stamps the tenant on every row it inserts; the tenant comes
from the unit of work and no argument can change it.
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.exc import ArgumentError, CompileError
from sqlmodel import SQLModel

from leaddb.connections.driver_errors import run
from leaddb.errors import (
    InvalidFilterError,
    InvalidValueError,
    NotFoundError,
)
from leaddb.models.base import is_secret
from leaddb.repositories.filters import Filter
from leaddb.repositories.pagination import Page
from leaddb.rows.codec import RowCodec
from leaddb.rows.hydrate import Hydrator
from leaddb.sql import statements
from leaddb.sql.compile import compile_cached

if TYPE_CHECKING:
    from asyncpg import Record

    from leaddb.repositories.work import Connection, Work

ModelT = TypeVar("ModelT", bound=SQLModel)
StatementT = TypeVar("StatementT")


ENTITY_OF_TABLE: dict[str, str] = {}
"""Table name -> entity name, for every table a repository serves."""

_ORDER_KINDS: dict[type[Any], type[Any]] = {
    uuid.UUID: uuid.UUID,
    datetime: datetime,
    date: date,
    bool: bool,
    int: int,
    float: float,
    Decimal: Decimal,
    str: str,
}


def _order_kind(column: ColumnElement[Any]) -> type[Any] | None:
    """The type of a cursor value of ``column`` (an enum's is its text), or None for values
    without a keyset order: JSON, arrays, bytes."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return None
    if isinstance(python_type, type) and issubclass(python_type, enum.Enum):
        return str
    return _ORDER_KINDS.get(python_type)


def after_position(
    columns: Sequence[ColumnElement[Any]], values: Sequence[object], descending: bool
) -> ColumnElement[bool]:
    """Rows after ``values`` in the order of ``columns``: ``(a, b) > (x, y)`` spelled
    ``a >= x AND (a > x OR b > y)``.

    Row comparison (``record_gt``) is not leakproof, so under row-level security PostgreSQL
    would not use it in an index scan; comparisons of single timestamps, UUIDs and integers
    are, and the leading ``a >= x`` gives the index its range.

    A nullable column sorts the way PostgreSQL sorts it by default (and an index scan reads it):
    NULL after every value, so last going up and first going down. ``a > NULL`` matches
    nothing in SQL, so each comparison with a NULL, or on a nullable column, spells that order
    out with ``IS NULL``.
    """
    # Bound with the column's type: SQLAlchemy refuses ``column > True`` written plainly.
    first, *rest = (
        (column, value if value is None else bindparam(None, value, type_=column.type))
        for column, value in zip(columns, values, strict=True)
    )

    def beyond(column: ColumnElement[Any], value: object) -> ColumnElement[bool]:
        nullable = _nullable(column)
        if value is None:
            # Nothing sorts after NULL going up; going down, every value comes after it.
            return column.is_not(None) if descending else false()
        if descending:
            return column < value
        return or_(column > value, column.is_(None)) if nullable else column > value

    def reached(column: ColumnElement[Any], value: object) -> ColumnElement[bool]:
        if value is None:
            return true() if descending else column.is_(None)
        if descending:
            return column <= value
        return or_(column >= value, column.is_(None)) if _nullable(column) else column >= value

    def equal(column: ColumnElement[Any], value: object) -> ColumnElement[bool]:
        return column.is_(None) if value is None else column == value

    if not rest:
        return beyond(*first)
    alternatives: list[ColumnElement[bool]] = [beyond(*first)]
    for index in range(len(rest)):
        equals = [equal(column, value) for column, value in rest[:index]]
        alternatives.append(and_(*equals, beyond(*rest[index])))
    return and_(reached(*first), or_(*alternatives))


def _nullable(column: ColumnElement[Any]) -> bool:
    return bool(getattr(column, "nullable", True))


def as_uuid(value: object) -> uuid.UUID | None:
    """``value`` as a UUID, or None when it is not one (an unknown id finds nothing)."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and len(value) <= 64:
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    return None


class ReadRepository(Generic[ModelT]):
    """Reads of one entity within one unit of work: get, get_many, list, count, exists.

    Subclasses set ``model`` (the table class) and add the entity's own queries.
    """

    model: ClassVar[type[Any]]
    default_order: ClassVar[tuple[str, ...]] = ("created_at", "id")
    audited: ClassVar[bool] = True

    _shape: ClassVar[statements.TableShape]
    _hydrator: ClassVar[Hydrator[Any]]
    _select_all: ClassVar[dict[bool, Select[Any]]]
    _codec: ClassVar[RowCodec[Any]]
    cacheable: ClassVar[bool] = True
    _sql: ClassVar[dict[object, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = cls.__dict__.get("model")
        if model is None:
            return
        table: Table = model.__table__
        cls._shape = statements.TableShape(
            table=table,
            tenant_scoped="organization_id" in table.c,
            soft_delete="deleted_at" in table.c,
            versioned="version" in table.c,
            has_updated_at="updated_at" in table.c,
            entity=model.__entity_name__,
        )
        ENTITY_OF_TABLE[table.name] = model.__entity_name__
        everything = select(*table.c)
        live = everything.where(table.c.deleted_at.is_(None)) if "deleted_at" in table.c else None
        cls._select_all = {True: everything, False: live if live is not None else everything}
        cls._hydrator = Hydrator(model)
        cls._codec = RowCodec(cls._hydrator)
        cls._sql = {}
        if "cacheable" not in cls.__dict__:
            # Rows with secrets never enter the cache, so those entities are not cached at all.
            cls.cacheable = not any(
                column.name in statements.SECRET_COLUMNS for column in table.columns
            )

    def __init__(self, uow: Work) -> None:
        self._uow = uow

    # -- helpers -------------------------------------------------------------------------

    @property
    def table(self) -> Table:
        return self._shape.table

    def _statement(self, key: object, build: Callable[[], StatementT]) -> StatementT:
        """The statement of one shape (``key``), built and compiled on its first use only."""
        cache = self._sql
        sql = cache.get(key)
        if sql is None:
            sql = cache[key] = build()
        return sql

    def _key(self, id: uuid.UUID) -> tuple[uuid.UUID, ...]:
        if self._shape.tenant_scoped:
            return (self._uow.require_tenant(), id)
        return (id,)

    def _not_found(self, id: object) -> NotFoundError:
        return NotFoundError(self._shape.entity, str(id))

    async def _connection(self) -> Connection:
        return await self._uow.statement_connection()

    # -- reads ---------------------------------------------------------------------------

    async def get(self, id: uuid.UUID, *, include_deleted: bool = False) -> ModelT | None:
        """The row with this id in this tenant, or None (also for soft-deleted rows).

        Read through the Redis cache unless this unit of work has written the row.
        """
        key = as_uuid(id)
        if key is None:
            return None
        uow = self._uow
        cache = uow.cache
        if cache is not None and self.cacheable and not uow.wrote(self._shape.entity, key):
            uow.check_open()
            found: ModelT | None = await cache.get(
                self._cache_tenant(key),
                self._shape.entity,
                key,
                self._codec,
                lambda: self._fetch_one(key, include_deleted=True),
            )
            if found is None or include_deleted or not self._shape.soft_delete:
                return found
            return None if found.deleted_at is not None else found  # type: ignore[attr-defined]
        row = await self._fetch_one(key, include_deleted=include_deleted)
        if row is None:
            return None
        result: ModelT = self._hydrator.one(row)
        return result

    def _cache_tenant(self, key: uuid.UUID) -> uuid.UUID:
        # An organization's own row is cached under its own tenant tag.
        return self._uow.require_tenant() if self._shape.tenant_scoped else key

    async def _fetch_one(self, key: uuid.UUID, *, include_deleted: bool) -> Record | None:
        sql = self._statement(
            ("get", include_deleted),
            lambda: statements.select_by_key(self._shape, include_deleted=include_deleted),
        )
        connection = await self._connection()
        row: Record | None = await run(connection.fetchrow, sql.text, *sql.args(self._key(key)))
        return row

    async def get_one(self, id: uuid.UUID, *, include_deleted: bool = False) -> ModelT:
        """The row with this id, or NotFoundError."""
        found = await self.get(id, include_deleted=include_deleted)
        if found is None:
            raise self._not_found(id)
        return found

    async def get_many(
        self, ids: Collection[uuid.UUID], *, include_deleted: bool = False
    ) -> builtins.list[ModelT]:
        """The rows with these ids, in the order given; unknown ids are left out.

        Cached rows come from one MGET; the rest from one statement.
        """
        keys = [key for key in dict.fromkeys(map(as_uuid, ids)) if key is not None]
        if not keys:
            return []
        uow = self._uow
        cache = uow.cache
        entity = self._shape.entity
        hide_deleted = False
        models: builtins.list[ModelT | None]
        if cache is not None and self.cacheable and self._shape.tenant_scoped:
            uow.check_open()
            cached = keys
            if uow.has_written:
                cached = [key for key in keys if not uow.wrote(entity, key)]
            models = await cache.get_many(
                uow.require_tenant(), entity, cached, self._codec, self._fetch_many
            )
            if len(cached) < len(keys):
                # Rows this unit of work wrote come from its transaction.
                found: dict[uuid.UUID, ModelT | None] = dict(zip(cached, models, strict=True))
                direct = [key for key in keys if key not in found]
                found.update(
                    (row["id"], self._hydrator.one(row)) for row in await self._fetch_many(direct)
                )
                models = [found.get(key) for key in keys]
            # The cache holds soft-deleted rows too (get(include_deleted=True) reads them).
            hide_deleted = not include_deleted and self._shape.soft_delete
        else:
            rows = await self._fetch_many(keys, include_deleted=include_deleted)
            loaded = {row["id"]: self._hydrator.one(row) for row in rows}
            models = [loaded.get(key) for key in keys]
        present = [model for model in models if model is not None]
        if hide_deleted:
            # Through __dict__, which holds every column (Hydrator.adopt): the instrumented
            # attribute costs a Python call per row.
            return [model for model in present if model.__dict__["deleted_at"] is None]
        return present

    async def _fetch_many(
        self, keys: Sequence[uuid.UUID], *, include_deleted: bool = True
    ) -> builtins.list[Record]:
        sql = self._statement(
            ("get_many", include_deleted),
            lambda: statements.select_many_by_key(self._shape, include_deleted=include_deleted),
        )
        params: builtins.list[Any] = [builtins.list(keys)]
        if self._shape.tenant_scoped:
            params.insert(0, self._uow.require_tenant())
        connection = await self._connection()
        rows: builtins.list[Record] = await run(connection.fetch, sql.text, *sql.args(params))
        return rows

    def _base_select(self, filters: Sequence[Filter], include_deleted: bool) -> Select[Any]:
        table = self.table
        conditions = []
        if self._shape.tenant_scoped:
            conditions.append(table.c.organization_id == self._uow.require_tenant())
        for item in filters:
            condition = getattr(item, "condition", None)
            if condition is None:
                raise InvalidFilterError(f"not a filter: {item!r}")
            try:
                conditions.append(condition(table))
            except (ValueError, TypeError, ArgumentError, CompileError) as error:
                # SQLAlchemy refusing the value for the column (a list for an array field,
                # an object it cannot bind): the caller's filter is wrong.
                raise InvalidFilterError(f"{item!r} does not apply: {error}") from None
        # Building SELECT of every column is the costly part of a statement: it is built once
        # per class and include_deleted, and each call only adds its conditions.
        base = self._select_all[include_deleted or not self._shape.soft_delete]
        return base.where(*conditions) if conditions else base

    async def list(
        self,
        *filters: Filter,
        limit: int = 50,
        after: str | None = None,
        include_deleted: bool = False,
        order_by: Sequence[str] | None = None,
        descending: bool = False,
    ) -> Page[ModelT]:
        """A page of rows matching every filter, in a stable order; pass ``next_cursor`` on."""
        most = self._uow.settings.max_page_size
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= most:
            raise InvalidFilterError(
                f"limit must be an integer from 1 to {most} (LEADDB_MAX_PAGE_SIZE)"
            )
        order = tuple(order_by or self.default_order)
        if order[-1] != "id":
            order = (*order, "id")
        order_columns = [self._order_column(name) for name in order]
        statement = self._base_select(filters, include_deleted)
        # The cursor is bound to this query: its filters' SQL and values, order and direction
        # (the tenant is one of the values).
        filter_sql, filter_args = compile_cached(statement)
        fingerprint = hashlib.sha256(
            repr((self._shape.entity, order, descending, filter_sql.text, filter_args)).encode()
        ).hexdigest()
        if after is not None:
            # _order_column checked that every column has a kind.
            kinds = [_order_kind(column) or str for column in order_columns]
            values = self._uow.cursors.decode(fingerprint, after, kinds)
            statement = statement.where(after_position(order_columns, values, descending))
        ordering = [column.desc() if descending else column.asc() for column in order_columns]
        statement = statement.order_by(*ordering).limit(limit + 1)
        compiled, args = compile_cached(statement)
        connection = await self._connection()
        rows = await run(connection.fetch, compiled.text, *args)
        items: list[ModelT] = self._hydrator.many(rows[:limit])
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = self._uow.cursors.encode(fingerprint, [last[name] for name in order])
        return Page(items=items, next_cursor=next_cursor)

    def _order_column(self, name: object) -> ColumnElement[Any]:
        """The column to order by, or a typed error: the cursor carries the last row's value of
        every order column, so only columns whose values a cursor may carry and compare."""
        table = self.table
        if not isinstance(name, str) or name not in table.c:
            raise InvalidFilterError(f"cannot order {self._shape.entity} by {name!r}")
        column = table.c[name]
        if is_secret(column):
            raise InvalidFilterError(
                f"cannot order {self._shape.entity} by {name!r}: it holds a secret"
            )
        if _order_kind(column) is None:
            raise InvalidValueError(
                f"cannot order {self._shape.entity} by {name!r}: its "
                f"{column.type.__visit_name__} values have no keyset order",
                field=name,
            )
        return column

    async def count(self, *filters: Filter, include_deleted: bool = False) -> int:
        """How many rows match every filter."""
        inner = self._base_select(filters, include_deleted)
        statement = select(func.count()).select_from(inner.subquery())
        compiled, args = compile_cached(statement)
        connection = await self._connection()
        value = await run(connection.fetchval, compiled.text, *args)
        return int(value)

    async def exists(self, *filters: Filter, include_deleted: bool = False) -> bool:
        """Whether any row matches every filter."""
        inner = self._base_select(filters, include_deleted).limit(1)
        statement = select(inner.exists())
        compiled, args = compile_cached(statement)
        connection = await self._connection()
        return bool(await run(connection.fetchval, compiled.text, *args))
