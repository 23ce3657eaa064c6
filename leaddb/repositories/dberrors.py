"""Turning asyncpg's exceptions into leaddb's errors."""

from __future__ import annotations

import re

import asyncpg
from asyncpg import exceptions as pgerr
from asyncpg.exceptions import _base as pgbase

from leaddb.errors import (
    MIGRATE_HINT,
    ConflictError,
    ConnectionFailedError,
    ConstraintViolationError,
    InvalidValueError,
    LeadDBError,
    RetryableError,
    SchemaNotMigratedError,
    StatementTimeoutError,
    TransactionFailedError,
)

# What a statement of leaddb's meets on a database that was never migrated, or is behind: a
# missing table (42P01), column (42703), type (42704) or function (42883, leaddb_uuid7 and co).
_SCHEMA_MISSING = (
    pgerr.UndefinedTableError,
    pgerr.UndefinedColumnError,
    pgerr.UndefinedObjectError,
    pgerr.UndefinedFunctionError,
)

# "Key (organization_id, lower(email::text))=(…) already exists." -> the key's column list.
_KEY_COLUMNS = re.compile(r"Key \((?P<columns>.+?)\)=")
_FUNCTION_CALL = re.compile(r"^\w+\((?P<inner>[^)]*)\)$")


def key_fields(detail: str | None) -> str | None:
    """The caller-facing fields of a key in an error detail, without the tenant column."""
    match = _KEY_COLUMNS.search(detail or "")
    if match is None:
        return None
    fields = []
    for raw in match.group("columns").split(", "):
        column = raw.strip()
        call = _FUNCTION_CALL.match(column)
        if call is not None:
            column = call.group("inner")
        column = column.split("::", 1)[0].strip()
        if column != "organization_id":
            fields.append(column)
    return ", ".join(fields) or None


def _constraint_fields() -> dict[str, str]:
    """Constraint and unique-index names -> their caller-facing fields, from the models.

    Under row-level security PostgreSQL leaves the ``Key (...)=(...)`` detail out of errors
    (it would show values the role may not read), so the field comes from the name instead.
    """
    from sqlalchemy import Column, ForeignKeyConstraint, Index, UniqueConstraint
    from sqlalchemy.sql import visitors

    from leaddb.models import metadata

    found: dict[str, str] = {}
    for table in metadata.tables.values():
        items: list[object] = [*table.indexes, *table.constraints]
        for item in items:
            if not isinstance(item, Index | UniqueConstraint | ForeignKeyConstraint):
                continue
            name = item.name
            if not isinstance(name, str):
                continue
            columns: list[str] = []
            expressions = item.expressions if isinstance(item, Index) else list(item.columns)
            for expression in expressions:
                for element in visitors.iterate(expression):  # type: ignore[arg-type]
                    if isinstance(element, Column) and element.name not in columns:
                        columns.append(element.name)
            fields = [column for column in columns if column != "organization_id"]
            if fields:
                found[name] = ", ".join(fields)
    return found


_FIELDS_BY_CONSTRAINT: dict[str, str] | None = None


def constraint_fields(constraint: str | None) -> str | None:
    global _FIELDS_BY_CONSTRAINT
    if constraint is None:
        return None
    if _FIELDS_BY_CONSTRAINT is None:
        _FIELDS_BY_CONSTRAINT = _constraint_fields()
    return _FIELDS_BY_CONSTRAINT.get(constraint)


def translate(error: BaseException) -> LeadDBError | None:
    """The leaddb error for a driver exception, or None when it is not a database error."""
    if isinstance(error, pgerr.UniqueViolationError):
        field = key_fields(error.detail) or constraint_fields(error.constraint_name)
        return ConflictError(
            f"{error.table_name or 'row'}: {field or error.constraint_name} already exists",
            field=field,
            constraint=error.constraint_name,
        )
    if isinstance(error, pgerr.ForeignKeyViolationError):
        field = key_fields(error.detail) or constraint_fields(error.constraint_name)
        return ConflictError(
            f"{error.table_name}: {field or error.constraint_name} refers to a row that does not "
            "exist in this organization, or is still referenced",
            field=field,
            constraint=error.constraint_name,
        )
    if isinstance(error, pgerr.CheckViolationError | pgerr.NotNullViolationError):
        name = error.constraint_name or getattr(error, "column_name", None)
        return ConstraintViolationError(
            f"{error.table_name}: value refused by {name}", constraint=name
        )
    if isinstance(error, pgerr.SerializationError | pgerr.DeadlockDetectedError):
        return RetryableError(f"transaction conflict, retry the unit of work: {error}")
    if isinstance(error, pgerr.QueryCanceledError):
        return StatementTimeoutError(f"statement cancelled: {error}")
    if isinstance(error, pgerr.DataError):
        return ConstraintViolationError(f"value refused by PostgreSQL: {error}")
    if isinstance(error, pgbase.DataError):
        # asyncpg refused to encode an argument (a value of the wrong type for its column).
        return InvalidValueError(f"a value cannot be sent to PostgreSQL: {error}")
    if isinstance(error, asyncpg.PostgresConnectionError | pgerr.ConnectionDoesNotExistError):
        return ConnectionFailedError(f"connection to PostgreSQL lost: {error}")
    if isinstance(error, asyncpg.InterfaceError | OSError | ConnectionError):
        return ConnectionFailedError(f"connection to PostgreSQL failed: {error}")
    if isinstance(error, pgerr.OperatorInterventionError):
        # The server is shutting down or starting up, or ended the session (57P01-57P05).
        return ConnectionFailedError(f"PostgreSQL ended or refused the connection: {error}")
    if isinstance(error, asyncpg.InternalClientError):
        # asyncpg's protocol state is out of step with the server: a statement sent in the
        # moment between a server's FATAL message (a shutdown) and the socket closing.
        return ConnectionFailedError(f"connection to PostgreSQL is unusable: {error}")
    if isinstance(error, pgerr.InFailedSQLTransactionError):
        return TransactionFailedError(
            "an earlier statement of this unit of work failed, so its transaction is aborted; "
            "roll back (or use uow.savepoint() around work that may fail)"
        )
    if isinstance(error, _SCHEMA_MISSING):
        return SchemaNotMigratedError(
            f"database error: {error}: the database's schema is missing or older than this "
            f"leaddb; {MIGRATE_HINT}"
        )
    if isinstance(error, pgerr.PostgresError):
        return LeadDBError(f"database error: {error}")
    return None
