"""What a cached value decodes to, against real servers: a hit gives the same types and values as
a miss for rows full of nulls and empty collections as well as for full ones, and a value that
does not decode (corrupt, truncated, written in another format or for another version of the
model) is a miss that is read from PostgreSQL and filled afresh, never an error or a wrong
value."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pytest
from conftest import REDIS_CLIENTS

from leaddb import LeadDB
from leaddb.cache.keys import value_key
from leaddb.connections.redis_topology import AnyRedis
from leaddb.models import Lead, LeadStatus

from .factories import make_lead, make_org

# Every test here runs on both Redis transports of the cache.
pytestmark = pytest.mark.parametrize("settings", REDIS_CLIENTS, indirect=True)


def assert_same(hit: Lead, miss: Lead) -> None:
    """Equal values of the very same types, field by field."""
    assert type(hit) is type(miss) is Lead
    for name in Lead.model_fields:
        ours, theirs = getattr(hit, name), getattr(miss, name)
        assert ours == theirs, name
        assert type(ours) is type(theirs), (name, type(ours), type(theirs))
        if isinstance(theirs, datetime):
            assert ours.utcoffset() == theirs.utcoffset(), name


async def read_many(db: LeadDB, org_id: uuid.UUID, ids: list[uuid.UUID]) -> list[Lead]:
    async with db.tenant(org_id) as uow:
        return await uow.leads.get_many(ids)


async def test_hits_equal_misses_for_sparse_and_full_rows_through_get_and_get_many(
    db: LeadDB,
) -> None:
    org = await make_org(db)
    sparse = await make_lead(db, org.id)
    full = await make_lead(
        db,
        org.id,
        first_name="Zoë",
        last_name='O\'Brien "quoted" \\ \u2603',
        status=LeadStatus.QUALIFIED,
        estimated_value=Decimal("0.10"),
        expected_close_date=date(2031, 12, 31),
        last_engagement_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        tags=["a", "ü", "x" * 64],
        custom_fields={"n": None, "f": 1.5, "big": 2**62, "list": [{"deep": [True]}], "s": ""},
    )
    ids = [sparse.id, full.id]
    db.cache.reset_stats()
    misses = await read_many(db, org.id, ids)
    hits = await read_many(db, org.id, ids)
    stats = db.cache.stats()
    assert (stats.misses, stats.fills, stats.hits) == (2, 2, 2)
    for hit, miss in zip(hits, misses, strict=True):
        assert_same(hit, miss)
    assert misses[0].tags == []
    assert misses[0].custom_fields == {}
    assert misses[0].estimated_value is None
    async with db.tenant(org.id) as uow:
        single = await uow.leads.get(full.id)
    assert single is not None
    assert_same(single, misses[1])
    assert db.cache.stats().hits == 3


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "not JSON": lambda payload: b"\x00not json",
    "empty": lambda payload: b"",
    "truncated": lambda payload: payload[: len(payload) // 2],
    "a JSON object (the format before arrays)": lambda payload: orjson.dumps(
        {"id": orjson.loads(payload)[1]}
    ),
    "a JSON string": lambda payload: b'"lead"',
    "another model version's tag": lambda payload: orjson.dumps(
        [*orjson.loads(payload)[:-1], "2:0000000000000000"]
    ),
    "one value short": lambda payload: orjson.dumps(
        [*orjson.loads(payload)[:-2], orjson.loads(payload)[-1]]
    ),
    "a UUID that is not one": lambda payload: orjson.dumps(
        ["not-a-uuid", *orjson.loads(payload)[1:]]
    ),
    "a null where the column has none": lambda payload: orjson.dumps(
        [None, *orjson.loads(payload)[1:]]
    ),
    "an unknown enum value": lambda payload: orjson.dumps(
        [value if value != "new" else "no-such-status" for value in orjson.loads(payload)]
    ),
}


async def _corrupt(client: AnyRedis, key: str, corruption: Callable[[bytes], bytes]) -> None:
    value = await client.get(key)
    assert isinstance(value, bytes)
    # Keep the generation and epoch the value was filled under, so only the payload is bad.
    generation_end = value.index(b":")
    header_end = value.index(b":", generation_end + 1) + 1
    await client.set(key, value[:header_end] + corruption(value[header_end:]), keepttl=True)


@pytest.mark.parametrize("corruption", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
async def test_a_value_that_does_not_decode_is_a_miss_and_is_filled_again(
    db: LeadDB, redis_client: AnyRedis, corruption: Callable[[bytes], bytes]
) -> None:
    org = await make_org(db)
    leads = [await make_lead(db, org.id, status=LeadStatus.NEW) for _ in range(3)]
    ids = [lead.id for lead in leads]
    truth = await read_many(db, org.id, ids)
    keys = [value_key(org.id, "lead", id) for id in ids]

    for key in keys:
        await _corrupt(redis_client, key, corruption)
    db.cache.reset_stats()
    async with db.tenant(org.id) as uow:
        single = await uow.leads.get(ids[0])
    assert single is not None
    assert_same(single, truth[0])
    stats = db.cache.stats()
    assert (stats.hits, stats.misses, stats.fills, stats.errors) == (0, 1, 1, 0)

    db.cache.reset_stats()
    many = await read_many(db, org.id, ids)
    for lead, expected in zip(many, truth, strict=True):
        assert_same(lead, expected)
    stats = db.cache.stats()
    # The first value was filled again by the get; the other two were still bad.
    assert (stats.hits, stats.misses, stats.fills, stats.errors) == (1, 2, 2, 0)

    db.cache.reset_stats()
    for lead, expected in zip(await read_many(db, org.id, ids), truth, strict=True):
        assert_same(lead, expected)
    assert db.cache.stats().hits == 3
