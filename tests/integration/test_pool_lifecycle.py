"""leaddb's connection pool (leaddb.connections.pool) against a real PostgreSQL: shutdown, idle
expiry, cancelled and failed acquires and connects, release of a connection not in use, and
counts that stay right under a randomized storm of all of these."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid

import asyncpg
import pytest
from asyncpg import Record

from leaddb import LeadDB, LeadDBSettings
from leaddb.connections.pool import ConnectionPool
from leaddb.errors import ConnectionFailedError

from .pool_helpers import (
    Connect,
    MakePool,
    acquired,
    consistent,
    gone,
    sessions,
)


async def test_close_refuses_acquires_and_waits_for_connections_in_use(
    make_pool: MakePool, pg: asyncpg.Connection
) -> None:
    pool = await make_pool(3)
    held, other, idle = [await pool.acquire() for _ in range(3)]
    await pool.release(idle)
    closing = asyncio.create_task(pool.close())
    await asyncio.sleep(0.1)
    assert idle.is_closed()
    with pytest.raises(asyncpg.InterfaceError, match="pool is closing"):
        await pool.acquire()
    assert not closing.done()  # two connections are still out
    await pool.release(held)
    assert held.is_closed()
    assert not closing.done()
    await pool.release(other)
    await asyncio.wait_for(closing, timeout=5)
    assert other.is_closed()
    assert pool.get_size() == 0
    for _ in range(100):
        if not await sessions(pg):
            break
        await asyncio.sleep(0.02)
    assert await sessions(pg) == []


async def test_close_fails_those_waiting_for_a_connection(make_pool: MakePool) -> None:
    pool = await make_pool(1)
    held = await pool.acquire()
    waiting = asyncio.create_task(acquired(pool))
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(pool.close())
    with pytest.raises(asyncpg.InterfaceError, match="pool is closing"):
        await asyncio.wait_for(waiting, timeout=5)
    await pool.release(held)
    await asyncio.wait_for(closing, timeout=5)
    assert held.is_closed()
    assert pool.get_size() == 0


async def test_close_terminates_what_is_not_given_back_within_its_grace(
    make_pool: MakePool,
) -> None:
    pool = await make_pool(2, close_grace=0.2)
    forgotten = await pool.acquire()
    started = time.monotonic()
    await asyncio.wait_for(pool.close(), timeout=5)
    assert time.monotonic() - started < 2
    assert forgotten.is_closed()
    await pool.release(forgotten)  # late: frees the slot, raises nothing
    assert pool.get_size() == 0


async def test_units_of_work_cut_off_by_close_fail_typed_and_end_quietly(
    settings: LeadDBSettings, pg: asyncpg.Connection
) -> None:
    db = await LeadDB.connect(settings)
    db._pool._close_grace = 0.2  # instead of 10 s
    async with db.tenant(uuid.uuid4()) as uow:
        pid = await uow.fetchval("SELECT pg_backend_pid()")
        await asyncio.wait_for(db.close(), timeout=5)
        with pytest.raises(ConnectionFailedError):
            await uow.leads.count()
    assert isinstance(pid, int)
    await gone(pg, pid)
    assert db._pool.get_size() == 0


async def test_connections_idle_too_long_are_closed_down_to_the_floor(
    make_pool: MakePool,
) -> None:
    pool = await make_pool(3, max_inactive=0.05)
    connections = [await pool.acquire() for _ in range(3)]
    for connection in connections:
        await pool.release(connection)
    assert pool.get_size() == 3
    await asyncio.sleep(0.1)
    async with pool.acquire() as kept:
        assert pool.get_size() == 1  # min_size stays
        assert kept is connections[-1]  # the newest
        assert all(connection.is_closed() for connection in connections[:-1])


@pytest.mark.parametrize("moment", ["while waiting", "as it is served", "as a slot is granted"])
async def test_a_cancelled_acquire_leaks_no_slot(make_pool: MakePool, moment: str) -> None:
    pool = await make_pool(1)
    held = await pool.acquire()
    waiter = asyncio.create_task(acquired(pool))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    if moment == "while waiting":
        waiter.cancel()
        await pool.release(held)
    elif moment == "as it is served":
        await pool.release(held)  # handed to the waiter, which is cancelled before it runs
        waiter.cancel()
    else:
        held.terminate()
        await pool.release(held)  # frees the slot: the waiter may open a connection
        waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert consistent(pool)
    async with pool.acquire(timeout=1) as connection:
        assert await connection.fetchval("SELECT 1") == 1
        assert pool.get_size() == 1


async def test_a_failed_or_cancelled_connect_gives_its_slot_back(connect: Connect) -> None:
    trouble: list[str] = []  # "fail": the next connect fails
    hanging_connects = False

    async def troubled() -> asyncpg.Connection[Record]:
        if trouble and trouble.pop(0) == "fail":
            raise OSError("connection refused")
        if hanging_connects:
            await asyncio.sleep(30)
        return await connect()

    pool = ConnectionPool(troubled, max_size=1)
    await pool.open()
    try:
        held = await pool.acquire()
        first = asyncio.create_task(acquired(pool))
        second = asyncio.create_task(acquired(pool))
        await asyncio.sleep(0.01)
        trouble.append("fail")
        held.terminate()
        await pool.release(held)  # the slot goes to the first waiter, whose connect fails
        with pytest.raises(OSError, match="refused"):
            await asyncio.wait_for(first, timeout=5)
        # ... and then to the next one in line, whose connect succeeds.
        connection = await asyncio.wait_for(second, timeout=5)
        assert await connection.fetchval("SELECT 1") == 1
        assert pool.get_size() == 1
        connection.terminate()
        await pool.release(connection)

        hanging_connects = True
        hanging = asyncio.create_task(acquired(pool))
        await asyncio.sleep(0.05)
        assert pool.get_size() == 1  # the slot is reserved while it connects
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        hanging_connects = False
        assert pool.get_size() == 0
        async with pool.acquire(timeout=5) as again:
            assert await again.fetchval("SELECT 1") == 1
    finally:
        pool.terminate()


async def test_a_connection_not_in_use_cannot_be_given_back(
    make_pool: MakePool, connect: Connect
) -> None:
    pool = await make_pool(2)
    connection = await pool.acquire()
    await pool.release(connection)
    counts = (pool.get_size(), pool.get_idle_size())
    with pytest.raises(asyncpg.InterfaceError, match="not in use"):
        await pool.release(connection)
    stranger = await connect()
    try:
        with pytest.raises(asyncpg.InterfaceError, match="not in use"):
            await pool.release(stranger)
    finally:
        await stranger.close()
    assert (pool.get_size(), pool.get_idle_size()) == counts
    async with pool.acquire() as first, pool.acquire() as second:
        assert first is not second  # the double release did not list it idle twice


async def test_counts_stay_right_under_a_storm_of_acquires_releases_and_cancellations(
    make_pool: MakePool, pg: asyncpg.Connection
) -> None:
    rng = random.Random(5)
    pool = await make_pool(3)
    biggest = 0
    escaped: list[str] = []

    async def work(seed: int) -> None:
        nonlocal biggest
        local = random.Random(seed)
        timeout = local.choice([None, 0.02, 1.0])
        async with pool.acquire(timeout=timeout) as connection:
            biggest = max(biggest, pool.get_size())
            roll = local.random()
            if roll < 0.3:
                await connection.execute("BEGIN")
                await connection.fetchval("SELECT pg_sleep(0.002)")
            elif roll < 0.6:
                await connection.fetchval("SELECT pg_sleep(0.001)")
            elif roll < 0.65:
                connection.terminate()
            for _ in range(local.randrange(3)):
                await asyncio.sleep(0)

    async def one(seed: int) -> None:
        task = asyncio.create_task(work(seed))
        if rng.random() < 0.4:
            for _ in range(rng.randrange(30)):
                await asyncio.sleep(0)
            task.cancel()
        try:
            await task
        except (asyncio.CancelledError, TimeoutError):
            pass
        except Exception as error:  # what this test hunts
            escaped.append(repr(error))

    await asyncio.wait_for(asyncio.gather(*(one(seed) for seed in range(200))), timeout=60)
    # Shielded rollbacks of cancelled releases finish on their own.
    for _ in range(100):
        if consistent(pool):
            break
        await asyncio.sleep(0.01)

    assert escaped == []
    assert biggest <= 3
    assert consistent(pool)
    # Every slot is usable: the whole pool at once, none of it in a transaction.
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(pool.acquire(timeout=2)) for _ in range(3)]
        assert len(set(held)) == 3
        assert not any(connection.is_in_transaction() for connection in held)
        assert [await c.fetchval("SELECT 1") for c in held] == [1, 1, 1]
    for _ in range(100):
        states = await sessions(pg)
        if len(states) <= 3:
            break
        await asyncio.sleep(0.02)
    assert len(states) <= 3
    assert [state for state in states if state.startswith("idle in")] == []
