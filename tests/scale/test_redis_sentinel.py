"""The cache behind Sentinel: after a failover the new primary may lack the old one's last
invalidations (replication is asynchronous), and leaddb serves none of what it holds from
before the change of primary."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from integration.factories import make_lead, make_org

from leaddb import LeadDB
from leaddb.cache.keys import tenant_tag
from leaddb.connections.redis_topology import PRIMARY_KEY
from leaddb.models import LeadUpdate

from .redis_topology import HOST, RedisSentinelSet


async def _read_until_cached(db: LeadDB, org: uuid.UUID, lead: uuid.UUID, score: int) -> int:
    """Read until the cache serves the lead again; every read must give ``score``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        before = db.cache.stats().hits
        async with db.tenant(org) as uow:
            assert (await uow.leads.get_one(lead)).score == score
        if db.cache.stats().hits > before:
            return 1
        await asyncio.sleep(0.05)
    raise AssertionError("the cache never served the lead again after the failover")


async def test_values_the_new_primary_holds_from_before_a_failover_are_not_served(
    sentinel_db: LeadDB, sentinel_set: RedisSentinelSet
) -> None:
    org = (await make_org(sentinel_db)).id
    lead = (await make_lead(sentinel_db, org, score=10)).id
    async with sentinel_db.tenant(org) as uow:
        await uow.leads.get_one(lead)
    old_primary = sentinel_set.master_port()
    raw = aioredis.Redis(host=HOST, port=old_primary)
    try:
        # What the replica would hold had the invalidation below not reached it: every key of
        # the tenant, as the fill left them.
        keys = [key async for key in raw.scan_iter(match=f"{tenant_tag(org)}*")]
        assert keys, "the read above filled nothing"
        snapshot = {key: await raw.dump(key) for key in keys}
        token_before = await raw.get(PRIMARY_KEY)
    finally:
        await raw.aclose()
    async with sentinel_db.tenant(org) as uow:
        await uow.leads.update(lead, LeadUpdate(score=99))
        await uow.commit()

    new_primary = await asyncio.to_thread(sentinel_set.failover)
    assert new_primary != old_primary
    raw = aioredis.Redis(host=HOST, port=new_primary)
    try:
        for key, dumped in snapshot.items():
            assert dumped is not None
            await raw.restore(key, 0, dumped, replace=True)
        await _read_until_cached(sentinel_db, org, lead, 99)
        assert await raw.get(PRIMARY_KEY) != token_before
    finally:
        await raw.aclose()


@dataclass
class _Ledger:
    committed: dict[uuid.UUID, int] = field(default_factory=dict)
    reads: int = 0
    commits: int = 0
    stale: list[tuple[uuid.UUID, int, int]] = field(default_factory=list)


async def test_a_sentinel_failover_during_reads_and_writes_serves_no_stale_read(
    sentinel_db: LeadDB, sentinel_set: RedisSentinelSet
) -> None:
    org = (await make_org(sentinel_db)).id
    ids = [(await make_lead(sentinel_db, org, score=0)).id for _ in range(5)]
    ledger = _Ledger(committed=dict.fromkeys(ids, 1))
    stop = asyncio.Event()

    async def writer() -> None:
        while not stop.is_set():
            lead = random.choice(ids)
            async with sentinel_db.tenant(org) as uow:
                updated = await uow.leads.update(lead, LeadUpdate(score=random.randrange(100)))
                await uow.commit()
            ledger.committed[lead] = max(ledger.committed[lead], updated.version)
            ledger.commits += 1
            await asyncio.sleep(0)

    async def reader() -> None:
        while not stop.is_set():
            lead = random.choice(ids)
            floor = ledger.committed[lead]
            async with sentinel_db.tenant(org) as uow:
                seen = (await uow.leads.get_one(lead)).version
            ledger.reads += 1
            if seen < floor:
                ledger.stale.append((lead, floor, seen))
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(writer()) for _ in range(2)]
    tasks += [asyncio.create_task(reader()) for _ in range(4)]
    await asyncio.sleep(1.0)
    await asyncio.to_thread(sentinel_set.failover)
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.gather(*tasks)
    assert ledger.commits > 10
    assert ledger.reads > 100
    assert ledger.stale == []
    assert sentinel_db.cache.stats().hits > 0
