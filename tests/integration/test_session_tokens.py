"""User sessions against a real Redis, against what a caller or an attacker may send: malformed,
foreign and unknown tokens, what Redis is left holding, and a Redis that is down.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.crc import key_slot
from redis.exceptions import RedisError

from leaddb.connections.redis_topology import AnyRedis
from leaddb.errors import ConnectionFailedError, InvalidValueError
from leaddb.sessions import MAX_RECORD_BYTES, SessionMetadata, SessionStore
from leaddb.sessions.tokens import parse_token, token_digest

from .session_helpers import all_keys, as_bytes


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


async def test_no_key_or_value_holds_a_token(redis_client: AnyRedis, store: SessionStore) -> None:
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
    redis_client: AnyRedis, store: SessionStore
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
    with pytest.raises(InvalidValueError, match="larger than"):
        await store.create(user_id=user, organization_id=org, data={"x": "y" * MAX_RECORD_BYTES})
    with pytest.raises(InvalidValueError, match="ttl"):
        await store.create(user_id=user, organization_id=org, ttl=0)
    for number in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValidationError):
            await store.create(user_id=user, organization_id=org, data={"n": [number]})
    assert await store.list(user) == []


async def test_a_record_written_by_someone_else_is_no_session(
    redis_client: AnyRedis, store: SessionStore
) -> None:
    user = uuid.uuid4()
    token = await store.create(user_id=user, organization_id=uuid.uuid4())
    parsed = parse_token(token)
    assert parsed is not None
    await redis_client.hset(f"leaddb:{{u:{user}}}:session:{parsed.digest}", "rec", b"{not json")
    assert await store.get(token) is None
    assert await store.list(user) == []
