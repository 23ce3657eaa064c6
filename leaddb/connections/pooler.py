"""What leaddb sends behind a transaction pooler (PgBouncer or pgcat with ``pool_mode =
transaction``, setting ``transaction_pooler``).

Such a pooler lends a server connection for one transaction and gives the next transaction of
the same client whichever server connection is free: nothing of a session carries over, and a
session-level change made by one client meets another client's next transaction. So, there:

- asyncpg keeps no statement cache (``statement_cache_size=0``): every statement is parsed as
  the unnamed statement, which lives only until the next one; asyncpg's COPY then prepares its
  introspection query unnamed too. PgBouncer 1.18 (Debian 12) cannot track named statements.
- No startup parameter but ``application_name``: PgBouncer refuses those it does not know, so
  ``search_path`` and ``statement_timeout`` go into every BEGIN as ``SET LOCAL``, beside the
  role (``SET LOCAL ROLE`` in every BEGIN, never assumed for the session) and the signed tenant
  context.
- Raw SQL: what it leaves on the session cannot be reset after the fact, because the next
  message may reach another server connection. What it can leave is cleared on the same server
  connection, inside the same message or transaction: before COMMIT (then the context is set
  again, for the commit's deferred work), or in the message that carries the ROLLBACK. What a
  raw unit of work does after a COMMIT of its own is out of reach: that runs outside any unit of
  work, on whichever server connection the pooler picked (docs/scaling.md).
"""

from __future__ import annotations

import functools

# Deallocates only what SQL PREPAREd: a pooler that tracks protocol-level statements (PgBouncer
# 1.21+ with max_prepared_statements) keeps its own, and DEALLOCATE ALL would drop them under it.
_DEALLOCATE_SQL_PREPARED = (
    "DO $leaddb$ DECLARE name text; BEGIN "
    "FOR name IN SELECT p.name FROM pg_prepared_statements p WHERE p.from_sql LOOP "
    "EXECUTE format('DEALLOCATE %I', name); END LOOP; END $leaddb$"
)

# DISCARD ALL's parts that may run inside a transaction block (DISCARD ALL itself may not).
SCRUB = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES; "
    f"{_DEALLOCATE_SQL_PREPARED}"
)

SEARCH_PATH = '"$user", public, pg_temp'


@functools.lru_cache(maxsize=16)
def transaction_settings(statement_timeout_ms: int) -> str:
    """The session settings a pooled connection cannot keep, as ``SET LOCAL``s for a BEGIN."""
    # Temporary tables last: pg_temp is otherwise searched first, and a temporary table named
    # like one of leaddb's would take its place in leaddb's own statements.
    sql = f"SET LOCAL search_path = {SEARCH_PATH}; "
    if statement_timeout_ms:
        sql += f"SET LOCAL statement_timeout = {statement_timeout_ms}; "
    return sql
