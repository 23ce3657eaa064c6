"""The SQL of the generic repository's reads by key and inserts, built once per table and per
column set (changes to existing rows: leaddb.sql.change_statements).

Every write is one statement: the row change and its audit row travel together in a
data-modifying CTE, so the audit trail costs no round trip of its own and can never be committed
without the change it describes (or the other way round). Each statement is a SQLAlchemy Core
construct over the models' tables, compiled once per shape to asyncpg's ``$n`` text
(``compile_positional``); every value is a parameter.
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
    Text,
    and_,
    any_,
    column,
    func,
    insert,
    null,
    select,
    table,
)
from sqlalchemy import (
    cast as cast_sql,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.selectable import Alias, HasCTE, NamedFromClause
from sqlalchemy.types import UserDefinedType

from leaddb.models.activity import ActivityLog
from leaddb.sql.compile import Positional, compile_positional, inline, param

_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]

# Columns that never enter an audit row, a cache entry or a log line.
SECRET_COLUMNS = frozenset({"password_hash", "credentials_encrypted"})

_AUDIT: Table = ActivityLog.__table__  # type: ignore[attr-defined]
ACTION_TYPE = _AUDIT.c.action.type


def quote(name: str) -> str:
    return _PREPARER.quote(name)


def aliased(source: Table, name: str) -> Alias:
    """``source`` under another name (``leads AS t``)."""
    # Table.alias() builds an Alias (SQLAlchemy's docs say so), typed as the wider
    # NamedFromClause, which update() and delete() do not take.
    return cast(Alias, source.alias(name))


def insert_target(source: Table) -> TableClause:
    """``source`` as the target of an INSERT: its columns without their Python-side defaults,
    which Core would otherwise add as parameters no caller passes (leaddb's callers send every
    value, the database fills the rest)."""
    return table(source.name, *(column(c.name, c.type) for c in source.columns))


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
        """The quoted table name, for the DDL of the COPY scratch table."""
        return quote(self.table.name)

    @property
    def columns(self) -> list[str]:
        return [column.name for column in self.table.columns]

    @functools.cached_property
    def target(self) -> TableClause:
        """The table as the target of an INSERT (``insert_target``)."""
        return insert_target(self.table)

    @functools.cached_property
    def column_names(self) -> frozenset[str]:
        return frozenset(self.table.c.keys())

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
        return aliased(self.table, name)

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
        changes: ColumnElement[Any],
        audit_id: ColumnElement[Any],
        action: ColumnElement[Any] | None = None,
        actor: ColumnElement[Any] | None = None,
    ) -> Insert:
        """INSERT one audit row per row of ``source``, in which ``written`` is the written row;
        ``action`` and ``actor`` are the statement's parameters of those names unless given.

        Statements that write one row take the audit row's id as a parameter: made in Python,
        it costs the server 20-35 us less per statement than ``leaddb_uuid7()`` (EXPLAIN
        ANALYZE of an update, medians of 300); statements of many rows keep the function.
        """
        organization = written.c.organization_id if self.tenant_scoped else written.c.id
        rows = select(
            organization,
            audit_id,
            audit_param("actor") if actor is None else actor,
            inline(self.entity),
            written.c.id,
            audit_param("action") if action is None else action,
            changes,
        ).select_from(source)
        names = ["organization_id", "id", "actor_user_id", "entity_type", "entity_id"]
        return insert(_AUDIT).from_select([*names, "action", "changes"], rows)

    def with_image_audit(self, written: HasCTE, image: str, audit_id: ColumnElement[Any]) -> HasCTE:
        """``written`` (RETURNING the row) with an audit row for each row it wrote, whose
        ``changes`` are ``{image: the row}``, secrets left out."""
        w = written.cte("w")
        log = self.audit_rows(
            w,
            w,
            changes=func.jsonb_build_object(inline(image), self.redacted(w)),
            audit_id=audit_id,
        ).cte("log")
        return select(*w.c).add_cte(log)


def audit_param(name: str) -> ColumnElement[Any]:
    """The audit row's parameters: ``action``, ``actor`` or ``audit_id``."""
    types = {
        "action": ACTION_TYPE,
        "actor": _AUDIT.c.actor_user_id.type,
        "audit_id": _AUDIT.c.id.type,
    }
    return param(name, types[name])


def select_by_key(shape: TableShape, *, include_deleted: bool) -> Positional:
    """The row by key (live only, unless ``include_deleted``); parameters: the key."""
    t = shape.alias("t")
    statement = select(*t.c).where(shape.key_clause(t))
    if not include_deleted and shape.soft_delete:
        statement = statement.where(t.c.deleted_at.is_(None))
    return compile_positional(statement, shape.key_names)


def select_many_by_key(shape: TableShape, *, include_deleted: bool) -> Positional:
    """The rows whose ids are in an array; parameters: the tenant (when tenant-scoped), the
    id array."""
    t = shape.alias("t")
    key = t.c.id == any_(param("ids", ARRAY(t.c.id.type)))
    parameters = ["ids"]
    if shape.tenant_scoped:
        key = and_(t.c.organization_id == param("tenant", t.c.organization_id.type), key)
        parameters.insert(0, "tenant")
    statement = select(*t.c).where(key)
    if not include_deleted and shape.soft_delete:
        statement = statement.where(t.c.deleted_at.is_(None))
    return compile_positional(statement, parameters)


def insert_one(
    shape: TableShape,
    columns: Sequence[str],
    *,
    audit: bool,
    image_from: Sequence[str] | None = None,
) -> Positional:
    """INSERT one row. Parameters: the values in ``columns`` order, then action, actor and the
    audit row's id.

    With ``image_from``, one more parameter: the audit image of the new row as JSON text, built
    by the caller from what it sent and the defaults it knows; the columns named in
    ``image_from`` (the ones defaulting to ``now()``) are added from the new row. Otherwise
    the image is ``to_jsonb`` of the new row, which costs PostgreSQL several times more.
    """
    target = shape.target
    values = {name: param(f"c{index}", target.c[name].type) for index, name in enumerate(columns)}
    parameters = [f"c{index}" for index in range(len(columns))]
    written = insert(target).values(values).returning(*target.c)
    if not audit:
        return compile_positional(written, parameters)
    w = written.cte("w")
    image: ColumnElement[Any]
    if image_from is None:
        image = shape.redacted(w)
    else:
        sent = cast_sql(param("image", Text()), JSONB)
        added = func.jsonb_build_object(*(e for n in image_from for e in (inline(n), w.c[n])))
        image = sent.op("||", return_type=JSONB)(added)
    log = shape.audit_rows(
        w,
        w,
        changes=func.jsonb_build_object(inline("after"), image),
        audit_id=audit_param("audit_id"),
    ).cte("log")
    parameters += ["action", "actor", "audit_id"]
    if image_from is not None:
        parameters.append("image")
    return compile_positional(select(*w.c).add_cte(log), parameters)


class _RowType(UserDefinedType[Any]):
    """The composite type of a table's rows (``NULL::leads`` tells
    ``jsonb_populate_recordset`` what to make of each object)."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **kw: Any) -> str:
        return quote(self.name)


def json_rows(shape: TableShape) -> FromClause:
    """The rows of ``shape``'s table read from a JSON array of objects: the parameter ``rows``
    (text)."""
    rows = func.jsonb_populate_recordset(
        cast_sql(null(), _RowType(shape.table.name)), cast_sql(param("rows", Text()), JSONB)
    )
    return rows.table_valued(*(column(c.name, c.type) for c in shape.table.columns)).alias("r")


def scratch_table(shape: TableShape, name: str, *extra: str) -> TableClause:
    """The COPY scratch table ``pg_temp.<name>``: the table's columns and ``extra`` ones."""
    columns = [column(c.name, c.type) for c in shape.table.columns]
    columns += [column(name_) for name_ in extra]
    return table(name, *columns, schema="pg_temp")


def insert_from(
    shape: TableShape,
    columns: Sequence[str],
    source: FromClause,
    *,
    audit: bool,
    source_parameters: Sequence[str] = (),
) -> Positional:
    """INSERT the rows of ``source`` (the scratch table, or ``json_rows``) returning them.
    Parameters: action and actor (when audited), then ``source_parameters``, those of
    ``source`` (``json_rows``: ``("rows",)``)."""
    target = shape.target
    rows = select(*(source.c[name] for name in columns))
    written = insert(target).from_select(list(columns), rows).returning(*target.c)
    parameters = list(source_parameters)
    if not audit:
        return compile_positional(written, parameters)
    audited = shape.with_image_audit(written, "after", func.leaddb_uuid7())
    return compile_positional(audited, ["action", "actor", *parameters])


def insert_from_scratch(
    shape: TableShape,
    columns: Sequence[str],
    scratch: TableClause,
    *,
    audit: bool,
    changes_column: str,
    audit_id_column: str,
) -> Positional:
    """INSERT the rows of ``scratch`` (shaped like the table, defaults included) without
    sending them back; the audit rows are made from ``scratch`` in the same statement, their
    ``changes`` and ids read from its columns ``changes_column`` and ``audit_id_column``
    (built by the caller). Parameters: action and actor (when audited)."""
    rows = select(*(scratch.c[name] for name in columns))
    written = insert(shape.target).from_select(list(columns), rows).cte("w")
    statement = select(inline(1)).add_cte(written)
    if not audit:
        return compile_positional(statement, [])
    w = scratch.alias("w")
    log = shape.audit_rows(
        w,
        w,
        changes=w.c[changes_column],
        audit_id=w.c[audit_id_column],
    ).cte("log")
    return compile_positional(statement.add_cte(log), ["action", "actor"])


def current_version(shape: TableShape) -> Positional:
    """The version of a row by key, live or not; parameters: the key."""
    t = shape.alias("t")
    return compile_positional(select(t.c.version).where(shape.key_clause(t)), shape.key_names)
