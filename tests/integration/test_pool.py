"""leaddb's connection pool (leaddb.pool) against a real PostgreSQL: handing out and taking back
without a turn of the event loop, waiting in arrival order, timeouts, dead connections,
rollback on release, expiry, shutdown, cancellation, and counts that stay right under a
randomized storm of all of these."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from asyncpg import Record
from conftest import asyncpg_dsn

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import ConnectionFailedError, PoolTimeoutError
from leaddb.pool import ConnectionPool

APP = "leaddb-pool-test"

Connect = Callable[[], Awaitable["asyncpg.Connection[Record]"]]
MakePool = Callable[..., Awaitable[ConnectionPool]]


@pytest.fixture
def connect(database_url: str) -> Connect:
    dsn = asyncpg_dsn(database_url)

    async def open_one() -> asyncpg.Connection[Record]:
        return await asyncpg.connect(dsn, server_settings={"application_name": APP})

    return open_one


@pytest.fixture
async def make_pool(connect: Connect) -> AsyncIterator[MakePool]:
    """Pools of the test's own (application_name APP), terminated after it."""
    pools: list[ConnectionPool] = []

    async def make(
        max_size: int, *, max_inactive: float = 300.0, close_grace: float = 10.0
    ) -> ConnectionPool:
        pool = ConnectionPool(
            connect, max_size=max_size, max_inactive=max_inactive, close_grace=close_grace
        )
        await pool.open()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.terminate()


def _consistent(pool: ConnectionPool) -> bool:
    """Nothing in use, nothing being opened: every counted connection is idle."""
    return pool.get_idle_size() == pool.get_size() <= pool.get_max_size()


async def _sessions(pg: asyncpg.Connection) -> list[str]:
    rows = await pg.fetch(
        "SELECT state FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = $1",
        APP,
    )
    return [str(row["state"]) for row in rows]


async def _state(pg: asyncpg.Connection, pid: int) -> str | None:
    value = await pg.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
    return None if value is None else str(value)


async def _acquired(pool: ConnectionPool) -> asyncpg.Connection[Record]:
    return await pool.acquire(timeout=5)


async def _gone(pg: asyncpg.Connection, pid: int) -> None:
    for _ in range(200):
        if not await pg.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid):
            await asyncio.sleep(0.05)  # and the client has read the server's goodbye
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} still there")


async def test_an_idle_connection_comes_and_goes_without_a_turn_of_the_loop(db: LeadDB) -> None:
    async with db.pool.acquire():
        pass  # at least one idle connection now
    turned: list[bool] = []
    asyncio.get_running_loop().call_soon(turned.append, True)
    tasks_before = len(asyncio.all_tasks())
    connection = await db.pool.acquire(timeout=5)
    assert len(asyncio.all_tasks()) == tasks_before
    await db.pool.release(connection)
    assert turned == []
    assert len(asyncio.all_tasks()) == tasks_before
    assert _consistent(db.pool)


async def test_beyond_max_size_acquirers_wait_and_are_served_in_arrival_order(
    make_pool: MakePool,
) -> None:
    pool = await make_pool(2)
    held = [await pool.acquire(), await pool.acquire()]
    order: list[str] = []
    biggest = 0

    async def use(name: str) -> None:
        nonlocal biggest
        async with pool.acquire(timeout=5) as connection:
            order.append(name)
            biggest = max(biggest, pool.get_size())
            assert await connection.fetchval("SELECT 1") == 1

    waiters = []
    for n in range(5):
        waiters.append(asyncio.create_task(use(str(n))))
        await asyncio.sleep(0.01)
    assert order == []  # all of them wait
    assert pool.get_size() == 2
    await pool.release(held.pop())
    # A newcomer after that release queues behind everyone already waiting.
    late = asyncio.create_task(use("late"))
    await asyncio.sleep(0.01)
    await pool.release(held.pop())
    await asyncio.wait_for(asyncio.gather(*waiters, late), timeout=5)
    assert order == ["0", "1", "2", "3", "4", "late"]
    assert biggest == 2
    assert _consistent(pool)


async def test_a_timeout_is_a_pool_timeout_error_from_a_unit_of_work(
    settings: LeadDBSettings,
) -> None:
    one = settings.model_copy(update={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2})
    async with await LeadDB.connect(one) as db:
        connection = await db.pool.acquire()
        started = time.monotonic()
        async with db.tenant(uuid.uuid4()) as uow:
            with pytest.raises(PoolTimeoutError, match="LEADDB_POOL_TIMEOUT"):
                await uow.leads.count()
        assert 0.19 <= time.monotonic() - started < 2
        await db.pool.release(connection)
        async with db.tenant(uuid.uuid4()) as uow:
            assert await uow.leads.count() == 0
        assert db.pool.get_size() == 1
        assert _consistent(db.pool)


async def test_a_connection_killed_by_the_server_is_replaced(
    make_pool: MakePool, pg: asyncpg.Connection
) -> None:
    pool = await make_pool(2)
    async with pool.acquire() as connection:
        idle_pid = connection.get_server_pid()
    assert await pg.fetchval("SELECT pg_terminate_backend($1)", idle_pid)
    await _gone(pg, idle_pid)
    async with pool.acquire() as connection:
        assert connection.get_server_pid() != idle_pid
        assert await connection.fetchval("SELECT 1") == 1
        assert pool.get_size() == 1  # the dead one no longer counts

    # Killed while in use: its release frees the slot, and nothing is raised.
    connection = await pool.acquire()
    busy_pid = connection.get_server_pid()
    assert await pg.fetchval("SELECT pg_terminate_backend($1)", busy_pid)
    await _gone(pg, busy_pid)
    with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresConnectionError)):
        await connection.fetchval("SELECT 1")
    await pool.release(connection)
    assert pool.get_size() == 0
    async with pool.acquire() as connection:
        assert connection.get_server_pid() not in (idle_pid, busy_pid)


async def test_a_unit_of_work_survives_its_pooled_connection_being_killed(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    async with db.tenant(uuid.uuid4()) as uow:
        before = await uow.fetchval("SELECT pg_backend_pid()")
    assert await pg.fetchval("SELECT pg_terminate_backend($1)", before)
    async with db.tenant(uuid.uuid4()) as uow:  # no waiting: the first statement retries
        after = await uow.fetchval("SELECT pg_backend_pid()")
        assert await uow.leads.count() == 0
    assert after != before
    assert _consistent(db.pool)


@pytest.mark.parametrize("cancelled", [False, True], ids=["released", "release cancelled"])
async def test_a_connection_given_back_in_a_transaction_is_rolled_back(
    make_pool: MakePool, pg: asyncpg.Connection, cancelled: bool
) -> None:
    pool = await make_pool(1)
    connection = await pool.acquire()
    pid = connection.get_server_pid()
    await connection.execute("BEGIN")
    await connection.execute("SELECT set_config('leaddb.probe', 'left open', true)")
    if cancelled:
        release = asyncio.create_task(pool.release(connection))
        await asyncio.sleep(0)
        release.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await release
    else:
        await pool.release(connection)
    async with pool.acquire(timeout=5) as again:
        assert again.get_server_pid() == pid  # the same connection, cleaned, not replaced
        assert not again.is_in_transaction()
        assert not await again.fetchval("SELECT current_setting('leaddb.probe', true)")
    assert await _state(pg, pid) == "idle"
    assert _consistent(pool)


async def test_expired_connections_are_closed_idle_at_once_in_use_on_release(
    make_pool: MakePool,
) -> None:
    pool = await make_pool(3)
    held = await pool.acquire()
    idle = await pool.acquire()
    await pool.release(idle)
    await pool.expire_connections()
    assert idle.is_closed()
    assert not held.is_closed()
    assert pool.get_size() == 1
    await pool.release(held)
    assert held.is_closed()
    assert pool.get_size() == 0
    async with pool.acquire() as fresh:
        assert fresh not in (held, idle)
        assert await fresh.fetchval("SELECT 1") == 1


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
        if not await _sessions(pg):
            break
        await asyncio.sleep(0.02)
    assert await _sessions(pg) == []


async def test_close_fails_those_waiting_for_a_connection(make_pool: MakePool) -> None:
    pool = await make_pool(1)
    held = await pool.acquire()
    waiting = asyncio.create_task(_acquired(pool))
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
    db.pool._close_grace = 0.2  # instead of 10 s
    async with db.tenant(uuid.uuid4()) as uow:
        pid = await uow.fetchval("SELECT pg_backend_pid()")
        await asyncio.wait_for(db.close(), timeout=5)
        with pytest.raises(ConnectionFailedError):
            await uow.leads.count()
    assert isinstance(pid, int)
    await _gone(pg, pid)
    assert db.pool.get_size() == 0


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
    waiter = asyncio.create_task(_acquired(pool))
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
    assert _consistent(pool)
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
        first = asyncio.create_task(_acquired(pool))
        second = asyncio.create_task(_acquired(pool))
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
        hanging = asyncio.create_task(_acquired(pool))
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
        if _consistent(pool):
            break
        await asyncio.sleep(0.01)

    assert escaped == []
    assert biggest <= 3
    assert _consistent(pool)
    # Every slot is usable: the whole pool at once, none of it in a transaction.
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(pool.acquire(timeout=2)) for _ in range(3)]
        assert len(set(held)) == 3
        assert not any(connection.is_in_transaction() for connection in held)
        assert [await c.fetchval("SELECT 1") for c in held] == [1, 1, 1]
    for _ in range(100):
        states = await _sessions(pg)
        if len(states) <= 3:
            break
        await asyncio.sleep(0.02)
    assert len(states) <= 3
    assert [state for state in states if state.startswith("idle in")] == []
