"""User sessions against a real Redis: life cycle, expiry, revocation, rotation, the cap.

Hostile tokens, what Redis holds, and Redis outages are in test_session_tokens.py; the
``store`` and ``dead_store`` fixtures come from session_helpers.py through the conftest.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from leaddb import LeadDBSettings
from leaddb.connections.redis_topology import AnyRedis
from leaddb.sessions import Session, SessionMetadata, SessionStore
from leaddb.sessions.tokens import parse_token

from .session_helpers import MakeStore, all_keys, near, short_lived


async def test_life_cycle(store: SessionStore, redis_client: AnyRedis) -> None:
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
    redis_client: AnyRedis, settings: LeadDBSettings, make_store: MakeStore
) -> None:
    store = make_store(short_lived(settings, session_idle_ttl_seconds=60))
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
    redis_client: AnyRedis, settings: LeadDBSettings, make_store: MakeStore
) -> None:
    store = make_store(short_lived(settings, session_idle_ttl_seconds=1))
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
    redis_client: AnyRedis, settings: LeadDBSettings, make_store: MakeStore
) -> None:
    store = make_store(
        short_lived(settings, session_idle_ttl_seconds=1, session_absolute_ttl_seconds=2)
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
    redis_client: AnyRedis, settings: LeadDBSettings, make_store: MakeStore
) -> None:
    store = make_store(short_lived(settings, session_max_per_user=3))
    user, org = uuid.uuid4(), uuid.uuid4()
    tokens = [await store.create(user_id=user, organization_id=org) for _ in range(5)]
    assert [await store.get(token) is not None for token in tokens] == [False] * 2 + [True] * 3
    assert len(await store.list(user)) == 3
    assert await redis_client.zcard(f"leaddb:{{u:{user}}}:sessions") == 3
    assert len([key for key in await all_keys(redis_client) if b":session:" in key]) == 3


async def test_the_cap_counts_only_live_sessions(
    redis_client: AnyRedis, settings: LeadDBSettings, make_store: MakeStore
) -> None:
    store = make_store(short_lived(settings, session_max_per_user=2))
    user, org = uuid.uuid4(), uuid.uuid4()
    await store.create(user_id=user, organization_id=org, ttl=0.2)
    kept = await store.create(user_id=user, organization_id=org)
    await asyncio.sleep(0.4)
    latest = await store.create(user_id=user, organization_id=org)
    assert await store.get(kept) is not None, "the expired one made room, not the live one"
    assert await store.get(latest) is not None


async def test_list_prunes_entries_of_expired_sessions(
    redis_client: AnyRedis, store: SessionStore
) -> None:
    user = uuid.uuid4()
    await store.create(user_id=user, organization_id=uuid.uuid4(), ttl=0.2)
    await asyncio.sleep(0.4)
    index = f"leaddb:{{u:{user}}}:sessions"
    assert await redis_client.zcard(index) == 1
    assert await store.list(user) == []
    assert await redis_client.exists(index) == 0
