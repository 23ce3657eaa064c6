"""The opt-in retry of whole units of work on deadlocks, and loading a page's owners without
N+1 queries."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asyncpg.connection import LoggedQuery

from leaddb import LeadDB
from leaddb.errors import RetryableError
from leaddb.models import LeadCreate, LeadUpdate, OrganizationCreate, UserCreate
from leaddb.uow import TenantUnitOfWork


async def _organization(db: LeadDB, slug: str) -> uuid.UUID:
    async with db.platform() as uow:
        organization = await uow.organizations.create(OrganizationCreate(name=slug, slug=slug))
        await uow.commit()
    return organization.id


async def _two_leads(db: LeadDB, organization: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    async with db.tenant(organization) as uow:
        first = await uow.leads.create(LeadCreate(email="first@example.com"))
        second = await uow.leads.create(LeadCreate(email="second@example.com"))
        await uow.commit()
    return first.id, second.id


def _crossing_updates(
    one: uuid.UUID, other: uuid.UUID, both_locked: asyncio.Barrier, attempts: list[int]
) -> tuple[object, object]:
    async def update(first: uuid.UUID, second: uuid.UUID, uow: TenantUnitOfWork) -> None:
        attempts.append(1)
        await uow.leads.update(first, LeadUpdate(score=10))
        if len(attempts) <= 2:
            # Only the first attempts wait for each other: that makes the deadlock certain.
            await both_locked.wait()
        await uow.leads.update(second, LeadUpdate(score=20))

    return (lambda uow: update(one, other, uow)), (lambda uow: update(other, one, uow))


async def test_a_deadlock_is_a_retryable_error(db: LeadDB) -> None:
    organization = await _organization(db, "deadlock")
    one, other = await _two_leads(db, organization)
    both_locked = asyncio.Barrier(2)
    attempts: list[int] = []
    forward, backward = _crossing_updates(one, other, both_locked, attempts)

    async def once(work: object) -> None:
        async with db.tenant(organization) as uow:
            await work(uow)  # type: ignore[operator]
            await uow.commit()

    results = await asyncio.gather(once(forward), once(backward), return_exceptions=True)
    assert sum(isinstance(result, RetryableError) for result in results) == 1


async def test_run_in_tenant_retries_the_unit_of_work_that_lost_the_deadlock(db: LeadDB) -> None:
    organization = await _organization(db, "retry")
    one, other = await _two_leads(db, organization)
    both_locked = asyncio.Barrier(2)
    attempts: list[int] = []
    forward, backward = _crossing_updates(one, other, both_locked, attempts)
    await asyncio.gather(
        db.run_in_tenant(organization, forward),  # type: ignore[arg-type]
        db.run_in_tenant(organization, backward),  # type: ignore[arg-type]
    )
    assert len(attempts) == 3  # two that deadlocked, one retry
    async with db.tenant(organization) as uow:
        leads = await uow.leads.get_many([one, other])
    # Both units of work committed: each lead was updated twice, once by each.
    assert [lead.version for lead in leads] == [3, 3]


async def test_run_in_tenant_gives_up_after_its_attempts(db: LeadDB) -> None:
    organization = await _organization(db, "give-up")
    calls: list[int] = []

    async def always_conflicts(uow: TenantUnitOfWork) -> None:
        calls.append(1)
        await uow.execute(
            "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'serialization_failure'; END $$"
        )

    with pytest.raises(RetryableError):
        await db.run_in_tenant(organization, always_conflicts, attempts=2)
    assert len(calls) == 2


async def test_a_page_of_leads_and_their_owners_is_two_statements(db: LeadDB) -> None:
    organization = await _organization(db, "owners")
    async with db.tenant(organization) as uow:
        owners = [
            await uow.users.create(UserCreate(email=f"owner{n}@example.com", full_name=f"O{n}"))
            for n in range(5)
        ]
        await uow.leads.create_many(
            [
                LeadCreate(email=f"lead{n}@example.com", owner_id=owners[n % 5].id)
                for n in range(250)
            ]
        )
        await uow.commit()
    async with db.tenant(organization) as uow:
        connection = await uow.connection()
        # Once first, so asyncpg's one-off type introspection of this connection is done.
        await uow.leads.owners((await uow.leads.list(limit=50)).items)
        queries: list[str] = []

        def log(record: LoggedQuery) -> None:
            queries.append(record.query)

        connection.add_query_logger(log)
        page = await uow.leads.list(limit=50)
        by_id = await uow.leads.owners(page.items)
        await asyncio.sleep(0)
        connection.remove_query_logger(log)
    assert len(page.items) == 50
    assert len(queries) == 2
    assert {lead.owner_id for lead in page.items} == set(by_id)
    assert all(
        by_id[lead.owner_id].organization_id == organization for lead in page.items if lead.owner_id
    )
