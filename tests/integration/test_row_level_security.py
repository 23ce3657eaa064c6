"""Row-level security: PostgreSQL itself keeps tenants apart, even for raw SQL through leaddb's
connections and even when the service logs in as a superuser (as the test servers do)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from asyncpg.exceptions import InsufficientPrivilegeError
from pydantic import SecretStr

from leaddb import LeadDB, LeadDBSettings
from leaddb.models import (
    CampaignCreate,
    LeadCreate,
    LeadNoteCreate,
    Organization,
    OrganizationCreate,
    UserCreate,
    UserRole,
    metadata,
)

# Every table with an organization_id, from the models: a table added later without a policy
# fails these tests instead of being skipped by a hand-kept list.
TENANT_TABLES = tuple(
    sorted(name for name, table in metadata.tables.items() if "organization_id" in table.c)
)


async def _organization(db: LeadDB, slug: str) -> Organization:
    async with db.platform() as uow:
        organization = await uow.organizations.create(OrganizationCreate(name=slug, slug=slug))
        await uow.commit()
    async with db.tenant(organization.id) as uow:
        user = await uow.users.create(
            UserCreate(
                email=f"owner@{slug}.example.com",
                full_name="Owner",
                role=UserRole.OWNER,
                password=SecretStr("correct horse battery"),
            )
        )
        lead = await uow.leads.create(LeadCreate(email=f"lead@{slug}.example.com"))
        await uow.notes.create(LeadNoteCreate(lead_id=lead.id, author_user_id=user.id, body="hi"))
        await uow.campaigns.create(CampaignCreate(name=f"{slug} launch"))
        await uow.commit()
    return organization


@pytest.fixture
async def single(settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    """A LeadDB whose pool holds one connection: each unit of work gets the same backend."""
    one_connection = settings.model_copy(update={"pool_size": 1, "max_overflow": 0})
    async with await LeadDB.connect(one_connection) as db:
        yield db


@pytest.fixture
async def two_tenants(db: LeadDB) -> tuple[Organization, Organization]:
    return await _organization(db, "acme"), await _organization(db, "globex")


async def test_raw_select_through_a_tenant_connection_sees_only_that_tenant(
    db: LeadDB, two_tenants: tuple[Organization, Organization], pg: asyncpg.Connection
) -> None:
    acme, globex = two_tenants
    for table in TENANT_TABLES:
        everywhere = await pg.fetchval(f"SELECT count(DISTINCT organization_id) FROM {table}")
        async with db.tenant(acme.id) as uow:
            connection = await uow.connection()
            seen = await connection.fetch(f"SELECT DISTINCT organization_id FROM {table}")
        assert {row["organization_id"] for row in seen} <= {acme.id}, table
        if everywhere == 2:
            assert [row["organization_id"] for row in seen] == [acme.id], table
    async with db.tenant(globex.id) as uow:
        connection = await uow.connection()
        emails = await connection.fetch("SELECT email FROM leads")
    assert [row["email"] for row in emails] == ["lead@globex.example.com"]


async def test_raw_insert_or_update_naming_another_tenant_is_refused(
    db: LeadDB, two_tenants: tuple[Organization, Organization], pg: asyncpg.Connection
) -> None:
    acme, globex = two_tenants
    async with db.tenant(acme.id) as uow:
        connection = await uow.connection()
        with pytest.raises(InsufficientPrivilegeError, match="row-level security"):
            await connection.execute(
                "INSERT INTO leads (organization_id, id, email) VALUES ($1, $2, 'x@example.com')",
                globex.id,
                uuid.uuid4(),
            )
    async with db.tenant(acme.id) as uow:
        connection = await uow.connection()
        # Moving one's own row into another tenant fails the WITH CHECK side.
        with pytest.raises(InsufficientPrivilegeError):
            await connection.execute("UPDATE leads SET organization_id = $1", globex.id)
    async with db.tenant(acme.id) as uow:
        connection = await uow.connection()
        # Another tenant's rows are simply not there to update or delete.
        assert (
            await connection.execute(
                "UPDATE leads SET score = 99 WHERE organization_id = $1", globex.id
            )
            == "UPDATE 0"
        )
        assert (
            await connection.execute("DELETE FROM leads WHERE organization_id = $1", globex.id)
            == "DELETE 0"
        )
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM leads WHERE score = 99") == 0
    assert (
        await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", globex.id) == 1
    )


# Direct only (run_through_pooler deselects it): a bare pool connection, outside any unit of
# work, sees nothing because leaddb assumed leaddb_app for its session at connect. Behind a
# transaction pooler no role is kept on a session (the server session is shared): the role is
# SET LOCAL in each unit of work's BEGIN, so the session is the login's by design.
@pytest.mark.direct_connection
async def test_a_pooled_connection_with_no_tenant_sees_nothing(
    db: LeadDB, two_tenants: tuple[Organization, Organization]
) -> None:
    async with db._pool.acquire() as connection:
        for table in TENANT_TABLES:
            assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        assert await connection.fetch("SELECT * FROM lead_pipeline") == []


async def test_superuser_login_still_cannot_read_across_tenants(
    db: LeadDB, two_tenants: tuple[Organization, Organization]
) -> None:
    acme, _ = two_tenants
    async with db.tenant(acme.id) as uow:
        connection = await uow.connection()
        login_is_superuser = await connection.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = session_user"
        )
        assert login_is_superuser, "the test servers log in as a superuser"
        assert await connection.fetchval("SELECT current_user") == "leaddb_app"
        assert await connection.fetchval("SELECT count(DISTINCT organization_id) FROM leads") == 1


async def test_what_raw_sql_does_to_a_session_ends_with_its_unit_of_work(
    single: LeadDB, two_tenants: tuple[Organization, Organization]
) -> None:
    acme, _ = two_tenants
    db = single
    async with db.tenant(acme.id) as uow:
        connection = await uow.connection()
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        # A superuser login can shed the role on purpose (operations.md: log in as a
        # member of leaddb_app instead, and this is impossible). Committed, a plain SET
        # outlives its transaction.
        await connection.execute("RESET ROLE")
        await connection.execute("SET leaddb.platform = 'on'")
        await connection.execute("SET statement_timeout = '1234ms'")
        assert await connection.fetchval("SELECT current_user") != "leaddb_app"
        await uow.commit()
    async with db.tenant(acme.id) as uow:
        again = await uow.connection()
        assert await again.fetchval("SELECT pg_backend_pid()") == backend
        assert await again.fetchval("SELECT current_user") == "leaddb_app"
        assert await again.fetchval("SELECT current_setting('leaddb.platform', true)") in (
            None,
            "",
        )
        assert await again.fetchval("SHOW statement_timeout") != "1234ms"
        assert await again.fetchval("SELECT count(DISTINCT organization_id) FROM leads") == 1


async def _begin_sent(pg: asyncpg.Connection, backend: int) -> str:
    """What the backend last ran: a unit of work's BEGIN message, right after it is answered."""
    query = await pg.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", backend)
    assert isinstance(query, str)
    assert query.startswith("BEGIN"), query
    return query


# Direct only (run_through_pooler deselects it): it reads a server pid's BEGIN in
# pg_stat_activity to check that the session-held role is not named again. Behind a
# transaction pooler every BEGIN names the role (no session holds it) and the pid is
# PgBouncer's server connection, not leaddb's.
@pytest.mark.direct_connection
async def test_the_role_is_named_at_begin_only_where_the_session_may_not_hold_it(
    single: LeadDB, two_tenants: tuple[Organization, Organization], pg: asyncpg.Connection
) -> None:
    acme, _ = two_tenants
    db = single
    async with db.tenant(acme.id) as uow:
        trusted = await uow.statement_connection()
        backend = trusted.get_server_pid()
        assert "ROLE" not in await _begin_sent(pg, backend)
        assert (await uow.leads.list()).items
    async with db.tenant(acme.id) as uow:
        raw = await uow.connection()
        await raw.execute("RESET ROLE")
        await uow.commit()
    # Given back, its session was reset and the role assumed again: still no switch needed.
    async with db.tenant(acme.id) as uow:
        connection = await uow.statement_connection()
        assert connection.get_server_pid() == backend
        assert "ROLE" not in await _begin_sent(pg, backend)
        assert await uow.fetchval("SELECT current_user") == "leaddb_app"
    # A session leaddb cannot vouch for gets the role in its BEGIN.
    db.session_roles.forget(connection)
    async with db.tenant(acme.id) as uow:
        connection = await uow.statement_connection()
        assert connection.get_server_pid() == backend
        assert "SET LOCAL ROLE leaddb_app" in await _begin_sent(pg, backend)
        assert await uow.fetchval("SELECT count(DISTINCT organization_id) FROM leads") == 1


# Direct only (run_through_pooler deselects it): it breaks the session reset leaddb runs when
# a direct connection comes back to its pool, and checks that the server session is closed
# (another pid). Behind a transaction pooler there is no such reset: raw SQL's leftovers are
# cleared and the role set again inside the transaction, before its COMMIT.
@pytest.mark.direct_connection
async def test_a_connection_whose_reset_fails_is_closed_not_pooled(
    single: LeadDB, two_tenants: tuple[Organization, Organization], pg: asyncpg.Connection
) -> None:
    acme, _ = two_tenants
    db = single
    async with db.tenant(acme.id) as uow:
        raw = await uow.connection()
        backend = raw.get_server_pid()
        await raw.execute("RESET ROLE")
        # The COMMIT goes through; the reset after it cannot assume a role by that name.
        await pg.execute("ALTER ROLE leaddb_app RENAME TO leaddb_app_away")
        try:
            await uow.commit()
        finally:
            await pg.execute("ALTER ROLE leaddb_app_away RENAME TO leaddb_app")
    assert raw.is_closed()
    async with db.tenant(acme.id) as uow:
        assert await uow.fetchval("SELECT pg_backend_pid()") != backend
        assert await uow.fetchval("SELECT current_user") == "leaddb_app"


async def test_views_honour_the_policies(
    db: LeadDB, two_tenants: tuple[Organization, Organization]
) -> None:
    acme, _ = two_tenants
    async with db.tenant(acme.id) as uow:
        connection = await uow.connection()
        rows = await connection.fetch("SELECT organization_id FROM lead_pipeline")
        performance = await connection.fetch("SELECT organization_id FROM campaign_performance")
    assert {row["organization_id"] for row in rows} == {acme.id}
    assert {row["organization_id"] for row in performance} == {acme.id}


async def test_platform_work_goes_through_its_own_policies(
    db: LeadDB, two_tenants: tuple[Organization, Organization]
) -> None:
    acme, globex = two_tenants
    async with db.platform() as uow:
        users = await uow.users.find_by_email("OWNER@acme.example.com")
        assert [user.organization_id for user in users] == [acme.id]
        connection = await uow.connection()
        # Login may read users; nothing else of a tenant is visible to the platform.
        assert await connection.fetchval("SELECT count(*) FROM leads") == 0
        assert await connection.fetchval("SELECT count(*) FROM users") == 2
    assert globex.id != acme.id


async def test_switching_row_level_security_off_keeps_the_login_role(
    settings: LeadDBSettings, two_tenants: tuple[Organization, Organization]
) -> None:
    acme, _ = two_tenants
    async with (
        await LeadDB.connect(settings.model_copy(update={"row_level_security": False})) as db,
        db.tenant(acme.id) as uow,
    ):
        connection = await uow.connection()
        assert await connection.fetchval("SELECT current_user <> 'leaddb_app'")
        # A superuser bypasses RLS: the repositories' own filter is what remains.
        assert (await uow.leads.list()).items[0].organization_id == acme.id


async def test_cancelling_while_the_tenant_is_set_never_leaks_a_transaction(
    db: LeadDB, two_tenants: tuple[Organization, Organization], pg: asyncpg.Connection
) -> None:
    acme, _ = two_tenants
    rng = random.Random(11)

    async def open_and_read(raw: bool) -> None:
        async with db.tenant(acme.id) as uow:
            if raw:  # raw SQL that sheds the role: a reset is due when the connection goes back
                await uow.execute("RESET ROLE")
            else:
                await uow.statement_connection()
            await uow.leads.list()
            if raw:  # committed, the role it shed stays shed until that reset
                await uow.commit()

    for _ in range(150):
        task = asyncio.create_task(open_and_read(raw=rng.random() < 0.5))
        for _ in range(rng.randrange(0, 6)):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stuck = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'leaddb' "
        "AND state LIKE 'idle in transaction%'"
    )
    assert stuck == 0
    assert db._pool.get_size() <= db._pool.get_max_size()
    # The pool serves the next unit of work at once, with the right tenant.
    async with db.tenant(acme.id) as uow:
        page = await asyncio.wait_for(uow.leads.list(), timeout=5)
    assert [lead.organization_id for lead in page.items] == [acme.id]

    # Every pooled connection runs as the role: none came back with the role its raw SQL shed.
    async def role_of_one(ready: asyncio.Event, held: list[int]) -> str:
        async with db.tenant(acme.id) as uow:
            role = await uow.fetchval("SELECT current_user")
            held.append(1)
            if len(held) == db._pool.get_size():
                ready.set()
            await ready.wait()  # keep this connection, so the others take the rest
            return str(role)

    ready, held = asyncio.Event(), list[int]()
    roles = await asyncio.wait_for(
        asyncio.gather(*(role_of_one(ready, held) for _ in range(db._pool.get_size()))), 10
    )
    assert set(roles) == {"leaddb_app"}
