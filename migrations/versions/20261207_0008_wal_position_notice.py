"""The primary's WAL position, reported by a notice in the COMMIT's own message.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

A unit of work that wrote, with read replicas configured, records the primary's WAL position
after its commit for read-your-writes (leaddb.connections.replicas). Reading it took a round
trip of its own after the COMMIT: asyncpg returns no rows from a multi-statement simple query,
only the last command's status. A notice does reach the client, and asyncpg hands it to the
connection's log listeners: so the COMMIT is sent as ``SELECT; COMMIT; SELECT
leaddb_private.report_wal_position('<nonce>')``, and this function raises a notice that carries
the nonce (so no other notice can pass for it) and ``pg_current_wal_insert_lsn()``, which, run
after the COMMIT in the same message, is past the commit's record.

Its ``SET client_min_messages = notice`` holds while it runs, so a session or role set to drop
notices still sends this one. It is the owner's, in the owner-only schema, callable by the
application role (a session that assumes ``leaddb_app`` runs it after the COMMIT ended the
``SET LOCAL ROLE``, as itself). Nothing else changes: a database without it (or a login that
may not call it) has the position read by its own query, as before.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "leaddb_app"
PRIVATE = "leaddb_private"
FUNCTION = f"{PRIVATE}.report_wal_position(text)"


def upgrade() -> None:
    op.execute(
        f"CREATE FUNCTION {PRIVATE}.report_wal_position(nonce text) RETURNS void "
        "LANGUAGE plpgsql VOLATILE SET client_min_messages = notice AS $$ BEGIN "
        "RAISE NOTICE 'leaddb-wal % %', nonce, pg_catalog.pg_current_wal_insert_lsn(); END $$"
    )
    op.execute(f"REVOKE ALL ON FUNCTION {FUNCTION} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {FUNCTION} TO {ROLE}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {FUNCTION}")
