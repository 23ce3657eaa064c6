"""WAL positions as the replica router compares them, and the keys it keeps them under."""

from __future__ import annotations

import uuid

from leaddb.cache.keys import tenant_tag
from leaddb.connections.replicas import lsn_value, token_key


def test_wal_positions_compare_as_numbers_and_as_their_hex_strings() -> None:
    low, high = lsn_value("0/FFFFFFFF"), lsn_value("1/0")
    assert (low, high) == (0xFFFFFFFF, 1 << 32)
    # Redis compares the stored strings: 16 hex digits keep their order.
    assert f"{low:016x}" < f"{high:016x}"


def test_a_tenants_position_shares_its_cache_keys_hash_tag() -> None:
    tenant = uuid.uuid4()
    assert token_key(tenant).startswith(tenant_tag(tenant) + ":")
    assert token_key(None) == "leaddb:{platform}:lsn"
