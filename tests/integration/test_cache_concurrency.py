"""The cache's guarantee under concurrency, against real servers: once ``commit()`` has returned,
no reader in this process or another gets an older version; the classic miss/commit/fill race
is refused; concurrent misses on one key share one database read."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import REDIS_CLIENTS

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import StaleVersionError
from leaddb.models import Lead, LeadUpdate
from leaddb.repositories.leads import LeadRepository

from .factories import make_lead, make_org

# Every test here runs on both Redis transports of the cache.
pytestmark = pytest.mark.parametrize("settings", REDIS_CLIENTS, indirect=True)

DURATION_SECONDS = 4.0

Fill = Callable[..., Awaitable[None]]


@pytest.fixture
async def other_process(settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    """A second LeadDB on the same servers: its own pool, Redis client and single flight."""
    database = await LeadDB.connect(settings)
    try:
        yield database
    finally:
        await database.close()


@dataclass
class Ledger:
    """Versions whose commit has returned, and what the readers saw."""

    committed: dict[uuid.UUID, int] = field(default_factory=dict)
    commits: int = 0
    conflicts: int = 0
    reads: int = 0
    stale: list[tuple[uuid.UUID, int, int]] = field(default_factory=list)


async def writer(
    db: LeadDB, org_id: uuid.UUID, ids: list[uuid.UUID], ledger: Ledger, deadline: float
) -> None:
    while time.monotonic() < deadline:
        lead_id = random.choice(ids)
        async with db.tenant(org_id) as uow:
            current = await uow.leads.get_one(lead_id)
            try:
                updated = await uow.leads.update(
                    lead_id,
                    LeadUpdate(score=(current.score + 1) % 101),
                    expected_version=current.version,
                )
            except StaleVersionError:
                ledger.conflicts += 1
                continue
            await uow.commit()
        ledger.committed[lead_id] = max(ledger.committed[lead_id], updated.version)
        ledger.commits += 1
        await asyncio.sleep(0)


async def reader(
    db: LeadDB, org_id: uuid.UUID, ids: list[uuid.UUID], ledger: Ledger, deadline: float
) -> None:
    while time.monotonic() < deadline:
        many = random.random() < 0.3
        wanted = ids if many else [random.choice(ids)]
        floors = {id: ledger.committed[id] for id in wanted}
        async with db.tenant(org_id) as uow:
            if many:
                seen = await uow.leads.get_many(wanted)
            else:
                seen = [await uow.leads.get_one(wanted[0])]
        assert [lead.id for lead in seen] == wanted
        for lead in seen:
            ledger.reads += 1
            if lead.version < floors[lead.id]:
                ledger.stale.append((lead.id, lead.version, floors[lead.id]))


def delayed(fill: Fill) -> Fill:
    """``fill`` after 0-3 ms, as over a slow network: widens the window of the classic race."""

    async def slow(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(random.random() * 0.003)
        await fill(*args, **kwargs)

    return slow


async def test_no_read_is_older_than_a_returned_commit_across_two_processes(
    db: LeadDB, other_process: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await make_org(db)
    leads = [await make_lead(db, org.id) for _ in range(5)]
    ids = [lead.id for lead in leads]
    ledger = Ledger(committed={lead.id: lead.version for lead in leads})
    processes = (db, other_process)
    for process in processes:
        process.cache.reset_stats()
        for name in ("fill", "fill_many"):
            monkeypatch.setattr(process.cache, name, delayed(getattr(process.cache, name)))
    deadline = time.monotonic() + DURATION_SECONDS
    tasks = [writer(processes[n % 2], org.id, ids, ledger, deadline) for n in range(3)]
    tasks += [reader(processes[n % 2], org.id, ids, ledger, deadline) for n in range(6)]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=DURATION_SECONDS + 20)
    stats = [process.cache.stats() for process in processes]
    hits = sum(item.hits for item in stats)
    print(
        f"\nconcurrency: reads={ledger.reads} commits={ledger.commits} "
        f"conflicts={ledger.conflicts} stale_reads={len(ledger.stale)} hits={hits} "
        f"misses={sum(item.misses for item in stats)} fills={sum(item.fills for item in stats)} "
        f"refused_fills={sum(item.refused_fills for item in stats)}"
    )
    assert ledger.stale == []
    assert ledger.commits >= 20
    assert ledger.reads >= 200
    assert hits > 0  # the cache was in the way, not bypassed
    assert sum(item.errors for item in stats) == 0
    async with db.tenant(org.id) as uow:
        final = {lead.id: lead.version for lead in await uow.leads.get_many(ids)}
    assert final == ledger.committed


def gate(monkeypatch: pytest.MonkeyPatch, db: LeadDB, name: str) -> tuple[asyncio.Event, ...]:
    """Hold ``db.cache.<name>`` (fill or fill_many) until released: (reached, release)."""
    original: Fill = getattr(db.cache, name)
    reached, release = asyncio.Event(), asyncio.Event()

    async def held(*args: Any, **kwargs: Any) -> None:
        reached.set()
        await release.wait()
        await original(*args, **kwargs)

    monkeypatch.setattr(db.cache, name, held)
    return reached, release


@pytest.mark.parametrize("writer_process", ["same", "other"])
@pytest.mark.parametrize("fill", ["fill", "fill_many"])
async def test_a_fill_of_a_row_read_before_a_commit_is_refused(
    db: LeadDB,
    other_process: LeadDB,
    monkeypatch: pytest.MonkeyPatch,
    writer_process: str,
    fill: str,
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, first_name="Old")
    writing = db if writer_process == "same" else other_process
    reached, release = gate(monkeypatch, db, fill)

    async def read_old() -> Lead | None:
        async with db.tenant(org.id) as uow:
            if fill == "fill":
                return await uow.leads.get(lead.id)
            [found] = await uow.leads.get_many([lead.id])
            return found

    slow_reader = asyncio.create_task(read_old())
    await asyncio.wait_for(reached.wait(), timeout=5)  # it has read the old row and wants to fill
    async with writing.tenant(org.id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(first_name="New"))
        await uow.commit()
    release.set()
    old = await asyncio.wait_for(slow_reader, timeout=5)
    assert old is not None
    assert old.first_name == "Old"  # its read began before the commit: allowed
    stats = db.cache.stats()
    monkeypatch.undo()
    for process in (db, other_process, db):
        async with process.tenant(org.id) as uow:
            after = await uow.leads.get(lead.id)
            assert after is not None
            assert after.first_name == "New"
            [many] = await uow.leads.get_many([lead.id])
            assert many.first_name == "New"
    assert (stats.fills, stats.refused_fills) == (0, 1)


async def test_concurrent_misses_on_one_key_cost_one_database_read(
    db: LeadDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    original = LeadRepository._fetch_one
    loads: list[uuid.UUID] = []

    async def counted(self: LeadRepository, key: uuid.UUID, *, include_deleted: bool) -> Any:
        loads.append(key)
        await asyncio.sleep(0.2)  # a slow query: every other reader arrives meanwhile
        return await original(self, key, include_deleted=include_deleted)

    monkeypatch.setattr(LeadRepository, "_fetch_one", counted)
    db.cache.reset_stats()

    async def get() -> Lead | None:
        async with db.tenant(org.id) as uow:
            return await uow.leads.get(lead.id)

    found = await asyncio.gather(*(get() for _ in range(20)))
    assert all(item is not None and item.id == lead.id for item in found)
    assert loads == [lead.id]
    stats = db.cache.stats()
    assert stats.misses == 20
    assert stats.fills == 1
    async with db.tenant(org.id) as uow:
        assert await uow.leads.get(lead.id) is not None
    assert loads == [lead.id]
    assert db.cache.stats().hits == 1
