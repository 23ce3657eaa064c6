"""``uow.session`` (leaddb.uow.orm) against the real servers: one transaction with the
repositories, the tenant applied by the ORM itself, and ORM writes audited and invalidating the
cache like repository writes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import func
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import aliased, joinedload, selectinload
from sqlmodel import col, delete, select, update

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import ConflictError, StaleVersionError, TenantViolationError
from leaddb.models import Lead, LeadCreate, LeadNote, LeadNoteCreate, LeadUpdate, Organization, User
from leaddb.uow import related
from leaddb.uow.orm import BorrowedPool, orm_engine

from .factories import assert_leaddb_error, idle_in_transaction, make_lead, make_org, make_user
from .test_tenant_boundary import (  # noqa: F401 - fixtures, used by name
    plain_role,
    plain_settings,
)


@pytest.fixture
async def second_db(settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    """Another process's LeadDB on the same servers (its own pool and cache client)."""
    database = await LeadDB.connect(settings)
    try:
        yield database
    finally:
        await database.close()


async def audit_rows(pg: asyncpg.Connection, entity_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pg.fetch(
        "SELECT action::text AS action, actor_user_id, changes FROM activity_logs "
        "WHERE entity_id = $1 ORDER BY id",
        entity_id,
    )


@pytest.fixture(params=["superuser, rls on", "superuser, rls off"])
async def any_rls_db(
    request: pytest.FixtureRequest, settings: LeadDBSettings
) -> AsyncIterator[LeadDB]:
    """Both logins (the test servers' superuser, and a plain member of leaddb_app), and the
    superuser with row-level security off: the ORM's own criteria must keep tenants apart
    without the policies."""
    rls = request.param == "superuser, rls on"
    async with await LeadDB.connect(settings.model_copy(update={"row_level_security": rls})) as db:
        yield db


@pytest.fixture
async def plain_db(
    plain_settings: LeadDBSettings,  # noqa: F811 - the fixture imported above
) -> AsyncIterator[LeadDB]:
    """The plain login (tests/integration/test_tenant_boundary.py's fixtures, imported above)."""
    async with await LeadDB.connect(plain_settings) as db:
        yield db


async def test_session_queries_see_only_the_tenant(
    any_rls_db: LeadDB, pg: asyncpg.Connection
) -> None:
    await _session_queries_see_only_the_tenant(any_rls_db, pg)


async def test_session_queries_see_only_the_tenant_plain_login(
    plain_db: LeadDB, pg: asyncpg.Connection
) -> None:
    await _session_queries_see_only_the_tenant(plain_db, pg)


async def _session_queries_see_only_the_tenant(db: LeadDB, pg: asyncpg.Connection) -> None:
    org, other = await make_org(db), await make_org(db)
    mine = await make_lead(db, org.id, score=70)
    theirs = await make_lead(db, other.id, score=70)
    async with db.tenant(org.id) as uow:
        leads = (await uow.session.exec(select(Lead).where(Lead.score > 50))).all()
        assert [lead.id for lead in leads] == [mine.id]
        count = (await uow.session.exec(select(func.count()).select_from(Lead))).one()
        assert count == 1
        # Joins and aliases are restricted too.
        owner_alias = aliased(Lead)
        pairs = (
            await uow.session.exec(
                select(Lead, owner_alias).join(
                    owner_alias, col(owner_alias.score) == col(Lead.score)
                )
            )
        ).all()
        assert [(a.id, b.id) for a, b in pairs] == [(mine.id, mine.id)]
        assert await uow.session.get(Lead, (other.id, theirs.id)) is None
    # The same statement for the other tenant (one compiled statement, the tenant bound).
    async with db.tenant(other.id) as uow:
        seen = (await uow.session.exec(select(Lead).where(Lead.score > 50))).all()
        assert [lead.id for lead in seen] == [theirs.id]
    async with db.tenant(org.id) as uow:
        await uow.session.exec(update(Lead).values(company="Mine"))
        await uow.session.exec(delete(Lead).where(col(Lead.score) == 70))
        await uow.commit()
    assert await pg.fetchval("SELECT company FROM leads WHERE id = $1", theirs.id) is None
    assert await pg.fetchval("SELECT deleted_at FROM leads WHERE id = $1", theirs.id) is None


async def test_repository_and_session_share_the_transaction(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        lead = await uow.leads.create(LeadCreate(email="both@example.com"))
        seen = (await uow.session.exec(select(Lead).where(Lead.id == lead.id))).one()
        assert seen.email == "both@example.com"
        uow.session.add(Lead(email="orm@example.com", organization_id=org.id))
        # No flush: a repository statement flushes the session first, as its own queries do.
        page = await uow.leads.list()
        assert {item.email for item in page.items} == {"both@example.com", "orm@example.com"}
        # Not committed: the other connection sees nothing yet.
        assert await pg.fetchval("SELECT count(*) FROM leads") == 0
    # Left without commit: both writes are gone.
    assert await pg.fetchval("SELECT count(*) FROM leads") == 0
    assert await pg.fetchval("SELECT count(*) FROM activity_logs WHERE entity_type = 'lead'") == 0


async def test_orm_insert_stamps_the_tenant_and_audits(
    db: LeadDB, second_db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    actor = (await make_user(db, org.id)).id
    async with db.tenant(org.id, actor=actor) as uow:
        # Left out on purpose (typed as required): the flush stamps the unit of work's tenant.
        lead = Lead(email="new@example.com", custom_fields={"plan": {"seats": 3}})  # type: ignore[call-arg]
        uow.session.add(lead)
        await uow.commit()
    assert lead.organization_id == org.id
    assert lead.version == 1
    assert lead.created_at is not None
    for database in (db, second_db):
        async with database.tenant(org.id) as uow:
            got = await uow.leads.get(lead.id)
            assert got is not None
            assert got.custom_fields == {"plan": {"seats": 3}}
    rows = await audit_rows(pg, lead.id)
    assert [row["action"] for row in rows] == ["created"]
    assert rows[0]["actor_user_id"] == actor
    assert '"new@example.com"' in rows[0]["changes"]


async def test_orm_update_bumps_version_invalidates_and_audits(
    db: LeadDB, second_db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, company="Old")
    for database in (db, second_db):  # both caches hold the old value
        async with database.tenant(org.id) as uow:
            cached = await uow.leads.get(lead.id)
            assert cached is not None
            assert cached.company == "Old"
    async with db.tenant(org.id) as uow:
        loaded = (await uow.session.exec(select(Lead).where(Lead.id == lead.id))).one()
        loaded.company = "New"
        await uow.commit()
    assert loaded.version == lead.version + 1
    assert loaded.updated_at > lead.updated_at
    for database in (db, second_db):
        async with database.tenant(org.id) as uow:
            got = await uow.leads.get(lead.id)
            assert got is not None
            assert got.company == "New"
            assert got.version == loaded.version
    rows = await audit_rows(pg, lead.id)
    assert [row["action"] for row in rows] == ["created", "updated"]
    assert '"Old"' in rows[1]["changes"]
    assert '"New"' in rows[1]["changes"]


async def test_orm_delete_is_a_soft_delete(
    db: LeadDB, second_db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with second_db.tenant(org.id) as uow:
        assert await uow.leads.get(lead.id) is not None
    async with db.tenant(org.id) as uow:
        loaded = await uow.session.get(Lead, (org.id, lead.id))
        assert loaded is not None
        await uow.session.delete(loaded)
        await uow.commit()
    assert await pg.fetchval("SELECT deleted_at IS NOT NULL FROM leads WHERE id = $1", lead.id)
    for database in (db, second_db):
        async with database.tenant(org.id) as uow:
            assert await uow.leads.get(lead.id) is None
    rows = await audit_rows(pg, lead.id)
    assert [row["action"] for row in rows] == ["created", "deleted"]


async def test_orm_bulk_update_invalidates(
    db: LeadDB, second_db: LeadDB, pg: asyncpg.Connection
) -> None:
    org, other = await make_org(db), await make_org(db)
    lead = await make_lead(db, org.id, company="Before")
    theirs = await make_lead(db, other.id, company="Before")
    for database in (db, second_db):
        async with database.tenant(org.id) as uow:
            assert (await uow.leads.get(lead.id)) is not None
    async with db.tenant(org.id) as uow:
        await uow.session.exec(
            update(Lead).where(col(Lead.company) == "Before").values(company="After")
        )
        await uow.commit()
    for database in (db, second_db):
        async with database.tenant(org.id) as uow:
            got = await uow.leads.get(lead.id)
            assert got is not None
            assert got.company == "After"
    # The other tenant's row was outside the statement.
    assert await pg.fetchval("SELECT company FROM leads WHERE id = $1", theirs.id) == "Before"
    async with db.tenant(org.id) as uow:
        await uow.session.exec(delete(Lead))
        await uow.commit()
    # A soft delete, of this tenant's rows only.
    assert await pg.fetchval("SELECT deleted_at IS NOT NULL FROM leads WHERE id = $1", lead.id)
    assert await pg.fetchval("SELECT deleted_at FROM leads WHERE id = $1", theirs.id) is None
    for database in (db, second_db):
        async with database.tenant(org.id) as uow:
            assert await uow.leads.get(lead.id) is None
    # One audit row per row touched, as the repositories' update_many and delete write them.
    rows = await audit_rows(pg, lead.id)
    assert [row["action"] for row in rows] == ["created", "updated", "deleted"]
    assert json.loads(rows[1]["changes"]) == {
        "before": {"company": "Before"},
        "after": {"company": "After"},
    }
    assert list(json.loads(rows[2]["changes"])["after"]) == ["deleted_at"]
    assert [row["action"] for row in await audit_rows(pg, theirs.id)] == ["created"]


async def test_orm_bulk_hard_delete_audits_each_row(db: LeadDB, pg: asyncpg.Connection) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        notes = [
            await uow.notes.create(LeadNoteCreate(lead_id=lead.id, body=f"note {n}"))
            for n in range(3)
        ]
        await uow.commit()
    async with db.tenant(org.id) as uow:
        result = await uow.session.exec(delete(LeadNote).where(col(LeadNote.body) != "note 1"))
        assert result.rowcount == 2
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM lead_notes") == 1
    for note in notes:
        actions = [row["action"] for row in await audit_rows(pg, note.id)]
        assert actions == (["created"] if note.body == "note 1" else ["created", "deleted"])


async def test_stale_version_through_the_session(db: LeadDB) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        loaded = await uow.session.get(Lead, (org.id, lead.id))
        assert loaded is not None
        # Another unit of work commits a change meanwhile.
        async with db.tenant(org.id) as other:
            await other.leads.update(lead.id, LeadUpdate(company="Elsewhere"))
            await other.commit()
        loaded.company = "Here"
        with pytest.raises(StaleVersionError):
            await uow.session.flush()


async def test_another_tenants_row_cannot_be_flushed(db: LeadDB, pg: asyncpg.Connection) -> None:
    org, other = await make_org(db), await make_org(db)
    theirs = await make_lead(db, other.id)
    async with db.tenant(org.id) as uow:
        assert await uow.session.get(Lead, (other.id, theirs.id)) is None
    # The same statement for the other tenant (one compiled statement, the tenant bound).
    async with db.tenant(other.id) as uow:
        seen = (await uow.session.exec(select(Lead))).all()
        assert [lead.id for lead in seen] == [theirs.id]
    async with db.tenant(org.id) as uow:
        assert (await uow.session.exec(select(Lead))).all() == []
        uow.session.add(Lead(email="x@example.com", organization_id=other.id))
        with pytest.raises(TenantViolationError):
            await uow.session.flush()
    async with db.tenant(other.id) as uow:
        theirs_loaded = await uow.leads.get(theirs.id)
    assert theirs_loaded is not None
    async with db.tenant(org.id) as uow:
        theirs_loaded.company = "Hijacked"
        await uow.session.merge(theirs_loaded)
        with pytest.raises(TenantViolationError):
            await uow.session.flush()
    assert await pg.fetchval("SELECT company FROM leads WHERE id = $1", theirs.id) is None


async def test_rollback_leaves_cache_and_audit_untouched(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, company="Kept")
    async with db.tenant(org.id) as uow:
        assert await uow.leads.get(lead.id) is not None  # cached
    async with db.tenant(org.id) as uow:
        loaded = await uow.session.get(Lead, (org.id, lead.id))
        assert loaded is not None
        loaded.company = "Dropped"
        await uow.session.flush()
    async with db.tenant(org.id) as uow:
        got = await uow.leads.get(lead.id)
        assert got is not None
        assert got.company == "Kept"
    assert [row["action"] for row in await audit_rows(pg, lead.id)] == ["created"]


async def test_instances_move_between_repository_and_session(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        from_repository = await uow.leads.get(lead.id)
        assert from_repository is not None
        uow.session.add(from_repository)
        from_repository.company = "Moved"
        await uow.session.flush()
        assert from_repository.version == lead.version + 1
        # And back: the repository reads what the session wrote, by the instance's id.
        again = await uow.leads.get(from_repository.id)
        assert again is not None
        assert again.company == "Moved"
        updated = await uow.leads.update(
            from_repository.id,
            LeadUpdate(job_title="CTO"),
            expected_version=from_repository.version,
        )
        assert updated.job_title == "CTO"
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM leads") == 1
    assert await pg.fetchval("SELECT company FROM leads WHERE id = $1", lead.id) == "Moved"


async def test_cancelled_flush_leaks_nothing(db: LeadDB, pg: asyncpg.Connection) -> None:
    org = await make_org(db)
    flushing = asyncio.Event()

    async def flush_many() -> None:
        async with db.tenant(org.id) as uow:
            for index in range(2000):
                uow.session.add(Lead(email=f"c{index}@example.com", organization_id=org.id))
            flushing.set()
            await uow.session.flush()
            await uow.commit()

    # Cancelled at several points inside the flush (its INSERTs and audit rows on the wire).
    for delay in (0.0, 0.005, 0.02, 0.05):
        flushing.clear()
        task = asyncio.create_task(flush_many())
        await flushing.wait()
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.2)
    assert await idle_in_transaction(pg) == 0
    assert await pg.fetchval("SELECT count(*) FROM leads") == 0
    assert await pg.fetchval("SELECT count(*) FROM activity_logs WHERE entity_type = 'lead'") == 0
    for _ in range(12):  # more than the pool holds: every connection came back usable
        async with db.tenant(org.id) as uow:
            uow.session.add(
                Lead(email=f"after-{uuid.uuid4().hex}@example.com", organization_id=org.id)
            )
            count = (await uow.session.exec(select(func.count()).select_from(Lead))).one()
            assert count == 1
    assert await idle_in_transaction(pg) == 0


async def test_relationship_loads_stay_in_the_tenant(any_rls_db: LeadDB) -> None:
    await _relationship_loads_stay_in_the_tenant(any_rls_db)


async def test_relationship_loads_stay_in_the_tenant_plain_login(plain_db: LeadDB) -> None:
    await _relationship_loads_stay_in_the_tenant(plain_db)


async def _relationship_loads_stay_in_the_tenant(db: LeadDB) -> None:
    org, other = await make_org(db), await make_org(db)
    owner = await make_user(db, org.id)
    lead = await make_lead(db, org.id, owner_id=owner.id)
    their_owner = await make_user(db, other.id)
    await make_lead(db, other.id, owner_id=their_owner.id)
    async with db.tenant(org.id) as uow:
        await uow.notes.create(LeadNoteCreate(lead_id=lead.id, body="first call"))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        orgs = (
            await uow.session.exec(
                select(Organization).options(
                    selectinload(related(Organization.leads)).selectinload(related(Lead.notes)),
                    selectinload(related(Organization.users)),
                )
            )
        ).all()
        assert [found.id for found in orgs] == [org.id]
        assert [found.id for found in orgs[0].leads] == [lead.id]
        assert [note.body for note in orgs[0].leads[0].notes] == ["first call"]
        assert [user.id for user in orgs[0].users] == [owner.id]
        pairs = (
            await uow.session.exec(
                select(Lead, User).join(User, col(Lead.owner_id) == col(User.id))
            )
        ).all()
        assert [(found.id, user.id) for found, user in pairs] == [(lead.id, owner.id)]
        joined = (
            (await uow.session.exec(select(Lead).options(joinedload(related(Lead.owner)))))
            .unique()
            .all()
        )
        assert [(found.id, found.owner.id if found.owner else None) for found in joined] == [
            (lead.id, owner.id)
        ]


async def test_lazy_loads_raise_instead_of_hanging(db: LeadDB) -> None:
    org = await make_org(db)
    await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        lead = (await uow.session.exec(select(Lead))).one()
        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            _ = lead.notes


async def test_each_pooled_connection_is_wrapped_once(db: LeadDB) -> None:
    org = await make_org(db)
    await make_lead(db, org.id)
    for _ in range(20):
        async with db.tenant(org.id) as uow:
            assert len((await uow.session.exec(select(Lead))).all()) == 1
    engine = orm_engine(db._pool, db.settings)
    pool = engine.sync_engine.pool
    assert isinstance(pool, BorrowedPool)
    assert 1 <= pool.wrapped <= db.settings.pool_size + db.settings.max_overflow


async def test_driver_errors_come_out_as_leaddb_errors(db: LeadDB) -> None:
    org = await make_org(db)
    await make_lead(db, org.id, email="taken@example.com")
    async with db.tenant(org.id) as uow:
        uow.session.add(Lead(email="taken@example.com", organization_id=org.id))
        with pytest.raises(ConflictError) as caught:
            await uow.session.flush()
        assert_leaddb_error(caught)
