"""The statements leaddb sends about itself rather than about a tenant's rows: catalog checks at
connect, the signed context's keys, the organizations a platform's raw SQL touched, the durable
list of missed invalidations, a commit's WAL position. Built from Core like every other
statement; those a unit of work sends are compiled once, at import.

Tables outside the models (PostgreSQL's catalogs, ``leaddb_private``, Alembic's) are named with
``table()`` and ``column()``: only the columns a statement reads.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    LargeBinary,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    column,
    false,
    func,
    select,
    table,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import Select

from leaddb.connections.replicas import REPORT_FUNCTION
from leaddb.models import Organization, User, table_of
from leaddb.sql.compile import Positional, compile_positional, inline, param

PRIVATE: Final = "leaddb_private"

_pg_roles = table("pg_roles", column("rolname"))
_pg_namespace = table("pg_namespace", column("oid"), column("nspname"))
_context_key = table("context_key", column("key"), schema=PRIVATE)
_cursor_key = table("cursor_key", column("key"), schema=PRIVATE)
_deleted = table(
    "deleted_organizations", column("transaction_id"), column("organization_id"), schema=PRIVATE
)
_alembic = table("alembic_version", column("version_num"))
_users = table_of(User)
_organizations = table_of(Organization)

# -- sent in units of work, on asyncpg ------------------------------------------------------------

ROLE_EXISTS: Final[Positional] = compile_positional(
    select(_pg_roles.c.rolname).where(_pg_roles.c.rolname == param("role")), ("role",)
)
"""Whether the application role exists (migrated); its one parameter is the role's name."""

ACTIVE_MEMBER: Final[Positional] = compile_positional(
    select(and_(_users.c.is_active, _organizations.c.is_active))
    .select_from(_users.join(_organizations, _organizations.c.id == _users.c.organization_id))
    .where(_users.c.id == param("user"), _users.c.organization_id == param("organization")),
    ("user", "organization"),
)
"""Whether a user is an active member of an active organization (a platform unit of work)."""

PLATFORM_VERIFIED: Final[Positional] = compile_positional(select(func.leaddb_platform()), ())
"""Whether the database verifies this transaction's platform context (a key given in settings)."""

TOUCHED_ORGANIZATIONS: Final[Positional] = compile_positional(
    select(_organizations.c.id).union(
        select(_deleted.c.organization_id).where(_deleted.c.transaction_id == func.txid_current())
    ),
    (),
)
"""Every organization, and those this transaction deleted: what a platform unit of work's raw
SQL may have changed."""

_wal_position = cast(func.pg_current_wal_insert_lsn(), Text)
WAL_INSERT_POSITION: Final[Positional] = compile_positional(select(_wal_position), ())
"""The primary's WAL position after a commit that wrote (read-your-writes on replicas)."""

WAL_POSITION_AND_REPORT: Final[Positional] = compile_positional(
    select(
        _wal_position,
        # CASE, in order: the function is looked up only in a schema the session may use.
        case(
            (
                func.coalesce(
                    func.has_schema_privilege(
                        func.to_regnamespace(inline(PRIVATE)), inline("USAGE")
                    ),
                    false(),
                ),
                func.coalesce(
                    func.has_function_privilege(
                        func.to_regprocedure(inline(f"{REPORT_FUNCTION}(text)")), inline("EXECUTE")
                    ),
                    false(),
                ),
            ),
            else_=false(),
        ),
    ),
    (),
)
"""``WAL_INSERT_POSITION``, and whether this session may call ``REPORT_FUNCTION`` (0008)."""

_pending = func.leaddb_pending_invalidations().table_valued(
    column("id"), column("kind"), column("organization_id"), column("user_id")
)
PENDING_INVALIDATIONS: Final[Positional] = compile_positional(
    select(_pending.c.id, _pending.c.kind, _pending.c.organization_id, _pending.c.user_id), ()
)
INVALIDATIONS_APPLIED: Final[Positional] = compile_positional(
    select(func.leaddb_invalidations_applied(param("ids", ARRAY(BigInteger)))), ("ids",)
)
NOTE_EPOCH: Final[Positional] = compile_positional(
    select(func.leaddb_note_epoch(param("tenant", Uuid()))), ("tenant",)
)

# -- sent at connect, through SQLAlchemy's engine (bound values as SQLAlchemy binds them) ------


def private_schema_usage() -> Select[Any]:
    """Whether this login may use ``leaddb_private`` (no row: there is no such schema)."""
    return select(func.has_schema_privilege(_pg_namespace.c.oid, "USAGE")).where(
        _pg_namespace.c.nspname == PRIVATE
    )


def key_privileges() -> Select[Any]:
    """Which of the two keys this login may read (reading one it may not would be an error)."""
    return select(
        func.has_table_privilege(f"{PRIVATE}.context_key", "SELECT"),
        func.has_table_privilege(f"{PRIVATE}.cursor_key", "SELECT"),
    )


def context_key() -> Select[Any]:
    return select(_context_key.c.key)


def cursor_key() -> Select[Any]:
    return select(_cursor_key.c.key)


def install_context_key(key: bytes) -> Select[Any]:
    """Make ``key`` the database's tenant-context key (the schema's owner may)."""
    return select(func.leaddb_private.set_context_key(bindparam("key", key, type_=LargeBinary)))


def version_table() -> Select[bool, bool]:
    """Whether Alembic's table exists, and whether this login may read it."""
    found = func.to_regclass(inline("alembic_version"))
    return select(
        found.is_not(None), and_(found.is_not(None), func.has_table_privilege(found, "SELECT"))
    )


def schema_revision() -> Select[Any]:
    return select(_alembic.c.version_num)
