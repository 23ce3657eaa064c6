"""User sessions against a real Redis: life cycle, expiry, revocation, the cap, hostile tokens.

The module overrides ``redis_client`` and ``settings``: the session store needs Redis alone, and
the conftest's versions also create and migrate a PostgreSQL database for every test.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.crc import key_slot
from redis.exceptions import RedisError

from leaddb import LeadDBSettings
from leaddb.errors import ConnectionFailedError
from leaddb.sessions import MAX_RECORD_BYTES, Session, SessionMetadata, SessionStore
from leaddb.sessions.tokens import parse_token, token_digest

DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def store(redis_client: aioredis.Redis, settings: LeadDBSettings) -> SessionStore:
    return SessionStore(redis_client, settings)


@pytest.fixture
async def dead_store(settings: LeadDBSettings) -> AsyncIterator[SessionStore]:
    """A store whose Redis refuses every connection."""
    client = aioredis.Redis.from_url(DEAD_REDIS, socket_connect_timeout=1)
    try:
        yield SessionStore(client, settings)
    finally:
        await client.aclose()


def short_lived(settings: LeadDBSettings, **lifetimes: int) -> LeadDBSettings:
    return settings.model_copy(update=lifetimes)


def near(value: datetime, expected: datetime, seconds: float = 1.0) -> bool:
    return abs((value - expected).total_seconds()) <= seconds


def as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return repr(value).encode()


async def all_keys(redis: aioredis.Redis) -> list[bytes]:
    return [key async for key in redis.scan_iter(count=1000)]


async def test_life_cycle(store: SessionStore, redis_client: aioredis.Redis) -> None:
    user, org = uuid.uuid4(), uuid.uuid4()
    metadata = SessionMetadata(
        ip_address="203.0.113.7", user_agent="Firefox/128", extra={"device": "laptop"}
    )
    data: dict[str, Any] = {"role": "admin", "cart": [1, 2.5, None, {"big": 2**62}], "ok": True}
    token = await store.create(user_id=user, organization_id=org, data=data, metadata=metadata)

    session = await store.get(token)
    assert isinstance(session, Session)
    assert (session.user_id, session.organization_id) == (user, org)
    assert session.data == data
    assert session.metadata == metadata
    now = datetime.now(UTC)
    assert near(session.created_at, now)
    assert session.created_at <= session.last_seen_at <= session.expires_at
    assert session.expires_at == session.last_seen_at + timedelta(days=7)
    assert session.absolute_expires_at == session.created_at + timedelta(days=30)
    assert session.created_at.tzinfo is not None

    assert await store.touch(token)
    assert [listed.id for listed in await store.list(user)] == [session.id]
    assert await store.list(uuid.uuid4()) == []

    assert await store.revoke(token)
    assert await store.get(token) is None
    assert not await store.touch(token)
    assert not await store.revoke(token)
    assert await store.rotate(token) is None
    assert await store.list(user) == []
    assert await all_keys(redis_client) == [b"leaddb:{o:%s}:session-users" % str(org).encode()], (
        "the session and the user's index are gone"
    )


async def test_tokens_are_url_safe_and_carry_256_random_bits(store: SessionStore) -> None:
    user = uuid.uuid4()
    tokens = {await store.create(user_id=user, organization_id=uuid.uuid4()) for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert token.isascii()
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
        secret = token.split(".")[1]
        assert len(secret) * 6 >= 256


async def test_redis_ttls_match_the_session(
    redis_client: aioredis.Redis, settings: LeadDBSettings
) -> None:
    store = SessionStore(redis_client, short_lived(settings, session_idle_ttl_seconds=60))
    user = uuid.uuid4()
    token = await store.create(user_id=user, organization_id=uuid.uuid4())
    custom = await store.create(user_id=user, organization_id=uuid.uuid4(), ttl=timedelta(hours=2))
    session, custom_session = await store.get(token), await store.get(custom)
    assert session is not None
    assert custom_session is not None
    assert session.expires_at - session.last_seen_at == timedelta(seconds=60)
    assert custom_session.expires_at - custom_session.last_seen_at == timedelta(hours=2)

    parsed = parse_token(token)
    assert parsed is not None
    key = f"leaddb:{{u:{user}}}:session:{parsed.digest}"
    assert 59_000 < await redis_client.pttl(key) <= 60_000
    index_ttl = await redis_client.pttl(f"leaddb:{{u:{user}}}:sessions")
    assert 29 * 86_400_000 < index_ttl <= 30 * 86_400_000, (
        "the index lives as long as a session can"
    )


async def test_use_slides_the_idle_expiry(
    redis_client: aioredis.Redis, settings: LeadDBSettings
) -> None:
    store = SessionStore(redis_client, short_lived(settings, session_idle_ttl_seconds=1))
    used = await store.create(user_id=uuid.uuid4(), organization_id=uuid.uuid4())
    idle = await store.create(user_id=uuid.uuid4(), organization_id=uuid.uuid4())
    for _ in range(3):  # 1.5 s in all, well past the 1 s idle ttl
        await asyncio.sleep(0.5)
        assert await store.get(used) is not None
    assert await store.get(idle) is None, "unused for longer than the idle ttl"
    await asyncio.sleep(1.1)
    assert await store.get(used) is None
    assert await all_keys(redis_client) != []  # the organization indexes outlive their sessions
    assert not [key for key in await all_keys(redis_client) if b":session:" in key]


async def test_use_never_extends_past_the_absolute_lifetime(
    redis_client: aioredis.Redis, settings: LeadDBSettings
) -> None:
    store = SessionStore(
        redis_client,
        short_lived(settings, session_idle_ttl_seconds=1, session_absolute_ttl_seconds=2),
    )
    user = uuid.uuid4()
    token = await store.create(user_id=user, organization_id=uuid.uuid4())
    first = await store.get(token)
    assert first is not None
    last = first
    while (session := await store.get(token)) is not None:
        assert session.expires_at <= session.absolute_expires_at == first.absolute_expires_at
        last = session
        await asyncio.sleep(0.4)
    assert last.expires_at == first.absolute_expires_at, "the last slide stopped at the deadline"
    assert datetime.now(UTC) >= first.absolute_expires_at - timedelta(milliseconds=100)
    assert await store.list(user) == []
    assert await all_keys(redis_client) != []
    assert not [key for key in await all_keys(redis_client) if b"{u:" in key], "index expired too"


async def test_revoke_all_leaves_other_users(store: SessionStore) -> None:
    org = uuid.uuid4()
    ada, bob = uuid.uuid4(), uuid.uuid4()
    ada_tokens = [await store.create(user_id=ada, organization_id=org) for _ in range(3)]
    bob_token = await store.create(user_id=bob, organization_id=org)

    assert await store.revoke_all(ada) == 3
    assert [await store.get(token) for token in ada_tokens] == [None, None, None]
    assert await store.list(ada) == []
    assert await store.get(bob_token) is not None
    assert await store.revoke_all(ada) == 0


async def test_revoke_organization_leaves_other_organizations(store: SessionStore) -> None:
    acme, globex = uuid.uuid4(), uuid.uuid4()
    ada, bob, cyd = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    acme_tokens = [
        await store.create(user_id=ada, organization_id=acme),
        await store.create(user_id=ada, organization_id=acme),
        await store.create(user_id=bob, organization_id=acme),
    ]
    globex_token = await store.create(user_id=cyd, organization_id=globex)
    # A user with sessions in both (say, a support account) keeps the other organization's.
    both_acme = await store.create(user_id=cyd, organization_id=acme)

    assert await store.revoke_organization(acme) == 4
    for token in [*acme_tokens, both_acme]:
        assert await store.get(token) is None
    assert await store.get(globex_token) is not None
    assert [session.organization_id for session in await store.list(cyd)] == [globex]
    assert await store.revoke_organization(acme) == 0
    assert await store.revoke_organization(uuid.uuid4()) == 0


async def test_revoke_organization_reaches_more_users_than_one_batch(store: SessionStore) -> None:
    org = uuid.uuid4()
    users = [uuid.uuid4() for _ in range(300)]
    tokens = [await store.create(user_id=user, organization_id=org) for user in users]
    assert await store.revoke_organization(org) == 300
    assert not [token for token in tokens if await store.touch(token)]


async def test_a_listed_session_can_be_revoked_by_its_id(store: SessionStore) -> None:
    ada, bob, org = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    phone = await store.create(
        user_id=ada, organization_id=org, metadata=SessionMetadata(user_agent="phone")
    )
    laptop = await store.create(user_id=ada, organization_id=org)
    listed = await store.list(ada)
    assert [session.metadata.user_agent for session in listed] == ["phone", None], "oldest first"

    assert not await store.revoke_session(bob, listed[0].id), "another user's session id"
    assert not await store.revoke_session(ada, "not-a-session-id")
    assert await store.revoke_session(ada, listed[0].id)
    assert await store.get(phone) is None
    assert await store.get(laptop) is not None
    assert not await store.revoke_session(ada, listed[0].id)


async def test_rotation_kills_the_old_token_and_keeps_the_session(store: SessionStore) -> None:
    user = uuid.uuid4()
    old = await store.create(user_id=user, organization_id=uuid.uuid4(), data={"step": 1})
    before = await store.get(old)
    assert before is not None

    new = await store.rotate(old)
    assert new is not None
    assert new != old
    assert await store.get(old) is None
    assert await store.rotate(old) is None
    after = await store.get(new)
    assert after is not None
    assert (after.id, after.created_at, after.data) == (before.id, before.created_at, {"step": 1})
    assert after.absolute_expires_at == before.absolute_expires_at
    assert [session.id for session in await store.list(user)] == [before.id]


async def test_concurrent_rotations_leave_exactly_one_token(store: SessionStore) -> None:
    user = uuid.uuid4()
    token = await store.create(user_id=user, organization_id=uuid.uuid4())
    results = await asyncio.gather(*(store.rotate(token) for _ in range(10)))
    winners = [result for result in results if result is not None]
    assert len(winners) == 1
    assert await store.get(winners[0]) is not None
    assert len(await store.list(user)) == 1


async def test_the_cap_evicts_the_oldest_sessions_first(
    redis_client: aioredis.Redis, settings: LeadDBSettings
) -> None:
    store = SessionStore(redis_client, short_lived(settings, session_max_per_user=3))
    user, org = uuid.uuid4(), uuid.uuid4()
    tokens = [await store.create(user_id=user, organization_id=org) for _ in range(5)]
    assert [await store.get(token) is not None for token in tokens] == [False] * 2 + [True] * 3
    assert len(await store.list(user)) == 3
    assert await redis_client.zcard(f"leaddb:{{u:{user}}}:sessions") == 3
    assert len([key for key in await all_keys(redis_client) if b":session:" in key]) == 3


async def test_the_cap_counts_only_live_sessions(
    redis_client: aioredis.Redis, settings: LeadDBSettings
) -> None:
    store = SessionStore(redis_client, short_lived(settings, session_max_per_user=2))
    user, org = uuid.uuid4(), uuid.uuid4()
    await store.create(user_id=user, organization_id=org, ttl=0.2)
    kept = await store.create(user_id=user, organization_id=org)
    await asyncio.sleep(0.4)
    latest = await store.create(user_id=user, organization_id=org)
    assert await store.get(kept) is not None, "the expired one made room, not the live one"
    assert await store.get(latest) is not None


async def test_list_prunes_entries_of_expired_sessions(
    redis_client: aioredis.Redis, store: SessionStore
) -> None:
    user = uuid.uuid4()
    await store.create(user_id=user, organization_id=uuid.uuid4(), ttl=0.2)
    await asyncio.sleep(0.4)
    index = f"leaddb:{{u:{user}}}:sessions"
    assert await redis_client.zcard(index) == 1
    assert await store.list(user) == []
    assert await redis_client.exists(index) == 0


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a",
        " ",
        "x" * 1_000_000,
        "é" * 66,
        "\x00" * 66,
        "A" * 22 + "." + "B" * 43 + "\n",
        "A" * 22 + "+" + "B" * 43,
        "A" * 22 + "." + "B" * 42 + "=",
        "A" * 21 + "B" + "." + "B" * 43,  # spare bits of the user part set: not a token we issue
        "../../etc/passwd",
        "null",
        "None",
    ],
)
async def test_malformed_tokens_are_none_without_asking_redis(
    dead_store: SessionStore, token: str
) -> None:
    assert await dead_store.get(token) is None
    assert not await dead_store.touch(token)
    assert not await dead_store.revoke(token)
    assert await dead_store.rotate(token) is None


@pytest.mark.parametrize("value", [None, b"token", 42, ["a"], object()])
async def test_values_that_are_not_strings_are_none(dead_store: SessionStore, value: Any) -> None:
    assert await dead_store.get(value) is None
    assert not await dead_store.touch(value)


@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    garbage=st.one_of(
        st.text(),
        st.text(alphabet="ABCDEFGHIJabcdefghij0123456789-_.", min_size=60, max_size=70),
        st.binary().map(lambda raw: raw.decode("latin-1")),
        st.binary(min_size=33, max_size=33).map(lambda raw: raw.hex()),
    )
)
@example(garbage="")
async def test_garbage_tokens_never_raise(store: SessionStore, garbage: str) -> None:
    assert await store.get(garbage) is None
    assert not await store.touch(garbage)
    assert await store.rotate(garbage) is None
    assert not await store.revoke(garbage)


async def test_well_formed_but_unknown_tokens_are_none(store: SessionStore) -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    token = await store.create(user_id=user, organization_id=uuid.uuid4())
    someone_else = await store.create(user_id=other, organization_id=uuid.uuid4())
    user_part, secret = token.split(".")
    flipped = secret[:10] + ("A" if secret[10] != "A" else "B") + secret[11:]
    assert await store.get(f"{user_part}.{flipped}") is None
    assert await store.get(someone_else.split(".")[0] + "." + secret) is None, "secret moved"
    assert await store.get(token) is not None


async def test_no_key_or_value_holds_a_token(
    redis_client: aioredis.Redis, store: SessionStore
) -> None:
    org = uuid.uuid4()
    tokens = [
        await store.create(
            user_id=uuid.uuid4(),
            organization_id=org,
            data={"n": n},
            metadata=SessionMetadata(ip_address="198.51.100.1", user_agent="curl"),
        )
        for n in range(3)
    ]
    rotated = await store.rotate(tokens[0])
    assert rotated is not None
    tokens.append(rotated)
    for token in tokens:
        await store.get(token)
    await store.list(uuid.uuid4())

    seen: list[object] = []
    for key in await all_keys(redis_client):
        seen.append(key)
        kind = as_bytes(await redis_client.type(key))
        if kind == b"string":
            seen.append(await redis_client.get(key))
        elif kind == b"hash":
            for field, value in (await redis_client.hgetall(key)).items():
                seen += [field, value]
        elif kind == b"zset":
            seen += await redis_client.zrange(key, 0, -1)
        elif kind == b"set":
            seen += await redis_client.smembers(key)
        elif kind == b"list":
            seen += await redis_client.lrange(key, 0, -1)
        else:
            pytest.fail(f"unexpected {kind!r} key {key!r}")
        seen.append(await redis_client.dump(key))  # the serialized value, as a backup would hold
    dump = b"\n".join(as_bytes(item) for item in seen)
    for token in tokens:
        assert token.encode() not in dump
        assert token.split(".")[1].encode() not in dump, "the secret part"
        assert token.split(".")[1][:16].encode() not in dump, "a prefix of the secret"
    assert token_digest(tokens[-1]).encode() in dump, "the scan does see the stored digests"


async def test_keys_carry_hash_tags_and_a_user_lives_in_one_slot(
    redis_client: aioredis.Redis, store: SessionStore
) -> None:
    users = [uuid.uuid4() for _ in range(5)]
    for user in users:
        await store.create(user_id=user, organization_id=uuid.uuid4())
        await store.create(user_id=user, organization_id=uuid.uuid4())
    keys = await all_keys(redis_client)
    assert len(keys) == 5 * (2 + 1) + 10
    for key in keys:
        assert key.startswith(b"leaddb:{")
        tag = key[key.index(b"{") + 1 : key.index(b"}")]
        assert tag.startswith((b"u:", b"o:"))
        assert len(tag) == len("u:") + 36
    for user in users:
        index = f"leaddb:{{u:{user}}}:sessions".encode()
        sessions = [key for key in keys if key.startswith(f"leaddb:{{u:{user}}}:session:".encode())]
        assert len(sessions) == 2
        assert {key_slot(key) for key in [*sessions, index]} == {key_slot(f"{{u:{user}}}".encode())}


async def test_redis_down_is_an_error_not_a_logout(dead_store: SessionStore) -> None:
    user = uuid.uuid4()
    token = "A" * 22 + "." + "B" * 43
    assert parse_token(token) is not None
    calls = [
        dead_store.get(token),
        dead_store.touch(token),
        dead_store.rotate(token),
        dead_store.revoke(token),
        dead_store.create(user_id=user, organization_id=uuid.uuid4()),
        dead_store.list(user),
        dead_store.revoke_all(user),
        dead_store.revoke_session(user, "A" * 22),
        dead_store.revoke_organization(uuid.uuid4()),
    ]
    for call in calls:
        with pytest.raises(ConnectionFailedError, match="Redis could not") as caught:
            await call
        assert isinstance(caught.value.__cause__, RedisError | OSError)


async def test_data_must_be_small_json(store: SessionStore) -> None:
    user, org = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(ValidationError):
        await store.create(user_id=user, organization_id=org, data={"when": datetime.now(UTC)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="larger than"):
        await store.create(user_id=user, organization_id=org, data={"x": "y" * MAX_RECORD_BYTES})
    with pytest.raises(ValueError, match="ttl"):
        await store.create(user_id=user, organization_id=org, ttl=0)
    assert await store.list(user) == []


async def test_a_record_written_by_someone_else_is_no_session(
    redis_client: aioredis.Redis, store: SessionStore
) -> None:
    user = uuid.uuid4()
    token = await store.create(user_id=user, organization_id=uuid.uuid4())
    parsed = parse_token(token)
    assert parsed is not None
    await redis_client.hset(f"leaddb:{{u:{user}}}:session:{parsed.digest}", "rec", b"{not json")
    assert await store.get(token) is None
    assert await store.list(user) == []
