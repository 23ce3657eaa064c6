"""The Redis cache (issue 6) and the cost of row-level security (issue 11)."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bench import raw_statements
from bench.context import Bench
from bench.ops_reads import LIST_FIRST_SQL, PAGE
from bench.ops_writes import rounds_note
from bench.seed import DEEP_STATUS
from bench.servers import BENCH_KEY_PREFIX
from bench.timing import Contender
from leaddb.models import LeadRead, LeadUpdate

CACHED_GET = "leaddb cached get, own unit of work"
RAW_GET_DECODE = "redis-py GET + LeadRead.model_validate_json"
RAW_GET = "redis-py GET"
UNCACHED_GET = "leaddb uncached get, own unit of work"
CACHED_MANY = "leaddb get_many(50) all cached, own unit of work"
RAW_MGET = "redis-py MGET 50"
RAW_MGET_DECODE = "redis-py MGET 50 + 50 model_validate_json"
UNCACHED_MANY = "leaddb uncached get_many(50), own unit of work"
MANY = 50
RLS_ON = "leaddb, row-level security on"
RLS_OFF = "leaddb, row-level security off"


def bench_key(lead_id: uuid.UUID) -> str:
    return f"{BENCH_KEY_PREFIX}:lead:{lead_id}"


async def cache(bench: Bench) -> None:
    """Cached get vs raw GET + decode vs uncached get; get_many(50) vs one MGET."""
    org = bench.big
    bench.servers.tenants.add(org)
    ids = bench.seeded.big_live_ids[: min(len(bench.seeded.big_live_ids), 1000)]
    groups = [ids[start : start + MANY] for start in range(0, len(ids) - MANY + 1, MANY)]
    db = bench.db_cached

    def pick(i: int) -> uuid.UUID:
        return ids[i % len(ids)]

    def group(i: int) -> list[uuid.UUID]:
        return groups[i % len(groups)]

    async with AsyncExitStack() as stack:
        client = aioredis.Redis.from_url(bench.servers.redis_url)
        stack.push_async_callback(client.aclose)
        # Fill leaddb's cache, and store the same rows as LeadRead JSON under the bench's keys.
        async with bench.db.tenant(org) as uow:
            leads = await uow.leads.get_many(ids)
        sizes = []
        for lead in leads:
            payload = LeadRead.model_validate(lead, from_attributes=True).model_dump_json()
            sizes.append(len(payload))
            await client.set(bench_key(lead.id), payload, ex=3600)
        for chunk in groups:
            async with db.tenant(org) as uow:
                await uow.leads.get_many(chunk)
        # A unit of work served from the cache alone never touches PostgreSQL.
        idle_before = db._pool.get_idle_size()
        size_before = db._pool.get_size()
        stats_before = db.cache.stats()
        async with db.tenant(org) as uow:
            cached = await uow.leads.get(ids[0])
            no_connection = uow._connection is None
        stats_after = db.cache.stats()
        async with bench.db.tenant(org) as uow:
            uncached = await uow.leads.get(ids[0])
        same = cached is not None and uncached is not None and cached == uncached
        bench.facts["cached unit of work"] = (
            f"a unit of work that only read a cached lead held no connection "
            f"(uow._connection stayed None: {no_connection}); pool size {size_before} -> "
            f"{db._pool.get_size()}, idle {idle_before} -> {db._pool.get_idle_size()}; "
            f"cache hits +{stats_after.hits - stats_before.hits}, "
            f"misses +{stats_after.misses - stats_before.misses}; the hit equals the row read "
            f"from PostgreSQL: {same}"
        )
        bench.facts["cached value size"] = (
            f"LeadRead JSON of a seeded lead: {min(sizes)}-{max(sizes)} bytes "
            f"(median {sorted(sizes)[len(sizes) // 2]})"
        )

        async def cached_get(i: int) -> object:
            async with db.tenant(org) as uow:
                return await uow.leads.get(pick(i))

        async def raw_get_decode(i: int) -> object:
            value = await client.get(bench_key(pick(i)))
            if value is None:
                raise KeyError(bench_key(pick(i)))
            return LeadRead.model_validate_json(value)

        async def raw_get(i: int) -> object:
            return await client.get(bench_key(pick(i)))

        async def uncached_get(i: int) -> object:
            async with bench.db.tenant(org) as uow:
                return await uow.leads.get(pick(i))

        stats_before = db.cache.stats()
        result = await bench.measure(
            "cache_get",
            "cache: get by id, each in its own unit of work",
            [
                Contender(
                    RAW_GET_DECODE, raw_get_decode, "the same lead as LeadRead JSON", "floor"
                ),
                Contender(RAW_GET, raw_get, "bytes only", "reference"),
                Contender(CACHED_GET, cached_get, "cache on, every read a hit", "leaddb"),
                Contender(UNCACHED_GET, uncached_get, "cache off", "leaddb"),
            ],
            floor=RAW_GET_DECODE,
        )
        stats_after = db.cache.stats()
        bench.facts["cache counters during the cached-get run"] = (
            f"hits +{stats_after.hits - stats_before.hits}, "
            f"misses +{stats_after.misses - stats_before.misses}, "
            f"errors +{stats_after.errors - stats_before.errors}"
        )
        result.notes += [
            bench.facts["cached unit of work"],
            "cache counters while timing: "
            + bench.facts["cache counters during the cached-get run"],
        ]

        async def cached_many(i: int) -> object:
            async with db.tenant(org) as uow:
                return await uow.leads.get_many(group(i))

        async def raw_mget(i: int) -> object:
            return await client.mget([bench_key(lead_id) for lead_id in group(i)])

        async def raw_mget_decode(i: int) -> object:
            values = await client.mget([bench_key(lead_id) for lead_id in group(i)])
            return [LeadRead.model_validate_json(value or b"") for value in values]

        async def uncached_many(i: int) -> object:
            async with bench.db.tenant(org) as uow:
                return await uow.leads.get_many(group(i))

        await bench.measure(
            "cache_get_many",
            f"cache: get_many of {MANY} ids, each in its own unit of work",
            [
                Contender(RAW_MGET, raw_mget, "one MGET, bytes only", "floor"),
                Contender(RAW_MGET_DECODE, raw_mget_decode, "MGET + validation", "reference"),
                Contender(CACHED_MANY, cached_many, "cache on, every id a hit", "leaddb"),
                Contender(UNCACHED_MANY, uncached_many, "cache off: one SELECT", "leaddb"),
            ],
            iterations=bench.sizes.list_iterations,
            floor=RAW_MGET,
        )


async def row_level_security(bench: Bench) -> None:
    """A get and an update, each in its own unit of work, with RLS on and off (same database),
    beside the same statements and transactions sent by raw asyncpg (raw_statements).

    The get and the update run in rounds on new connections, as the writes do: a backend's
    speed depends on where the OS schedules it (Bench.new_connections), and a contender kept
    on one connection for the whole section carried that luck into the ratio (the update's
    on/off ratio ranged 1.05x to 1.13x over six runs of this section on one connection each).
    """
    rounds = bench.sizes.write_rounds
    for round_number in range(rounds):
        if round_number:
            await bench.new_connections()
        await _rls_get_round(bench, max(10, bench.sizes.iterations // rounds))
    await _rls_list(bench)
    for _ in range(rounds):
        await bench.new_connections()
        await _rls_update_round(bench, bench.sizes.write_round_iterations)


async def _raw_statement_connections(
    bench: Bench, stack: AsyncExitStack
) -> dict[bool, asyncpg.Connection[Any]]:
    """One connection for each raw-statement contender, opened for this round."""
    connections = {}
    for row_level_security in (True, False):
        connection = await raw_statements.connect(bench, row_level_security=row_level_security)
        stack.push_async_callback(connection.close)
        connections[row_level_security] = connection
    return connections


async def _rls_get_round(bench: Bench, iterations: int) -> None:
    org = bench.big
    ids = bench.seeded.big_live_ids
    on, off = bench.db, bench.db_without_rls

    async def get_on(i: int) -> object:
        async with on.tenant(org) as uow:
            return await uow.leads.get(ids[i % len(ids)])

    async def get_off(i: int) -> object:
        async with off.tenant(org) as uow:
            return await uow.leads.get(ids[i % len(ids)])

    async with AsyncExitStack() as stack:
        raw = await _raw_statement_connections(bench, stack)
        await bench.measure(
            "rls_get",
            "row-level security: get by id in its own unit of work",
            [
                Contender(RLS_OFF, get_off, "row_level_security=False", "floor"),
                Contender(RLS_ON, get_on, "row_level_security=True (default)", "leaddb"),
                Contender(
                    raw_statements.RAW_STATEMENT_OFF,
                    raw_statements.get_call(
                        raw[False],
                        raw_statements.begin_sql(off, org, row_level_security=False),
                        org,
                        ids,
                    ),
                    raw_statements.OFF_NOTE,
                    "reference",
                ),
                Contender(
                    raw_statements.RAW_STATEMENT_ON,
                    raw_statements.get_call(
                        raw[True],
                        raw_statements.begin_sql(on, org, row_level_security=True),
                        org,
                        ids,
                    ),
                    raw_statements.ON_NOTE,
                    "reference",
                ),
            ],
            iterations=iterations,
            floor=RLS_OFF,
            notes=[rounds_note(bench)],
        )


async def _rls_update_round(bench: Bench, count: int) -> None:
    org = bench.big
    on, off = bench.db, bench.db_without_rls
    names = [RLS_ON, RLS_OFF, raw_statements.RAW_STATEMENT_ON, raw_statements.RAW_STATEMENT_OFF]
    slices = {name: bench.seeded.take_ids(bench.sizes.inputs(count)) for name in names}
    versions: dict[uuid.UUID, int] = {}
    async with on.tenant(org) as uow:
        for lead in await uow.leads.get_many([i for chunk in slices.values() for i in chunk]):
            versions[lead.id] = lead.version

    def target(name: str, i: int) -> tuple[uuid.UUID, int]:
        lead_id = slices[name][i % len(slices[name])]
        return lead_id, versions[lead_id]

    def updater(name: str) -> Contender:
        db = on if name == RLS_ON else off

        async def update(i: int) -> object:
            lead_id, version = target(name, i)
            async with db.tenant(org) as uow:
                lead = await uow.leads.update(
                    lead_id, LeadUpdate(score=version % 101), expected_version=version
                )
                await uow.commit()
            versions[lead_id] = lead.version
            return lead

        return Contender(
            name,
            update,
            "update(id, LeadUpdate(score), expected_version) + commit",
            "leaddb" if name == RLS_ON else "floor",
        )

    def raw_updater(
        name: str, connection: asyncpg.Connection[Any], begin: str, note: str
    ) -> Contender:
        async def update(i: int) -> object:
            lead_id, version = target(name, i)
            row = await raw_statements.update(
                connection, begin, org, lead_id, version % 101, version
            )
            if row is None or not (row["_written"] or row["_unchanged"]):
                raise AssertionError(f"{name}: the update of {lead_id} wrote nothing")
            versions[lead_id] = row["version"]
            return row

        return Contender(name, update, note, "reference")

    async with AsyncExitStack() as stack:
        raw = await _raw_statement_connections(bench, stack)
        await bench.measure(
            "rls_update",
            "row-level security: update in its own unit of work",
            [
                updater(RLS_OFF),
                updater(RLS_ON),
                raw_updater(
                    raw_statements.RAW_STATEMENT_OFF,
                    raw[False],
                    raw_statements.begin_sql(off, org, row_level_security=False),
                    raw_statements.OFF_NOTE,
                ),
                raw_updater(
                    raw_statements.RAW_STATEMENT_ON,
                    raw[True],
                    raw_statements.begin_sql(on, org, row_level_security=True),
                    raw_statements.ON_NOTE,
                ),
            ],
            iterations=count,
            floor=RLS_OFF,
            notes=[rounds_note(bench)],
        )


async def _rls_list(bench: Bench) -> None:
    org = bench.big
    on, off = bench.db, bench.db_without_rls

    async def list_on(i: int) -> object:
        async with on.tenant(org) as uow:
            return await uow.leads.list(status=DEEP_STATUS, limit=PAGE)

    async def list_off(i: int) -> object:
        async with off.tenant(org) as uow:
            return await uow.leads.list(status=DEEP_STATUS, limit=PAGE)

    await bench.measure(
        "rls_list",
        "row-level security: list 50 by status (first page) in its own unit of work",
        [
            Contender(RLS_OFF, list_off, "row_level_security=False", "floor"),
            Contender(RLS_ON, list_on, "row_level_security=True (default)", "leaddb"),
        ],
        iterations=bench.sizes.deep_iterations,
        floor=RLS_OFF,
        notes=[
            "not one of issue 11's targets (get and update); shown because it is where row-level "
            "security costs most: see the plan check below",
        ],
    )
    await _explain_status_listing(bench)


async def _explain_status_listing(bench: Bench) -> None:
    """How PostgreSQL runs the status listing with and without the tenant policy."""
    org = bench.big
    async with bench.raw_pool.acquire() as connection:
        leakproof = await connection.fetch(
            "SELECT proname, proleakproof FROM pg_proc "
            "WHERE proname IN ('enum_eq', 'uuid_eq', 'timestamptz_gt', 'uuid_gt') ORDER BY 1"
        )
        plans = {}
        for label, role in (("superuser (no policy)", None), ("leaddb_app (policy)", "leaddb_app")):
            async with connection.transaction():
                if role is not None:
                    await connection.execute(f"SET LOCAL ROLE {role}")
                    await connection.execute(
                        "SELECT set_config('leaddb.tenant', $1, true)", str(org)
                    )
                rows = await connection.fetch(
                    f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {LIST_FIRST_SQL}",
                    org,
                    DEEP_STATUS.value,
                )
            lines = [str(row[0]).strip() for row in rows]
            scan = next((line for line in lines if "Scan" in line), lines[0])
            took = next((line for line in lines if line.startswith("Execution Time")), "")
            plans[label] = f"{scan.lstrip('-> ')} ({took})"
    bench.facts["status listing plan"] = "; ".join(
        f"as {label}: {plan}" for label, plan in plans.items()
    ) + (
        ". Leakproof operators: "
        + ", ".join(f"{row['proname']}={row['proleakproof']}" for row in leakproof)
        + ". Under a policy PostgreSQL only pushes leakproof conditions below it into an index "
        "scan, and enum equality is not leakproof"
    )
