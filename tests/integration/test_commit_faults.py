"""The end of a unit of work when the answer to COMMIT is lost, or the connection dies while it
goes back to the pool: the caller sees a typed error (or nothing, when the commit went through),
and the cache never keeps a row the commit may have changed. The chaos soak (test_chaos.py) found
each of these; here each is forced deterministically."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from asyncpg.connection import Connection

from leaddb import LeadDB
from leaddb.connections.driver_errors import translate
from leaddb.connections.pool import ConnectionPool
from leaddb.errors import ConnectionFailedError
from leaddb.models import LeadUpdate

from .factories import make_lead, make_org


async def _cached_lead(db: LeadDB) -> tuple[uuid.UUID, uuid.UUID]:
    org = await make_org(db)
    lead = await make_lead(db, org.id, first_name="Old")
    for _ in range(2):
        async with db.tenant(org.id) as uow:
            assert (await uow.leads.get_one(lead.id)).first_name == "Old"
    assert db.cache.stats().hits >= 1
    return org.id, lead.id


async def _first_name(db: LeadDB, org_id: uuid.UUID, lead_id: uuid.UUID) -> str | None:
    async with db.tenant(org_id) as uow:
        return (await uow.leads.get_one(lead_id)).first_name


@pytest.mark.parametrize(
    ("lost", "seen"),
    [
        (asyncio.CancelledError, asyncio.CancelledError),
        (asyncpg.ConnectionDoesNotExistError, ConnectionFailedError),
    ],
    ids=["caller cancelled", "connection lost"],
)
async def test_a_commit_whose_answer_was_lost_still_invalidates_the_cache(
    db: LeadDB,
    pg: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    lost: type[BaseException],
    seen: type[BaseException],
) -> None:
    org_id, lead_id = await _cached_lead(db)
    execute = Connection.execute

    async def commit_then_lose_the_answer(self: Connection, query: str, *args: Any) -> str:
        status: str = await execute(self, query, *args)
        if query == "COMMIT":
            raise lost("the answer to COMMIT never arrived")
        return status

    async with db.tenant(org_id) as uow:
        await uow.leads.update(lead_id, LeadUpdate(first_name="New"))
        monkeypatch.setattr(Connection, "execute", commit_then_lose_the_answer)
        with pytest.raises(seen):
            await uow.commit()
    monkeypatch.undo()

    assert await pg.fetchval("SELECT first_name FROM leads WHERE id = $1", lead_id) == "New"
    assert await _first_name(db, org_id, lead_id) == "New"


async def test_a_release_that_fails_after_commit_changes_nothing_for_the_caller(
    db: LeadDB, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool takes the connection back, then raises (the server went away meanwhile, the
    connection was already given back): the caller never sees it."""
    org_id, lead_id = await _cached_lead(db)
    release = ConnectionPool.release
    failed: list[str] = []

    async def release_after_the_server_went_away(self: ConnectionPool, connection: Any) -> None:
        connection.terminate()
        await release(self, connection)
        failed.append("release")
        raise asyncpg.InterfaceError("connection is closed")

    monkeypatch.setattr(ConnectionPool, "release", release_after_the_server_went_away)
    async with db.tenant(org_id) as uow:
        await uow.leads.update(lead_id, LeadUpdate(first_name="New"))
        await uow.commit()
    async with db.tenant(org_id) as uow:  # a rollback's release: nothing raised either
        await uow.leads.count()
    monkeypatch.setattr(ConnectionPool, "release", release)
    assert failed == ["release", "release"]

    assert await pg.fetchval("SELECT first_name FROM leads WHERE id = $1", lead_id) == "New"
    assert await _first_name(db, org_id, lead_id) == "New"
    assert db._pool.get_idle_size() == db._pool.get_size()


@pytest.mark.parametrize(
    "error",
    [
        # A statement sent between the server's FATAL message and the socket closing.
        asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
    ],
    ids=type,
)
def test_the_errors_of_a_server_going_away_are_connection_failures(error: Exception) -> None:
    assert isinstance(translate(error), ConnectionFailedError)
