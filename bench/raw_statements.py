"""leaddb's own statements and transactions, sent by raw asyncpg: floors for the write and
row-level-security sections.

Each contender here sends exactly what a unit of work sends (the BEGIN with the tenant
context, the repository's statement, COMMIT or ROLLBACK), built by leaddb's own statement
builders, on a connection of its own that is set up like leaddb's (the session role, the search
path). What it leaves out is leaddb's Python: the unit of work, the repository, validation and
hydration. A ratio between two of these is therefore PostgreSQL's alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench.context import Bench
from leaddb import LeadDB
from leaddb.connections.pooler import SEARCH_PATH
from leaddb.connections.session_role import APP_ROLE
from leaddb.models.base import new_id
from leaddb.repositories.leads import LeadRepository
from leaddb.sql import change_statements, statements

RAW_STATEMENT_ON = "leaddb's statements by raw asyncpg, row-level security on"
RAW_STATEMENT_OFF = "leaddb's statements by raw asyncpg, row-level security off"
ON_NOTE = (
    "what the unit of work sends (BEGIN with the signed context, the repository's statement, "
    "COMMIT/ROLLBACK), by raw asyncpg as the application role: no leaddb Python"
)
OFF_NOTE = "the same as the URL's superuser with the unsigned context: no policy applies"

# The repository's own statements for these shapes (cached per shape there, built here once).
_SHAPE = LeadRepository._shape
UPDATE = change_statements.update_one(_SHAPE, ("score",), audit=True, check_version=True)
GET = statements.select_by_key(_SHAPE, include_deleted=False)


async def connect(bench: Bench, *, row_level_security: bool) -> asyncpg.Connection[Any]:
    """A connection set up as leaddb's pool sets up its own (with the role, or as superuser)."""
    server_settings = {"application_name": "leaddb-bench", "search_path": SEARCH_PATH}
    if row_level_security:
        server_settings["role"] = APP_ROLE
    connection: asyncpg.Connection[Any] = await asyncpg.connect(
        bench.dsn, server_settings=server_settings
    )
    return connection


def begin_sql(db: LeadDB, org: uuid.UUID, *, row_level_security: bool) -> str:
    """The BEGIN a tenant unit of work of ``db`` sends (leaddb.uow.base)."""
    signer = db.signer
    context = signer.tenant(org) if row_level_security and signer is not None else str(org)
    return f"BEGIN; SET LOCAL leaddb.tenant = '{context}'"


async def update(
    connection: asyncpg.Connection[Any],
    begin: str,
    org: uuid.UUID,
    lead_id: uuid.UUID,
    score: int,
    version: int,
) -> asyncpg.Record | None:
    """An update in its own transaction: BEGIN, the repository's statement (its parameters in
    the repository's order), COMMIT; the statement's row."""
    args = UPDATE.args([org, lead_id, score, version, "updated", None, new_id()])
    await connection.execute(begin)
    row: asyncpg.Record | None = await connection.fetchrow(UPDATE.text, *args)
    await connection.execute("COMMIT")
    return row


def get_call(
    connection: asyncpg.Connection[Any], begin: str, org: uuid.UUID, ids: list[uuid.UUID]
) -> Callable[[int], Awaitable[object]]:
    """A get in its own transaction: BEGIN, the select by key, ROLLBACK (a unit of work left
    without commit)."""

    async def get(i: int) -> object:
        await connection.execute(begin)
        row = await connection.fetchrow(GET.text, *GET.args([org, ids[i % len(ids)]]))
        await connection.execute("ROLLBACK")
        return row

    return get
