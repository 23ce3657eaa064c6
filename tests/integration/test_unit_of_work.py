"""The unit of work: one transaction, explicit commit, rollback on leaving, savepoints, errors
after a failed statement, connections given back clean, and one statement per operation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery

from leaddb import LeadDB
from leaddb.errors import (
    ConflictError,
    TransactionFailedError,
    UnitOfWorkClosedError,
)
from leaddb.models import LeadCreate, LeadNoteCreate, LeadUpdate

from .factories import (
    assert_leaddb_error,
    idle_in_transaction,
    lead_payloads,
    make_lead,
    make_org,
)

_INTROSPECTION = ("typeinfo_tree", "current_setting('jit')", "set_config('jit'")


async def _lead_count(pg: asyncpg.Connection) -> int:
    return int(await pg.fetchval("SELECT count(*) FROM leads"))


def _all_connections_back(db: LeadDB) -> bool:
    return db._pool.get_idle_size() == db._pool.get_size()


async def test_leaving_the_block_without_commit_rolls_back(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        lead = await uow.leads.create(LeadCreate(email="draft@example.com"))
        # Inside the transaction the lead is there; outside it is not yet.
        assert await uow.leads.get(lead.id) is not None
        assert await _lead_count(pg) == 0
    assert await _lead_count(pg) == 0
    assert await pg.fetchval("SELECT count(*) FROM activity_logs WHERE entity_type = 'lead'") == 0
    assert await idle_in_transaction(pg) == 0
    assert _all_connections_back(db)


async def test_commit_persists_the_work(db: LeadDB, pg: asyncpg.Connection) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        lead = await uow.leads.create(LeadCreate(email="kept@example.com"))
        await uow.leads.update(lead.id, LeadUpdate(score=12))
        await uow.commit()
        assert uow.closed
    assert await pg.fetchval("SELECT score FROM leads WHERE id = $1", lead.id) == 12
    assert await idle_in_transaction(pg) == 0
    assert _all_connections_back(db)


async def test_using_a_unit_of_work_after_it_ended_is_an_error(db: LeadDB) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        await uow.leads.get(lead.id)
        await uow.commit()
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "get": lambda: uow.leads.get(lead.id),
            "get_many": lambda: uow.leads.get_many([lead.id]),
            "list": lambda: uow.leads.list(),
            "count": lambda: uow.leads.count(),
            "create": lambda: uow.leads.create(LeadCreate(email="late@example.com")),
            "update": lambda: uow.leads.update(lead.id, LeadUpdate(score=1)),
            "commit": lambda: uow.commit(),
        }
        not_refused = []
        for name, call in calls.items():
            try:
                await call()
            except UnitOfWorkClosedError:
                continue
            not_refused.append(name)
        assert not_refused == []
    async with db.tenant(org.id) as left:
        pass
    with pytest.raises(UnitOfWorkClosedError):
        await left.leads.count()
    async with db.tenant(org.id) as rolled_back:
        await rolled_back.leads.count()
        await rolled_back.rollback()
        with pytest.raises(UnitOfWorkClosedError):
            await rolled_back.leads.count()
        with pytest.raises(UnitOfWorkClosedError):
            await rolled_back.commit()


async def test_a_unit_of_work_that_never_touches_the_database_takes_no_connection(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    idle_before = db._pool.get_idle_size()
    assert idle_before >= 1
    async with db.tenant(org.id) as uow:
        assert uow.tenant_id == org.id
        assert db._pool.get_idle_size() == idle_before
        assert await idle_in_transaction(pg) == 0
        await uow.commit()
    async with db.platform():
        assert db._pool.get_idle_size() == idle_before
        assert await idle_in_transaction(pg) == 0
    # The control: a unit of work that reads holds one connection in an open transaction.
    async with db.tenant(org.id) as uow:
        await uow.leads.count()
        assert db._pool.get_idle_size() == db._pool.get_size() - 1
        assert await idle_in_transaction(pg) == 1
    assert await idle_in_transaction(pg) == 0
    assert _all_connections_back(db)


async def test_an_exception_inside_the_block_rolls_back_and_frees_the_connection(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)

    async def fail_inside() -> None:
        async with db.tenant(org.id) as uow:
            await uow.leads.create(LeadCreate(email="boom@example.com"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside()
    assert await _lead_count(pg) == 0
    assert await idle_in_transaction(pg) == 0
    assert _all_connections_back(db)


async def test_after_a_failed_statement_commit_raises_and_nothing_is_committed(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    await make_lead(db, org.id, email="taken@example.com")
    async with db.tenant(org.id) as uow:
        await uow.leads.create(LeadCreate(email="first@example.com"))
        with pytest.raises(ConflictError):
            await uow.leads.create(LeadCreate(email="TAKEN@example.com"))
        with pytest.raises(TransactionFailedError) as later:
            await uow.leads.count()
        assert_leaddb_error(later)
        with pytest.raises(TransactionFailedError) as caught:
            await uow.commit()
        assert_leaddb_error(caught)
        assert uow.closed
    emails = [row["email"] for row in await pg.fetch("SELECT email FROM leads")]
    assert emails == ["taken@example.com"]
    assert await pg.fetchval("SELECT count(*) FROM activity_logs WHERE entity_type = 'lead'") == 1
    assert await idle_in_transaction(pg) == 0
    assert _all_connections_back(db)


async def test_a_failure_inside_a_savepoint_is_contained_and_the_rest_commits(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    await make_lead(db, org.id, email="taken@example.com")
    async with db.tenant(org.id) as uow:
        before = await uow.leads.create(LeadCreate(email="before@example.com"))

        async def fail_in_savepoint() -> None:
            async with uow.savepoint():
                await uow.leads.create(LeadCreate(email="inside@example.com"))
                await uow.leads.create(LeadCreate(email="Taken@example.com"))

        with pytest.raises(ConflictError):
            await fail_in_savepoint()
        async with uow.savepoint():
            await uow.leads.update(before.id, LeadUpdate(score=33))
        after = await uow.leads.create(LeadCreate(email="after@example.com"))
        assert await uow.leads.count() == 3
        await uow.commit()
    emails = {row["email"] for row in await pg.fetch("SELECT email FROM leads")}
    assert emails == {"taken@example.com", "before@example.com", "after@example.com"}
    assert await pg.fetchval("SELECT score FROM leads WHERE id = $1", before.id) == 33
    logged = await pg.fetch(
        "SELECT entity_id, action::text AS action FROM activity_logs WHERE entity_type = 'lead'"
    )
    # The lead made before, and what this unit of work kept: nothing from the savepoint.
    assert len(logged) == 4
    mine = sorted(
        (row["entity_id"].int, row["action"])
        for row in logged
        if row["entity_id"] in {before.id, after.id}
    )
    assert mine == sorted(
        [(before.id.int, "created"), (before.id.int, "updated"), (after.id.int, "created")]
    )
    assert await idle_in_transaction(pg) == 0


async def test_each_repository_operation_is_one_statement(db: LeadDB) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        await uow.leads.create_many(lead_payloads(250))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        # leaddb's own connection: raw SQL's may not add a query logger (it would outlive
        # the unit of work on the pooled connection).
        connection = await uow.statement_connection()
        queries: list[str] = []

        def log(record: LoggedQuery) -> None:
            # asyncpg's own type introspection runs once per connection and type; not leaddb's.
            if not any(marker in record.query for marker in _INTROSPECTION):
                queries.append(record.query)

        async def statements_of(operation: Awaitable[object]) -> int:
            queries.clear()
            await operation
            await asyncio.sleep(0)
            return len(queries)

        connection.add_query_logger(log)
        try:
            page = await uow.leads.list(limit=50)
            await asyncio.sleep(0)
            assert len(page.items) == 50
            assert len(queries) == 1
            lead = page.items[0]
            assert await statements_of(uow.leads.list(limit=50, after=page.next_cursor)) == 1
            assert await statements_of(uow.leads.get(lead.id)) == 1
            assert await statements_of(uow.leads.get_many([i.id for i in page.items])) == 1
            assert await statements_of(uow.leads.count()) == 1
            assert await statements_of(uow.leads.create(LeadCreate(email="one@example.com"))) == 1
            update = uow.leads.update(lead.id, LeadUpdate(score=9), expected_version=lead.version)
            assert await statements_of(update) == 1
            assert await statements_of(uow.leads.upsert(LeadCreate(email=lead.email))) == 1
            assert await statements_of(uow.leads.delete(lead.id)) == 1
            assert await statements_of(uow.leads.restore(lead.id)) == 1
        finally:
            connection.remove_query_logger(log)
        await uow.commit()


async def test_an_update_in_flight_does_not_hold_up_rows_that_reference_the_lead(
    db: LeadDB,
) -> None:
    """The update locks its row FOR NO KEY UPDATE (what an UPDATE of non-key columns takes), so
    another transaction can still insert a note pointing at the lead (its foreign-key check
    takes FOR KEY SHARE) instead of waiting for the update to commit."""
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as updating:
        await updating.leads.update(lead.id, LeadUpdate(score=10), expected_version=1)
        async with db.tenant(org.id) as noting:
            note = await asyncio.wait_for(
                noting.notes.create(LeadNoteCreate(lead_id=lead.id, body="called back")), 5
            )
            await noting.commit()
        await updating.commit()
    assert note.lead_id == lead.id
