"""The scale-out section of the benchmark: ``python -m bench.scale``, only against scale servers.

Given a primary, a streaming replica of it and a PgBouncer in transaction mode in front of the
primary (``--primary-url --replica-url --bouncer-url``), or ``--start`` to start them here from
the machine's binaries (tests/scale/postgres_topology.py, as ``nox -s scale`` does), it times,
interleaved, with the cache off so every call reaches PostgreSQL:

* a tenant unit of work's ``get`` through PgBouncer against the same directly (target <= 1.5x);
* a read-only unit of work's ``get`` routed to the replica against one on the primary, both
  ``read_only=True`` (target <= 1.1x); the replica's includes the Redis GET of the position;
* a write unit of work (one update, commit; each contender updating rows of its own) recording
  the read-your-writes position against the same without replicas configured (target <= 1.05x);
* the floor of the first: raw asyncpg through the same PgBouncer (``statement_cache_size=0``,
  the BEGIN with its ``SET LOCAL``s, the lead's SELECT, ROLLBACK: what a unit of work sends)
  against raw asyncpg directly (prepared, the role held by the session), no target: what
  PgBouncer and the unnamed statements cost before leaddb does anything;
* the floor of the second: raw asyncpg on the replica with the Redis GET of the position sent
  beside its BEGIN (as leaddb routes) against raw asyncpg on the primary, no target;
* a cached ``get`` (its own unit of work, cache on) with ``LEADDB_REDIS_URL=redis+cluster://`` on
  a local 3-master Redis Cluster against a single Redis through the same redis-py transport
  (``redis_client="redis-py"``) (target <= 1.3x).

    python -m bench.scale --start --redis-url redis://127.0.0.1:6379/8

Exits 1 when a row misses its target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import SecretStr

from bench.seed import LEAD_COLUMNS
from bench.timing import Contender, Samples, interleaved
from leaddb import LeadDB, LeadDBSettings
from leaddb import migrate as migrations
from leaddb.connections.lean_redis import LeanRedis
from leaddb.connections.pooler import transaction_settings
from leaddb.connections.replicas import token_key
from leaddb.connections.session_role import APP_ROLE
from leaddb.db import create_engine
from leaddb.models import LeadCreate, LeadUpdate, OrganizationCreate

TARGETS: dict[str, float | None] = {
    "pgbouncer": 1.5,
    "pgbouncer floor (raw asyncpg)": None,
    "replica": 1.1,
    "replica floor (raw asyncpg + GET)": None,
    "lsn token": 1.05,
    "redis cluster": 1.3,
}
GET_SQL = (
    f"SELECT {', '.join(LEAD_COLUMNS)} FROM leads "  # noqa: S608  (fixed column names)
    "WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL"
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--primary-url")
    parser.add_argument("--replica-url")
    parser.add_argument("--bouncer-url")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--cluster-url", help="redis+cluster://... (with --start: started here)")
    parser.add_argument("--start", action="store_true", help="start the servers here")
    parser.add_argument("--iterations", type=int, default=2000)
    return parser.parse_args(argv)


@contextlib.contextmanager
def topology(args: argparse.Namespace) -> Iterator[tuple[str, str, str, str]]:
    if not args.start:
        if not (args.primary_url and args.replica_url and args.bouncer_url and args.cluster_url):
            sys.exit(
                "give --primary-url, --replica-url, --bouncer-url and --cluster-url, or --start"
            )
        yield args.primary_url, args.replica_url, args.bouncer_url, args.cluster_url
        return
    # The scale suite's harnesses, from the checkout (the bench runs from one, as tests do);
    # by name, because mypy knows those modules under the tests' own root.
    harness: Any = importlib.import_module("tests.scale.postgres_topology")
    redis_harness: Any = importlib.import_module("tests.scale.redis_topology")
    started = harness.start()
    try:
        cluster = redis_harness.RedisCluster3.start()
        try:
            yield started.primary_url, started.replica_url, started.bouncer_url, cluster.url
        finally:
            cluster.stop()
    finally:
        started.stop()


def settings(url: str, redis: str, **extra: object) -> LeadDBSettings:
    values: dict[str, object] = {
        "database_url": SecretStr(url),
        "redis_url": SecretStr(redis),
        "cache_enabled": False,
        **extra,
    }
    return LeadDBSettings.model_validate(values)


@contextlib.asynccontextmanager
async def opened(*all_settings: LeadDBSettings) -> AsyncIterator[list[LeadDB]]:
    dbs = [await LeadDB.connect(one) for one in all_settings]
    try:
        yield dbs
    finally:
        for db in dbs:
            await db.close()


async def run(args: argparse.Namespace) -> list[tuple[str, Samples, Samples]]:
    with topology(args) as (primary, replica, bouncer, cluster):
        engine = create_engine(settings(primary, args.redis_url))
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()
        async with (
            opened(
                settings(primary, args.redis_url),
                settings(bouncer, args.redis_url, transaction_pooler=True),
                settings(primary, args.redis_url, replica_urls=replica, replica_poll_ms=50),
                settings(primary, cluster, cache_enabled=True),
                settings(primary, args.redis_url, cache_enabled=True, redis_client="redis-py"),
            ) as (direct, pooled, routed, on_cluster, on_single),
            raw_floors(pooled, primary, replica, bouncer, args.redis_url) as floor,
        ):
            return await measure(
                direct, pooled, routed, (on_cluster, on_single), floor, args.iterations
            )


@dataclass
class Floors:
    """Raw asyncpg pairs sending what units of work send: through PgBouncer / directly, and on
    the replica with the Redis GET of the position beside its BEGIN / on the primary."""

    bouncer: Contender
    direct: Contender
    replica: Contender
    primary: Contender
    target: dict[str, Any]

    def aim(self, org: uuid.UUID, ids: list[uuid.UUID], context: str) -> None:
        self.target.update(org=org, ids=ids, context=context)


@contextlib.asynccontextmanager
async def raw_floors(
    pooled: LeadDB, primary: str, replica: str, bouncer: str, redis_url: str
) -> AsyncIterator[Floors]:
    target: dict[str, Any] = {}
    # As a unit of work behind a pooler begins: the role, the settings and the context as
    # SET LOCAL; directly, the session holds the role and the settings.
    timeout_ms = int(pooled.settings.statement_timeout_seconds * 1000)
    pooled_begin = f"BEGIN; SET LOCAL ROLE {APP_ROLE}; {transaction_settings(timeout_ms)}"
    redis = LeanRedis(redis_url, timeout=1.0)

    def contender(
        connection: asyncpg.Connection[Any], begin: str, *, ask_redis: bool = False
    ) -> Contender:
        async def one(i: int) -> object:
            ids = target["ids"]
            # As leaddb routes: the GET written first, awaited once the BEGIN has answered.
            sent = redis.send_now("GET", token_key(target["org"])) if ask_redis else None
            await connection.execute(f"{begin}SET LOCAL leaddb.tenant = '{target['context']}'")
            if sent is not None:
                await sent
            try:
                return await connection.fetchrow(GET_SQL, target["org"], ids[i % len(ids)])
            finally:
                await connection.execute("ROLLBACK")

        return Contender("", one)

    await redis.call("PING")  # connected, so send_now sends
    async with contextlib.AsyncExitStack() as stack:
        through = await asyncpg.connect(bouncer, statement_cache_size=0)
        stack.push_async_callback(through.close)
        plain = await asyncpg.connect(primary)
        stack.push_async_callback(plain.close)
        standby = await asyncpg.connect(replica)
        stack.push_async_callback(standby.close)
        stack.push_async_callback(redis.close)
        for session in (plain, standby):
            await session.execute(f"SET ROLE {APP_ROLE}")
        yield Floors(
            contender(through, pooled_begin),
            contender(plain, "BEGIN; "),
            contender(standby, "BEGIN READ ONLY; ", ask_redis=True),
            contender(plain, "BEGIN READ ONLY; "),
            target,
        )


async def measure(
    direct: LeadDB,
    pooled: LeadDB,
    routed: LeadDB,
    cached: tuple[LeadDB, LeadDB],
    floor: Floors,
    iterations: int,
) -> list[tuple[str, Samples, Samples]]:
    async with direct.platform() as platform:
        org = await platform.organizations.create(
            OrganizationCreate(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
        )
        await platform.commit()
    async with direct.tenant(org.id) as tenant:
        leads = await tenant.leads.create_many(
            [LeadCreate(email=f"b{index}@example.com") for index in range(500)]
        )
        await tenant.commit()
    ids = [lead.id for lead in leads]
    signer = direct.signer
    floor.aim(org.id, ids, str(org.id) if signer is None else signer.tenant(org.id))
    await asyncio.sleep(0.5)  # the replica replays the seed, and the router learns it

    def get(db: LeadDB, *, read_only: bool = False) -> Contender:
        async def one(i: int) -> object:
            async with db.tenant(org.id, read_only=read_only) as uow:
                return await uow.leads.get(ids[i % len(ids)])

        return Contender("", one)

    def update(db: LeadDB, rows: list[uuid.UUID]) -> Contender:
        async def one(i: int) -> object:
            async with db.tenant(org.id) as uow:
                await uow.leads.update(rows[i % len(rows)], LeadUpdate(score=i % 100))
                await uow.commit()
            return None

        return Contender("", one)

    results = []
    pairs = [
        ("pgbouncer", get(pooled), get(direct)),
        ("pgbouncer floor (raw asyncpg)", floor.bouncer, floor.direct),
        ("replica", get(routed, read_only=True), get(direct, read_only=True)),
        ("replica floor (raw asyncpg + GET)", floor.replica, floor.primary),
    ]
    for name, subject, base in pairs:
        subject.name, base.name = f"{name}: subject", f"{name}: base"
        timed = await interleaved([subject, base], iterations=iterations, warmup=100, block=50)
        results.append((name, timed[0], timed[1]))
    # Writes last: they move the tenant's position, which keeps the reads above on the replica
    # only once it has replayed them.
    # Each its own rows (the seed's two halves, on pages of their own): updating the rows the
    # other contender just updated made whichever ran first in a block pay for the other's dead
    # row versions, 10-15% here, more than the target's margin, by order alone.
    half = len(ids) // 2
    subject, base = update(routed, ids[:half]), update(direct, ids[half:])
    subject.name, base.name = "lsn token: subject", "lsn token: base"
    timed = await interleaved([subject, base], iterations=iterations // 2, warmup=50, block=25)
    results.append(("lsn token", timed[0], timed[1]))
    # Cache hits: every lead read once by each (fills), then timed.
    for db in cached:
        for lead_id in ids:
            async with db.tenant(org.id) as uow:
                await uow.leads.get(lead_id)
    subject, base = get(cached[0]), get(cached[1])
    subject.name, base.name = "redis cluster: subject", "redis cluster: base"
    timed = await interleaved([subject, base], iterations=iterations, warmup=100, block=50)
    results.append(("redis cluster", timed[0], timed[1]))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    results = asyncio.run(run(args))
    print("| comparison | subject median µs | base median µs | ratio | target |")
    print("|---|---|---|---|---|")
    failed = False
    for name, subject, base in results:
        ratio = subject.median / base.median
        target = TARGETS[name]
        failed |= target is not None and ratio > target
        print(
            f"| {name} | {subject.median:.0f} | {base.median:.0f} | {ratio:.2f}x "
            f"| {'none (the floor)' if target is None else f'<= {target}x'} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
