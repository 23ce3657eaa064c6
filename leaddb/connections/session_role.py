"""Which pooled connections run as the role ``leaddb_app`` for their whole session.

Row-level security binds only a role that is neither a superuser nor the tables' owner, so units
of work run as ``leaddb_app``. A connection assumes it for its whole session when it is opened.
A unit of work's BEGIN names the role again (``SET LOCAL ROLE``) only on a connection not known
to hold it: on a connection that already does, the switch changes nothing and costs the server
about 10 µs per transaction (a bare BEGIN over eight connections in rotation: 107-112 µs
without it, 118-122 µs with it).

Raw SQL can change a session (``RESET ROLE``, ``SET search_path``), and much of what it does
outlives its transaction: committed ``SET``s, temporary tables (which would shadow leaddb's own
tables for the next unit of work), ``PREPARE``d statements, cursors ``WITH HOLD``, ``LISTEN``,
session advisory locks. So a connection handed out for raw SQL (``uow.connection()``,
``uow.fetch`` and the like) loses its standing at once, and gets it back only when it is given
back to the pool: everything ``DISCARD ALL`` clears is cleared, and the role is assumed again.
``DISCARD ALL`` itself is not sent: it would also drop the statements asyncpg has prepared and
still counts on. A ``PREPARE``d statement of the raw SQL's own is the one thing this leaves, so
a connection that has one is closed instead.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg
    from asyncpg import Record

    Connection = asyncpg.Connection[Record]

APP_ROLE = "leaddb_app"

# Assume the role only where the migrations have created it: before the first migration there
# are no policies to honour either.
_ASSUME = "SELECT set_config('role', rolname, false) FROM pg_roles WHERE rolname = $1"

# Bounds the reset, so a server that stopped answering cannot hold the release for ever.
_RESET_TIMEOUT = 10.0

# DISCARD ALL but DEALLOCATE ALL (its documented equivalent, in its order).
_RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES"
)
_SQL_PREPARED = "SELECT EXISTS (SELECT FROM pg_prepared_statements WHERE from_sql)"


class SessionLeftoversError(Exception):
    """Raw SQL left something on the session that cannot be cleared without closing it."""


class SessionRoles:
    """The connections whose session holds the application role, as far as leaddb knows."""

    def __init__(self) -> None:
        self._holding: weakref.WeakSet[Connection] = weakref.WeakSet()

    def holds(self, connection: Connection) -> bool:
        return connection in self._holding

    def forget(self, connection: Connection) -> None:
        """Raw SQL may change this session: its BEGINs name the role until it is reset."""
        self._holding.discard(connection)

    async def assume(self, connection: Connection) -> bool:
        """Make the role the session's own (where it exists); whether it now holds."""
        if await connection.fetchval(_ASSUME, APP_ROLE) is None:
            return False
        self._holding.add(connection)
        return True

    async def reset(self, connection: Connection, *, assume: bool) -> None:
        """Return a session that raw SQL used to its start, outside any transaction.

        ``RESET ALL`` also resets the role, so the application's is assumed again in the same
        message. Raises the driver's error if that fails, and SessionLeftoversError where a
        ``PREPARE``d statement of the raw SQL's own remains; the caller then closes the
        connection, as it does when a rollback fails.
        """
        self._holding.discard(connection)
        sql = f"{_RESET}; SET ROLE {APP_ROLE}" if assume else _RESET
        await connection.execute(sql, timeout=_RESET_TIMEOUT)
        if await connection.fetchval(_SQL_PREPARED, timeout=_RESET_TIMEOUT):
            raise SessionLeftoversError("a PREPAREd statement of raw SQL")
        if assume:
            self._holding.add(connection)
