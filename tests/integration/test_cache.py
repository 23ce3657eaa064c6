"""The Redis unit-of-work cache against real servers, one step at a time: read-through, hits
equal to misses, invalidation after every kind of committed write, rollback, read-your-writes,
key layout, secrets, and ``cache_enabled=False``."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from conftest import REDIS_CLIENTS
from cryptography.fernet import Fernet
from pydantic import SecretStr
from redis.crc import key_slot

from leaddb import LeadDB, LeadDBSettings
from leaddb.connections.lean_redis import LeanRedis
from leaddb.connections.redis_topology import AnyRedis
from leaddb.connections.redis_transport import RedisPyTransport
from leaddb.models import (
    IntegrationCreate,
    IntegrationProvider,
    Lead,
    LeadCreate,
    LeadSource,
    LeadStatus,
    LeadTemperature,
    LeadUpdate,
)
from leaddb.repositories.integrations import credentials_cipher

from .factories import PASSWORD, lead_payloads, make_lead, make_org, make_user
from .own_redis import OwnRedis

# Every test here runs on both Redis transports of the cache.
pytestmark = pytest.mark.parametrize("settings", REDIS_CLIENTS, indirect=True)

KEY = re.compile(rb"^leaddb:\{([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\}:")


async def read(db: LeadDB, org_id: uuid.UUID, lead_id: uuid.UUID) -> Lead | None:
    """``get`` in a unit of work of its own."""
    async with db.tenant(org_id) as uow:
        return await uow.leads.get(lead_id)


async def cached_strings(client: AnyRedis) -> dict[bytes, bytes]:
    """Every string key of the Redis database with its value."""
    values: dict[bytes, bytes] = {}
    async for key in client.scan_iter(count=1000):
        if await client.type(key) == b"string":
            value = await client.get(key)
            if isinstance(value, bytes):
                values[key] = value
    return values


async def test_a_miss_fills_and_the_hit_returns_an_equal_lead_of_the_same_types(
    db: LeadDB,
) -> None:
    org = await make_org(db)
    owner = await make_user(db, org.id)
    lead = await make_lead(
        db,
        org.id,
        first_name="Ada",
        phone="+44 20 7946 0000",
        linkedin_url="https://www.linkedin.com/in/ada",
        source=LeadSource.REFERRAL,
        status=LeadStatus.QUALIFIED,
        score=73,
        temperature=LeadTemperature.HOT,
        estimated_value=Decimal("1234.50"),
        expected_close_date=date(2030, 1, 31),
        last_engagement_at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        owner_id=owner.id,
        tags=["vip", "eu"],
        custom_fields={"plan": "pro", "seats": 12, "nested": {"a": [1, 2.5, None, True]}},
    )
    db.cache.reset_stats()
    miss = await read(db, org.id, lead.id)
    stats = db.cache.stats()
    assert (stats.misses, stats.fills, stats.hits) == (1, 1, 0)
    hit = await read(db, org.id, lead.id)
    stats = db.cache.stats()
    assert (stats.misses, stats.fills, stats.hits) == (1, 1, 1)
    assert miss is not None
    assert hit is not None
    assert type(hit) is type(miss) is Lead
    assert hit.model_dump() == miss.model_dump()
    for name in Lead.model_fields:
        ours, theirs = getattr(hit, name), getattr(miss, name)
        assert ours == theirs, name
        if isinstance(theirs, uuid.UUID):
            assert isinstance(ours, uuid.UUID), name
        else:
            assert type(ours) is type(theirs), name
    kinds = (hit.status, hit.temperature, hit.source, hit.estimated_value, hit.expected_close_date)
    assert tuple(map(type, kinds)) == (LeadStatus, LeadTemperature, LeadSource, Decimal, date)
    assert hit.created_at.tzinfo is not None
    assert hit.last_engagement_at is not None
    assert hit.last_engagement_at.tzinfo is not None
    assert isinstance(hit.id, uuid.UUID)
    assert isinstance(hit.organization_id, uuid.UUID)
    assert hit.custom_fields == {"plan": "pro", "seats": 12, "nested": {"a": [1, 2.5, None, True]}}


async def test_the_cache_talks_to_the_transport_the_settings_choose(
    db: LeadDB, settings: LeadDBSettings
) -> None:
    chosen = {"lean": LeanRedis, "redis-py": RedisPyTransport}[settings.redis_client]
    assert type(db.cache.redis) is chosen
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    await read(db, org.id, lead.id)
    db.cache.reset_stats()
    assert await read(db, org.id, lead.id) == lead
    assert db.cache.stats().hits == 1


async def test_every_committed_write_is_read_back_after_commit(db: LeadDB) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, email="cycle@example.com", first_name="Zero")

    async def cycle(change: Any) -> Lead | None:
        await read(db, org.id, lead.id)
        hits = db.cache.stats().hits
        await read(db, org.id, lead.id)
        assert db.cache.stats().hits == hits + 1  # the old row (maybe deleted) is cached
        async with db.tenant(org.id) as uow:
            await change(uow)
            await uow.commit()
        return await read(db, org.id, lead.id)

    for step in range(3):
        got = await cycle(lambda uow, s=step: uow.leads.update(lead.id, LeadUpdate(score=s + 1)))
        assert got is not None
        assert got.score == step + 1
    assert await cycle(lambda uow: uow.leads.delete(lead.id)) is None
    assert await read(db, org.id, lead.id) is None
    restored = await cycle(lambda uow: uow.leads.restore(lead.id))
    assert restored is not None
    assert restored.deleted_at is None
    upserted = await cycle(
        lambda uow: uow.leads.upsert(LeadCreate(email="CYCLE@example.com", first_name="Upsert"))
    )
    assert upserted is not None
    assert upserted.first_name == "Upsert"
    current = await read(db, org.id, lead.id)
    assert current is not None
    versioned = await cycle(
        lambda uow: uow.leads.update(
            lead.id, LeadUpdate(company="Versioned"), expected_version=current.version
        )
    )
    assert versioned is not None
    assert versioned.company == "Versioned"
    assert versioned.version == current.version + 1
    await cycle(lambda uow: uow.leads.delete(lead.id))
    revived = await cycle(
        lambda uow: uow.leads.upsert(LeadCreate(email="cycle@example.com", first_name="Back"))
    )
    assert revived is not None
    assert (revived.first_name, revived.deleted_at) == ("Back", None)


async def test_get_many_of_50_is_one_mget_when_cached_and_sees_every_commit(
    settings: LeadDBSettings, own_redis: OwnRedis
) -> None:
    # Counted by a Redis server of this test's own: nothing else sends it commands.
    own = settings.model_copy(update={"redis_url": SecretStr(own_redis.url)})
    async with await LeadDB.connect(own) as db:
        await _get_many_of_50(db, aioredis.Redis.from_url(own_redis.url))


async def _get_many_of_50(db: LeadDB, probe: aioredis.Redis) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        leads = await uow.leads.create_many(lead_payloads(50, "many"))
        await uow.commit()
    ids = [lead.id for lead in leads]
    async with db.tenant(org.id) as uow:
        assert [lead.id for lead in await uow.leads.get_many(ids)] == ids
    try:
        before = await command_calls(probe)
        async with db.tenant(org.id) as uow:
            found = await uow.leads.get_many(ids)
        sent = await command_calls(probe) - before
    finally:
        await probe.aclose()
    sent["info"] -= 1  # the probe's own first INFO
    assert +sent == Counter({"mget": 1})
    assert [lead.id for lead in found] == ids
    async with db.tenant(org.id) as uow:
        await uow.leads.update_many(ids[:10], LeadUpdate(company="Bulk"))
        await uow.leads.delete(ids[10])
        await uow.leads.update(ids[11], LeadUpdate(score=99))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        again = {lead.id: lead for lead in await uow.leads.get_many(ids)}
    assert ids[10] not in again
    assert len(again) == 49
    assert all(again[id].company == "Bulk" for id in ids[:10])
    assert again[ids[11]].score == 99
    assert all(again[id].company is None for id in ids[12:])


async def test_a_rollback_leaves_the_cached_value_equal_to_the_database(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, first_name="Kept")
    await read(db, org.id, lead.id)
    async with db.tenant(org.id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(first_name="RolledBack"))
        await uow.leads.delete(lead.id)
    db.cache.reset_stats()
    cached = await read(db, org.id, lead.id)
    assert db.cache.stats().hits == 1
    assert cached is not None
    assert cached.first_name == "Kept"
    row = await pg.fetchrow("SELECT first_name, version FROM leads WHERE id = $1", lead.id)
    assert row is not None
    assert (row["first_name"], row["version"]) == ("Kept", cached.version)


async def test_a_unit_of_work_reads_its_own_writes_and_never_caches_them(
    db: LeadDB, redis_client: AnyRedis
) -> None:
    org = await make_org(db)
    lead, other = await make_lead(db, org.id, first_name="Old"), await make_lead(db, org.id)
    await read(db, org.id, lead.id)
    marker = f"Uncommitted{uuid.uuid4().hex[:8]}"
    async with db.tenant(org.id) as writer:
        await writer.leads.update(lead.id, LeadUpdate(first_name=marker))
        own = await writer.leads.get(lead.id)
        assert own is not None
        assert own.first_name == marker
        [many] = await writer.leads.get_many([lead.id])
        assert many.first_name == marker
        await writer.leads.get(other.id)
        async with db.tenant(org.id) as reader:
            seen = await reader.leads.get(lead.id)
            assert seen is not None
            assert seen.first_name == "Old"
        values = await cached_strings(redis_client)
        assert values
        assert not [key for key, value in values.items() if marker.encode() in value]
        await writer.commit()
    after = await read(db, org.id, lead.id)
    assert after is not None
    assert after.first_name == marker


async def test_a_unit_of_work_served_from_the_cache_opens_no_transaction(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    leads = [await make_lead(db, org.id) for _ in range(3)]
    for lead in leads:
        await read(db, org.id, lead.id)
    in_transaction = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'leaddb' AND xact_start IS NOT NULL"
    )
    # This database's only: other test runs on the same server open and close their own.
    sessions = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'leaddb'"
    )
    before = await pg.fetchval(sessions)
    db.cache.reset_stats()
    async with db.tenant(org.id) as uow:
        for lead in leads:
            assert await uow.leads.get(lead.id) is not None
        assert len(await uow.leads.get_many([lead.id for lead in leads])) == 3
        assert uow._connection is None
        assert await pg.fetchval(in_transaction) == 0
        assert await pg.fetchval(sessions) == before
    assert db.cache.stats().hits == 6
    assert db.cache.stats().misses == 0


async def test_keys_carry_the_tenant_hash_tag_and_each_tenant_is_one_slot(
    db: LeadDB, redis_client: AnyRedis
) -> None:
    orgs = [await make_org(db) for _ in range(2)]
    for org in orgs:
        leads = [await make_lead(db, org.id) for _ in range(3)]
        await read(db, org.id, leads[0].id)
        async with db.tenant(org.id) as uow:
            await uow.leads.get_many([lead.id for lead in leads])
            await uow.leads.update(leads[1].id, LeadUpdate(score=5))
            await uow.commit()
        async with db.platform() as platform:
            assert await platform.organizations.get(org.id) is not None
    keys = [key async for key in redis_client.scan_iter(count=1000)]
    assert len(keys) >= 8
    slots: dict[bytes, set[int]] = {}
    for key in keys:
        match = KEY.match(key)
        assert match is not None, key
        slots.setdefault(match.group(1), set()).add(key_slot(key))
    assert set(slots) == {str(org.id).encode() for org in orgs}
    assert all(len(tenant_slots) == 1 for tenant_slots in slots.values())


async def assert_nothing_cached(client: AnyRedis, entity: bytes, *secrets: bytes) -> None:
    """No key of ``entity`` and no value holding any of ``secrets`` (raw or hex) in Redis."""
    values = await cached_strings(client)
    for name, value in values.items():
        for secret in secrets:
            assert secret not in value, name
            assert secret.hex().encode() not in value, name
        assert b":" + entity + b":" not in name, name


async def test_users_are_never_cached(
    db: LeadDB, redis_client: AnyRedis, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    user = await make_user(db, org.id, password=PASSWORD)
    await make_lead(db, org.id)
    for _ in range(2):
        async with db.tenant(org.id) as uow:
            assert await uow.users.get(user.id) is not None
            assert len(await uow.users.get_many([user.id])) == 1
    password_hash = await pg.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id)
    assert password_hash
    await assert_nothing_cached(redis_client, b"user", password_hash.encode())


async def test_integrations_are_never_cached(
    settings: LeadDBSettings, redis_client: AnyRedis, pg: asyncpg.Connection
) -> None:
    key = Fernet.generate_key().decode()
    async with await LeadDB.connect(
        settings.model_copy(update={"credentials_key": SecretStr(key)})
    ) as db:
        org = await make_org(db)
        async with db.tenant(org.id) as uow:
            integration = await uow.integrations.create(
                IntegrationCreate(provider=IntegrationProvider.HUBSPOT, name="CRM")
            )
            await uow.commit()
        # Encrypted the way the repository does it, stored before anything could be cached.
        secret = credentials_cipher(db.settings).encrypt(b'{"api_key": "sk-very-secret"}')
        await pg.execute(
            "UPDATE integrations SET credentials_encrypted = $1 WHERE id = $2",
            secret,
            integration.id,
        )
        for _ in range(2):
            async with db.tenant(org.id) as uow:
                assert await uow.integrations.get(integration.id) is not None
                assert len(await uow.integrations.get_many([integration.id])) == 1
                credentials = await uow.integrations.credentials(integration.id)
                assert credentials["api_key"].get_secret_value() == "sk-very-secret"
    cipher = await pg.fetchval(
        "SELECT credentials_encrypted FROM integrations WHERE id = $1", integration.id
    )
    assert cipher
    await assert_nothing_cached(redis_client, b"integration", bytes(cipher), b"sk-very-secret")


async def command_calls(client: aioredis.Redis) -> Counter[str]:
    """Commands the server has run, by name (``INFO commandstats``)."""
    stats = await client.info("commandstats")
    return Counter(
        {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    )


async def sent_to_redis(settings: LeadDBSettings, own_redis: OwnRedis) -> Counter[str]:
    """The commands a LeadDB on a Redis server of this test's own sends it while it reads and
    writes leads and organizations (counted by that server: nothing else talks to it)."""
    probe = aioredis.Redis.from_url(own_redis.url)
    try:
        async with await LeadDB.connect(
            settings.model_copy(update={"redis_url": SecretStr(own_redis.url)})
        ) as db:
            before = await command_calls(probe)
            org = await make_org(db)
            lead = await make_lead(db, org.id)
            for _ in range(3):
                assert await read(db, org.id, lead.id) is not None
            async with db.tenant(org.id) as uow:
                assert len(await uow.leads.get_many([lead.id])) == 1
                await uow.leads.update(lead.id, LeadUpdate(score=3))
                await uow.commit()
            async with db.tenant(org.id) as uow:
                await uow.leads.delete(lead.id)
                await uow.commit()
            async with db.platform() as platform:
                assert await platform.organizations.get(org.id) is not None
            after = await command_calls(probe)
    finally:
        await probe.aclose()
    sent = after - before
    sent["info"] -= 1  # the probe's own first INFO
    return +sent


async def test_a_disabled_cache_sends_redis_nothing_on_reads_or_commits(
    settings: LeadDBSettings, own_redis: OwnRedis
) -> None:
    off = await sent_to_redis(settings.model_copy(update={"cache_enabled": False}), own_redis)
    assert off == Counter()
    # The same work with the cache on, counted the same way: the count would have seen it.
    on = await sent_to_redis(settings.model_copy(update={"cache_enabled": True}), own_redis)
    assert on["mget"] > 0
    assert on["evalsha"] + on["eval"] > 0


async def test_bulk_and_cascading_changes_invalidate(db: LeadDB) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        created = await uow.leads.create_many(lead_payloads(5, "made"))
        assert (await uow.leads.get(created[0].id)) is not None
        await uow.commit()
    got = await read(db, org.id, created[0].id)
    assert got is not None
    assert got.email == created[0].email
    owner = await make_user(db, org.id)
    owned = await make_lead(db, org.id, owner_id=owner.id)
    cached = await read(db, org.id, owned.id)
    assert cached is not None
    assert cached.owner_id == owner.id
    assert (await read(db, org.id, owned.id)) is not None  # now a hit
    async with db.tenant(org.id) as uow:
        await uow.users.delete(owner.id)
        await uow.commit()
    orphan = await read(db, org.id, owned.id)
    assert orphan is not None
    assert orphan.owner_id is None
    await read(db, org.id, created[1].id)
    async with db.platform() as platform:
        assert await platform.organizations.get(org.id) is not None
    async with db.platform() as platform:
        await platform.organizations.delete(org.id)
        await platform.commit()
    assert await read(db, org.id, created[1].id) is None
    assert await read(db, org.id, owned.id) is None
    async with db.platform() as platform:
        assert await platform.organizations.get(org.id) is None
