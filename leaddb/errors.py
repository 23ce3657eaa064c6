"""The errors leaddb raises.

Every failure a caller can act on is one of these; a raw asyncpg, SQLAlchemy or redis-py exception
never leaves a public method. The original exception stays reachable as ``__cause__``.
"""

from __future__ import annotations

import uuid


class LeadDBError(Exception):
    """Base class of every error leaddb raises."""


class ConfigurationError(LeadDBError):
    """A setting is missing or wrong; the message names the LEADDB_ variable to fix.

    When pydantic refused a setting, its ``ValidationError`` (every detail) is the ``__cause__``.
    """


class SchemaNotMigratedError(LeadDBError):
    """The database lacks a table, column, type or function of leaddb's schema: it was never
    migrated, or is at an older revision than this leaddb. ``leaddb migrate`` (or
    ``await db.migrate()``) brings it to the newest revision."""


MIGRATE_HINT = "`leaddb migrate` (or `await db.migrate()`) brings it to the newest revision"


class ConnectionFailedError(LeadDBError):
    """PostgreSQL or Redis could not be reached, or the connection was lost mid-work.

    Work in flight was rolled back; retrying in a new unit of work is safe.
    """


class PoolTimeoutError(LeadDBError):
    """No database connection became free within ``pool_timeout`` seconds."""


class StatementTimeoutError(LeadDBError):
    """A statement ran longer than ``statement_timeout_seconds`` and was cancelled."""


class NotFoundError(LeadDBError):
    """The row does not exist, is soft-deleted, or belongs to another tenant."""

    def __init__(self, entity: str, id: uuid.UUID | str) -> None:
        self.entity = entity
        self.id = id
        super().__init__(f"{entity} {id} not found")


class ConflictError(LeadDBError):
    """A write collided with existing data (a unique key, or a referenced row that is missing).

    ``field`` names the column (or columns, comma-separated) at fault when it is known.
    """

    def __init__(self, message: str, *, field: str | None = None, constraint: str | None = None):
        self.field = field
        self.constraint = constraint
        super().__init__(message)


class ConstraintViolationError(LeadDBError):
    """A check constraint refused a value; ``constraint`` is its name."""

    def __init__(self, message: str, *, constraint: str | None = None) -> None:
        self.constraint = constraint
        super().__init__(message)


class StaleVersionError(LeadDBError):
    """An update or delete named an ``expected_version`` that is no longer current."""

    def __init__(self, entity: str, id: uuid.UUID, expected: int, actual: int | None) -> None:
        self.entity = entity
        self.id = id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{entity} {id} is at version {actual}, not the expected version {expected}"
        )


class TenantViolationError(LeadDBError):
    """A payload or reference named an organization other than the unit of work's tenant."""


class InvalidValueError(LeadDBError):
    """A value cannot be stored as given: a NUL byte or invalid Unicode in text, or JSON deeper
    or larger than ``LEADDB_MAX_JSON_DEPTH`` / ``LEADDB_MAX_JSON_BYTES``. ``field`` names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class InvalidCursorError(LeadDBError):
    """A pagination cursor was tampered with, truncated, or made for another query."""


class InvalidFilterError(LeadDBError):
    """A filter named an unknown field or operator, or a value of the wrong type."""


class UnitOfWorkClosedError(LeadDBError):
    """The unit of work was used after it was committed, rolled back or left."""


class TransactionFailedError(LeadDBError):
    """A statement of this unit of work failed earlier, so PostgreSQL rolled the transaction
    back: nothing of it was committed. Wrap work that may fail in ``uow.savepoint()`` to go on
    after a failure."""


class ReadOnlyError(LeadDBError):
    """A write in a read-only unit of work (``db.tenant(org, read_only=True)``), which may be
    running on a replica: open a unit of work without ``read_only`` to write."""


class RetryableError(LeadDBError):
    """A serialization failure or deadlock: the whole unit of work may be retried."""
