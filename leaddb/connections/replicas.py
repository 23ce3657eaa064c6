"""Read replicas with read-your-writes, by WAL position (``LEADDB_REPLICA_URLS``).

A unit of work that wrote records, after its COMMIT, the primary's WAL insert position in Redis
under its tenant's hash tag (``leaddb:{<org_id>}:lsn``, raised only, never lowered, so two
writers cannot move it back). The COMMIT's own message reports that position as a notice
(``PositionNotice``, migration 0008), so reading it costs no round trip; where the report cannot
run (a database before 0008) it is read by a query after the COMMIT. When the cache invalidates
after the commit, the position is sent just ahead of the invalidation on the cache's connection
and shares its round trip.

A read-only unit of work runs on a replica known to have replayed the tenant's position;
otherwise on the primary. It reads the position from Redis (one GET) while its transaction
begins on the replica that has replayed the most: the GET is written first and awaited once the
BEGIN has answered. A replica found behind (or Redis unable to tell) gives its connection back,
rolled back by its pool in a task of its own, and the unit of work begins on the primary. A
tenant this process itself wrote past every replica goes to the primary without the GET. So a
request that reads after another committed, in any process, sees the commit.

The replicas' replayed positions are learned off the read path: when routing finds a position
older than ``replica_poll_ms``, a background task asks that replica (``pg_last_wal_replay_lsn()``)
and the unit of work does not wait for it. A replica that fails is skipped for
``replica_retry_seconds``; Redis unreachable sends read-only units of work to the primary.

The position is recorded before the cache's invalidation (ahead of it on the same connection when
they share one), so a cache fill that a replica's old row could make is refused like any fill
racing a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, RedisError

from leaddb.connections.lean_redis import PendingReply

if TYPE_CHECKING:
    from asyncpg.exceptions import PostgresLogMessage

    from leaddb.connections.pool import ConnectionPool, PoolConnection
    from leaddb.connections.redis_transport import RedisTransport

logger = logging.getLogger("leaddb")

# The key's lifetime: long past any replica lag worth reading from.
_TOKEN_TTL_MS = 24 * 3600 * 1000
# Positions as 16 hex digits, so Lua compares them as strings, in order, exactly.
_RAISE = """
local current = redis.call('GET', KEYS[1])
if not current or current < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""
_RAISE_SHA = hashlib.sha1(_RAISE.encode()).hexdigest()  # noqa: S324 (Redis names scripts so)
PLATFORM_TAG = "leaddb:{platform}"
_RECORDED_MAX = 10_000

REPORT_FUNCTION = "leaddb_private.report_wal_position"
_NOTICE = "leaddb-wal"


class PositionNotice:
    """A COMMIT that reports the WAL position after it, and the log listener that catches the
    report (``connection.add_log_listener``).

    ``SELECT; COMMIT; SELECT leaddb_private.report_wal_position('<nonce>')`` is one simple-query
    message: the first statement fails on an aborted transaction (so the rest, COMMIT included,
    is skipped and the caller sees the failure: the status asyncpg returns is the last
    statement's, so a COMMIT answered with ROLLBACK would go unseen), and the report, run after
    the COMMIT, raises a notice with the nonce and ``pg_current_wal_insert_lsn()``. asyncpg
    schedules log listeners with ``call_soon`` as the notice is parsed, which is before the
    ReadyForQuery that ends the message wakes the caller: the listener has run by the time
    ``execute()`` returns. Should it not have (no notice came), ``position`` stays None and the
    caller reads the position by a query: never an older one, since the nonce is this COMMIT's.
    """

    __slots__ = ("_expected", "commit_sql", "position")

    def __init__(self) -> None:
        nonce = secrets.token_hex(8)
        self._expected = f"{_NOTICE} {nonce} "
        self.commit_sql = f"SELECT; COMMIT; SELECT {REPORT_FUNCTION}('{nonce}')"
        self.position: str | None = None

    def __call__(self, connection: object, message: PostgresLogMessage) -> None:
        text = message.message
        if isinstance(text, str) and text.startswith(self._expected):
            self.position = text[len(self._expected) :]


def lsn_value(text: str) -> int:
    """``'16/B374D848'`` as a number."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def token_key(tenant: uuid.UUID | None) -> str:
    # The tenant's hash tag, as leaddb.cache.keys spells it: one slot with its cache keys.
    return f"{PLATFORM_TAG}:lsn" if tenant is None else f"leaddb:{{{tenant}}}:lsn"


@dataclass
class Replica:
    """One replica's pool and what is known of it."""

    name: str
    pool: ConnectionPool
    replayed: int = -1  # unknown until first asked
    checked_at: float = float("-inf")
    down_until: float = float("-inf")
    refreshing: asyncio.Task[None] | None = field(default=None, repr=False)


class ReplicaRouter:
    """Picks the connection pool of a read-only unit of work."""

    def __init__(
        self,
        replicas: list[Replica],
        redis: RedisTransport,
        *,
        poll_seconds: float,
        retry_seconds: float,
        position_sql: str,
        position_and_report_sql: str,
    ) -> None:
        """``position_sql`` reads the primary's WAL position; ``position_and_report_sql`` that,
        and whether the session may call ``REPORT_FUNCTION`` (both in leaddb.sql.system, which
        sits above this module)."""
        self.replicas = replicas
        self._redis = redis
        self._poll = poll_seconds
        self._retry = retry_seconds
        self._position_sql = position_sql
        self._position_and_report_sql = position_and_report_sql
        self._tasks: set[asyncio.Task[Any]] = set()
        # Whether COMMITs report their position by a notice (None: not found out yet).
        self._by_notice: bool | None = None
        self.positions_queried = 0
        """How many positions were read by a query of their own (the rest came by notice)."""
        # The positions this process recorded, by tenant (bounded: cleared when large).
        self._recorded: dict[uuid.UUID | None, int] = {}

    def candidate(self, tenant: uuid.UUID | None) -> Replica | None:
        """The live replica that has replayed the most, to begin on while the tenant's position
        is read (``lookup``); None: the primary, at once. None too when this process itself
        recorded a position for the tenant that the replica is not known to have replayed:
        Redis holds at least that one, so asking would only confirm the primary."""
        now = time.monotonic()
        best: Replica | None = None
        for replica in self.replicas:
            if replica.down_until > now:
                continue
            if now - replica.checked_at > self._poll:
                self._refresh(replica)
            if replica.replayed >= 0 and (best is None or replica.replayed > best.replayed):
                best = replica
        if best is None or self._recorded.get(tenant, -1) > best.replayed:
            return None
        return best

    def lookup(self, tenant: uuid.UUID | None) -> PositionLookup:
        """The tenant's position from Redis, asked now and awaited later (``needed()``), so that
        the caller begins its transaction meanwhile. Over LeanRedis the GET is written at once
        and no task is made (a task and its steps cost about what the GET does here)."""
        redis = self._redis
        sent = redis.send_now("GET", token_key(tenant))
        if sent is not None:
            return PositionLookup(sent)
        task = asyncio.get_running_loop().create_task(redis.call("GET", token_key(tenant)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_settled)
        return PositionLookup(task)

    @staticmethod
    def serves(replica: Replica, needed: int | None) -> bool:
        """Whether a read on ``replica`` sees the tenant's last write (``needed``: ``lookup``)."""
        return needed is not None and replica.replayed >= needed

    def give_back(self, replica: Replica, connection: PoolConnection) -> None:
        """Return a connection begun on ``replica`` for nothing (it was behind): the pool rolls
        it back in a task of its own while the caller begins on the primary."""
        task = asyncio.get_running_loop().create_task(_release(replica.pool, connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def failed(self, pool: ConnectionPool) -> None:
        """A connection to this replica failed: skip it for a while."""
        for replica in self.replicas:
            if replica.pool is pool:
                replica.down_until = time.monotonic() + self._retry
                logger.warning("replica %s failed, skipped for %.0f s", replica.name, self._retry)

    def _refresh(self, replica: Replica) -> None:
        if replica.refreshing is not None and not replica.refreshing.done():
            return
        replica.checked_at = time.monotonic()  # at most one ask per poll interval
        task = asyncio.get_running_loop().create_task(self._ask(replica))
        replica.refreshing = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(max(self._poll * 10, 1.0)):
                connection = await replica.pool.acquire()
                try:
                    text = await connection.fetchval("SELECT pg_last_wal_replay_lsn()::text")
                finally:
                    await replica.pool.release(connection)
        except Exception as error:
            replica.down_until = time.monotonic() + self._retry
            replica.replayed = -1
            logger.warning("replica %s unreachable, skipped: %s", replica.name, error)
            return
        # None: not a standby (promoted, or a primary named by mistake): never read from it.
        replica.replayed = -1 if text is None else lsn_value(text)
        replica.checked_at = time.monotonic()

    def position_notice(self) -> PositionNotice | None:
        """A listener for the COMMIT that reports its position (migration 0008); None while it
        is not known to be there, or known not to be (the position is read after)."""
        return PositionNotice() if self._by_notice else None

    def notice_failed(self, error: Exception) -> None:
        """The report after a COMMIT failed: read positions by their own query from now on."""
        self._by_notice = False
        logger.warning("the WAL position's report failed, read by a query instead: %s", error)

    async def read_position(self, connection: PoolConnection) -> str:
        """The primary's WAL position by a query of its own, after a COMMIT; the first one also
        finds out whether COMMITs can report it (migration 0008, callable by this session)."""
        self.positions_queried += 1
        if self._by_notice is not None:
            return str(await connection.fetchval(self._position_sql))
        row = await connection.fetchrow(self._position_and_report_sql)
        assert row is not None
        self._by_notice = bool(row[1])
        return str(row[0])

    def _noted(self, tenant: uuid.UUID | None, lsn_text: str) -> str:
        value = lsn_value(lsn_text)
        if len(self._recorded) >= _RECORDED_MAX:
            self._recorded.clear()
        if value > self._recorded.get(tenant, -1):
            self._recorded[tenant] = value
        return f"{value:016x}"

    async def record(self, tenant: uuid.UUID | None, lsn_text: str) -> None:
        """Raise the tenant's read-your-writes position to ``lsn_text``."""
        await self._raise(tenant, self._noted(tenant, lsn_text))

    async def _raise(self, tenant: uuid.UUID | None, position: str) -> None:
        try:
            await self._redis.evalsha(_RAISE, [token_key(tenant)], [position, _TOKEN_TTL_MS])
        except (RedisError, OSError) as error:
            # Readers that reach Redis may then read a replica without this commit: said in
            # docs/scaling.md, and logged so it is seen.
            logger.warning("the read-your-writes position was not recorded: %s", error)

    def record_beside(
        self, transport: RedisTransport, tenant: uuid.UUID | None, lsn_text: str
    ) -> RecordInFlight | None:
        """``record``, sent now on ``transport`` (the cache's connection), so that the cache's
        invalidation sent next on it shares the round trip; Redis runs the two in order. None
        when the transport cannot send it now (then ``record``)."""
        position = self._noted(tenant, lsn_text)
        sent = transport.send_now(
            "EVALSHA", _RAISE_SHA, 1, token_key(tenant), position, _TOKEN_TTL_MS
        )
        return None if sent is None else RecordInFlight(self, tenant, position, sent)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(*(replica.pool.close() for replica in self.replicas))
        await self._redis.close()


class RecordInFlight:
    """A position sent beside the cache's invalidation (``ReplicaRouter.record_beside``)."""

    __slots__ = ("_position", "_reply", "_router", "_tenant")

    def __init__(
        self,
        router: ReplicaRouter,
        tenant: uuid.UUID | None,
        position: str,
        reply: PendingReply,
    ) -> None:
        self._router = router
        self._tenant = tenant
        self._position = position
        self._reply = reply

    async def finish(self) -> None:
        """Its reply; a script Redis did not know yet is loaded and run again (after the
        invalidation then: the order matters to nothing a read-only unit of work fills)."""
        try:
            await self._reply
        except NoScriptError:
            await self._router._raise(self._tenant, self._position)
        except (RedisError, OSError) as error:
            logger.warning("the read-your-writes position was not recorded: %s", error)


class PositionLookup:
    """A tenant's position being read from Redis (``ReplicaRouter.lookup``)."""

    __slots__ = ("_reply",)

    def __init__(self, reply: PendingReply | asyncio.Task[Any]) -> None:
        self._reply = reply

    async def needed(self) -> int | None:
        """The position; None when Redis could not tell (then: the primary)."""
        reply = self._reply
        try:
            # A task is shielded: cancelling the caller leaves the GET to finish on its own
            # (the router keeps the task), rather than cut a redis-py command short.
            raw = await (asyncio.shield(reply) if isinstance(reply, asyncio.Task) else reply)
        except (RedisError, OSError):
            return None  # no way to know what the tenant wrote last
        return 0 if raw is None else int(raw, 16)

    def abandon(self) -> None:
        """Not to be awaited after all."""
        if isinstance(self._reply, PendingReply):
            self._reply.abandon()


def _settled(task: asyncio.Task[Any]) -> None:
    # An abandoned task's failure is retrieved here, so asyncio does not report it as lost.
    if not task.cancelled():
        task.exception()


async def _release(pool: ConnectionPool, connection: PoolConnection) -> None:
    # The pool rolls back a connection in a transaction before it takes it (or closes it).
    with contextlib.suppress(Exception):
        await pool.release(connection)
