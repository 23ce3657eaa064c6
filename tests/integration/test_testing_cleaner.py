"""leaddb.testing's cleaning between tests: every leaddb row and key goes, nothing else does."""

from __future__ import annotations

import uuid

import asyncpg
import redis.asyncio as aioredis

from leaddb import LeadDB
from leaddb.testing import Cleaner, asyncpg_dsn

from .factories import make_lead, make_org, make_user

COUNT_ROWS = (
    "SELECT (SELECT count(*) FROM organizations) + (SELECT count(*) FROM users) "
    "+ (SELECT count(*) FROM leads) + (SELECT count(*) FROM activity_logs)"
)


async def tables_of(pg: asyncpg.Connection) -> list[str]:
    rows = await pg.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename <> 'alembic_version'"
    )
    return [row["tablename"] for row in rows]


async def test_the_cleaner_deletes_every_row_and_leaddb_key_and_keeps_the_rest(
    db: LeadDB, pg: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    org = await make_org(db)
    await make_user(db, org.id)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        await uow.leads.get(lead.id)  # cached
    await redis_client.set("service:kept", b"1")
    assert await pg.fetchval(COUNT_ROWS) > 3
    assert await redis_client.keys("leaddb:*") != []

    cleaner = Cleaner(await tables_of(pg), pg, redis_client)
    await cleaner.clean()

    assert cleaner.truncate is False  # the superuser's path: DELETE
    assert await pg.fetchval(COUNT_ROWS) == 0
    assert await redis_client.keys("leaddb:*") == []
    assert await redis_client.get("service:kept") == b"1"
    assert await pg.fetchval("SELECT count(*) FROM alembic_version") == 1
    # The foreign keys' triggers were off for the cleaning's transaction only.
    assert await pg.fetchval("SHOW session_replication_role") == "origin"


async def test_a_login_that_may_not_skip_triggers_truncates_instead(
    db: LeadDB, pg: asyncpg.Connection, redis_client: aioredis.Redis, database_url: str
) -> None:
    org = await make_org(db)
    await make_lead(db, org.id)
    role = f"leaddb_cleaner_{uuid.uuid4().hex[:8]}"
    tables = await tables_of(pg)
    await pg.execute(f"CREATE ROLE {role} LOGIN")
    try:
        await pg.execute(f"GRANT TRUNCATE, DELETE ON {', '.join(tables)} TO {role}")
        login = await asyncpg.connect(asyncpg_dsn(database_url), user=role)
        try:
            cleaner = Cleaner(tables, login, redis_client)
            await cleaner.clean()
            assert cleaner.truncate is True
            assert not login.is_in_transaction()
        finally:
            await login.close()
        assert await pg.fetchval(COUNT_ROWS) == 0
    finally:
        await pg.execute(f"REVOKE ALL ON {', '.join(tables)} FROM {role}")
        await pg.execute(f"DROP ROLE {role}")
