"""The cache's Redis keys (pure logic, no server): their exact shape, whatever UUID class names
the tenant or the row. A process with another shape would miss every value another process
filled, and invalidate keys that no reader reads."""

from __future__ import annotations

import uuid

from asyncpg.pgproto.pgproto import UUID as PgUUID

from leaddb.cache.keys import (
    entity_prefix,
    epoch_key,
    generation_key,
    row_keys,
    tenant_tag,
    token_key,
    value_key,
)

TENANT = uuid.UUID("0192f0a8-1b2c-7d3e-8f40-5a6b7c8d9e0f")
ROW = uuid.UUID("0192f0a8-aaaa-7bbb-8ccc-dddddddddddd")


def test_every_key_has_the_documented_shape() -> None:
    tag = "leaddb:{0192f0a8-1b2c-7d3e-8f40-5a6b7c8d9e0f}"
    assert tenant_tag(TENANT) == tag
    assert entity_prefix(TENANT, "lead") == f"{tag}:lead:"
    assert value_key(TENANT, "lead", ROW) == f"{tag}:lead:0192f0a8-aaaa-7bbb-8ccc-dddddddddddd"
    assert token_key(TENANT, "lead", ROW) == f"{tag}:lead:0192f0a8-aaaa-7bbb-8ccc-dddddddddddd:t"
    assert generation_key(TENANT, "lead") == f"{tag}:lead:gen"
    assert epoch_key(TENANT) == f"{tag}:epoch"


def test_row_keys_are_the_value_and_token_keys() -> None:
    assert row_keys(TENANT, "lead", ROW) == (
        value_key(TENANT, "lead", ROW),
        token_key(TENANT, "lead", ROW),
    )


def test_asyncpgs_uuid_class_names_the_same_keys_as_the_standard_one() -> None:
    # Rows read from PostgreSQL carry asyncpg's UUID; callers pass uuid.UUID.
    tenant, row = PgUUID(TENANT.bytes), PgUUID(ROW.bytes)
    assert type(tenant) is not uuid.UUID
    assert row_keys(tenant, "lead", row) == row_keys(TENANT, "lead", ROW)
    assert generation_key(tenant, "lead") == generation_key(TENANT, "lead")
    assert epoch_key(tenant) == epoch_key(TENANT)


def test_tenants_keep_apart_however_many_are_remembered() -> None:
    tenants = [uuid.uuid4() for _ in range(5_000)]
    tags = [tenant_tag(tenant) for tenant in tenants]
    assert tags == [f"leaddb:{{{tenant}}}" for tenant in tenants]
    assert len(set(tags)) == len(tenants)
