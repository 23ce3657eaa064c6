"""The scale-out section of the benchmark: ``python -m bench.scale``, only against scale servers.

Given a primary, a streaming replica of it and a PgBouncer in transaction mode in front of the
primary (``--primary-url --replica-url --bouncer-url``), or ``--start`` to start them here from
the machine's binaries (tests/scale/postgres_topology.py, as ``nox -s scale`` does), it times,
interleaved, with the cache off so every call reaches PostgreSQL:

* a tenant unit of work's ``get`` through PgBouncer against the same directly (target <= 1.5x);
* a read-only unit of work's ``get`` routed to the replica against one on the primary, both
  ``read_only=True`` (target <= 1.1x); the replica's includes the Redis GET of the position;
* a write unit of work (one update, commit) recording the read-your-writes position against the
  same without replicas configured (target <= 1.05x).

    python -m bench.scale --start --redis-url redis://127.0.0.1:6379/8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import SecretStr

from bench.timing import Contender, Samples, interleaved
from leaddb import LeadDB, LeadDBSettings
from leaddb import migrate as migrations
from leaddb.db import create_engine
from leaddb.models import LeadCreate, LeadUpdate, OrganizationCreate

TARGETS = {"pgbouncer": 1.5, "replica": 1.1, "lsn token": 1.05}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--primary-url")
    parser.add_argument("--replica-url")
    parser.add_argument("--bouncer-url")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--start", action="store_true", help="start the servers here")
    parser.add_argument("--iterations", type=int, default=2000)
    return parser.parse_args(argv)


@contextlib.contextmanager
def topology(args: argparse.Namespace) -> Iterator[tuple[str, str, str]]:
    if not args.start:
        if not (args.primary_url and args.replica_url and args.bouncer_url):
            sys.exit("give --primary-url, --replica-url and --bouncer-url, or --start")
        yield args.primary_url, args.replica_url, args.bouncer_url
        return
    # The scale suite's harness, from the checkout (the bench runs from one, as tests do);
    # by name, because mypy knows that module under the tests' own root.
    harness: Any = importlib.import_module("tests.scale.postgres_topology")
    started = harness.start()
    try:
        yield started.primary_url, started.replica_url, started.bouncer_url
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
    with topology(args) as (primary, replica, bouncer):
        engine = create_engine(settings(primary, args.redis_url))
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()
        async with opened(
            settings(primary, args.redis_url),
            settings(bouncer, args.redis_url, transaction_pooler=True),
            settings(primary, args.redis_url, replica_urls=replica, replica_poll_ms=50),
        ) as (direct, pooled, routed):
            return await measure(direct, pooled, routed, args.iterations)


async def measure(
    direct: LeadDB, pooled: LeadDB, routed: LeadDB, iterations: int
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
    await asyncio.sleep(0.5)  # the replica replays the seed, and the router learns it

    def get(db: LeadDB, *, read_only: bool = False) -> Contender:
        async def one(i: int) -> object:
            async with db.tenant(org.id, read_only=read_only) as uow:
                return await uow.leads.get(ids[i % len(ids)])

        return Contender("", one)

    def update(db: LeadDB) -> Contender:
        async def one(i: int) -> object:
            async with db.tenant(org.id) as uow:
                await uow.leads.update(ids[i % len(ids)], LeadUpdate(score=i % 100))
                await uow.commit()
            return None

        return Contender("", one)

    results = []
    pairs = [
        ("pgbouncer", get(pooled), get(direct)),
        ("replica", get(routed, read_only=True), get(direct, read_only=True)),
    ]
    for name, subject, base in pairs:
        subject.name, base.name = f"{name}: subject", f"{name}: base"
        timed = await interleaved([subject, base], iterations=iterations, warmup=100, block=50)
        results.append((name, timed[0], timed[1]))
    # Writes last: they move the tenant's position, which keeps the reads above on the replica
    # only once it has replayed them.
    subject, base = update(routed), update(direct)
    subject.name, base.name = "lsn token: subject", "lsn token: base"
    timed = await interleaved([subject, base], iterations=iterations // 2, warmup=50, block=25)
    results.append(("lsn token", timed[0], timed[1]))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    results = asyncio.run(run(args))
    print("| comparison | subject median µs | base median µs | ratio | target |")
    print("|---|---|---|---|---|")
    failed = False
    for name, subject, base in results:
        ratio = subject.median / base.median
        failed |= ratio > TARGETS[name]
        print(
            f"| {name} | {subject.median:.0f} | {base.median:.0f} | {ratio:.2f}x "
            f"| <= {TARGETS[name]}x |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
