"""Writing a seed: organizations by slug, their users, then leads in COPY batches.

Idempotent per organization slug: an organization that exists is reused, its users and leads are
topped up to the numbers asked for (counting every lead it has, soft-deleted ones too), never
duplicated, never removed. Re-running with the same numbers writes nothing.

Leads go through ``uow.leads.create_many`` (COPY into a scratch table, then one INSERT ... SELECT
that also writes one audit row per lead), one unit of work per batch. Batches overlap: while one
batch is in PostgreSQL the next is generated and sent, but they commit strictly in order, so an
interrupted run always leaves a prefix of the numbered leads and the next run continues from it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text

from leaddb.db import LeadDB
from leaddb.models import Organization, User
from leaddb.seeding.defaults import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY
from leaddb.seeding.fake import (
    check_sample,
    day_anchor,
    lead_batch,
    organization_domain,
    organization_payload,
    user_payloads,
)

ProgressCallback = Callable[[int], None]
"""Called with the number of leads of each chunk PostgreSQL inserted (its batch commits
after; a failed batch rolls back what was counted)."""


@dataclass(frozen=True)
class SeededOrganization:
    """One organization of a seed and what the run did to it."""

    organization: Organization
    created: bool
    users: list[User]
    leads_before: int
    leads_after: int

    @property
    def leads_added(self) -> int:
        return self.leads_after - self.leads_before


@dataclass
class SeedResult:
    """What a seed wrote, and how fast the leads went in."""

    organizations: list[SeededOrganization] = field(default_factory=list)
    leads_added: int = 0
    lead_seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        """Leads per second while writing leads (each lead also writes one audit row)."""
        return self.leads_added / self.lead_seconds if self.lead_seconds > 0 else 0.0


@dataclass(frozen=True)
class _Batch:
    organization: SeededOrganization
    start: int
    count: int


async def ensure_organizations(
    db: LeadDB, prefix: str, count: int
) -> list[tuple[Organization, bool]]:
    """The organizations ``<prefix>-001`` .. ``<prefix>-<count>``, created where missing."""
    found: list[tuple[Organization, bool]] = []
    async with db.platform() as uow:
        for index in range(count):
            payload = organization_payload(prefix, index)
            existing = await uow.organizations.get_by_slug(payload.slug)
            if existing is not None:
                found.append((existing, False))
            else:
                found.append((await uow.organizations.create(payload), True))
        await uow.commit()
    return found


async def ensure_users(db: LeadDB, organization: Organization, count: int) -> list[User]:
    """At least ``count`` users in the organization (the seeded ones first); all its users."""
    domain = organization_domain(organization.name)
    async with db.tenant(organization.id) as uow:
        existing = await uow.users.count()
        wanted = user_payloads(organization.slug, domain, count)
        for payload in wanted[existing:]:
            if await uow.users.get_by_email(payload.email) is None:
                await uow.users.create(payload)
        users = (await uow.users.list(limit=1000)).items
        await uow.commit()
    return users


async def count_leads(db: LeadDB, organization_id: uuid.UUID) -> int:
    """Every lead of the organization, soft-deleted ones included."""
    async with db.tenant(organization_id) as uow:
        return await uow.leads.count(include_deleted=True)


async def seed(
    db: LeadDB,
    *,
    organizations: int,
    leads: int,
    prefix: str = "seed",
    users_per_organization: int = 5,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_planned: Callable[[int], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> SeedResult:
    """Top ``organizations`` organizations up to ``leads`` leads each (see the module docs).

    ``on_planned`` receives the number of leads the run will add before any is written;
    ``on_progress`` the size of each chunk of a batch as PostgreSQL inserts it (a few
    thousand leads: a progress bar moves steadily, not once per batch).
    """
    if organizations < 0 or leads < 0 or users_per_organization < 0:
        raise ValueError("organizations, leads and users must not be negative")
    if batch_size < 1 or concurrency < 1:
        raise ValueError("batch_size and concurrency must be at least 1")
    result = SeedResult()
    batches: list[_Batch] = []
    for organization, created in await ensure_organizations(db, prefix, organizations):
        users = await ensure_users(db, organization, users_per_organization)
        before = await count_leads(db, organization.id)
        seeded = SeededOrganization(
            organization=organization,
            created=created,
            users=users,
            leads_before=before,
            leads_after=max(before, leads),
        )
        result.organizations.append(seeded)
        batches.extend(
            _Batch(seeded, start, min(batch_size, leads - start))
            for start in range(before, leads, batch_size)
        )
    planned = sum(batch.count for batch in batches)
    if on_planned is not None:
        on_planned(planned)
    started = time.perf_counter()
    await _write_in_order(db, batches, concurrency, on_progress or (lambda _: None))
    result.leads_added = planned
    result.lead_seconds = time.perf_counter() - started if planned else 0.0
    if planned:
        await _analyze(db)
    return result


async def _analyze(db: LeadDB) -> None:
    """Fresh planner statistics for the tables a seed fills.

    Autovacuum analyzes a table only after enough changes and when it gets round to it; until
    then a table that went from empty to a million rows is planned as if it were small, and a
    lookup by key can pick a partial index it has to read a whole organization of (measured: an
    update's row lock took 1.3 ms instead of 20 us). ANALYZE runs as the URL's role, which owns
    the tables (the units of work's role does not).
    """
    async with db.engine.begin() as connection:
        await connection.execute(text("ANALYZE leads, activity_logs"))


async def _write_in_order(
    db: LeadDB, batches: list[_Batch], concurrency: int, on_progress: ProgressCallback
) -> None:
    """Write the batches, ``concurrency`` at a time, committing them in list order."""
    anchor = day_anchor()
    slots = asyncio.Semaphore(concurrency)
    previous: asyncio.Future[None] | None = None
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.TaskGroup() as group:
            for batch in batches:
                await slots.acquire()
                committed: asyncio.Future[None] = loop.create_future()
                group.create_task(
                    _write_batch(db, batch, anchor, previous, committed, slots, on_progress)
                )
                previous = committed
    except BaseExceptionGroup as failed:
        # The first batch to fail is the cause; the ones after it only rolled back.
        raise _first_cause(failed) from None


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first_cause(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]


async def _write_batch(
    db: LeadDB,
    batch: _Batch,
    anchor: datetime,
    previous: Awaitable[None] | None,
    committed: asyncio.Future[None],
    slots: asyncio.Semaphore,
    on_progress: ProgressCallback,
) -> None:
    seeded = batch.organization
    owners = [user.id for user in seeded.users]
    try:
        payloads = await asyncio.to_thread(
            lead_batch,
            seeded.organization.slug,
            batch.start,
            batch.count,
            owners,
            anchor=anchor,
        )
        check_sample(payloads)
        async with db.tenant(seeded.organization.id) as uow:
            await uow.leads.create_many(payloads, on_progress=on_progress)
            if previous is not None:
                await previous  # an earlier batch failed: raise, and this one rolls back
            await uow.commit()
    except BaseException as error:
        if not committed.done():
            committed.set_exception(error if isinstance(error, Exception) else RuntimeError())
            committed.exception()  # the next batch may be cancelled before it looks
        raise
    else:
        committed.set_result(None)
    finally:
        slots.release()
