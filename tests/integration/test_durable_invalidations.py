"""Deactivations and invalidations that Redis missed are not lost (leaddb.pending).

The writer here cannot reach Redis (its URL names a port where nothing listens), while another
process of the same service reads through the real Redis: the scenario of a partition, where
the writer's commit stands but its invalidation never arrives. The reader must still stop
serving what the commit changed, within its ``pending_poll_seconds``, long before any TTL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from pydantic import SecretStr

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import TenantViolationError
from leaddb.models import LeadUpdate, OrganizationUpdate, UserUpdate

from .factories import make_lead, make_org, make_user

UNREACHABLE_REDIS = SecretStr("redis://127.0.0.1:1/0")


@pytest.fixture
async def cut_off(settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    """A process of the service that cannot reach Redis."""
    async with await LeadDB.connect(
        settings.model_copy(update={"redis_url": UNREACHABLE_REDIS, "pending_poll_seconds": 0})
    ) as db:
        yield db


@pytest.fixture
async def reader(settings: LeadDBSettings) -> AsyncIterator[LeadDB]:
    """Another process, with Redis, polling the durable list often."""
    async with await LeadDB.connect(
        settings.model_copy(update={"pending_poll_seconds": 0.1})
    ) as db:
        yield db


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_update_many_deactivation_revokes_sessions(db: LeadDB) -> None:
    org = await make_org(db)
    users = [await make_user(db, org.id) for _ in range(2)]
    tokens = [await db.sessions.create(user_id=u.id, organization_id=org.id) for u in users]
    async with db.tenant(org.id) as uow:
        await uow.users.update_many([u.id for u in users], UserUpdate(is_active=False))
        await uow.commit()
    assert [await db.sessions.get(token) for token in tokens] == [None, None]


async def test_organization_update_many_deactivation_revokes_sessions(db: LeadDB) -> None:
    org = await make_org(db)
    user = await make_user(db, org.id)
    token = await db.sessions.create(user_id=user.id, organization_id=org.id)
    async with db.platform() as uow:
        await uow.organizations.update_many([org.id], OrganizationUpdate(is_active=False))
        await uow.commit()
    assert await db.sessions.get(token) is None


async def test_a_deactivation_committed_while_redis_is_unreachable_still_revokes(
    cut_off: LeadDB, reader: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(reader)
    user = await make_user(reader, org.id)
    token = await reader.sessions.create(user_id=user.id, organization_id=org.id)
    async with cut_off.tenant(org.id) as uow:
        await uow.users.update(user.id, UserUpdate(is_active=False))
        await uow.commit()  # committed; Redis missed the revocation, and no error for it
    assert await pg.fetchval("SELECT is_active FROM users WHERE id = $1", user.id) is False

    async def revoked_and_struck() -> bool:
        pending = "SELECT count(*) FROM leaddb_private.pending_invalidations"
        return await reader.sessions.get(token) is None and await pg.fetchval(pending) == 0

    assert await eventually(revoked_and_struck)


async def test_a_deactivation_by_raw_sql_revokes_too(db: LeadDB, reader: LeadDB) -> None:
    org = await make_org(db)
    user = await make_user(db, org.id)
    token = await db.sessions.create(user_id=user.id, organization_id=org.id)
    async with db.tenant(org.id) as uow:
        await uow.execute("UPDATE users SET is_active = false WHERE id = $1", user.id)
        await uow.commit()

    async def revoked() -> bool:
        return await db.sessions.get(token) is None

    assert await eventually(revoked)


async def test_an_invalidation_lost_by_one_process_is_applied_by_another(
    cut_off: LeadDB, reader: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(reader)
    lead = await make_lead(reader, org.id, first_name="Grace")
    async with reader.tenant(org.id) as uow:
        assert (await uow.leads.get_one(lead.id)).first_name == "Grace"  # cached
    async with cut_off.tenant(org.id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(first_name="Ada"))
        await uow.commit()
    assert await pg.fetchval(
        "SELECT count(*) FROM leaddb_private.pending_invalidations WHERE kind = 'epoch'"
    ) in (0, 1)  # listed (or already applied by the reader's poller)

    async def fresh_and_struck() -> bool:
        async with reader.tenant(org.id) as uow:
            lead_now = await uow.leads.get_one(lead.id)
        pending = "SELECT count(*) FROM leaddb_private.pending_invalidations"
        return lead_now.first_name == "Ada" and await pg.fetchval(pending) == 0

    assert await eventually(fresh_and_struck)


async def test_a_tenant_cannot_list_invalidations_for_another(db: LeadDB) -> None:
    a, b = await make_org(db), await make_org(db)
    async with db.tenant(a.id) as uow:
        await uow.fetch("SELECT leaddb_note_epoch($1)", a.id)  # its own: allowed
        with pytest.raises(TenantViolationError):
            await uow.fetch("SELECT leaddb_note_epoch($1)", b.id)
    async with db.tenant(a.id) as uow:
        assert await uow.fetch("SELECT * FROM leaddb_pending_invalidations()") == []
        with pytest.raises(TenantViolationError):
            await uow.fetch("SELECT leaddb_invalidations_applied(ARRAY[1]::bigint[])")


async def test_sessions_start_only_for_active_members_of_active_organizations(
    db: LeadDB,
) -> None:
    org, other = await make_org(db), await make_org(db)
    user = await make_user(db, org.id)
    with pytest.raises(TenantViolationError):
        await db.sessions.create(user_id=user.id, organization_id=other.id)
    with pytest.raises(TenantViolationError):
        await db.sessions.create(user_id=uuid.uuid4(), organization_id=org.id)
    async with db.tenant(org.id) as uow:
        await uow.users.update(user.id, UserUpdate(is_active=False))
        await uow.commit()
    with pytest.raises(TenantViolationError):
        await db.sessions.create(user_id=user.id, organization_id=org.id)
    async with db.tenant(org.id) as uow:
        await uow.users.update(user.id, UserUpdate(is_active=True))
        await uow.commit()
    assert await db.sessions.create(user_id=user.id, organization_id=org.id)
    async with db.platform() as uow:
        await uow.organizations.update(org.id, OrganizationUpdate(is_active=False))
        await uow.commit()
    with pytest.raises(TenantViolationError):
        await db.sessions.create(user_id=user.id, organization_id=org.id)
