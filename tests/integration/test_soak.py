"""Soak: many tenants doing a service's mix of work at once, through the public API, on two
LeadDB instances (two "processes"). Afterwards the data must be consistent, no stale cache read
may have happened, and connections and Redis keys must be bounded.

Runs ~15 s by default; ``LEADDB_SOAK_SECONDS`` makes it longer, and ``LEADDB_SOAK_REPORT=path``
writes the figures as Markdown (``nox -s soak`` does both).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import LeadDBError, StaleVersionError
from leaddb.models import (
    LeadCreate,
    LeadScoringRuleCreate,
    LeadStatus,
    LeadUpdate,
    OrganizationCreate,
    ScoringOperator,
)

TENANTS = 6
WORKERS_PER_TENANT = 2
SEED_LEADS = 40


class Ledger:
    """What the workers saw and did, to check the database and the cache against."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.committed_version: dict[uuid.UUID, int] = {}
        self.updates: dict[uuid.UUID, int] = defaultdict(int)
        self.stale_reads = 0
        self.errors: list[str] = []

    def timed(self, operation: str, started: float) -> None:
        self.latencies[operation].append(time.perf_counter() - started)


async def _worker(
    db: LeadDB, tenant: uuid.UUID, leads: list[uuid.UUID], ledger: Ledger, deadline: float
) -> None:
    rng = random.Random()
    while time.perf_counter() < deadline:
        roll = rng.random()
        started = time.perf_counter()
        try:
            if roll < 0.45:
                lead_id = rng.choice(leads)
                floor = ledger.committed_version.get(lead_id, 1)
                async with db.tenant(tenant) as uow:
                    lead = await uow.leads.get(lead_id)
                assert lead is not None
                if lead.version < floor:
                    ledger.stale_reads += 1
                ledger.timed("get", started)
            elif roll < 0.60:
                async with db.tenant(tenant) as uow:
                    page = await uow.leads.list(status=LeadStatus.NEW, limit=20)
                    if page.next_cursor:
                        await uow.leads.list(
                            status=LeadStatus.NEW, limit=20, after=page.next_cursor
                        )
                ledger.timed("list 2 pages", started)
            elif roll < 0.75:
                async with db.tenant(tenant) as uow:
                    lead = await uow.leads.create(
                        LeadCreate(email=f"s{uuid.uuid4().hex[:12]}@example.com", company="Soak")
                    )
                    await uow.commit()
                leads.append(lead.id)
                ledger.committed_version[lead.id] = lead.version
                ledger.timed("create", started)
            elif roll < 0.97:
                lead_id = rng.choice(leads)
                async with db.tenant(tenant) as uow:
                    current = await uow.leads.get_one(lead_id)
                    try:
                        updated = await uow.leads.update(
                            lead_id,
                            LeadUpdate(custom_fields={"n": rng.randrange(1000)}),
                            expected_version=current.version,
                        )
                    except StaleVersionError:
                        ledger.timed("update (stale)", started)
                        continue
                    await uow.commit()
                # The same value drawn again is no change: no new version, no audit row.
                ledger.updates[lead_id] += updated.version > current.version
                ledger.committed_version[lead_id] = max(
                    ledger.committed_version.get(lead_id, 1), updated.version
                )
                ledger.timed("update", started)
            else:
                async with db.tenant(tenant) as uow:
                    await uow.scoring.rescore_organization()
                    await uow.commit()
                ledger.timed("rescore organization", started)
        except LeadDBError as error:
            ledger.errors.append(f"{type(error).__name__}: {error}")


async def test_soak_keeps_the_data_consistent_and_the_cache_fresh(
    settings: LeadDBSettings, pg: asyncpg.Connection, redis_client: aioredis.Redis
) -> None:
    seconds = float(os.environ.get("LEADDB_SOAK_SECONDS", "15"))
    first = await LeadDB.connect(settings)
    second = await LeadDB.connect(settings)
    ledger = Ledger()
    try:
        tenants: list[tuple[uuid.UUID, list[uuid.UUID]]] = []
        for index in range(TENANTS):
            async with first.platform() as uow:
                organization = await uow.organizations.create(
                    OrganizationCreate(name=f"Soak {index}", slug=f"soak-{index}")
                )
                await uow.commit()
            async with first.tenant(organization.id) as uow:
                created = await uow.leads.create_many(
                    [
                        LeadCreate(email=f"seed{n}@soak{index}.example.com")
                        for n in range(SEED_LEADS)
                    ]
                )
                await uow.scoring_rules.create(
                    LeadScoringRuleCreate(
                        name="has company",
                        field="company",
                        operator=ScoringOperator.EXISTS,
                        value=True,
                        points=25,
                        priority=1,
                    )
                )
                await uow.commit()
            tenants.append((organization.id, [lead.id for lead in created]))
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _worker(first if worker % 2 == 0 else second, tenant, leads, ledger, deadline)
                for tenant, leads in tenants
                for worker in range(WORKERS_PER_TENANT)
            )
        )
        elapsed = time.perf_counter() - started
        connections = await pg.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'leaddb'"
        )
        limit = 2 * (settings.pool_size + settings.max_overflow)
        assert connections <= limit
    finally:
        await first.close()
        await second.close()

    assert ledger.errors == []
    assert ledger.stale_reads == 0
    # Every lead's version is one plus its committed changes: updates (one audit row each)
    # and rescorings that changed it (one score-history row each).
    rows = await pg.fetch(
        """
        SELECT l.id, l.organization_id, l.version,
               (SELECT count(*) FROM activity_logs a WHERE a.organization_id = l.organization_id
                  AND a.entity_id = l.id AND a.action = 'updated') AS updated,
               (SELECT count(*) FROM activity_logs a WHERE a.organization_id = l.organization_id
                  AND a.entity_id = l.id AND a.action = 'created') AS created,
               (SELECT count(*) FROM lead_score_history h
                  WHERE h.organization_id = l.organization_id AND h.lead_id = l.id) AS rescored
        FROM leads l
        """
    )
    owner = {lead: tenant for tenant, leads in tenants for lead in leads}
    for row in rows:
        assert row["created"] == 1
        assert row["version"] == 1 + row["updated"] + row["rescored"], dict(row)
        assert row["updated"] == ledger.updates.get(row["id"], 0)
        assert owner[row["id"]] == row["organization_id"]
    keys = await redis_client.dbsize()
    assert keys <= 3 * len(rows) + 10 * TENANTS

    operations = sum(len(values) for values in ledger.latencies.values())
    lines = [
        f"soak: {seconds:.0f} s, {TENANTS} tenants x {WORKERS_PER_TENANT} workers on two LeadDB "
        f"instances; {operations} operations ({operations / elapsed:.0f}/s), {len(rows)} leads, "
        f"stale reads {ledger.stale_reads}, peak connections {connections}, Redis keys {keys}",
        "",
        "| operation | count | per s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for operation, values in sorted(ledger.latencies.items()):
        cuts = statistics.quantiles(values, n=100) if len(values) >= 2 else values * 99
        lines.append(
            f"| {operation} | {len(values)} | {len(values) / elapsed:.0f} | "
            f"{cuts[49] * 1000:.1f} | {cuts[94] * 1000:.1f} | {cuts[98] * 1000:.1f} |"
        )
    print("\n" + "\n".join(lines))
    report = os.environ.get("LEADDB_SOAK_REPORT")
    if report:
        await asyncio.to_thread(Path(report).write_text, "\n".join(lines) + "\n")
