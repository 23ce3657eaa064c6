"""The tenant boundary against the service's own SQL: each test performs an attack through
``uow.fetch`` / ``uow.connection()`` and asserts that nothing leaked, nothing was written and
nothing stale was served afterwards.

Each runs twice: logged in as a plain role that is only a member of ``leaddb_app`` (what
docs/operations.md recommends; it is given the context key in settings, since it cannot read
it), and as the superuser the test servers provide, with row-level security on.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import pytest
from conftest import asyncpg_dsn
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import ConfigurationError, LeadDBError, UnitOfWorkClosedError
from leaddb.models import IntegrationCreate, LeadUpdate, OrganizationUpdate

from .factories import PASSWORD, lead_payloads, make_lead, make_org, make_user

if TYPE_CHECKING:
    from conftest import TestServers

CREDENTIALS_KEY = SecretStr(Fernet.generate_key().decode())


@dataclass
class Login:
    """How the service under attack logs in."""

    name: str
    settings: LeadDBSettings


@pytest.fixture(scope="session")
async def plain_role(servers: TestServers, database_url: str) -> AsyncIterator[str]:
    """A login role with no right of its own: only a member of leaddb_app."""
    name = f"leaddb_plain_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.execute(f"CREATE ROLE {name} LOGIN")
        await admin.execute(f"GRANT leaddb_app TO {name}")
    finally:
        await admin.close()
    yield name
    admin = await asyncpg.connect(asyncpg_dsn(servers.admin_url))
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {name}")
    finally:
        await admin.close()


@pytest.fixture
async def plain_settings(
    settings: LeadDBSettings, plain_role: str, pg: asyncpg.Connection
) -> LeadDBSettings:
    """The service logged in as the plain role, given the context key it cannot read."""
    key = await pg.fetchval("SELECT key FROM leaddb_private.context_key")
    assert settings.database_url is not None
    url = make_url(settings.database_url.get_secret_value()).set(username=plain_role, password="")
    return settings.model_copy(
        update={
            "database_url": SecretStr(url.render_as_string(hide_password=False)),
            "tenant_context_key": SecretStr(bytes(key).hex()),
        }
    )


@pytest.fixture(params=["plain login", "superuser login"])
async def login(
    request: pytest.FixtureRequest, settings: LeadDBSettings, plain_settings: LeadDBSettings
) -> Login:
    if request.param == "superuser login":
        return Login(request.param, settings)
    return Login(request.param, plain_settings)


@pytest.fixture
async def attacked(login: Login) -> AsyncIterator[LeadDB]:
    """The attacker's service: one pooled connection, so every unit of work shares a backend."""
    one = login.settings.model_copy(
        update={"pool_size": 1, "max_overflow": 0, "credentials_key": CREDENTIALS_KEY}
    )
    async with await LeadDB.connect(one) as db:
        yield db


@pytest.fixture
async def bystander(settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    """Another process of the service: its own pool, the same Redis cache."""
    async with await LeadDB.connect(settings) as db:
        yield db


async def test_the_login_runs_as_intended(attacked: LeadDB, login: Login) -> None:
    async with attacked.platform() as uow:
        session_user = await uow.fetchval("SELECT session_user")
        assert await uow.fetchval("SELECT current_user") == "leaddb_app"
        assert await uow.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = session_user") is (
            login.name == "superuser login"
        )
    assert session_user


# -- 1. the tenant setting cannot be forged ----------------------------------------------------


async def test_another_tenants_context_set_by_sql_shows_nothing(
    attacked: LeadDB, pg: asyncpg.Connection
) -> None:
    a, b = await make_org(attacked), await make_org(attacked)
    await make_user(attacked, b.id, password=PASSWORD)
    async with attacked.tenant(b.id) as uow:
        await uow.integrations.create(
            IntegrationCreate.model_validate(
                {"provider": "hubspot", "name": "crm", "credentials": {"token": "secret"}}
            )
        )
        await uow.commit()
    async with attacked.tenant(a.id) as uow:
        own = str(await uow.fetchval("SELECT current_setting('leaddb.tenant')"))
        forged = [
            str(b.id),  # the old, unsigned form
            f"{b.id}.{own.split('.', 1)[1]}",  # A's MAC on B's id
            f"{b.id}.{'0' * 64}",
        ]
        for context in forged:
            await uow.fetch("SELECT set_config('leaddb.tenant', $1, true)", context)
            assert await uow.fetch("SELECT email, password_hash FROM users") == []
            assert await uow.fetch("SELECT credentials_encrypted FROM integrations") == []
            assert await uow.fetchval("SELECT count(*) FROM leads") == 0
    assert await pg.fetchval("SELECT count(*) FROM users WHERE organization_id = $1", b.id) == 1


async def test_a_platform_flag_set_by_sql_shows_nothing(
    attacked: LeadDB, bystander: LeadDB
) -> None:
    a, b = await make_org(attacked), await make_org(attacked)
    await make_user(attacked, b.id, password=PASSWORD)
    async with attacked.tenant(a.id) as uow:
        await uow.execute("SET LOCAL leaddb.platform = 'on'")
        assert await uow.fetch("SELECT email FROM users") == []
        async with bystander.platform() as platform:
            signed = await platform.fetchval("SELECT current_setting('leaddb.platform')")
        assert signed != "on"
        await uow.execute("SET LOCAL leaddb.tenant = ''")
        await uow.execute("SELECT set_config('leaddb.platform', 'on', true)")
        assert await uow.fetch("SELECT email FROM users") == []
        assert await uow.fetchval("SELECT count(*) FROM organizations") == 0


async def test_a_forged_write_to_another_tenants_lead_changes_nothing(
    attacked: LeadDB, bystander: LeadDB, pg: asyncpg.Connection
) -> None:
    a, b = await make_org(attacked), await make_org(attacked)
    lead = await make_lead(attacked, b.id, first_name="Grace")
    async with bystander.tenant(b.id) as uow:  # cached now
        assert (await uow.leads.get_one(lead.id)).first_name == "Grace"
    audit_before = await pg.fetchval("SELECT count(*) FROM activity_logs")
    async with attacked.tenant(a.id) as uow:
        await uow.fetch("SELECT set_config('leaddb.tenant', $1, true)", str(b.id))
        status = await uow.execute("UPDATE leads SET first_name = 'Mallory' WHERE id = $1", lead.id)
        assert status == "UPDATE 0"
        await uow.commit()
    assert await pg.fetchval("SELECT first_name FROM leads WHERE id = $1", lead.id) == "Grace"
    assert await pg.fetchval("SELECT count(*) FROM activity_logs") == audit_before
    async with bystander.tenant(b.id) as uow:
        assert (await uow.leads.get_one(lead.id)).first_name == "Grace"


# -- 2. organizations ---------------------------------------------------------------------------


async def test_a_tenant_sees_and_changes_no_other_organization(
    attacked: LeadDB, pg: asyncpg.Connection
) -> None:
    a, b = await make_org(attacked), await make_org(attacked)
    async with attacked.tenant(a.id) as uow:
        assert [row["id"] for row in await uow.fetch("SELECT id FROM organizations")] == [a.id]
        assert await uow.execute("DELETE FROM organizations WHERE id = $1", b.id) == "DELETE 0"
        renamed = "UPDATE organizations SET name = 'pwned', is_active = false WHERE id = $1"
        assert await uow.execute(renamed, b.id) == "UPDATE 0"
        # Not even its own: organizations change in platform units of work only.
        assert await uow.execute(renamed, a.id) == "UPDATE 0"
        assert await uow.execute("DELETE FROM organizations WHERE id = $1", a.id) == "DELETE 0"
        with pytest.raises(LeadDBError):
            await uow.execute(
                "INSERT INTO organizations (id, name, slug) VALUES ($1, 'x', 'x-org')",
                uuid.uuid4(),
            )
    rows = await pg.fetch(
        "SELECT name, is_active FROM organizations WHERE id = ANY($1)", [a.id, b.id]
    )
    assert sorted((row["name"], row["is_active"]) for row in rows) == sorted(
        [(a.name, True), (b.name, True)]
    )


async def test_the_platform_still_manages_organizations(attacked: LeadDB) -> None:
    org = await make_org(attacked)
    async with attacked.platform() as uow:
        updated = await uow.organizations.update(org.id, OrganizationUpdate(name="Renamed"))
        await uow.commit()
    assert updated.name == "Renamed"
    async with attacked.platform() as uow:
        await uow.organizations.delete(org.id)
        await uow.commit()
    async with attacked.platform() as uow:
        assert await uow.organizations.get(org.id) is None


# -- 3. what raw SQL leaves on a pooled connection ---------------------------------------------


async def test_a_temporary_table_does_not_shadow_leaddbs_tables(
    attacked: LeadDB, pg: asyncpg.Connection
) -> None:
    a, b = await make_org(attacked), await make_org(attacked)
    forged_id = uuid.uuid4()
    async with attacked.tenant(a.id) as uow:
        await uow.execute("CREATE TEMP TABLE leads (LIKE public.leads INCLUDING DEFAULTS)")
        await uow.execute(
            "INSERT INTO pg_temp.leads (organization_id, id, email, first_name) "
            "VALUES ($1, $2, 'forged@example.com', 'Forged')",
            b.id,
            forged_id,
        )
        await uow.commit()
    async with attacked.tenant(b.id) as uow:
        assert await uow.leads.get(forged_id) is None
        assert (await uow.leads.list()).items == []
        assert await uow.leads.count() == 0
        created = await uow.leads.create_many(lead_payloads(1))
        await uow.commit()
    assert await pg.fetchval("SELECT organization_id FROM leads WHERE id = $1", created[0].id) == (
        b.id
    )


async def test_a_trigger_on_a_precreated_scratch_table_steals_nothing(
    attacked: LeadDB, pg: asyncpg.Connection
) -> None:
    a, b = await make_org(attacked), await make_org(attacked)
    async with attacked.tenant(a.id) as uow:
        await uow.execute(
            "CREATE TEMP TABLE stolen (email text); "
            "CREATE TEMP TABLE _leaddb_bulk_leads (audit_id uuid, changes jsonb, "
            "LIKE public.leads INCLUDING DEFAULTS) ON COMMIT PRESERVE ROWS; "
            "CREATE FUNCTION pg_temp.steal() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO pg_temp.stolen VALUES (NEW.email); RETURN NEW; END $$; "
            "CREATE TRIGGER steal BEFORE INSERT ON pg_temp._leaddb_bulk_leads "
            "FOR EACH ROW EXECUTE FUNCTION pg_temp.steal()"
        )
        await uow.commit()
    async with attacked.tenant(b.id) as uow:
        await uow.leads.create_many(lead_payloads(300, prefix="secret"))
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM leads WHERE organization_id = $1", b.id) == 300
    async with attacked.tenant(a.id) as uow:
        assert await uow.fetchval("SELECT to_regclass('pg_temp.stolen')") is None


async def test_session_state_left_by_raw_sql_is_gone_for_the_next_unit_of_work(
    attacked: LeadDB,
) -> None:
    a, b = await make_org(attacked), await make_org(attacked)
    async with attacked.tenant(a.id) as uow:
        pid = await uow.fetchval("SELECT pg_backend_pid()")
        await uow.execute(
            "SET search_path = pg_temp, public; SET work_mem = '7MB'; LISTEN leaddb_spy; "
            "DECLARE spy CURSOR WITH HOLD FOR SELECT 1; SELECT pg_advisory_lock(4242); "
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
        )
        await uow.commit()
    async with attacked.tenant(b.id) as uow:
        assert await uow.fetchval("SELECT pg_backend_pid()") == pid  # the same session
        assert await uow.fetchval("SHOW search_path") == '"$user", public, pg_temp'
        assert await uow.fetchval("SHOW work_mem") != "7MB"
        assert await uow.fetch("SELECT * FROM pg_listening_channels()") == []
        assert await uow.fetch("SELECT name FROM pg_cursors WHERE is_holdable") == []
        locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1"
        assert await uow.fetchval(locks, pid) == 0
        assert await uow.fetchval("SELECT current_user") == "leaddb_app"
        await uow.leads.create(lead_payloads(1)[0])  # not a read-only session any more
        await uow.commit()


# Direct only (run_through_pooler deselects it): it checks that leaddb closes the server session
# a raw PREPARE was left on (another pid). Behind a transaction pooler leaddb deallocates it in
# the same transaction instead and server sessions are PgBouncer's to keep; that no statement
# reaches another unit of work there is tests/scale/test_pgbouncer.py's raw-leftovers test.
@pytest.mark.direct_connection
async def test_a_connection_with_a_prepared_statement_of_raw_sql_is_closed(
    attacked: LeadDB,
) -> None:
    a, b = await make_org(attacked), await make_org(attacked)
    async with attacked.tenant(a.id) as uow:
        pid = await uow.fetchval("SELECT pg_backend_pid()")
        await uow.execute("PREPARE spy AS SELECT current_setting('leaddb.tenant')")
        await uow.commit()
    async with attacked.tenant(b.id) as uow:
        assert await uow.fetchval("SELECT pg_backend_pid()") != pid
        assert await uow.fetch("SELECT name FROM pg_prepared_statements WHERE from_sql") == []


# -- 4. raw connections and the pool ------------------------------------------------------------


async def test_a_raw_connection_kept_after_its_unit_of_work_is_useless(
    attacked: LeadDB, pg: asyncpg.Connection
) -> None:
    a, b = await make_org(attacked), await make_org(attacked)
    await make_lead(attacked, b.id)
    async with attacked.tenant(a.id) as uow:
        kept = await uow.connection()
        kept_fetch = kept.fetch
        await uow.commit()
    async with attacked.tenant(b.id) as uow:
        await uow.leads.count()  # B's transaction is open on the same backend
        with pytest.raises(UnitOfWorkClosedError):
            await kept.fetch("SELECT * FROM leads")
        with pytest.raises(UnitOfWorkClosedError):
            await kept_fetch("SELECT * FROM leads")
        with pytest.raises(UnitOfWorkClosedError):
            await kept.execute("INSERT INTO notes VALUES (1)")
        await uow.commit()
    assert not hasattr(attacked, "pool")


async def test_listeners_cannot_be_left_on_a_pooled_connection(attacked: LeadDB) -> None:
    org = await make_org(attacked)
    async with attacked.tenant(org.id) as uow:
        connection = await uow.connection()
        with pytest.raises(UnitOfWorkClosedError):
            await connection.add_listener("channel", lambda *args: None)
        with pytest.raises(UnitOfWorkClosedError):
            await connection.set_type_codec("json", encoder=str, decoder=str)
        seen: list[str] = []
        connection.add_query_logger(lambda record: seen.append(record.query))
        await uow.fetch("SELECT 1")
        await uow.commit()
    async with attacked.tenant(org.id) as uow:
        await uow.fetch("SELECT 2")  # the same backend, another unit of work: not logged
    assert "SELECT 1" in seen
    assert "SELECT 2" not in seen


# -- 5. raw writes and the cache -----------------------------------------------------------------


async def test_a_rolled_back_raw_write_is_never_served_from_the_cache(
    attacked: LeadDB, bystander: LeadDB
) -> None:
    org = await make_org(attacked)
    lead = await make_lead(attacked, org.id, first_name="Grace")
    async with attacked.tenant(org.id) as uow:
        await uow.execute("UPDATE leads SET first_name = 'Uncommitted' WHERE id = $1", lead.id)
        assert (await uow.leads.get_one(lead.id)).first_name == "Uncommitted"
        # rolled back on leaving
    async with bystander.tenant(org.id) as uow:
        assert (await uow.leads.get_one(lead.id)).first_name == "Grace"


async def test_a_committed_raw_write_invalidates_the_tenants_cache(
    attacked: LeadDB, bystander: LeadDB
) -> None:
    org = await make_org(attacked)
    lead = await make_lead(attacked, org.id, first_name="Grace")
    async with bystander.tenant(org.id) as uow:
        assert (await uow.leads.get_one(lead.id)).first_name == "Grace"  # now cached
    async with attacked.tenant(org.id) as uow:
        await uow.execute("UPDATE leads SET first_name = 'Ada' WHERE id = $1", lead.id)
        await uow.commit()
    async with bystander.tenant(org.id) as uow:
        assert (await uow.leads.get_one(lead.id)).first_name == "Ada"
    # Repository writes after raw SQL in the same unit of work are invalidated too.
    async with attacked.tenant(org.id) as uow:
        await uow.fetch("SELECT 1")
        await uow.leads.update(lead.id, LeadUpdate(first_name="Lovelace"))
        await uow.commit()
    async with bystander.tenant(org.id) as uow:
        assert (await uow.leads.get_one(lead.id)).first_name == "Lovelace"


async def test_a_raw_platform_write_invalidates_the_organizations_it_touched(
    attacked: LeadDB, bystander: LeadDB
) -> None:
    kept, deleted = await make_org(attacked), await make_org(attacked)
    lead = await make_lead(attacked, deleted.id)
    async with bystander.platform() as uow:
        assert await uow.organizations.get(kept.id) is not None
        assert await uow.organizations.get(deleted.id) is not None
    async with bystander.tenant(deleted.id) as uow:
        assert await uow.leads.get(lead.id) is not None
    async with attacked.platform() as uow:
        await uow.execute("UPDATE organizations SET name = 'Raw' WHERE id = $1", kept.id)
        await uow.execute("DELETE FROM organizations WHERE id = $1", deleted.id)
        await uow.commit()
    async with bystander.platform() as uow:
        renamed = await uow.organizations.get(kept.id)
        assert renamed is not None
        assert renamed.name == "Raw"
        assert await uow.organizations.get(deleted.id) is None
    async with bystander.tenant(deleted.id) as uow:
        assert await uow.leads.get(lead.id) is None


# -- keys -----------------------------------------------------------------------------------------


async def test_a_plain_login_without_the_key_or_with_a_wrong_one_is_refused(
    plain_settings: LeadDBSettings,
) -> None:
    without = plain_settings.model_copy(update={"tenant_context_key": None})
    with pytest.raises(ConfigurationError, match="LEADDB_TENANT_CONTEXT_KEY"):
        await LeadDB.connect(without)
    wrong = plain_settings.model_copy(update={"tenant_context_key": SecretStr("ab" * 32)})
    with pytest.raises(ConfigurationError, match="not the database's tenant-context key"):
        await LeadDB.connect(wrong)


async def test_cursors_are_signed_with_the_databases_random_key(
    settings: LeadDBSettings, bystander: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(bystander)
    for index in range(3):
        await make_lead(bystander, org.id, email=f"c{index}@example.com")
    async with bystander.tenant(org.id) as uow:
        page = await uow.leads.list(limit=1)
    assert page.next_cursor is not None
    # Another process of the deployment takes it: the key is the database's, not the process's.
    async with await LeadDB.connect(settings) as other, other.tenant(org.id) as uow:
        assert len((await uow.leads.list(limit=1, after=page.next_cursor)).items) == 1
    stored = bytes(await pg.fetchval("SELECT key FROM leaddb_private.cursor_key"))
    assert len(stored) == 32
    # Nothing about it comes from the URL, which may carry no password at all.
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value().encode()
    assert url not in stored
