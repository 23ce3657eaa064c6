"""Turning asyncpg's exceptions into leaddb's errors: the one place that mapping lives.

``translate`` is the table; ``mapped`` applies it to whatever an ``except`` caught; ``run``
awaits a driver call with its errors mapped. ``redis_errors`` does the same for Redis calls whose
failure the caller must see (the sessions; the cache instead degrades to PostgreSQL).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
from asyncpg import exceptions as pgerr
from redis.exceptions import RedisError

from leaddb import telemetry
from leaddb.errors import (
    MIGRATE_HINT,
    ConflictError,
    ConnectionFailedError,
    ConstraintViolationError,
    InvalidValueError,
    LeadDBError,
    ReadOnlyError,
    RetryableError,
    SchemaNotMigratedError,
    StatementTimeoutError,
    TenantViolationError,
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
    if (
        isinstance(error, asyncpg.InterfaceError)
        and isinstance(error, ValueError)
        and not isinstance(error, asyncpg.ClientConfigurationError)
    ):
        # A value asyncpg's client side refused (asyncpg's private exceptions._base.DataError,
        # reached through public classes only). asyncpg 0.32 raises the public DataError above
        # for an argument it cannot encode instead (test_library_internals).
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
    if isinstance(error, pgerr.ReadOnlySQLTransactionError):
        return ReadOnlyError(f"a read-only unit of work cannot write: {error}")
    if isinstance(error, pgerr.InsufficientPrivilegeError):
        # Row-level security refusing a row of another tenant (42501), or a privilege the
        # application role does not have.
        return TenantViolationError(f"refused by the database: {error}")
    if isinstance(error, _SCHEMA_MISSING):
        return SchemaNotMigratedError(
            f"database error: {error}: the database's schema is missing or older than this "
            f"leaddb; {MIGRATE_HINT}"
        )
    if isinstance(error, pgerr.PostgresError):
        return LeadDBError(f"database error: {error}")
    return None


def mapped(error: BaseException) -> BaseException:
    """What to raise for ``error``: leaddb's error for a driver exception, else ``error``
    itself (leaddb's own errors and cancellations pass through)."""
    if isinstance(error, LeadDBError | asyncio.CancelledError):
        return error
    return translate(error) or error


async def run(method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``await method(*args)`` with driver errors turned into leaddb errors.

    The call itself is inside the ``try``: asyncpg raises at call time, not at await time,
    when the connection was lost and the pool has already taken it back.
    """
    try:
        if telemetry.on:
            return await telemetry.statement(method, args)
        return await method(*args)
    except Exception as error:
        translated = translate(error)
        if translated is None:
            raise
        raise translated from error


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Turn Redis client exceptions into ConnectionFailedError (the original is ``__cause__``)."""
    try:
        yield
    except (RedisError, OSError) as error:  # OSError covers TimeoutError and refused sockets
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        detail = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
        raise ConnectionFailedError(f"Redis could not {action}: {detail}") from error
