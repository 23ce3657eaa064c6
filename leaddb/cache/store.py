"""The Redis side of the cache: keys, Lua scripts, the circuit breaker and the counters.

Why a reader can never put an old row back after a commit (the classic race):

* Every row key ``leaddb:{org}:lead:<id>`` has a companion token key ``...:lead:<id>:t``; each
  tenant has an epoch key, and each (tenant, entity) a generation key. All of them carry the
  tenant's hash tag, so one call reaches all of them, on Redis Cluster too.
* A reader that misses has read the row's token, the generation and the epoch in the same MGET
  that missed, *before* it reads PostgreSQL. It fills with a Lua script that writes the value
  only if all three are still what it saw.
* A writer, after COMMIT, replaces the row's token with a fresh random one and deletes the
  value, in one script. A reader whose PostgreSQL read preceded the commit read its tokens before
  that replacement, so its fill either lands before the delete (and is deleted) or after the
  replacement (and is refused). Tokens are random, never counters, so an evicted or expired
  token key can never come back with the same value (no ABA).
* Values carry the generation and epoch they were filled under; a bulk write replaces the
  generation (every cached row of that entity in that tenant is then a miss) and a lost
  invalidation (Redis unreachable at commit) replaces the tenant's epoch as soon as Redis answers
  again, before this process serves anything from the cache.

What it cannot promise: a process that committed and died before its invalidation ran leaves
its rows cached until their TTL; and while Redis is unreachable from a writer but reachable from
other processes, those may serve the rows the writer could not invalidate until it reaches Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from leaddb import telemetry
from leaddb.cache.keys import (
    canonical,
    entity_prefix,
    epoch_key,
    generation_key,
    row_keys,
    token_key,
    value_key,
)
from leaddb.connections.redis_transport import RedisPyTransport, RedisTransport
from leaddb.connections.retry import REDIS_OUTAGE

logger = logging.getLogger("leaddb.cache")

TOKEN_TTL_MS = 86_400_000
REPLICA_ACK_TIMEOUT_MS = 100
"""Behind Sentinel, how long an invalidation waits for a replica to acknowledge it."""

# KEYS: value, then the keys whose tokens the reader saw: row token, generation, epoch and, behind
# Sentinel, the primary's (leaddb.connections.redis_topology). ARGV: those tokens, payload, ttl ms.
_FILL = """
local n = #KEYS - 1
local seen = redis.call('MGET', unpack(KEYS, 2))
for i = 1, n do
  if (seen[i] or '') ~= ARGV[i] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[n + 1], 'PX', ARGV[n + 2])
return 1
"""

# KEYS: g shared keys (generation, epoch and, behind Sentinel, the primary's), then (value, row
# token) pairs. ARGV: g, the g shared tokens seen, ttl ms, then (row token seen, payload) pairs.
_FILL_MANY = """
local g = tonumber(ARGV[1])
local seen = redis.call('MGET', unpack(KEYS, 1, g))
for i = 1, g do
  if (seen[i] or '') ~= ARGV[1 + i] then return 0 end
end
local ttl = ARGV[g + 2]
local filled = 0
local at = g + 3
for i = g + 1, #KEYS, 2 do
  if (redis.call('GET', KEYS[i + 1]) or '') == ARGV[at] then
    redis.call('SET', KEYS[i], ARGV[at + 1], 'PX', ttl)
    filled = filled + 1
  end
  at = at + 2
end
return filled
"""

# KEYS: n (value, row token) pairs, then keys to give a fresh token (generations, epochs).
# ARGV: n, token ttl ms, then one fresh token per token key (rows first, then the others).
_INVALIDATE = """
local n = tonumber(ARGV[1])
for i = 1, n do
  redis.call('DEL', KEYS[2 * i - 1])
  redis.call('SET', KEYS[2 * i], ARGV[2 + i], 'PX', ARGV[2])
end
for i = 2 * n + 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2 + n + (i - 2 * n)], 'PX', ARGV[2])
end
return n
"""


def _fresh_token() -> str:
    return uuid.uuid4().hex


@dataclass
class CacheStats:
    """Counters since the process started (or since ``reset``)."""

    hits: int = 0
    misses: int = 0
    fills: int = 0
    refused_fills: int = 0
    invalidations: int = 0
    errors: int = 0
    breaker_open: bool = False
    enabled: bool = True
    tenants_awaiting_epoch_bump: int = 0


@dataclass
class _Breaker:
    """Stops calling Redis for a while after a failure, so a dead Redis costs nothing per call."""

    open_until: float = 0.0
    failures: int = 0
    outage_logged: bool = False

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def failed(self) -> None:
        now = time.monotonic()
        if now < self.open_until:
            # Calls that were already in flight when Redis went away fail together: one
            # outage is one failure, or a short blip would switch the cache off for long.
            return
        self.failures += 1
        self.open_until = now + REDIS_OUTAGE.delay(self.failures)

    def succeeded(self) -> bool:
        """Record a success; True when this ends an outage."""
        ended = self.failures > 0
        self.failures = 0
        self.open_until = 0.0
        return ended


@dataclass
class Tokens:
    """What a reader saw before it went to PostgreSQL."""

    row: str
    generation: str
    epoch: str
    # Behind Sentinel only: the primary's token (leaddb.connections.redis_topology), which a
    # change of primary replaces, so that nothing filled before it is valid after.
    primary: str | None = None

    def header(self) -> bytes:
        """What a value filled under these tokens starts with."""
        if self.primary is not None:
            return f"{self.generation}:{self.epoch}:{self.primary}:".encode()
        return f"{self.generation}:{self.epoch}:".encode()


@dataclass
class CacheStore:
    """Shared by every unit of work of one ``LeadDB``."""

    redis: RedisTransport
    ttl_ms: int
    enabled: bool = True
    stats_counters: CacheStats = field(default_factory=CacheStats)
    _breaker: _Breaker = field(default_factory=_Breaker)
    _dirty_tenants: set[uuid.UUID] = field(default_factory=set)
    # Hooks into the durable list of invalidations (leaddb.pending): ``note_lost`` records a
    # tenant whose invalidation Redis did not take; ``repair`` applies every listed one, and
    # runs before this store serves anything again after it saw Redis fail, so values that
    # another process's lost invalidation left behind are never served.
    note_lost: Callable[[uuid.UUID], Awaitable[None]] | None = None
    repair: Callable[[], Awaitable[bool]] | None = None
    _outage_seen: bool = False
    # Behind Sentinel: the key of the primary's token, read in every MGET and checked by every
    # fill (leaddb.connections.redis_topology). None elsewhere: one Redis has no change of
    # primary, and a Cluster key of its own would sit in another slot than the tenant's keys.
    primary_key: str | None = None

    def __post_init__(self) -> None:
        self.stats_counters.enabled = self.enabled

    def stats(self) -> CacheStats:
        """Hits, misses, fills, invalidations, errors and whether the breaker is open."""
        counters = self.stats_counters
        counters.breaker_open = not self._breaker.allows()
        counters.tenants_awaiting_epoch_bump = len(self._dirty_tenants)
        return CacheStats(**vars(counters))

    def reset_stats(self) -> None:
        self.stats_counters = CacheStats(enabled=self.enabled)

    # -- failure handling -----------------------------------------------------------------

    def _failed(self, error: BaseException, doing: str) -> None:
        self._outage_seen = True
        self.stats_counters.errors += 1
        self._breaker.failed()
        if not self._breaker.outage_logged:
            self._breaker.outage_logged = True
            logger.warning("Redis unreachable while %s; serving from PostgreSQL: %s", doing, error)

    async def _usable(self) -> bool:
        """Whether Redis may be used now: breaker closed and every lost invalidation repaired.

        Awaited only where ``_usable_now`` is false: a cache hit awaits as few coroutines as
        it can (each costs it about 1 µs)."""
        if not self.enabled or not self._breaker.allows():
            return False
        if self._dirty_tenants and not await self._bump_dirty_epochs():
            return False
        if self._outage_seen:
            if self.repair is not None and not await self.repair():
                return False
            self._outage_seen = False
        return True

    def pipeline_transport(self) -> RedisTransport | None:
        """The transport the next invalidation goes out on, when Redis is usable now: what is
        sent on it first (``send_now``) is answered in the same round trip."""
        return self.redis if self._usable_now() else None

    def _usable_now(self) -> bool:
        """Whether Redis may be used now with no lost invalidation to repair first."""
        return (
            self.enabled
            and self._breaker.allows()
            and not self._dirty_tenants
            and not self._outage_seen
        )

    async def bump_epochs(self, tenants: Sequence[uuid.UUID]) -> bool:
        """Replace these tenants' epochs now (every value cached for them is then stale);
        whether Redis took it."""
        if not self.enabled or not tenants:
            return True
        self._dirty_tenants.update(tenants)
        return await self._bump_dirty_epochs()

    async def _bump_dirty_epochs(self) -> bool:
        tenants = list(self._dirty_tenants)
        try:
            await asyncio.gather(
                *(
                    self.redis.call(
                        "SET", epoch_key(tenant), _fresh_token(), "PX", TOKEN_TTL_MS * 30
                    )
                    for tenant in tenants
                )
            )
        except (RedisError, OSError) as error:
            self._failed(error, "repairing lost invalidations")
            return False
        self._dirty_tenants.difference_update(tenants)
        self._recovered()
        return True

    def _recovered(self) -> None:
        """Called after every successful Redis call; ends an outage if one was on."""
        breaker = self._breaker
        if not (breaker.failures or breaker.outage_logged):
            return
        breaker.succeeded()
        if breaker.outage_logged:
            logger.warning("Redis reachable again; cache back in use")
        breaker.outage_logged = False

    # -- reads ----------------------------------------------------------------------------

    async def lookup(
        self, tenant: uuid.UUID, entity: str, id: uuid.UUID
    ) -> tuple[bytes | None, Tokens] | None:
        """(payload of a valid hit, or None on a miss; the tokens to fill with), or None when
        the cache cannot be used now."""
        if not self._usable_now() and not await self._usable():
            return None
        started = telemetry.now() if telemetry.on else 0
        try:
            value_and_token = row_keys(tenant, entity, id)
            if self.primary_key is None:
                value, row, generation, epoch = await self.redis.call(
                    "MGET", *value_and_token, generation_key(tenant, entity), epoch_key(tenant)
                )
                primary = None
            else:
                # A missing primary token reads as "" (not None): the header keeps its field.
                value, row, generation, epoch, primary = await self.redis.call(
                    "MGET",
                    *value_and_token,
                    generation_key(tenant, entity),
                    epoch_key(tenant),
                    self.primary_key,
                )
        except (RedisError, OSError) as error:
            if started:
                telemetry.cache_call(started, "MGET", "lookup", entity, error=error)
            self._failed(error, "reading")
            return None
        self._recovered()
        tokens = Tokens(_text(row), _text(generation), _text(epoch), self._primary_token(primary))
        payload = _valid_payload(value, tokens.header())
        if payload is None:
            self.stats_counters.misses += 1
        else:
            self.stats_counters.hits += 1
        if started:
            telemetry.cache_call(started, "MGET", "lookup", entity, hit=payload is not None)
        return payload, tokens

    async def lookup_many(
        self, tenant: uuid.UUID, entity: str, ids: Sequence[uuid.UUID]
    ) -> tuple[list[bytes | None], Tokens] | None:
        """Payloads (None for misses) for ``ids`` in one MGET, and the shared tokens."""
        if not self._usable_now() and not await self._usable():
            return None
        prefix = entity_prefix(tenant, entity)
        keys = [prefix + canonical(id) for id in ids]
        keys += [generation_key(tenant, entity), epoch_key(tenant)]
        if self.primary_key is not None:
            keys.append(self.primary_key)
        started = telemetry.now() if telemetry.on else 0
        try:
            values = await self.redis.call("MGET", *keys)
        except (RedisError, OSError) as error:
            if started:
                telemetry.cache_call(started, "MGET", "lookup", entity, error=error)
            self._failed(error, "reading")
            return None
        self._recovered()
        primary = values.pop() if self.primary_key is not None else None
        *found, generation, epoch = values
        tokens = Tokens("", _text(generation), _text(epoch), self._primary_token(primary))
        header = tokens.header()
        payloads = [_valid_payload(value, header) for value in found]
        misses = payloads.count(None)
        self.stats_counters.hits += len(payloads) - misses
        self.stats_counters.misses += misses
        if started:
            telemetry.cache_call(
                started, "MGET", "lookup", entity, hits=len(payloads) - misses, misses=misses
            )
        return payloads, tokens

    def _primary_token(self, value: bytes | None) -> str | None:
        return None if self.primary_key is None else _text(value)

    def rejected(self, count: int) -> None:
        """``count`` values were found but could not be decoded: they were misses after all."""
        self.stats_counters.hits -= count
        self.stats_counters.misses += count

    async def row_tokens(
        self, tenant: uuid.UUID, entity: str, ids: Sequence[uuid.UUID]
    ) -> list[str] | None:
        try:
            values = await self.redis.call("MGET", *[token_key(tenant, entity, id) for id in ids])
        except (RedisError, OSError) as error:
            self._failed(error, "reading")
            return None
        return [_text(value) for value in values]

    # -- fills ----------------------------------------------------------------------------

    async def fill(
        self, tenant: uuid.UUID, entity: str, id: uuid.UUID, tokens: Tokens, payload: bytes
    ) -> None:
        if not self._breaker.allows():
            return
        keys = [
            value_key(tenant, entity, id),
            token_key(tenant, entity, id),
            generation_key(tenant, entity),
            epoch_key(tenant),
        ]
        header = tokens.header()
        args: list[Any] = [tokens.row, tokens.generation, tokens.epoch]
        if self.primary_key is not None:
            keys.append(self.primary_key)
            args.append(tokens.primary or "")
        args += [header + payload, self.ttl_ms]
        started = telemetry.now() if telemetry.on else 0
        try:
            stored = await self.redis.evalsha(_FILL, keys, args)
        except (RedisError, OSError) as error:
            if started:
                telemetry.cache_call(started, "EVALSHA", "fill", entity, error=error)
            self._failed(error, "filling")
            return
        self._recovered()
        if stored:
            self.stats_counters.fills += 1
        else:
            self.stats_counters.refused_fills += 1
        if started:
            telemetry.cache_call(started, "EVALSHA", "fill", entity, fill_refused=not stored)

    async def fill_many(
        self,
        tenant: uuid.UUID,
        entity: str,
        items: Sequence[tuple[uuid.UUID, str, bytes]],
        tokens: Tokens,
    ) -> None:
        """Fill several rows: (id, row token seen, payload) each, under one generation/epoch."""
        if not items or not self._breaker.allows():
            return
        keys = [generation_key(tenant, entity), epoch_key(tenant)]
        shared = [tokens.generation, tokens.epoch]
        if self.primary_key is not None:
            keys.append(self.primary_key)
            shared.append(tokens.primary or "")
        args: list[Any] = [len(keys), *shared, self.ttl_ms]
        header = tokens.header()
        for id, row_token, payload in items:
            keys += [value_key(tenant, entity, id), token_key(tenant, entity, id)]
            args += [row_token, header + payload]
        started = telemetry.now() if telemetry.on else 0
        try:
            stored = int(await self.redis.evalsha(_FILL_MANY, keys, args))
        except (RedisError, OSError) as error:
            if started:
                telemetry.cache_call(started, "EVALSHA", "fill", entity, error=error)
            self._failed(error, "filling")
            return
        self._recovered()
        self.stats_counters.fills += stored
        self.stats_counters.refused_fills += len(items) - stored
        if started:
            telemetry.cache_call(
                started, "EVALSHA", "fill", entity, fills=stored, refused_fills=len(items) - stored
            )

    # -- invalidation ---------------------------------------------------------------------

    async def invalidate(
        self,
        tenant: uuid.UUID,
        rows: Sequence[tuple[str, uuid.UUID]],
        entities: Sequence[str],
        *,
        whole_tenant: bool = False,
    ) -> None:
        """After a commit: forget ``rows`` (entity, id), every row of ``entities``, or the whole
        tenant. When Redis cannot be reached, the tenant's epoch is replaced as soon as it can."""
        if not self.enabled:
            return
        if not self._breaker.allows():
            await self._lost(tenant)
            return
        keys: list[str] = []
        for entity, id in rows:
            keys += [value_key(tenant, entity, id), token_key(tenant, entity, id)]
        keys += [generation_key(tenant, entity) for entity in entities]
        if whole_tenant:
            keys.append(epoch_key(tenant))
        fresh = [_fresh_token() for _ in range(len(rows) + len(keys) - 2 * len(rows))]
        args: list[Any] = [len(rows), TOKEN_TTL_MS, *fresh]
        started = telemetry.now() if telemetry.on else 0
        try:
            if self.primary_key is not None and isinstance(self.redis, RedisPyTransport):
                # Behind Sentinel, an invalidation that no replica took may vanish in a
                # failover (or land on an old primary about to be demoted): lost, then.
                _reply, acknowledged = await self.redis.evalsha_replicated(
                    _INVALIDATE, keys, args, REPLICA_ACK_TIMEOUT_MS
                )
                if acknowledged < 1:
                    logger.warning("no Redis replica acknowledged an invalidation; replaying it")
                    await self._lost(tenant)
                    return
            else:
                await self.redis.evalsha(_INVALIDATE, keys, args)
        except (RedisError, OSError) as error:
            if started:
                telemetry.cache_call(started, "EVALSHA", "invalidate", None, error=error)
            self._failed(error, "invalidating")
            await self._lost(tenant)
            return
        self.stats_counters.invalidations += len(rows) + len(entities) + int(whole_tenant)
        self._recovered()
        if started:
            telemetry.cache_call(
                started,
                "EVALSHA",
                "invalidate",
                None,
                invalidations=len(rows) + len(entities) + int(whole_tenant),
            )

    async def _lost(self, tenant: uuid.UUID) -> None:
        """An invalidation Redis did not take: this process bumps the tenant's epoch as soon
        as Redis answers, and the durable list makes every other process do so too."""
        self._dirty_tenants.add(tenant)
        if self.note_lost is not None:
            await self.note_lost(tenant)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _valid_payload(value: bytes | str | None, header: bytes) -> bytes | None:
    """The payload of a value filled under the current generation and epoch, else None."""
    # Tokens hold no colon, so a value starts with this header only if it was filled under
    # exactly this generation and this epoch.
    if type(value) is not bytes or not value.startswith(header):
        return None
    return value[len(header) :]
