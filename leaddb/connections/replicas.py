"""Read replicas with read-your-writes, by WAL position (``LEADDB_REPLICA_URLS``).

A unit of work that wrote records, after its COMMIT, the primary's WAL insert position in Redis
under its tenant's hash tag (``leaddb:{<org_id>}:lsn``, raised only, never lowered, so two
writers cannot move it back). A read-only unit of work reads that position when it first needs
a connection and runs on a replica known to have replayed at least that far; otherwise on the
primary. So a request that reads after another committed, in any process, sees the commit.

The replicas' replayed positions are learned off the read path: when routing finds a position
older than ``replica_poll_ms``, a background task asks that replica (``pg_last_wal_replay_lsn()``)
and the unit of work does not wait for it. A replica that fails is skipped for
``replica_retry_seconds``; Redis unreachable sends read-only units of work to the primary.

The position is recorded before the cache's invalidation, so a cache fill that a replica's old
row could make is refused like any fill racing a commit (leaddb.cache.store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from leaddb.connections.pool import ConnectionPool
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
PLATFORM_TAG = "leaddb:{platform}"


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
    ) -> None:
        self.replicas = replicas
        self._redis = redis
        self._poll = poll_seconds
        self._retry = retry_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    async def pool_for(self, tenant: uuid.UUID | None) -> ConnectionPool | None:
        """A replica's pool that has replayed the tenant's last write; None: the primary."""
        now = time.monotonic()
        live = [replica for replica in self.replicas if replica.down_until <= now]
        if not live:
            return None
        for replica in live:
            if now - replica.checked_at > self._poll:
                self._refresh(replica)
        try:
            raw = await self._redis.call("GET", token_key(tenant))
        except (RedisError, OSError):
            return None  # no way to know what the tenant wrote last
        needed = 0 if raw is None else int(raw, 16)
        best: Replica | None = None
        for replica in live:
            if replica.replayed >= needed and (best is None or replica.replayed > best.replayed):
                best = replica
        return None if best is None else best.pool

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

    async def record(self, tenant: uuid.UUID | None, lsn_text: str) -> None:
        """Raise the tenant's read-your-writes position to ``lsn_text``."""
        position = f"{lsn_value(lsn_text):016x}"
        try:
            await self._redis.evalsha(_RAISE, [token_key(tenant)], [position, _TOKEN_TTL_MS])
        except (RedisError, OSError) as error:
            # Readers that reach Redis may then read a replica without this commit: said in
            # docs/scaling.md, and logged so it is seen.
            logger.warning("the read-your-writes position was not recorded: %s", error)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(*(replica.pool.close() for replica in self.replicas))
        await self._redis.close()
