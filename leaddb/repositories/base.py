"""The generic repository's changes to existing rows: update, update many, delete, restore,
upsert (inserts are leaddb.repositories.inserts).

Each write is one statement that also writes the audit row
(leaddb.sql.change_statements), checks the version where one is expected, and stamps
the tenant from the unit of work.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any, Generic

from leaddb.connections.driver_errors import run
from leaddb.errors import StaleVersionError
from leaddb.models.base import new_id
from leaddb.repositories.inserts import AppendOnlyRepository, CreateT, UpdateT
from leaddb.repositories.reads import ENTITY_OF_TABLE, ModelT, as_uuid
from leaddb.sql import change_statements, statements

__all__ = ["AppendOnlyRepository", "CreateT", "Repository", "UpdateT"]


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
        writes the audit row with the changed fields before and after. A patch that changes
        nothing (every field already holds its value) writes nothing: the same version, no
        audit row, nothing for the cache to forget.
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
            lambda: change_statements.update_one(
                self._shape, fields, audit=self.audited, check_version=check
            ),
        )
        args: list[Any] = [*self._key(key), *values.values()]
        if check:
            args.append(expected_version)
        if self.audited:
            args.extend(self._audit_args("updated"))
        connection = await self._connection()
        row = await run(connection.fetchrow, sql.text, *sql.args(args))
        return self._changed_row(key, row, expected_version)

    def _changed_row(self, key: uuid.UUID, row: Any, expected_version: int | None) -> ModelT:
        """The model of a ``change_statements._locked_update`` result, recording the write."""
        if row is None:
            raise self._not_found(key)
        data = dict(row)
        actual = data.pop("_current_version")
        written, unchanged = data.pop("_written"), data.pop("_unchanged")
        if not written and not unchanged:
            raise StaleVersionError(self._shape.entity, key, expected_version or 0, actual)
        result: ModelT = self._hydrator.one(data)
        if written:
            self._written(key)
        return result

    def _check_version(self, key: uuid.UUID, expected: int | None, actual: int | None) -> None:
        if expected is not None and actual is not None and expected != actual:
            raise StaleVersionError(self._shape.entity, key, expected, actual)

    async def update_many(self, ids: Collection[uuid.UUID], patch: UpdateT) -> list[ModelT]:
        """Apply one patch to several rows in one statement (with an audit row for each row it
        changes: one that holds the values already is left as it is); returns the rows in the
        order of ``ids``, missing and deleted ones left out."""
        keys = [key for key in dict.fromkeys(map(as_uuid, ids)) if key is not None]
        values = self._checked_values(patch, exclude_unset=True)
        if not keys:
            return []
        if not values:
            return await self.get_many(keys)
        fields = tuple(values)
        sql = self._statement(
            ("update_many", fields),
            lambda: change_statements.update_many(self._shape, fields, audit=self.audited),
        )
        tenant = [self._uow.require_tenant()] if self._shape.tenant_scoped else []
        args: list[Any] = [*tenant, keys, *values.values()]
        if self.audited:
            args.extend(self._action_and_actor("updated"))
        connection = await self._connection()
        rows = [dict(row) for row in await run(connection.fetch, sql.text, *sql.args(args))]
        changed = []
        for row in rows:
            del row["_unchanged"]
            if row.pop("_written"):
                changed.append(row["id"])
        self._written(*changed)
        by_id = {model.id: model for model in self._hydrator.many(rows)}
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
            lambda: change_statements.delete_one(self._shape, audit=audit, check_version=check),
        )
        args: list[Any] = list(self._key(key))
        if check:
            args.append(expected_version)
        if audit:
            args.extend(self._audit_args("deleted"))
        connection = await self._connection()
        row = await run(connection.fetchrow, sql.text, *sql.args(args))
        if row is None:
            if check:
                version = self._statement(
                    "current_version", lambda: statements.current_version(self._shape)
                )
                actual = await run(connection.fetchval, version.text, *version.args(self._key(key)))
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
            lambda: change_statements.soft_delete(
                self._shape, deleted=deleted, audit=self.audited, check_version=check
            ),
        )
        args: list[Any] = list(self._key(key))
        if check:
            args.append(expected_version)
        if self.audited:
            args.extend(self._audit_args("deleted" if deleted else "restored"))
        connection = await self._connection()
        row = await run(connection.fetchrow, sql.text, *sql.args(args))
        return self._changed_row(key, row, expected_version)

    async def _upsert(self, data: CreateT, natural_key: Sequence[tuple[str, str | None]]) -> ModelT:
        """INSERT, or UPDATE the row with the same natural key with the fields set in ``data``
        (see ``change_statements.upsert_one``); a row that holds them already is not written."""
        values = self._insert_values(data)
        columns = tuple(values)
        updated = tuple(name for name in self._checked_values(data, exclude_unset=True))
        key = tuple(natural_key)
        sql = self._statement(
            ("upsert", columns, key, updated),
            lambda: change_statements.upsert_one(
                self._shape, columns, key, audit=self.audited, updated=updated
            ),
        )
        args = list(values.values())
        if self.audited:
            # The statement says 'created' or 'updated' itself: no action parameter.
            args.extend((self._uow.actor_id, new_id()))
        connection = await self._connection()
        ordered = sql.args(args)
        row = await run(connection.fetchrow, sql.text, *ordered)
        if row is None:
            # The row that conflicted was committed after the statement's snapshot: a second
            # statement sees it (and the first wrote nothing).
            row = await run(connection.fetchrow, sql.text, *ordered)
        data_row = dict(row)
        written = data_row.pop("_written")
        result: ModelT = self._hydrator.one(data_row)
        if written:
            self._written(data_row["id"])
        return result
