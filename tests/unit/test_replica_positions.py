"""WAL positions as the replica router compares them, the keys it keeps them under, the
COMMIT's report of them, and which replica a read-only unit of work begins on."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from leaddb.cache.keys import tenant_tag
from leaddb.connections.replicas import (
    REPORT_FUNCTION,
    PositionNotice,
    Replica,
    ReplicaRouter,
    lsn_value,
    token_key,
)
from leaddb.sql import system

if TYPE_CHECKING:
    from leaddb.connections.pool import ConnectionPool
    from leaddb.connections.redis_transport import RedisTransport


def test_wal_positions_compare_as_numbers_and_as_their_hex_strings() -> None:
    low, high = lsn_value("0/FFFFFFFF"), lsn_value("1/0")
    assert (low, high) == (0xFFFFFFFF, 1 << 32)
    # Redis compares the stored strings: 16 hex digits keep their order.
    assert f"{low:016x}" < f"{high:016x}"


def test_a_tenants_position_shares_its_cache_keys_hash_tag() -> None:
    tenant = uuid.uuid4()
    assert token_key(tenant).startswith(tenant_tag(tenant) + ":")
    assert token_key(None) == "leaddb:{platform}:lsn"


def _message(text: str) -> Any:
    return SimpleNamespace(message=text)


def test_a_commit_notice_catches_only_its_own_report() -> None:
    notice, other = PositionNotice(), PositionNotice()
    nonce = notice.commit_sql.rsplit("'", 2)[1]
    assert notice.commit_sql == f"SELECT; COMMIT; SELECT {REPORT_FUNCTION}('{nonce}')"
    other(None, _message(f"leaddb-wal {nonce} 0/10"))
    notice(None, _message("leaddb-wal 0123456789abcdef 0/20"))  # another commit's
    notice(None, _message(f"a user's notice naming {nonce} 0/30"))
    assert notice.position is None
    notice(None, _message(f"leaddb-wal {nonce} 1A/B374D848"))
    assert notice.position == "1A/B374D848"
    assert other.position is None


def _router(*replayed: int, down: int | None = None) -> ReplicaRouter:
    now = time.monotonic()
    replicas = [
        Replica(f"r{index}", cast("ConnectionPool", object()), replayed=value, checked_at=now)
        for index, value in enumerate(replayed)
    ]
    if down is not None:
        replicas[down].down_until = now + 60
    return ReplicaRouter(
        replicas,
        cast("RedisTransport", object()),
        poll_seconds=60,
        retry_seconds=5,
        position_sql=system.WAL_INSERT_POSITION.text,
        position_and_report_sql=system.WAL_POSITION_AND_REPORT.text,
    )


async def test_routing_begins_on_the_live_replica_that_has_replayed_the_most() -> None:
    tenant = uuid.uuid4()
    router = _router(5, 9, 7)
    best = router.candidate(tenant)
    assert best is not None
    assert best.name == "r1"
    assert router.serves(best, 9)
    assert not router.serves(best, 10)
    assert not router.serves(best, None)  # Redis could not tell: the primary
    router = _router(5, 9, 7, down=1)
    best = router.candidate(tenant)
    assert best is not None
    assert best.name == "r2"
    assert _router(-1, -1).candidate(tenant) is None  # none known yet: the primary


async def test_a_tenant_this_process_wrote_past_every_replica_goes_to_the_primary_at_once() -> None:
    tenant, quiet = uuid.uuid4(), uuid.uuid4()

    class Redis:
        async def evalsha(self, script: str, keys: list[str], args: list[Any]) -> int:
            return 1

    router = _router(lsn_value("0/100"))
    router._redis = cast("RedisTransport", Redis())
    await router.record(tenant, "0/180")
    assert router.candidate(tenant) is None
    assert router.candidate(quiet) is not None
    router.replicas[0].replayed = lsn_value("0/180")
    assert router.candidate(tenant) is router.replicas[0]
