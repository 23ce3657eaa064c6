"""The pool of asyncpg connections the units of work draw from.

asyncpg's own ``Pool`` costs ~90 µs per acquire and release with a connection free: its release
runs in ``asyncio.shield`` (a task and two more turns of the event loop), calls go through a
proxy, acquire sets up a timeout. Here handing out an idle connection and taking back a clean
one never yield to the event loop; only opening, waiting, closing and rolling back do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import asyncpg

if TYPE_CHECKING:
    from asyncpg import Record

    PoolConnection: TypeAlias = asyncpg.Connection[Record]

logger = logging.getLogger("leaddb")

# Bounds on the slow paths, so a server that stopped answering cannot hold a slot for ever.
_RESET_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 5.0


def _cancelling(connection: PoolConnection) -> bool:
    # asyncpg's private state, which its own pool checks too: after a query was cancelled in
    # flight the server's answer is still due, and the transaction state may yet change.
    return bool(cast(Any, connection)._protocol._is_cancelling())


class ConnectionPool:
    """Plain ``asyncpg.Connection``s, opened on demand up to ``max_size``.

    Idle connections are handed out newest first; those idle longer than ``max_inactive`` are
    closed (down to ``min_size``). A connection given back inside a transaction is rolled back
    first, and closed if that fails; one given back closed frees its slot. Waiters are served
    in arrival order. Nothing else of a connection's session state is reset: code that borrows
    one and changes it (``SET``, ``LISTEN``, advisory locks) must undo that itself.

    ``close()`` waits up to ``close_grace`` seconds for connections still in use to come back,
    then terminates them; their late ``release`` just frees the slot.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[PoolConnection]],
        *,
        min_size: int = 1,
        max_size: int = 10,
        max_inactive: float = 300.0,
        close_grace: float = 10.0,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(f"need 0 <= min_size <= max_size, max_size >= 1: {min_size, max_size}")
        self._connect = connect
        self._min_size = min_size
        self._max_size = max_size
        self._max_inactive = max_inactive
        self._close_grace = close_grace
        self._idle: deque[tuple[PoolConnection, float]] = deque()  # (connection, idle since)
        self._in_use: set[PoolConnection] = set()
        self._generation_of: dict[PoolConnection, int] = {}  # every open connection it owns
        self._connecting = 0  # slots reserved for connections being opened
        self._waiters: deque[asyncio.Future[PoolConnection | None]] = deque()
        self._resets: set[asyncio.Task[None]] = set()
        self._generation = 0
        self._closing = False
        self._drained: asyncio.Future[None] | None = None

    async def open(self) -> None:
        """Open ``min_size`` connections, so an unreachable server fails here."""
        for _ in range(self._min_size - len(self._generation_of)):
            connection = await self._connect()
            self._generation_of[connection] = self._generation
            self._idle.append((connection, time.monotonic()))

    def get_size(self) -> int:  # open or being opened, idle or in use
        return len(self._generation_of) + self._connecting

    def get_idle_size(self) -> int:
        return len(self._idle)

    def get_min_size(self) -> int:
        return self._min_size

    def get_max_size(self) -> int:
        return self._max_size

    def get_waiting(self) -> int:
        """Callers waiting for a connection to come free."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    def acquire(self, *, timeout: float | None = None) -> _Acquire:
        """``await pool.acquire()``, or ``async with pool.acquire() as connection:``;
        TimeoutError when waiting for (or opening) a connection takes over ``timeout``."""
        return _Acquire(self, timeout)

    async def _acquire(self, wait_limit: float | None) -> PoolConnection:
        if self._closing:
            raise asyncpg.InterfaceError("pool is closing")
        connection = self._pop_idle()
        if connection is not None:
            return connection
        if wait_limit is None:
            return await self._wait_or_open()
        async with asyncio.timeout(wait_limit):
            return await self._wait_or_open()

    def _pop_idle(self) -> PoolConnection | None:
        idle = self._idle
        if not idle:
            return None
        now = time.monotonic()
        # Oldest first: the pool shrinks back after a burst, and a floor of min_size stays.
        while idle and now - idle[0][1] > self._max_inactive and self.get_size() > self._min_size:
            self._drop(idle.popleft()[0], terminate=True)
        while idle:
            connection = idle.pop()[0]
            if connection.is_closed() or self._generation_of[connection] != self._generation:
                self._drop(connection, terminate=True)
                continue
            self._in_use.add(connection)
            return connection
        return None

    async def _wait_or_open(self) -> PoolConnection:
        if self.get_size() < self._max_size:
            self._connecting += 1
        else:
            waiter: asyncio.Future[PoolConnection | None]
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                served = await waiter
            except BaseException:
                if not waiter.done():
                    waiter.cancel()  # left in the queue; whoever serves it skips it
                elif not waiter.cancelled() and waiter.exception() is None:
                    # Served in the same turn as the cancellation or timeout: pass it on.
                    self._pass_on(waiter.result())
                raise
            if served is not None:
                return served
            # None: a slot came free, and _grant counted it in _connecting for this waiter.
        generation = self._generation
        try:
            connection = await self._connect()
        except BaseException:
            self._pass_on(None)
            raise
        self._connecting -= 1
        if self._closing:
            self._drop(connection, terminate=True)
            raise asyncpg.InterfaceError("pool is closing")
        self._generation_of[connection] = generation
        self._in_use.add(connection)
        return connection

    def _pass_on(self, served: PoolConnection | None) -> None:
        if served is None:
            self._connecting -= 1
            self._grant()
        else:
            self._in_use.discard(served)
            if self._retiring(served):  # the pool began closing meanwhile
                self._drop(served, terminate=True)
            else:
                self._put_back(served)

    async def release(self, connection: PoolConnection) -> None:
        """Give a connection back; InterfaceError (and nothing changes) for one not in use."""
        try:
            self._in_use.remove(connection)
        except KeyError:
            raise asyncpg.InterfaceError(
                f"{connection!r} is not in use from this pool (released twice?)"
            ) from None
        if self._retiring(connection):
            await self._retire(connection)
        elif connection.is_in_transaction() or _cancelling(connection):
            # In a task of its own, so a cancellation of the caller cannot cut the rollback
            # short and leave a transaction open on a pooled connection.
            task = asyncio.get_running_loop().create_task(self._reset(connection))
            self._resets.add(task)
            task.add_done_callback(self._resets.discard)
            await asyncio.shield(task)
        else:
            self._put_back(connection)

    def _retiring(self, connection: PoolConnection) -> bool:
        return (
            connection.is_closed()
            or self._closing
            or self._generation_of.get(connection) != self._generation
        )

    async def _reset(self, connection: PoolConnection) -> None:
        try:
            # Waits for a cancelled query's answer first; only a warning outside a transaction.
            await connection.execute("ROLLBACK", timeout=_RESET_TIMEOUT)
        except Exception:
            connection.terminate()
        except BaseException:
            self._drop(connection, terminate=True)
            raise
        if self._retiring(connection):
            await self._retire(connection)
        else:
            self._put_back(connection)

    def _put_back(self, connection: PoolConnection) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                self._in_use.add(connection)
                waiter.set_result(connection)
                return
        self._idle.append((connection, time.monotonic()))

    async def _retire(self, connection: PoolConnection) -> None:
        self._drop(connection)
        if connection.is_closed():
            connection.terminate()  # finishes asyncpg's cleanup after a protocol abort
        else:
            await _close_quietly(connection)

    def _drop(self, connection: PoolConnection, *, terminate: bool = False) -> None:
        if terminate:  # idle or broken, so nothing is lost; asyncpg's pool does the same
            connection.terminate()
        self._generation_of.pop(connection, None)
        self._grant()

    def _grant(self) -> None:
        """A slot came free: let the longest waiter open a connection in it."""
        while self._waiters and self.get_size() < self._max_size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._connecting += 1
                waiter.set_result(None)
        drained = self._drained
        if drained is not None and not drained.done() and not self.get_size():
            drained.set_result(None)

    async def expire_connections(self) -> None:
        """Close every connection opened before now: idle ones at once, the others when they
        are given back (or at once, if found closed). New ones replace them on demand."""
        self._generation += 1
        stale = self._forget_idle()
        self._grant()
        await asyncio.gather(*(_close_quietly(connection) for connection in stale))

    def drop_idle(self) -> None:
        """The server went away (a failover): forget every connection opened before now at once,
        without a goodbye that a dead server would make wait; those in use retire when given
        back. New ones are opened on demand (with a multi-host URL, on the new primary)."""
        self._generation += 1
        for connection in self._forget_idle():
            connection.terminate()
        self._grant()

    async def close(self) -> None:
        """Refuse new acquires, close idle connections, and close those in use as they come
        back, waiting up to ``close_grace`` seconds; then terminate whatever is still out."""
        if self._closing:
            return
        self._closing = True
        self._fail_waiters()
        try:
            await asyncio.gather(*(_close_quietly(c) for c in self._forget_idle()))
            if self.get_size():
                self._drained = asyncio.get_running_loop().create_future()
                try:
                    async with asyncio.timeout(self._close_grace):
                        await self._drained
                except TimeoutError:
                    logger.warning(
                        "closing the pool: %d connection(s) still in use after %.0f s, terminated",
                        self.get_size(),
                        self._close_grace,
                    )
        finally:
            self.terminate()

    def terminate(self) -> None:
        """Close every connection at once, without waiting; the pool is unusable after."""
        self._closing = True
        self._fail_waiters()
        # Those in use stay counted until they are given back, so their release stays valid.
        for connection in [*self._forget_idle(), *self._generation_of]:
            connection.terminate()

    def _forget_idle(self) -> list[PoolConnection]:
        idle = [connection for connection, _ in self._idle]
        self._idle.clear()
        for connection in idle:
            del self._generation_of[connection]
        return idle

    def _fail_waiters(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("pool is closing"))


async def _close_quietly(connection: PoolConnection) -> None:
    # close() aborts the connection itself when the graceful goodbye fails.
    with contextlib.suppress(Exception):
        await connection.close(timeout=_CLOSE_TIMEOUT)


class _Acquire:
    """Awaitable, or an async context manager that gives the connection back on exit."""

    __slots__ = ("_connection", "_pool", "_timeout")

    def __init__(self, pool: ConnectionPool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._connection: PoolConnection | None = None

    def __await__(self) -> Generator[Any, None, PoolConnection]:
        return self._pool._acquire(self._timeout).__await__()

    async def __aenter__(self) -> PoolConnection:
        self._connection = await self._pool._acquire(self._timeout)
        return self._connection

    async def __aexit__(self, *exc_info: object) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._pool.release(connection)
