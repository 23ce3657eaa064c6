"""``leaddb sql --citus``: the statements that spread the schema over a Citus cluster.

Every tenant table is distributed by ``organization_id`` and colocated with ``users``, so one
tenant's rows of every table sit in the same shard group: a unit of work of one tenant runs
on one worker, and the composite keys and foreign keys, which all include ``organization_id``
(leaddb.models.base), hold inside a shard.

``organizations`` is a reference table (a copy on every node), not a distributed one: it is
keyed by ``id`` and has a globally unique ``slug``, and Citus accepts a unique constraint on a
distributed table only when it includes the distribution column. It is small and rarely
written, and every tenant table's foreign key to it is a distributed-to-reference foreign key,
which Citus supports. The ``leaddb_private`` tables (the context and cursor keys that the
row-level-security function reads on whichever node runs the query, and the durable list of
invalidations) are reference tables too.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import MetaData

from leaddb.models.base import TENANT_COLUMN

ANCHOR: Final = "users"
"""The tenant table the others are colocated with."""

REFERENCE_TABLES: Final = ("organizations",)

PRIVATE_REFERENCE_TABLES: Final = (
    "leaddb_private.context_key",
    "leaddb_private.cursor_key",
    "leaddb_private.deleted_organizations",
    "leaddb_private.pending_invalidations",
)
"""Every table of the ``leaddb_private`` schema (tests/integration/test_citus.py checks it)."""


def tenant_tables(metadata: MetaData) -> list[str]:
    """The tables with an ``organization_id``, referenced tables before the tables that refer
    to them, the anchor first."""
    names = [table.name for table in metadata.sorted_tables if TENANT_COLUMN in table.c]
    return [ANCHOR, *(name for name in names if name != ANCHOR)]


def citus_statements(metadata: MetaData) -> list[str]:
    """``create_reference_table`` and ``create_distributed_table`` calls, in an order Citus
    accepts (a foreign key's target is distributed before the table that refers to it)."""
    statements = [
        f"SELECT create_reference_table('{name}');"
        for name in (*REFERENCE_TABLES, *PRIVATE_REFERENCE_TABLES)
    ]
    for name in tenant_tables(metadata):
        colocation = "'none'" if name == ANCHOR else f"'{ANCHOR}'"
        statements.append(
            f"SELECT create_distributed_table('{name}', '{TENANT_COLUMN}', "
            f"colocate_with => {colocation});"
        )
    return statements


def citus_script(metadata: MetaData) -> str:
    """What ``leaddb sql --citus`` prints after the DDL."""
    return "\n".join(
        [
            "",
            "-- Citus: run on the coordinator after the DDL above (docs/scaling.md). SET LOCAL of",
            "-- the tenant context must reach the workers: citus.propagate_set_commands = 'local'.",
            "CREATE EXTENSION IF NOT EXISTS citus;",
            *citus_statements(metadata),
            "",
        ]
    )
