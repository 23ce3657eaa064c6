"""create_many's large batches: COPY into a scratch table, then one INSERT ... SELECT per chunk
that also writes the chunk's audit rows.

PostgreSQL refuses COPY into a table with row-level security, so the rows pass through a
temporary table shaped like the target and reach it with an INSERT the policies check. The
batch goes in chunks so that the two processes work at the same time: while PostgreSQL inserts
one chunk (and maintains the table's indexes, most of the cost), Python checks the next chunk's
values. A batch of several chunks runs inside a savepoint, so a bad value found in a later
chunk leaves none of the batch behind.

Where every column the insert leaves out has a default known in advance, the new rows are what
was sent plus those defaults (the transaction's ``now()`` among them): nothing is sent back,
and the audit rows' ``after`` images are built here as JSON and travel in the scratch table,
because ``to_jsonb`` of a whole row costs PostgreSQL more than inserting the audit row itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Table, func, select
from uuid_utils import uuid7

from leaddb.connections.driver_errors import run
from leaddb.errors import InvalidFilterError
from leaddb.models.base import new_id
from leaddb.repositories.collector import CollectorPause
from leaddb.rows.jsontext import pg_json_default
from leaddb.sql import statements
from leaddb.sql.compile import Positional, compile_positional

if TYPE_CHECKING:
    from leaddb.repositories.reads import ReadRepository
    from leaddb.repositories.work import Connection

# The first chunks are small so that PostgreSQL starts early, each built by Python while the one
# before is inserted; later ones are large enough that their round trips (COPY, INSERT,
# TRUNCATE) are lost in the rows' cost.
FIRST_CHUNKS = (250, 500, 1_000)
CHUNK_ROWS = 2_000

CHANGES_COLUMN = "_leaddb_changes"
"""A scratch table's extra column: each row's audit ``changes``, built in Python."""
AUDIT_ID_COLUMN = "_leaddb_audit_id"
"""Another: each audit row's id, made here too (the SQL function costs the server ~3 us a row,
on the batch's critical path; ``new_id`` costs Python less, while PostgreSQL works)."""

# The transaction's clock, for the defaults of the rows of a batch.
_NOW = compile_positional(select(func.now()), ())

NOW = object()
"""Stands for the transaction's ``now()`` among a bulk insert's defaults."""

_savepoint_names = itertools.count(1)


def chunk_bounds(count: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of a batch of ``count`` rows. A rest smaller than half
    the chunk that would follow joins the chunk before it, rather than paying a chunk's round
    trips alone at the end, when nothing else overlaps them."""
    sizes = itertools.chain(FIRST_CHUNKS, itertools.repeat(CHUNK_ROWS))
    size = next(sizes)
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < count:
        stop = min(count, start + size)
        size = next(sizes)
        if count - stop < size // 2:
            stop = count
        bounds.append((start, stop))
        start = stop
    return bounds


def bulk_defaults(table: Table, columns: Sequence[str]) -> dict[str, Any] | None:
    """The values the database gives the columns a bulk insert leaves out (``NOW`` for
    ``now()``), or None when one of them cannot be known without reading the rows back."""
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.name in columns:
            continue
        default = column.server_default
        if default is None:
            if not column.nullable:
                return None
            defaults[column.name] = None
        elif "now()" in str(getattr(default, "arg", "")):
            defaults[column.name] = NOW
        elif column.name == "version":
            defaults[column.name] = 1
        else:
            return None
    return defaults


def _visible(row: dict[str, Any]) -> dict[str, Any]:
    if statements.SECRET_COLUMNS.isdisjoint(row):
        return row
    return {name: value for name, value in row.items() if name not in statements.SECRET_COLUMNS}


def audit_image(row: dict[str, Any]) -> bytes:
    """``row`` as JSON text the way ``to_jsonb`` writes it, secret columns left out."""
    return orjson.dumps(_visible(row), default=pg_json_default, option=orjson.OPT_NAIVE_UTC)


def jsonb_key_order(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` in the order jsonb keeps an object's keys: shorter first, then bytewise."""
    return tuple(sorted(names, key=lambda name: (len(name.encode()), name.encode())))


class AfterImages:
    """``{"after": row}`` as JSON text for rows of one set of keys, secret columns left out.

    The row's keys are written in jsonb's own order: PostgreSQL then finds them sorted when it
    parses the image, rather than sorting them (a fifth of parsing a lead's image: 8.0 -> 6.4
    ms for 2,000). The stored jsonb is the same either way.
    """

    __slots__ = ("_order", "_values")

    def __init__(self, keys: Iterable[str]) -> None:
        self._order = jsonb_key_order(k for k in keys if k not in statements.SECRET_COLUMNS)
        self._values = operator.itemgetter(*self._order)

    def __call__(self, row: dict[str, Any]) -> orjson.Fragment:
        values = self._values(row)
        image = dict(zip(self._order, values if len(self._order) > 1 else (values,), strict=True))
        return orjson.Fragment(
            orjson.dumps({"after": image}, default=pg_json_default, option=orjson.OPT_NAIVE_UTC)
        )


@dataclass
class _Chunk:
    ids: list[Any]
    """The rows' ids, in the caller's order."""
    records: Iterable[tuple[Any, ...]]
    """What COPY sends: the values, then the audit image and id when they are built here
    (emptied once sent)."""
    rows: list[dict[str, Any]] | None
    """The new rows whole, when their defaults are known in advance (else read back): they
    become the models once the batch's last chunk is sent."""


class CopiedInsert:
    """One large ``create_many``; see the module docstring.

    ``repository`` is the one inserting (its table, statements, rows and unit of work);
    ``values`` turns an item into the row's column values, and ``audit_args`` are the insert
    statement's parameters before the rows (the audit rows' action and actor), as the
    repository's own inserts give them.

    ``plain`` may name the fields of a schema whose instances ``values`` would only copy, check
    with ``check`` and complete with an id and the tenant (a flat schema with no tenant or
    immutable field, for a repository that does not transform values). Items of that exact
    schema holding exactly those fields are then checked in place, and the row is built once,
    whole, from the item's own ``__dict__``: the same values, without a copy per row.
    """

    def __init__(
        self,
        repository: ReadRepository[Any],
        connection: Connection,
        items: Sequence[Any],
        *,
        values: Callable[[Any], dict[str, Any]],
        audit_args: Sequence[object],
        on_progress: Callable[[int], None] | None = None,
        plain: tuple[type[Any], tuple[str, ...]] | None = None,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._on_progress = on_progress
        self._repository = repository
        self._row_values = values
        self._audit_args = audit_args
        self._connection = connection
        self._items = items
        self._shape = repository._shape
        self._scratch = f"_leaddb_bulk_{self._shape.table.name}"
        # Named in pg_temp, so no table of another schema can stand in for it.
        self._scratch_name = f"pg_temp.{statements.quote(self._scratch)}"
        self._plain = None if plain is None or check is None else (*plain, check)
        self._tail = ("id", "organization_id") if self._shape.tenant_scoped else ("id",)
        self._columns: tuple[str, ...] = self._plain[1] + self._tail if self._plain else ()
        self._filled: dict[str, Any] | None = None
        self._images: AfterImages | None = None
        self._bad_item = False  # a value was refused in Python, so the transaction is intact
        settings = repository._uow.settings
        self._pause = CollectorPause(settings.bulk_pauses_gc)
        # Behind a transaction pooler a session's temporary table would outlive the transaction
        # on a server connection that other clients share: it goes with the transaction there.
        self._on_commit = "DROP" if settings.transaction_pooler else "DELETE ROWS"

    def _values(self, start: int, stop: int) -> list[dict[str, Any]]:
        """The chunk's items checked, as their column values: without the id and the tenant
        when the items are plain (their own ``__dict__``, not to be changed), else whole."""
        try:
            if self._plain is not None:
                return self._plain_values(self._items[start:stop], *self._plain)
            rows = [self._row_values(item) for item in self._items[start:stop]]
            if not self._columns:
                self._columns = tuple(rows[0])
            if any(tuple(row) != self._columns for row in rows):
                raise InvalidFilterError("create_many needs items of one schema")
        except BaseException:
            self._bad_item = True
            raise
        return rows

    def _plain_values(
        self,
        items: Sequence[Any],
        schema: type[Any],
        fields: tuple[str, ...],
        check: Callable[[dict[str, Any]], None],
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        append = rows.append
        mixed = False
        for item in items:
            state = item.__dict__
            if type(item) is schema and tuple(state) == fields:
                check(state)
                append(state)
                continue
            # Another type, or fields missing: what ``values`` makes of it, less the tail.
            row = self._row_values(item)
            # Refused once every item of the chunk is checked, as ``_values`` does.
            mixed = mixed or tuple(row) != self._columns
            tail = self._tail
            append({name: value for name, value in row.items() if name not in tail})
        if mixed:
            raise InvalidFilterError("create_many needs items of one schema")
        return rows

    def _chunk(self, rows: list[dict[str, Any]]) -> _Chunk:
        filled = self._filled
        plain = self._plain is not None
        tail: tuple[Any, ...] = ()
        records: Iterable[tuple[Any, ...]]
        if plain:
            ids = [new_id() for _ in rows]
            tenant = self._repository._uow.require_tenant() if len(self._tail) > 1 else None
            if tenant is not None:
                tail = (tenant,)
            if filled is None:
                records = [(*row.values(), id_, *tail) for row, id_ in zip(rows, ids, strict=True)]
                return _Chunk(ids, records, None)
            if tenant is None:
                whole = [{**filled, **row, "id": id_} for row, id_ in zip(rows, ids, strict=True)]
            else:
                whole = [
                    {**filled, **row, "id": id_, "organization_id": tenant}
                    for row, id_ in zip(rows, ids, strict=True)
                ]
        else:
            ids = [row["id"] for row in rows]
            if filled is None:
                return _Chunk(ids, [tuple(row.values()) for row in rows], None)
            whole = [{**filled, **row} for row in rows]
        if self._repository.audited:
            if self._images is None:
                self._images = AfterImages(whole[0])
            images = list(map(self._images, whole))
            # The audit rows' ids go to PostgreSQL only: as text, which the driver parses,
            # rather than as uuid.UUID objects (slower to make, and tracked by the collector).
            audit_ids = [str(uuid7()) for _ in rows]
            # The records themselves are made as COPY reads them: a tuple per row that lives
            # for as long as the driver encodes it, not through the collector's passes while
            # the chunk waits (the images and ids, the work, are made here, while PostgreSQL
            # inserts the chunk before). Plain rows are read from the whole row, the copy
            # made here, not from the item, which the caller could change meanwhile.
            if plain:
                get = operator.itemgetter(*self._columns)
                records = (
                    (*get(new), image, audit_id)
                    for new, image, audit_id in zip(whole, images, audit_ids, strict=True)
                )
            else:
                records = (
                    (*row.values(), image, audit_id)
                    for row, image, audit_id in zip(rows, images, audit_ids, strict=True)
                )
        elif plain:
            records = map(operator.itemgetter(*self._columns), whole)
        else:
            records = (tuple(row.values()) for row in rows)
        return _Chunk(ids, records, whole)

    async def run(self) -> list[Any]:
        with self._pause:
            return await self._run()

    async def _run(self) -> list[Any]:
        bounds = chunk_bounds(len(self._items))
        rows = self._values(*bounds[0])  # a bad first item: nothing has been sent yet
        if self._plain is not None:
            # Checked items, kept as checked across the round trips below (later chunks are
            # copied into whole rows right after their check).
            rows = [dict(row) for row in rows]
        connection = self._connection
        # The audit columns first: the audit rows' scan of the scratch table then reads four
        # columns of each row, not all of them.
        setup = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self._scratch_name} "
            f"({AUDIT_ID_COLUMN} uuid, {CHANGES_COLUMN} jsonb, "
            f"LIKE {self._shape.name} INCLUDING DEFAULTS) ON COMMIT {self._on_commit}"
        )
        savepoint = None
        if len(bounds) > 1:
            savepoint = f"leaddb_bulk_{next(_savepoint_names)}"
            setup += f"; SAVEPOINT {savepoint}"
        await run(connection.execute, setup)
        try:
            defaults = bulk_defaults(self._shape.table, self._columns)
            if defaults is not None:
                now = None
                if NOW in defaults.values():
                    now = await run(connection.fetchval, _NOW.text)
                self._filled = {
                    name: now if value is NOW else value for name, value in defaults.items()
                }
            created = await self._insert(self._chunk(rows), bounds)
        except Exception:
            if savepoint is not None and self._bad_item:
                await run(connection.execute, f"ROLLBACK TO SAVEPOINT {savepoint}")
            raise
        if savepoint is not None:
            await run(connection.execute, f"RELEASE SAVEPOINT {savepoint}")
        return created

    async def _insert(self, chunk: _Chunk, bounds: list[tuple[int, int]]) -> list[Any]:
        repository, connection = self._repository, self._connection
        sql = self._insert_sql()
        args = self._audit_args
        method = connection.fetch if self._filled is None else connection.execute
        truncate = f"TRUNCATE {self._scratch_name}"
        columns = list(self._columns)
        if self._filled is not None and repository.audited:
            columns.extend((CHANGES_COLUMN, AUDIT_ID_COLUMN))
        created: list[Any] = []
        whole: list[list[dict[str, Any]]] = []
        last = len(bounds) - 1
        for index in range(len(bounds)):
            await self._copy(chunk.records, columns)
            inserting = asyncio.ensure_future(run(method, sql.text, *sql.args(args)))
            following: _Chunk | None = None
            try:
                # One turn of the loop puts the statement on the wire; the Python work below
                # then runs while PostgreSQL inserts.
                await asyncio.sleep(0)
                # What COPY sent is freed here, while PostgreSQL works, rather than between
                # the statements of the next chunk (about 1.5 ms for 2,000 rows).
                chunk.records = []
                if chunk.rows is not None:
                    whole.append(chunk.rows)
                if index < last:
                    following = self._chunk(self._values(*bounds[index + 1]))
                else:
                    # Nothing more to build: the collector's first run, over what the batch
                    # made (some 30 ms for 10,000 rows), has the whole last insert to hide in.
                    self._pause.end()
                    # The rows become models only now, while PostgreSQL inserts the last
                    # chunk: until then the collector's passes over the batch found a dict
                    # per row where it will find a model, its state and their sets.
                    adopt = repository._hydrator.adopt
                    created = [adopt(row) for rows in whole for row in rows]
            except BaseException as error:
                await _settle(inserting, cancel=isinstance(error, asyncio.CancelledError))
                raise
            written = await inserting
            if chunk.rows is None:
                created.extend(self._models(chunk, written))
            await run(connection.execute, truncate)
            repository._uow.record_created(self._shape.entity, chunk.ids)
            if self._on_progress is not None:
                self._on_progress(len(chunk.ids))
            if following is not None:
                chunk = following
        return created

    def _models(self, chunk: _Chunk, written: Any) -> list[Any]:
        # RETURNING promises no order; give the rows back in the caller's.
        by_id = {model.id: model for model in self._repository._hydrator.many(written)}
        return [by_id[id_] for id_ in chunk.ids]

    def _insert_sql(self) -> Positional:
        repository, columns, shape = self._repository, self._columns, self._shape
        audit = repository.audited
        scratch = statements.scratch_table(shape, self._scratch, AUDIT_ID_COLUMN, CHANGES_COLUMN)
        if self._filled is None:
            return repository._statement(
                ("insert_from", columns),
                lambda: statements.insert_from(shape, columns, scratch, audit=audit),
            )
        return repository._statement(
            ("insert_from_scratch", columns),
            lambda: statements.insert_from_scratch(
                shape,
                columns,
                scratch,
                audit=audit,
                changes_column=CHANGES_COLUMN,
                audit_id_column=AUDIT_ID_COLUMN,
            ),
        )

    async def _copy(self, records: Iterable[tuple[Any, ...]], columns: list[str]) -> None:
        connection, scratch = self._connection, self._scratch
        await run(
            lambda: connection.copy_records_to_table(
                scratch, schema_name="pg_temp", records=records, columns=columns
            )
        )


async def _settle(task: asyncio.Future[Any], *, cancel: bool) -> None:
    """End the insert in flight before an error goes up: the connection takes the next
    statement (the rollback to the savepoint, or the unit of work's) only once it has. Its own
    outcome is not the one being raised, so it is retrieved and dropped."""
    if cancel:
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait([task])
    if task.done() and not task.cancelled():
        task.exception()
