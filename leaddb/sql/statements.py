"""The SQL of the generic repository's reads by key and inserts, built once per table and per
column set (changes to existing rows: leaddb.sql.change_statements).

Every write is one statement: the row change and its audit row travel together in a
data-modifying CTE, so the audit trail costs no round trip of its own and can never be committed
without the change it describes (or the other way round). Identifiers come from the models'
metadata and are quoted; every value is a ``$n`` parameter.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Insert,
    Table,
    TableClause,
    and_,
    column,
    func,
    insert,
    select,
    table,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.selectable import Alias, NamedFromClause

from leaddb.models.activity import ActivityLog
from leaddb.sql.compile import Positional, compile_positional, inline, param

_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]

# Columns that never enter an audit row, a cache entry or a log line.
SECRET_COLUMNS = frozenset({"password_hash", "credentials_encrypted"})

AUDIT_TABLE = "activity_logs"
_AUDIT: Table = ActivityLog.__table__  # type: ignore[attr-defined]
ACTION_TYPE = _AUDIT.c.action.type


def quote(name: str) -> str:
    return _PREPARER.quote(name)


@dataclass(frozen=True)
class TableShape:
    """What the generic repository needs to know about one table."""

    table: Table
    tenant_scoped: bool
    soft_delete: bool
    versioned: bool
    has_updated_at: bool
    entity: str

    @property
    def name(self) -> str:
        return quote(self.table.name)

    @property
    def columns(self) -> list[str]:
        return [column.name for column in self.table.columns]

    @functools.cached_property
    def target(self) -> TableClause:
        """The table as the target of an INSERT: its columns without their Python-side
        defaults, which Core would otherwise add as parameters no caller passes (leaddb's
        callers send every value, the database fills the rest)."""
        return table(self.table.name, *(column(c.name, c.type) for c in self.table.columns))

    @functools.cached_property
    def column_names(self) -> frozenset[str]:
        return frozenset(self.table.c.keys())

    def select_list(self, alias: str | None = None) -> str:
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + quote(name) for name in self.columns)

    def redacted_json(self, alias: str) -> str:
        """``to_jsonb`` of a row without its secret columns."""
        secrets = [name for name in self.columns if name in SECRET_COLUMNS]
        expression = f"to_jsonb({alias})"
        for name in secrets:
            expression += f" - '{name}'"
        return expression

    def key_condition(self, alias: str, first_param: int) -> str:
        """``organization_id = $n AND id = $n+1`` (just ``id`` for organizations)."""
        if self.tenant_scoped:
            return f"{alias}.organization_id = ${first_param} AND {alias}.id = ${first_param + 1}"
        return f"{alias}.id = ${first_param}"

    @property
    def key_params(self) -> int:
        return 2 if self.tenant_scoped else 1

    @property
    def key_names(self) -> tuple[str, ...]:
        """The parameters of a key, in the order callers pass them (``_key``)."""
        return ("tenant", "id") if self.tenant_scoped else ("id",)

    def key_clause(self, alias: FromClause) -> ColumnElement[bool]:
        """``organization_id = :tenant AND id = :id`` (just ``id`` for organizations)."""
        if self.tenant_scoped:
            return and_(
                alias.c.organization_id == param("tenant", alias.c.organization_id.type),
                alias.c.id == param("id", alias.c.id.type),
            )
        return alias.c.id == param("id", alias.c.id.type)

    def alias(self, name: str) -> Alias:
        """The table under another name (``leads AS t``)."""
        # Table.alias() builds an Alias (SQLAlchemy's docs say so), typed as the wider
        # NamedFromClause, which update() and delete() do not take.
        return cast(Alias, self.table.alias(name))

    def redacted(self, alias: NamedFromClause) -> ColumnElement[Any]:
        """``to_jsonb`` of a whole row of ``alias`` without its secret columns."""
        expression: ColumnElement[Any] = func.to_jsonb(alias.table_valued(), type_=JSONB)
        for name in self.columns:
            if name in SECRET_COLUMNS:
                expression = expression.op("-", return_type=JSONB)(inline(name))
        return expression

    def audit_rows(
        self,
        written: FromClause,
        source: FromClause,
        *,
        action: ColumnElement[Any],
        actor: ColumnElement[Any],
        changes: ColumnElement[Any],
        audit_id: ColumnElement[Any],
    ) -> Insert:
        """INSERT one audit row per row of ``source``, in which ``written`` is the written row.

        Statements that write one row take the audit row's id as a parameter: made in Python,
        it costs the server 20-35 us less per statement than ``leaddb_uuid7()`` (EXPLAIN
        ANALYZE of an update, medians of 300); statements of many rows keep the function.
        """
        organization = written.c.organization_id if self.tenant_scoped else written.c.id
        rows = select(
            organization,
            audit_id,
            actor,
            inline(self.entity),
            written.c.id,
            action,
            changes,
        ).select_from(source)
        names = ["organization_id", "id", "actor_user_id", "entity_type", "entity_id"]
        return insert(_AUDIT).from_select([*names, "action", "changes"], rows)


def audit_param(name: str) -> ColumnElement[Any]:
    """The audit row's parameters: ``action``, ``actor`` or ``audit_id``."""
    types = {
        "action": ACTION_TYPE,
        "actor": _AUDIT.c.actor_user_id.type,
        "audit_id": _AUDIT.c.id.type,
    }
    return param(name, types[name])


def audit_insert(
    shape: TableShape,
    source: str,
    action_param: int,
    actor_param: int,
    changes_sql: str,
    id_sql: str = "leaddb_uuid7()",
) -> str:
    """INSERT one audit row per row of ``source`` (whose written row is aliased ``w``).

    Statements that write one row take the audit row's id as a parameter (``id_sql`` names it):
    made in Python, it costs the server 20-35 us less per statement than ``leaddb_uuid7()``
    (EXPLAIN ANALYZE of an update, medians of 300); statements of many rows keep the function.
    """
    organization = "w.organization_id" if shape.tenant_scoped else "w.id"
    return (
        f"INSERT INTO {quote(AUDIT_TABLE)} (organization_id, id, actor_user_id, entity_type, "
        f"entity_id, action, changes) "
        f"SELECT {organization}, {id_sql}, ${actor_param}, '{shape.entity}', "
        f"w.id, ${action_param}, {changes_sql} FROM {source}"
    )


def select_by_key(shape: TableShape, *, include_deleted: bool) -> str:
    live = "" if include_deleted or not shape.soft_delete else " AND t.deleted_at IS NULL"
    return (
        f"SELECT {shape.select_list('t')} FROM {shape.name} t "
        f"WHERE {shape.key_condition('t', 1)}{live}"
    )


def select_many_by_key(shape: TableShape, *, include_deleted: bool) -> str:
    live = "" if include_deleted or not shape.soft_delete else " AND t.deleted_at IS NULL"
    tenant = "t.organization_id = $1 AND " if shape.tenant_scoped else ""
    ids = "$2" if shape.tenant_scoped else "$1"
    return (
        f"SELECT {shape.select_list('t')} FROM {shape.name} t "
        f"WHERE {tenant}t.id = ANY({ids}::uuid[]){live}"
    )


def insert_one(
    shape: TableShape,
    columns: Sequence[str],
    *,
    audit: bool,
    image_from: Sequence[str] | None = None,
) -> str:
    """INSERT one row (parameters in ``columns`` order), then ``$n+1`` action, ``$n+2`` actor,
    ``$n+3`` the audit row's id.

    With ``image_from``, ``$n+4`` is the audit image of the new row as JSON text, built by the
    caller from what it sent and the defaults it knows; the columns named in ``image_from`` (the
    ones defaulting to ``now()``) are added from the new row. Otherwise the image is
    ``to_jsonb`` of the new row, which costs PostgreSQL several times more.
    """
    names = ", ".join(quote(name) for name in columns)
    values = ", ".join(f"${index}" for index in range(1, len(columns) + 1))
    written = (
        f"INSERT INTO {shape.name} ({names}) VALUES ({values}) RETURNING {shape.select_list()}"
    )
    if not audit:
        return written
    n = len(columns)
    if image_from is None:
        image = shape.redacted_json("w")
    else:
        added = ", ".join(f"'{name}', w.{quote(name)}" for name in image_from)
        image = f"${n + 4}::text::jsonb || jsonb_build_object({added})"
    changes = f"jsonb_build_object('after', {image})"
    log = audit_insert(shape, "w", n + 1, n + 2, changes, id_sql=f"${n + 3}::uuid")
    return f"WITH w AS ({written}), log AS ({log}) SELECT * FROM w"


def insert_from(shape: TableShape, columns: Sequence[str], source: str, *, audit: bool) -> str:
    """INSERT the rows of ``source`` (a temp table); ``$1`` action, ``$2`` actor."""
    names = ", ".join(quote(name) for name in columns)
    written = (
        f"INSERT INTO {shape.name} ({names}) SELECT {names} FROM {source} "
        f"RETURNING {shape.select_list()}"
    )
    if not audit:
        return written
    changes = f"jsonb_build_object('after', {shape.redacted_json('w')})"
    log = audit_insert(shape, "w", 1, 2, changes)
    return f"WITH w AS ({written}), log AS ({log}) SELECT * FROM w"


def json_rows_source(shape: TableShape, param: int) -> str:
    """Rows of ``shape``'s table read from a JSON array of objects, parameter ``$param`` (text)."""
    return f"jsonb_populate_recordset(NULL::{shape.name}, ${param}::text::jsonb)"


def insert_from_scratch(
    shape: TableShape,
    columns: Sequence[str],
    source: str,
    *,
    audit: bool,
    changes_column: str,
    audit_id_column: str,
) -> str:
    """INSERT the rows of ``source`` (a temp table shaped like the table, defaults included)
    without sending them back; the audit rows are made from ``source`` in the same statement,
    their ``changes`` and ids read from its columns ``changes_column`` and ``audit_id_column``
    (built by the caller). Parameters: ``$1`` action, ``$2`` actor."""
    names = ", ".join(quote(name) for name in columns)
    parts = [f"w AS (INSERT INTO {shape.name} ({names}) SELECT {names} FROM {source})"]
    if audit:
        changes, audit_id = f"w.{quote(changes_column)}", f"w.{quote(audit_id_column)}"
        log = audit_insert(shape, f"{source} w", 1, 2, changes, id_sql=audit_id)
        parts.append(f"log AS ({log})")
    return f"WITH {', '.join(parts)} SELECT 1"


def current_version(shape: TableShape) -> Positional:
    """The version of a row by key, live or not; parameters: the key."""
    t = shape.alias("t")
    return compile_positional(select(t.c.version).where(shape.key_clause(t)), shape.key_names)
