"""How the pytest plugin empties leaddb's tables between tests (issue 24), measured.

    python -m bench.testing_cleanup --database-url postgresql://postgres@127.0.0.1:5432/postgres

On a database of its own, migrated: each round a test-sized write (an organization, a user, three
leads and their audit rows) and then one way of emptying every leaddb table:

* ``truncate all``: one TRUNCATE of every table (what tests/conftest.py did before the plugin);
* ``probe, truncate filled``: one query finds the tables holding rows, one TRUNCATE empties
  those;
* ``delete all, one message``: BEGIN, foreign-key triggers off for the transaction, a DELETE per
  table, COMMIT, sent as one message (leaddb.testing.Cleaner).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy.engine import make_url

from leaddb import LeadDB
from leaddb import migrate as migrations
from leaddb.db import create_engine
from leaddb.models import LeadCreate, OrganizationCreate, UserCreate
from leaddb.testing import Cleaner, asyncpg_dsn, run_settings


async def _write(db: LeadDB) -> None:
    suffix = uuid.uuid4().hex[:10]
    async with db.platform() as uow:
        org = await uow.organizations.create(OrganizationCreate(name="Bench", slug=f"b-{suffix}"))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        await uow.users.create(UserCreate(email=f"u-{suffix}@example.com", full_name="U"))
        for n in range(3):
            await uow.leads.create(LeadCreate(email=f"l{n}-{suffix}@example.com"))
        await uow.commit()


async def main(admin_url: str, redis_url: str, rounds: int) -> None:
    name = f"leaddb_cleanup_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(False)
    try:
        engine = create_engine(run_settings(url, redis_url))
        await migrations.upgrade(engine)
        await engine.dispose()
        db = await LeadDB.connect(run_settings(url, redis_url, cache_enabled=False))
        connection = await asyncpg.connect(asyncpg_dsn(url))
        rows = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version' ORDER BY tablename"
        )
        tables = [row["tablename"] for row in rows]
        cleaner = Cleaner(tables, connection, db.redis)

        async def truncate_all() -> None:
            quoted = ", ".join(f'"{table}"' for table in tables)
            await connection.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")

        async def truncate_filled() -> None:
            probe = " UNION ALL ".join(
                f'SELECT {i} WHERE EXISTS (SELECT FROM "{t}")'  # noqa: S608
                for i, t in enumerate(tables)
            )
            filled = [tables[row[0]] for row in await connection.fetch(probe)]
            if filled:
                quoted = ", ".join(f'"{table}"' for table in filled)
                await connection.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")

        ways: dict[str, Callable[[], Awaitable[None]]] = {
            "truncate all": truncate_all,
            "probe, truncate filled": truncate_filled,
            "delete all, one message": cleaner.clean_tables,
        }
        timings: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(rounds):
            for way, clean in ways.items():
                await _write(db)
                began = time.perf_counter()
                await clean()
                timings[way].append((time.perf_counter() - began) * 1000)
        print(f"{len(tables)} tables, {rounds} rounds, ms per cleaning (median, p90):")
        for way, values in timings.items():
            values.sort()
            p90 = values[int(len(values) * 0.9) - 1]
            print(f"  {way:<24} {statistics.median(values):7.2f} {p90:7.2f}")
        await connection.close()
        await db.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.database_url, args.redis_url, args.rounds))
