"""leaddb's connection pool (leaddb.connections.pool) against a real PostgreSQL: handing out
and taking back without a turn of the event loop, waiting in arrival order, timeouts, dead
connections, rollback on release, expiry (shutdown and cancellation: test_pool_lifecycle.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import asyncpg
import pytest

from leaddb import LeadDB, LeadDBSettings
from leaddb.errors import PoolTimeoutError

from .pool_helpers import (
    MakePool,
    consistent,
    gone,
    state,
)


async def test_an_idle_connection_comes_and_goes_without_a_turn_of_the_loop(db: LeadDB) -> None:
    async with db._pool.acquire():
        pass  # at least one idle connection now
    turned: list[bool] = []
    asyncio.get_running_loop().call_soon(turned.append, True)
    tasks_before = len(asyncio.all_tasks())
    connection = await db._pool.acquire(timeout=5)
    assert len(asyncio.all_tasks()) == tasks_before
    await db._pool.release(connection)
    assert turned == []
    assert len(asyncio.all_tasks()) == tasks_before
    assert consistent(db._pool)


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
    assert consistent(pool)


async def test_a_timeout_is_a_pool_timeout_error_from_a_unit_of_work(
    settings: LeadDBSettings,
) -> None:
    one = settings.model_copy(update={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2})
    async with await LeadDB.connect(one) as db:
        connection = await db._pool.acquire()
        started = time.monotonic()
        async with db.tenant(uuid.uuid4()) as uow:
            with pytest.raises(PoolTimeoutError, match="LEADDB_POOL_TIMEOUT"):
                await uow.leads.count()
        assert 0.19 <= time.monotonic() - started < 2
        await db._pool.release(connection)
        async with db.tenant(uuid.uuid4()) as uow:
            assert await uow.leads.count() == 0
        assert db._pool.get_size() == 1
        assert consistent(db._pool)


async def test_a_connection_killed_by_the_server_is_replaced(
    make_pool: MakePool, pg: asyncpg.Connection
) -> None:
    pool = await make_pool(2)
    async with pool.acquire() as connection:
        idle_pid = connection.get_server_pid()
    assert await pg.fetchval("SELECT pg_terminate_backend($1)", idle_pid)
    await gone(pg, idle_pid)
    async with pool.acquire() as connection:
        assert connection.get_server_pid() != idle_pid
        assert await connection.fetchval("SELECT 1") == 1
        assert pool.get_size() == 1  # the dead one no longer counts

    # Killed while in use: its release frees the slot, and nothing is raised.
    connection = await pool.acquire()
    busy_pid = connection.get_server_pid()
    assert await pg.fetchval("SELECT pg_terminate_backend($1)", busy_pid)
    await gone(pg, busy_pid)
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
    assert consistent(db._pool)


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
    assert await state(pg, pid) == "idle"
    assert consistent(pool)


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
