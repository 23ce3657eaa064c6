"""Chaos soak: cancelled units of work, a Redis killed and restarted empty, and a PostgreSQL
restarted, all at once under concurrent multi-tenant load, against servers this test starts.

Afterwards nothing raw escaped, no transaction is left open, the same LeadDB serves the next
unit of work at once, every lead is whole (its audit rows match its version) or absent, no read
that started after a commit returned was stale, and no row crossed tenants.

Runs ~20 s by default; ``LEADDB_CHAOS_SECONDS`` makes it longer.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pgserver
import pytest
from pydantic import SecretStr

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import LeadDBError, StaleVersionError
from leaddb.models import LeadCreate, LeadUpdate, OrganizationCreate

from .own_redis import OwnRedis

TENANTS = 4
WORKERS = 10
SEED_LEADS = 12
CANCEL_SHARE = 0.35


@dataclass
class Ledger:
    """What the workers were told; the database and every read are checked against it."""

    operations: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)  # by the phase it hit
    failures: Counter[str] = field(default_factory=Counter)  # typed errors, by type
    raw: list[str] = field(default_factory=list)  # anything else that escaped
    stale_reads: list[str] = field(default_factory=list)
    cross_tenant: list[str] = field(default_factory=list)
    # Versions a commit that returned made visible, and updates known to have committed.
    committed_version: dict[uuid.UUID, int] = field(default_factory=dict)
    confirmed_updates: Counter[uuid.UUID] = field(default_factory=Counter)
    # Commits whose outcome nobody learned (cancelled or failed after COMMIT was sent).
    unsure_updates: Counter[uuid.UUID] = field(default_factory=Counter)
    unsure_creates: int = 0
    succeeded_after_restart: int = 0


@dataclass
class Phase:
    """Where a unit of work is, so a cancellation can be attributed."""

    at: str = "statements"


@dataclass
class Tenant:
    index: int
    id: uuid.UUID
    leads: list[uuid.UUID]


@dataclass
class OwnPostgres:
    """A PostgreSQL server of the test's own, to restart under load."""

    data_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/leaddb?host={self.data_dir}"

    def stop(self) -> None:
        pgserver.get_server(self.data_dir, cleanup_mode="stop").cleanup()

    def start(self) -> None:
        pgserver.get_server(self.data_dir, cleanup_mode="stop")


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    data_dir = Path(tempfile.mkdtemp(prefix="ldbx", dir="/tmp")) / "pg"
    pgserver.get_server(data_dir, cleanup_mode="stop").psql("CREATE DATABASE leaddb;")
    try:
        yield OwnPostgres(data_dir)
    finally:
        pgserver.get_server(data_dir, cleanup_mode="delete").cleanup()
        shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.fixture
async def chaos_db(
    settings: LeadDBSettings, own_postgres: OwnPostgres, own_redis: OwnRedis
) -> AsyncIterator[LeadDB]:
    # Fewer connections than workers, so units of work queue for the pool while it heals.
    chaos = settings.model_copy(
        update={
            "database_url": SecretStr(own_postgres.url),
            "redis_url": SecretStr(own_redis.url),
            "pool_size": 3,
            "max_overflow": 1,
            "pool_timeout": 5.0,
            "connect_timeout_seconds": 2.0,
        }
    )
    db = await LeadDB.connect(chaos)
    try:
        await db.migrate()
        yield db
    finally:
        await db.close()


class Chaos:
    """Workers doing a mix of reads and writes, each unit of work possibly cancelled."""

    def __init__(self, db: LeadDB, tenants: list[Tenant], deadline: float) -> None:
        self.db = db
        self.tenants = tenants
        self.deadline = deadline
        self.ledger = Ledger()
        self.restarted_at: float | None = None

    async def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < self.deadline:
            tenant = rng.choice(self.tenants)
            phase = Phase()
            name, work = self.pick(rng, tenant, phase)
            started = time.monotonic()
            task = asyncio.create_task(work())
            if rng.random() < CANCEL_SHARE:
                # A random number of loop steps lands the cancellation anywhere: in acquire,
                # BEGIN, a statement, COMMIT, the cache invalidation or the release.
                for _ in range(rng.randrange(80)):
                    await asyncio.sleep(0)
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                self.ledger.cancelled[phase.at] += 1
                continue
            except LeadDBError as error:
                self.ledger.failures[type(error).__name__] += 1
                if type(error).__module__ != "leaddb.errors":
                    self.ledger.raw.append(repr(error))
                await asyncio.sleep(0.01)  # a service backs off too
                continue
            except Exception as error:  # a raw driver error: what this test hunts
                self.ledger.raw.append(f"{name}: {error!r}")
                continue
            self.ledger.operations[name] += 1
            if self.restarted_at is not None and started > self.restarted_at:
                self.ledger.succeeded_after_restart += 1

    def pick(
        self, rng: random.Random, tenant: Tenant, phase: Phase
    ) -> tuple[str, Callable[[], Coroutine[Any, Any, None]]]:
        roll = rng.random()
        if roll < 0.40:
            return "get", lambda: self.get(tenant, rng.choice(tenant.leads))
        if roll < 0.50:
            other = rng.choice([t for t in self.tenants if t is not tenant])
            return "get other tenant's", lambda: self.foreign(tenant, other, rng)
        if roll < 0.60:
            return "list", lambda: self.list_page(tenant)
        if roll < 0.75:
            return "create", lambda: self.create(tenant, phase)
        return "update", lambda: self.update(tenant, rng.choice(tenant.leads), rng, phase)

    async def get(self, tenant: Tenant, lead_id: uuid.UUID) -> None:
        floor = self.ledger.committed_version.get(lead_id)
        async with self.db.tenant(tenant.id) as uow:
            lead = await uow.leads.get(lead_id)
        if floor is not None and (lead is None or lead.version < floor):
            got = None if lead is None else lead.version
            self.ledger.stale_reads.append(f"{lead_id}: read {got}, committed {floor}")

    async def foreign(self, tenant: Tenant, other: Tenant, rng: random.Random) -> None:
        lead_id = rng.choice(other.leads)
        async with self.db.tenant(tenant.id) as uow:
            if await uow.leads.get(lead_id) is not None:
                self.ledger.cross_tenant.append(f"{tenant.id} read {lead_id}")

    async def list_page(self, tenant: Tenant) -> None:
        async with self.db.tenant(tenant.id) as uow:
            page = await uow.leads.list(limit=20)
        if any(lead.organization_id != tenant.id for lead in page.items):
            self.ledger.cross_tenant.append(f"{tenant.id} listed another tenant's lead")

    async def create(self, tenant: Tenant, phase: Phase) -> None:
        email = f"t{tenant.index}-{uuid.uuid4().hex[:12]}@chaos.example.com"
        async with self.db.tenant(tenant.id) as uow:
            lead = await uow.leads.create(LeadCreate(email=email, company="Chaos"))
            phase.at = "commit"
            try:
                await uow.commit()
            except BaseException:
                self.ledger.unsure_creates += 1
                raise
        tenant.leads.append(lead.id)
        self.ledger.committed_version[lead.id] = lead.version

    async def update(
        self, tenant: Tenant, lead_id: uuid.UUID, rng: random.Random, phase: Phase
    ) -> None:
        async with self.db.tenant(tenant.id) as uow:
            current = await uow.leads.get_one(lead_id)
            try:
                updated = await uow.leads.update(
                    lead_id,
                    LeadUpdate(custom_fields={"n": rng.randrange(1000)}),
                    expected_version=current.version,
                )
            except StaleVersionError:
                return  # another worker got there first: a normal outcome, nothing written
            # The same value drawn again is no change: no new version, no audit row.
            wrote = updated.version > current.version
            phase.at = "commit"
            try:
                await uow.commit()
            except BaseException:
                self.ledger.unsure_updates[lead_id] += wrote
                raise
        self.ledger.confirmed_updates[lead_id] += wrote
        floor = self.ledger.committed_version.get(lead_id, 1)
        self.ledger.committed_version[lead_id] = max(floor, updated.version)


async def _faults(
    chaos: Chaos, postgres: OwnPostgres, redis: OwnRedis, seconds: float, log: list[str]
) -> None:
    """Redis dies, PostgreSQL restarts while Redis is still down, then Redis comes back empty.
    Every server call runs in a thread: they take seconds, and the event loop must keep
    serving the workers meanwhile."""
    begin = time.monotonic()

    async def at(fraction: float) -> None:
        await asyncio.sleep(max(0.0, begin + fraction * seconds - time.monotonic()))

    await at(0.2)
    await asyncio.to_thread(redis.kill)
    log.append(f"{time.monotonic() - begin:.1f} s Redis killed")
    await at(0.3)
    await asyncio.to_thread(postgres.stop)
    log.append(f"{time.monotonic() - begin:.1f} s PostgreSQL stopped")
    await asyncio.sleep(0.5)
    await asyncio.to_thread(postgres.start)
    chaos.restarted_at = time.monotonic()
    log.append(f"{time.monotonic() - begin:.1f} s PostgreSQL started")
    await at(0.5)
    await asyncio.to_thread(redis.start)
    log.append(f"{time.monotonic() - begin:.1f} s Redis restarted empty")


async def _seed(db: LeadDB) -> list[Tenant]:
    tenants = []
    for index in range(TENANTS):
        async with db.platform() as uow:
            org = await uow.organizations.create(
                OrganizationCreate(name=f"Chaos {index}", slug=f"chaos-{index}")
            )
            await uow.commit()
        async with db.tenant(org.id) as uow:
            leads = await uow.leads.create_many(
                [LeadCreate(email=f"t{index}-seed{n}@chaos.example.com") for n in range(SEED_LEADS)]
            )
            await uow.commit()
        tenants.append(Tenant(index, org.id, [lead.id for lead in leads]))
    return tenants


async def test_cancellations_a_redis_kill_and_a_postgres_restart_at_once(
    chaos_db: LeadDB, own_postgres: OwnPostgres, own_redis: OwnRedis
) -> None:
    db = chaos_db
    seconds = float(os.environ.get("LEADDB_CHAOS_SECONDS", "20"))
    tenants = await _seed(db)
    chaos = Chaos(db, tenants, time.monotonic() + seconds)
    log: list[str] = []
    await asyncio.wait_for(
        asyncio.gather(
            _faults(chaos, own_postgres, own_redis, seconds, log),
            *(chaos.worker(seed) for seed in range(WORKERS)),
        ),
        timeout=seconds + 60,
    )
    ledger = chaos.ledger

    # The same LeadDB serves the next unit of work at once, and every connection came back:
    # as many units of work as the pool holds run side by side (a lost one would hang them).
    async with db.tenant(tenants[0].id) as uow:
        await asyncio.wait_for(uow.leads.count(), timeout=2)
    everyone = asyncio.Barrier(db._pool.get_max_size())

    async def hold_a_connection(tenant: Tenant) -> None:
        async with db.tenant(tenant.id) as uow:
            await uow.leads.count()
            await everyone.wait()

    await asyncio.wait_for(
        asyncio.gather(*(hold_a_connection(tenants[n % TENANTS]) for n in range(everyone.parties))),
        timeout=5,
    )

    pg = await asyncpg.connect(own_postgres.url)
    try:
        sessions = await pg.fetch(
            "SELECT state FROM pg_stat_activity WHERE application_name = 'leaddb'"
        )
        rows = await pg.fetch(
            """
            SELECT l.id, l.organization_id, l.email, l.version,
                   count(*) FILTER (WHERE a.action = 'created') AS created,
                   count(*) FILTER (WHERE a.action = 'updated') AS updated,
                   count(*) FILTER (WHERE a.organization_id <> l.organization_id) AS foreign
            FROM leads l LEFT JOIN activity_logs a
              ON a.entity_type = 'lead' AND a.entity_id = l.id
            GROUP BY l.id, l.organization_id, l.email, l.version
            """
        )
        orphans = await pg.fetchval(
            "SELECT count(*) FROM activity_logs a WHERE a.entity_type = 'lead' "
            "AND NOT EXISTS (SELECT 1 FROM leads l WHERE l.id = a.entity_id)"
        )
    finally:
        await pg.close()

    assert ledger.raw == []
    assert [row["state"] for row in sessions if row["state"].startswith("idle in")] == []
    assert len(sessions) <= db._pool.get_max_size()
    assert ledger.stale_reads == []
    assert ledger.cross_tenant == []
    # Whole or absent: each lead has its creation and one audit row per committed update.
    assert orphans == 0
    tenant_of = {tenant.id: tenant.index for tenant in tenants}
    known = {lead for tenant in tenants for lead in tenant.leads}
    for row in rows:
        assert row["created"] == 1, dict(row)
        assert row["foreign"] == 0, dict(row)
        assert row["version"] == 1 + row["updated"], dict(row)
        lead = row["id"]
        confirmed = ledger.confirmed_updates[lead]
        assert confirmed <= row["updated"] <= confirmed + ledger.unsure_updates[lead], dict(row)
        assert row["email"].startswith(f"t{tenant_of[row['organization_id']]}-")
    stored = {row["id"] for row in rows}
    assert known <= stored  # every create whose commit returned is there
    assert len(stored - known) <= ledger.unsure_creates

    # Nor is anything stale left in the cache, commits of unknown outcome included: every
    # lead reads as the database has it.
    stale_now = []
    for row in rows:
        async with db.tenant(row["organization_id"]) as uow:
            lead = await uow.leads.get_one(row["id"])
        if lead.version != row["version"]:
            stale_now.append(
                f"{lead.id}: read {lead.version}, stored {row['version']}, confirmed updates "
                f"{ledger.confirmed_updates[lead.id]}, unsure {ledger.unsure_updates[lead.id]}"
            )
    assert stale_now == []

    # The faults happened and were survived, not dodged.
    assert sum(ledger.cancelled.values()) > 50
    assert ledger.cancelled["commit"] > 0
    assert ledger.failures["ConnectionFailedError"] > 0
    assert ledger.succeeded_after_restart > 50
    assert db.cache.stats().errors > 0
    print(
        "\nchaos: "
        + "; ".join(log)
        + f"\n  {sum(ledger.operations.values())} operations {dict(ledger.operations)}"
        + f"\n  cancelled {sum(ledger.cancelled.values())} by phase {dict(ledger.cancelled)}"
        + f"\n  typed failures {dict(ledger.failures)}, raw 0"
        + f"\n  {ledger.succeeded_after_restart} succeeded after the restart; "
        + f"{len(rows)} leads whole ({len(stored - known)} from commits of unknown outcome)"
        + f"\n  stale reads 0, cross-tenant rows 0, idle in transaction 0; {db.cache.stats()}"
    )
