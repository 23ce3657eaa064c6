"""The connection-pool tests' shared pieces: pools of the test's own, and what they check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from asyncpg import Record
from conftest import asyncpg_dsn

from leaddb.connections.pool import ConnectionPool

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


def consistent(pool: ConnectionPool) -> bool:
    """Nothing in use, nothing being opened: every counted connection is idle."""
    return pool.get_idle_size() == pool.get_size() <= pool.get_max_size()


async def sessions(pg: asyncpg.Connection) -> list[str]:
    rows = await pg.fetch(
        "SELECT state FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = $1",
        APP,
    )
    return [str(row["state"]) for row in rows]


async def state(pg: asyncpg.Connection, pid: int) -> str | None:
    value = await pg.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
    return None if value is None else str(value)


async def acquired(pool: ConnectionPool) -> asyncpg.Connection[Record]:
    return await pool.acquire(timeout=5)


async def gone(pg: asyncpg.Connection, pid: int) -> None:
    for _ in range(200):
        if not await pg.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid):
            await asyncio.sleep(0.05)  # and the client has read the server's goodbye
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} still there")
