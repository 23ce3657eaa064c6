"""The generic repository's inserts: create one, and create many (COPY into a scratch table,
or one statement reading a JSON array for a few rows).

Each insert is one statement that also writes the audit rows (leaddb.repositories.statements)
and stamps the tenant from the unit of work.
"""

from __future__ import annotations

import functools
import typing
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import BaseModel
from uuid_utils.compat import uuid7

from leaddb.errors import (
    InvalidFilterError,
    InvalidValueError,
    TenantViolationError,
)
from leaddb.repositories import statements
from leaddb.repositories.guard import check_values
from leaddb.repositories.reads import ModelT, ReadRepository, _run

if TYPE_CHECKING:
    from leaddb.uow import Connection

CreateT = TypeVar("CreateT", bound=BaseModel)
UpdateT = TypeVar("UpdateT", bound=BaseModel)

COPY_THRESHOLD = 200


def _json_value(value: object) -> object:
    """What orjson cannot encode itself, as PostgreSQL's input functions read it."""
    if isinstance(value, Decimal | uuid.UUID):  # asyncpg's UUID subclass among them
        return str(value)
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_NOW = object()  # stands for the transaction's now() in a bulk insert's defaults


def _holds_model(annotation: object) -> bool:
    if annotation is Any or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return True
    return any(_holds_model(argument) for argument in typing.get_args(annotation))


@functools.cache
def _is_flat(schema: type[BaseModel]) -> bool:
    """Whether no field of ``schema`` can hold a model (decided once per schema class)."""
    return (
        not any(_holds_model(field.annotation) for field in schema.model_fields.values())
        and schema.model_config.get("extra") != "allow"
    )


def _field_values(payload: BaseModel, *, exclude_unset: bool) -> dict[str, Any]:
    """The payload's fields as a dict: ``model_dump`` without its cost for flat schemas.

    leaddb's schemas hold plain values (no nested models), for which ``__dict__`` is exactly what
    ``model_dump`` would build, at a twentieth of the cost; a nested model falls back to it.
    """
    if not _is_flat(type(payload)):
        return payload.model_dump(exclude_unset=exclude_unset)
    state = payload.__dict__
    if exclude_unset:
        return {name: state[name] for name in payload.model_fields_set if name in state}
    return dict(state)


class AppendOnlyRepository(ReadRepository[ModelT], Generic[ModelT, CreateT]):
    """Reads plus inserts: for rows that are never changed once written (audit, history)."""

    audited: ClassVar[bool] = True
    audit_deletes: ClassVar[bool] = True

    def prepare_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Turn schema fields into column values; the default keeps them as they are."""
        return values

    def _checked_values(self, payload: BaseModel, *, exclude_unset: bool) -> dict[str, Any]:
        values = _field_values(payload, exclude_unset=exclude_unset)
        tenant_field = values.pop("organization_id", None)
        if (
            self._shape.tenant_scoped
            and tenant_field is not None
            and tenant_field != self._uow.require_tenant()
        ):
            raise TenantViolationError(
                f"{self._shape.entity} payload names organization {tenant_field}, "
                "not this unit of work's tenant"
            )
        for immutable in ("id", "created_at", "updated_at", "version", "deleted_at"):
            values.pop(immutable, None)
        values = self.prepare_values(values)
        settings = self._uow.settings
        check_values(
            self._shape.entity,
            values,
            max_json_bytes=settings.max_json_bytes,
            max_json_depth=settings.max_json_depth,
        )
        unknown = values.keys() - self._shape.column_names
        if unknown:
            raise InvalidFilterError(f"{self._shape.entity} has no columns {sorted(unknown)}")
        return values

    def _action_and_actor(self, action: str) -> tuple[str, uuid.UUID | None]:
        return action, self._uow.actor_id

    def _written(self, *ids: uuid.UUID) -> None:
        self._uow.record_write(self._shape.entity, ids)

    # -- writes --------------------------------------------------------------------------

    def _insert_values(self, data: CreateT) -> dict[str, Any]:
        values = self._checked_values(data, exclude_unset=False)
        values["id"] = uuid7()
        if self._shape.tenant_scoped:
            values["organization_id"] = self._uow.require_tenant()
        return values

    async def create(self, data: CreateT) -> ModelT:
        """Insert one row (and its audit row, in the same statement)."""
        values = self._insert_values(data)
        columns = tuple(values)
        sql = self._statement(
            ("insert", columns),
            lambda: statements.insert_one(self._shape, columns, audit=self.audited),
        )
        args = list(values.values())
        if self.audited:
            args.extend(self._action_and_actor("created"))
        connection = await self._connection()
        row = await _run(connection.fetchrow, sql, *args)
        created: ModelT = self._hydrator.one(row)
        self._uow.record_created(self._shape.entity, (row["id"],))
        return created

    async def create_many(self, items: Sequence[CreateT]) -> list[ModelT]:
        """Insert many rows: COPY into a scratch table, then one INSERT ... SELECT (with audit).

        The round trips do not grow with the number of rows; a small batch is one statement
        that reads its rows from a JSON array parameter instead of the scratch table.
        """
        if not items:
            return []
        rows = [self._insert_values(item) for item in items]
        columns = tuple(rows[0])
        if any(tuple(row) != columns for row in rows):
            raise InvalidFilterError("create_many needs items of one schema")
        connection = await self._connection()
        if len(rows) < COPY_THRESHOLD:
            return await self._create_few(connection, rows, columns)
        scratch = f"_leaddb_{self.table.name}"
        table_name = self._shape.name
        await _run(
            connection.execute,
            f"CREATE TEMP TABLE IF NOT EXISTS {statements.quote(scratch)} "
            f"(LIKE {table_name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )
        records = [tuple(row.values()) for row in rows]
        await _run(
            lambda: connection.copy_records_to_table(
                scratch, records=records, columns=list(columns)
            )
        )
        args: list[Any] = list(self._action_and_actor("created")) if self.audited else []
        defaults = self._bulk_defaults(columns)
        created: list[ModelT]
        if defaults is None:
            sql = self._statement(
                ("insert_from", columns),
                lambda: statements.insert_from(
                    self._shape, columns, statements.quote(scratch), audit=self.audited
                ),
            )
            written = await _run(connection.fetch, sql, *args)
            created = self._hydrator.many(written)
        else:
            sql = self._statement(
                ("insert_from_scratch", columns),
                lambda: statements.insert_from_scratch(
                    self._shape, columns, statements.quote(scratch), audit=self.audited
                ),
            )
            now = await _run(connection.fetchval, sql, *args)
            # The new rows are what was sent plus the defaults, whose only moving part is the
            # transaction's now(): no need to send 10,000 rows back and parse them again.
            filled = {name: now if value is _NOW else value for name, value in defaults.items()}
            adopt = self._hydrator.adopt
            created = [adopt({**filled, **row}) for row in rows]
        await _run(connection.execute, f"TRUNCATE {statements.quote(scratch)}")
        self._uow.record_created(self._shape.entity, (row["id"] for row in rows))
        return created

    async def _create_few(
        self, connection: Connection, rows: list[dict[str, Any]], columns: tuple[str, ...]
    ) -> list[ModelT]:
        """Insert a few rows (and their audit rows) in one statement: below the size where the
        scratch table's three round trips pay off."""
        sql = self._statement(
            ("insert_json", columns),
            lambda: statements.insert_from(
                self._shape,
                columns,
                statements.json_rows_source(self._shape, 3 if self.audited else 1),
                audit=self.audited,
            ),
        )
        try:
            document = orjson.dumps(rows, default=_json_value, option=orjson.OPT_NAIVE_UTC)
        except TypeError as error:
            raise InvalidValueError(f"{self._shape.entity}: not storable: {error}") from None
        args: list[Any] = list(self._action_and_actor("created")) if self.audited else []
        written = self._hydrator.many(await _run(connection.fetch, sql, *args, document.decode()))
        # RETURNING promises no order; give the rows back in the caller's.
        by_id = {row.id: row for row in written}
        self._uow.record_created(self._shape.entity, by_id)
        return [by_id[row["id"]] for row in rows]

    def _bulk_defaults(self, columns: Sequence[str]) -> dict[str, Any] | None:
        """The values the database gives the columns a bulk insert leaves out, or None when one
        of them has a default that cannot be known without reading the rows back."""
        defaults: dict[str, Any] = {}
        for column in self.table.columns:
            if column.name in columns:
                continue
            default = column.server_default
            if default is None:
                if not column.nullable:
                    return None
                defaults[column.name] = None
            elif "now()" in str(getattr(default, "arg", "")):
                defaults[column.name] = _NOW
            elif column.name == "version":
                defaults[column.name] = 1
            else:
                return None
        return defaults
