"""The generic repository's writes: create, bulk create, update, delete, restore, upsert.

Each write is one statement that also writes the audit row (leaddb.repositories.statements),
checks the version where one is expected, and stamps the tenant from the unit of work.
"""

from __future__ import annotations

import functools
import typing
import uuid
from collections.abc import Collection, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import BaseModel
from uuid_utils.compat import uuid7

from leaddb.errors import (
    InvalidFilterError,
    InvalidValueError,
    StaleVersionError,
    TenantViolationError,
)
from leaddb.repositories import statements
from leaddb.repositories.guard import check_values
from leaddb.repositories.reads import ENTITY_OF_TABLE, ModelT, ReadRepository, _run, as_uuid

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


class Repository(AppendOnlyRepository[ModelT, CreateT], Generic[ModelT, CreateT, UpdateT]):
    """The whole generic repository: reads, inserts, and changes to existing rows.

    Subclasses set ``model`` (the table class); they add the entity's own queries and may
    override ``prepare_values`` to turn schema fields into columns (hashing, encryption).
    """

    async def update(
        self, id: uuid.UUID, patch: UpdateT, *, expected_version: int | None = None
    ) -> ModelT:
        """Change the fields set in ``patch``; with ``expected_version``, only if still current.

        One statement: it locks the row, checks the version, writes, bumps the version and
        writes the audit row with the changed fields before and after.
        """
        key = as_uuid(id)
        if key is None:
            raise self._not_found(id)
        values = self._checked_values(patch, exclude_unset=True)
        if not values:
            current = await self.get_one(key)
            self._check_version(key, expected_version, getattr(current, "version", None))
            return current
        check = expected_version is not None and self._shape.versioned
        fields = tuple(values)
        sql = self._statement(
            ("update", fields, check),
            lambda: statements.update_one(
                self._shape, fields, audit=self.audited, check_version=check
            ),
        )
        args: list[Any] = [*self._key(key), *values.values()]
        if check:
            args.append(expected_version)
        if self.audited:
            args.extend(self._action_and_actor("updated"))
        connection = await self._connection()
        row = await _run(connection.fetchrow, sql, *args)
        if row is None:
            raise self._not_found(key)
        data = dict(row)
        actual = data.pop("_current_version")
        if data["id"] is None:
            raise StaleVersionError(self._shape.entity, key, expected_version or 0, actual)
        updated: ModelT = self._hydrator.one(data)
        self._written(key)
        return updated

    def _check_version(self, key: uuid.UUID, expected: int | None, actual: int | None) -> None:
        if expected is not None and actual is not None and expected != actual:
            raise StaleVersionError(self._shape.entity, key, expected, actual)

    async def update_many(self, ids: Collection[uuid.UUID], patch: UpdateT) -> list[ModelT]:
        """Apply one patch to several rows in one statement (with an audit row for each);
        returns the updated rows in the order of ``ids``, missing and deleted ones left out."""
        keys = [key for key in dict.fromkeys(map(as_uuid, ids)) if key is not None]
        values = self._checked_values(patch, exclude_unset=True)
        if not keys:
            return []
        if not values:
            return await self.get_many(keys)
        fields = tuple(values)
        sql = self._statement(
            ("update_many", fields),
            lambda: statements.update_many(self._shape, fields, audit=self.audited),
        )
        tenant = [self._uow.require_tenant()] if self._shape.tenant_scoped else []
        args: list[Any] = [*tenant, keys, *values.values()]
        if self.audited:
            args.extend(self._action_and_actor("updated"))
        connection = await self._connection()
        written = self._hydrator.many(await _run(connection.fetch, sql, *args))
        by_id = {row.id: row for row in written}
        self._written(*by_id)
        return [by_id[key] for key in keys if key in by_id]

    async def delete(self, id: uuid.UUID, *, expected_version: int | None = None) -> None:
        """Soft-delete (set ``deleted_at``) where the entity has it; otherwise delete the row."""
        key = as_uuid(id)
        if key is None:
            raise self._not_found(id)
        if self._shape.soft_delete:
            await self._set_deleted(key, deleted=True, expected_version=expected_version)
            return
        check = expected_version is not None and self._shape.versioned
        audit = self.audited and self.audit_deletes
        sql = self._statement(
            ("delete", check),
            lambda: statements.delete_one(self._shape, audit=audit, check_version=check),
        )
        args: list[Any] = list(self._key(key))
        if check:
            args.append(expected_version)
        if audit:
            args.extend(self._action_and_actor("deleted"))
        connection = await self._connection()
        row = await _run(connection.fetchrow, sql, *args)
        if row is None:
            if check:
                actual = await _run(
                    connection.fetchval, statements.current_version(self._shape), *self._key(key)
                )
                if actual is not None:
                    raise StaleVersionError(self._shape.entity, key, expected_version or 0, actual)
            raise self._not_found(key)
        self._written(key)
        self._record_cascades(key)

    def _record_cascades(self, key: uuid.UUID) -> None:
        """Rows the database changed through ON DELETE CASCADE / SET NULL must not stay cached."""
        if not self._shape.tenant_scoped:
            self._uow.record_tenant_wipe(key)
            return
        for table in self.table.metadata.tables.values():
            for foreign_key in table.foreign_key_constraints:
                if foreign_key.referred_table is self.table and foreign_key.ondelete:
                    entity = ENTITY_OF_TABLE.get(table.name)
                    if entity is not None:
                        self._uow.record_bulk_write(entity)

    async def restore(self, id: uuid.UUID) -> ModelT:
        """Bring a soft-deleted row back."""
        key = as_uuid(id)
        if key is None or not self._shape.soft_delete:
            raise self._not_found(id)
        return await self._set_deleted(key, deleted=False, expected_version=None)

    async def _set_deleted(
        self, key: uuid.UUID, *, deleted: bool, expected_version: int | None
    ) -> ModelT:
        check = expected_version is not None and self._shape.versioned
        sql = self._statement(
            ("soft", deleted, check),
            lambda: statements.soft_delete(
                self._shape, deleted=deleted, audit=self.audited, check_version=check
            ),
        )
        args: list[Any] = list(self._key(key))
        if check:
            args.append(expected_version)
        if self.audited:
            args.extend(self._action_and_actor("deleted" if deleted else "restored"))
        connection = await self._connection()
        row = await _run(connection.fetchrow, sql, *args)
        if row is None:
            raise self._not_found(key)
        data = dict(row)
        actual = data.pop("_current_version")
        if data["id"] is None:
            raise StaleVersionError(self._shape.entity, key, expected_version or 0, actual)
        self._written(key)
        result: ModelT = self._hydrator.one(data)
        return result

    async def _upsert(self, data: CreateT, natural_key: Sequence[tuple[str, str]]) -> ModelT:
        """INSERT, or UPDATE the row with the same natural key (see ``statements.upsert_one``)."""
        values = self._insert_values(data)
        columns = tuple(values)
        key = tuple(natural_key)
        sql = self._statement(
            ("upsert", columns, key),
            lambda: statements.upsert_one(self._shape, columns, key, audit=self.audited),
        )
        args = list(values.values())
        if self.audited:
            args.append(self._uow.actor_id)
        connection = await self._connection()
        row = await _run(connection.fetchrow, sql, *args)
        result: ModelT = self._hydrator.one(row)
        self._written(row["id"])
        return result
