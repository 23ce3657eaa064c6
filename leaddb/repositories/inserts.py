"""The generic repository's inserts: create one, and create many (one statement reading a JSON
array for a few rows; COPY in chunks for more, in leaddb.repositories.bulk).

Each insert is one statement that also writes the audit rows (leaddb.sql.statements)
and stamps the tenant from the unit of work.
"""

from __future__ import annotations

import functools
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import BaseModel

from leaddb.connections.driver_errors import run
from leaddb.errors import (
    InvalidFilterError,
    InvalidValueError,
    TenantViolationError,
)
from leaddb.models.base import new_id
from leaddb.repositories.bulk import NOW, CopiedInsert, audit_image, bulk_defaults
from leaddb.repositories.guard import check_values
from leaddb.repositories.reads import ModelT, ReadRepository
from leaddb.rows.jsontext import pg_json_default
from leaddb.sql import statements
from leaddb.sql.compile import Positional

if TYPE_CHECKING:
    from leaddb.repositories.work import Connection

CreateT = TypeVar("CreateT", bound=BaseModel)
UpdateT = TypeVar("UpdateT", bound=BaseModel)

COPY_THRESHOLD = 200


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


_IMMUTABLE = ("id", "created_at", "updated_at", "version", "deleted_at")


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


@functools.cache
def _insert_plan(
    shape: statements.TableShape, columns: tuple[str, ...], audited: bool
) -> tuple[Positional, dict[str, Any] | None]:
    """create()'s statement for these columns, and the constant defaults of the others when the
    audit image is built in Python (None: the statement builds it with ``to_jsonb``)."""
    defaults = bulk_defaults(shape.table, columns) if audited else None
    if defaults is None:
        return statements.insert_one(shape, columns, audit=audited), None
    from_row = [name for name, value in defaults.items() if value is NOW]
    constants = {name: value for name, value in defaults.items() if value is not NOW}
    sql = statements.insert_one(shape, columns, audit=True, image_from=from_row)
    return sql, constants


@functools.cache
def _plain_fields(
    schema: type[BaseModel], shape: statements.TableShape, copies_values: bool
) -> tuple[str, ...] | None:
    if not copies_values or not _is_flat(schema):
        return None
    fields = tuple(schema.model_fields)
    if {"organization_id", *_IMMUTABLE} & set(fields) or not shape.column_names.issuperset(fields):
        return None
    return fields


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
        for immutable in _IMMUTABLE:
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

    def _audit_args(self, action: str) -> tuple[str, uuid.UUID | None, uuid.UUID]:
        """Action, actor and a new audit row id: the parameters of a one-row statement."""
        return action, self._uow.actor_id, new_id()

    def _insert_audit_args(self) -> list[Any]:
        """The parameters an insert of many rows takes before them: the audit rows' action and
        actor (none when the entity is not audited)."""
        return list(self._action_and_actor("created")) if self.audited else []

    def _plain_fields(self, schema: type[Any]) -> tuple[str, ...] | None:
        """The fields of ``schema`` when ``_insert_values`` of its instances only copies their
        ``__dict__``, checks it and adds the id and the tenant (see CopiedInsert), else None."""
        if not issubclass(schema, BaseModel):
            return None
        kind = type(self)
        base = AppendOnlyRepository
        return _plain_fields(
            schema,
            self._shape,
            kind.prepare_values is base.prepare_values
            and kind._checked_values is base._checked_values
            and kind._insert_values is base._insert_values,
        )

    def _written(self, *ids: uuid.UUID) -> None:
        self._uow.record_write(self._shape.entity, ids)

    # -- writes --------------------------------------------------------------------------

    def _insert_values(self, data: CreateT) -> dict[str, Any]:
        values = self._checked_values(data, exclude_unset=False)
        values["id"] = new_id()
        if self._shape.tenant_scoped:
            values["organization_id"] = self._uow.require_tenant()
        return values

    async def create(self, data: CreateT) -> ModelT:
        """Insert one row (and its audit row, in the same statement)."""
        values = self._insert_values(data)
        columns = tuple(values)
        sql, constants = _insert_plan(self._shape, columns, self.audited)
        args = list(values.values())
        if self.audited:
            args.extend(self._audit_args("created"))
            if constants is not None:
                args.append(audit_image({**constants, **values}).decode())
        connection = await self._connection()
        row = await run(connection.fetchrow, sql.text, *sql.args(args))
        created: ModelT = self._hydrator.one(row)
        self._uow.record_created(self._shape.entity, (row["id"],))
        return created

    async def create_many(
        self, items: Sequence[CreateT], *, on_progress: Callable[[int], None] | None = None
    ) -> list[ModelT]:
        """Insert many rows (each with its audit row); returned in the caller's order.

        The round trips do not grow with the number of rows: a few rows are one statement
        reading them from a JSON array parameter; more go through COPY into a scratch table in
        chunks (leaddb.repositories.bulk), all or none of them. ``on_progress`` is called with
        the number of rows of each chunk PostgreSQL has inserted (not yet committed), for a
        progress bar.
        """
        if on_progress is not None and not callable(on_progress):
            raise InvalidValueError(f"on_progress must be callable, not {on_progress!r}")
        if not items:
            return []
        connection = await self._connection()
        if len(items) >= COPY_THRESHOLD:
            schema = type(items[0])
            plain = self._plain_fields(schema)
            settings = self._uow.settings
            return await CopiedInsert(
                self,
                connection,
                items,
                values=self._insert_values,
                audit_args=self._insert_audit_args(),
                on_progress=on_progress,
                plain=None if plain is None else (schema, plain),
                check=functools.partial(
                    check_values,
                    self._shape.entity,
                    max_json_bytes=settings.max_json_bytes,
                    max_json_depth=settings.max_json_depth,
                ),
            ).run()
        rows = [self._insert_values(item) for item in items]
        columns = tuple(rows[0])
        if any(tuple(row) != columns for row in rows):
            raise InvalidFilterError("create_many needs items of one schema")
        created = await self._create_few(connection, rows, columns)
        if on_progress is not None:
            on_progress(len(created))
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
                statements.json_rows(self._shape),
                audit=self.audited,
                source_parameters=("rows",),
            ),
        )
        try:
            document = orjson.dumps(rows, default=pg_json_default, option=orjson.OPT_NAIVE_UTC)
        except TypeError as error:
            raise InvalidValueError(f"{self._shape.entity}: not storable: {error}") from None
        args = self._insert_audit_args()
        args.append(document.decode())
        written = self._hydrator.many(await run(connection.fetch, sql.text, *sql.args(args)))
        # RETURNING promises no order; give the rows back in the caller's.
        by_id = {row.id: row for row in written}
        self._uow.record_created(self._shape.entity, by_id)
        return [by_id[row["id"]] for row in rows]
