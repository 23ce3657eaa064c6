"""The demo's measurements and proofs: the cache's latency, a user session, tenant isolation."""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from leaddb.db import LeadDB
from leaddb.demo.tour import Tenant, describe, ms, steps_table
from leaddb.errors import NotFoundError
from leaddb.models import Lead, LeadUpdate
from leaddb.sessions import SessionMetadata

CACHE_SAMPLE = 200


@dataclass(frozen=True)
class Latency:
    """Timings of one kind of read, in milliseconds."""

    label: str
    samples: list[float]
    hits: int
    misses: int

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        if len(self.samples) < 2:
            return self.samples[0]
        return statistics.quantiles(self.samples, n=20, method="inclusive")[18]


async def _timed_reads(db: LeadDB, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[float]:
    """Read each lead in its own unit of work, as separate requests would; ms per read."""
    timings: list[float] = []
    for id in ids:
        started = time.perf_counter()
        async with db.tenant(tenant_id) as uow:
            found = await uow.leads.get(id)
        timings.append((time.perf_counter() - started) * 1000)
        if found is None:
            raise NotFoundError("lead", id)
    return timings


async def _measure(
    db: LeadDB, label: str, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> Latency:
    before = db.cache.stats()
    samples = await _timed_reads(db, tenant_id, ids)
    after = db.cache.stats()
    return Latency(label, samples, after.hits - before.hits, after.misses - before.misses)


async def cache_warmup(db: LeadDB, tenant: Tenant) -> tuple[Table, list[Latency]]:
    """Reads of the same leads with the cache off, cold (miss, then fill) and warm (hit)."""
    org = tenant.organization
    async with db.tenant(org.id) as uow:
        page = await uow.leads.list(limit=1000)
    # Not seeded: a rerun against a Redis that still holds the last run's fills picks others.
    sample = random.sample(page.items, min(CACHE_SAMPLE, len(page.items)))
    ids = [lead.id for lead in sample]
    results: list[Latency] = []
    # The same servers, the cache switched off: every read is a PostgreSQL round trip.
    async with await LeadDB.connect(db.settings.model_copy(update={"cache_enabled": False})) as raw:
        await _timed_reads(raw, org.id, ids[:20])  # warm the pool and the prepared statements
        results.append(await _measure(raw, "PostgreSQL only (cache off)", org.id, ids))
    results.append(await _measure(db, "cold cache: miss, PostgreSQL, fill", org.id, ids))
    results.append(await _measure(db, "warm cache: Redis hit", org.id, ids))
    stats = db.cache.stats()
    table = Table(
        title=f"cache warm-up: {len(ids)} leads of {org.name}, each read in its own unit of work",
        title_justify="left",
        caption=f"db.cache.stats(): {stats.hits:,} hits, {stats.misses:,} misses, "
        f"{stats.fills:,} fills, {stats.invalidations:,} invalidations, {stats.errors} errors",
    )
    table.add_column("read path", overflow="fold")
    for name in ("reads", "hits", "misses", "p50 ms", "p95 ms"):
        table.add_column(name, justify="right")
    for latency in results:
        table.add_row(
            latency.label,
            str(len(latency.samples)),
            str(latency.hits) if latency is not results[0] else "-",
            str(latency.misses) if latency is not results[0] else "-",
            f"{latency.p50:.2f}",
            f"{latency.p95:.2f}",
        )
    return table, results


async def session(db: LeadDB, tenant: Tenant) -> Table:
    """A login: a session token, resolved back into a tenant unit of work, then revoked."""
    org, user = tenant.organization, tenant.actor
    table = steps_table(f"user session: {user.full_name} of {org.name}")
    started = time.perf_counter()
    token = await db.sessions.create(
        user_id=user.id,
        organization_id=org.id,
        metadata=SessionMetadata(user_agent="leaddb demo", ip_address="127.0.0.1"),
    )
    table.add_row(
        "db.sessions.create(user_id, organization_id)", f"token {token[:12]}…", ms(started)
    )
    started = time.perf_counter()
    resolved = await db.sessions.get(token)
    if resolved is None:
        table.add_row("db.sessions.get(token)", "None (unexpected)", ms(started))
        return table
    table.add_row(
        "db.sessions.get(token)",
        f"user {str(resolved.user_id)[:8]}…, expires {resolved.expires_at:%Y-%m-%d %H:%M} UTC",
        ms(started),
    )
    started = time.perf_counter()
    async with db.tenant(resolved.organization_id, actor=resolved.user_id) as uow:
        count = await uow.leads.count()
    table.add_row(
        "db.tenant(session.organization_id, actor=session.user_id)",
        f"sees {count:,} leads",
        ms(started),
    )
    started = time.perf_counter()
    await db.sessions.revoke(token)
    after = await db.sessions.get(token)
    table.add_row("db.sessions.revoke(token), then get", repr(after), ms(started))
    return table


async def isolation(db: LeadDB, owner: Tenant, other: Tenant) -> tuple[Table, Lead | None]:
    """Another tenant asks for this tenant's lead: it gets None, and cannot update it."""
    async with db.tenant(owner.organization.id) as uow:
        target = (await uow.leads.list(limit=1)).items[0]
    table = steps_table(f"tenant isolation: {other.organization.name} vs {owner.organization.name}")
    table.add_row(f"{owner.organization.name} reads its lead", describe(target), "")
    started = time.perf_counter()
    async with db.tenant(other.organization.id, actor=other.actor.id) as uow:
        stolen = await uow.leads.get(target.id)
    table.add_row(
        f"{other.organization.name}: leads.get(that id)",
        "[bold green]None[/]" if stolen is None else f"[bold red]{describe(stolen)}[/]",
        ms(started),
    )
    started = time.perf_counter()
    async with db.tenant(other.organization.id, actor=other.actor.id) as uow:
        try:
            await uow.leads.update(target.id, LeadUpdate(first_name="Mallory"))
            outcome = "[bold red]updated[/]"
        except NotFoundError as error:
            outcome = f"[bold green]NotFoundError[/]: {error}"
    table.add_row(f"{other.organization.name}: leads.update(that id)", outcome, ms(started))
    return table, stolen
