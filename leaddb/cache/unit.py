"""The cache's share of one unit of work: read-through for ``get`` / ``get_many``, and the
invalidation a commit triggers (leaddb.cache.store explains why no old row survives a commit).

Reads of rows the unit of work has itself written (or created, or bulk-changed) skip the cache
and go to its transaction, so a unit of work reads its own writes and nothing uncommitted is
ever written to Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from typing import TYPE_CHECKING, Any, TypeVar

from leaddb.cache.store import CacheStore, Tokens
from leaddb.rows.codec import RowCodec
from leaddb.rows.hydrate import ModelT

if TYPE_CHECKING:
    from leaddb.connections.redis_transport import RedisTransport
    from leaddb.rows.hydrate import Row

ORGANIZATION_ENTITY = "organization"

RowT = TypeVar("RowT")


class SingleFlight:
    """Concurrent misses on one key, in one process, share one database read."""

    def __init__(self) -> None:
        self._flights: dict[object, asyncio.Future[Any]] = {}

    async def run(self, key: object, load: Callable[[], Awaitable[RowT]]) -> RowT:
        flight = self._flights.get(key)
        if flight is not None:
            try:
                result: RowT = await asyncio.shield(flight)
                return result
            except Exception:  # noqa: S110
                # The leader's unit of work failed; this reader tries on its own.
                pass
            return await load()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            value = await load()
        except BaseException as error:
            if not future.done():
                future.set_exception(error if isinstance(error, Exception) else RuntimeError())
            future.exception()  # a flight nobody joined must not warn "never retrieved"
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._flights[key]


class UnitCache:
    """Read-through and invalidation for one unit of work."""

    def __init__(self, store: CacheStore, flights: SingleFlight) -> None:
        self._store = store
        self._flights = flights
        self.fills = True
        """False for a unit of work that may run on a replica: it reads hits but fills nothing
        and shares no load. Its replica was chosen once, for the tenant's position at its first
        statement; a later miss's tokens may postdate a commit that replica has not replayed."""

    async def get(
        self,
        tenant: uuid.UUID,
        entity: str,
        id: uuid.UUID,
        codec: RowCodec[ModelT],
        load: Callable[[], Awaitable[Row | None]],
    ) -> ModelT | None:
        """The row from Redis, or from ``load`` (then filled into Redis if still current)."""
        looked = await self._store.lookup(tenant, entity, id)
        if looked is None:
            row = await load()
            return None if row is None else codec.decode_row(row)
        payload, tokens = looked
        if payload is not None:
            hit = codec.decode(payload)
            if hit is not None:
                return hit
            self._store.rejected(1)
        if not self.fills:
            row = await load()
            return None if row is None else codec.decode_row(row)
        # The primary's token too (behind Sentinel): a reader that saw a new primary must not
        # join a load that began, under the same row token, on the old one.
        flight_key = (
            tenant,
            entity,
            id,
            tokens.row,
            tokens.generation,
            tokens.epoch,
            tokens.primary,
        )

        async def load_and_fill() -> Row | None:
            row = await load()
            if row is not None:
                await self._store.fill(tenant, entity, id, tokens, codec.encode(row))
            return row

        row = await self._flights.run(flight_key, load_and_fill)
        return None if row is None else codec.decode_row(row)

    async def get_many(
        self,
        tenant: uuid.UUID,
        entity: str,
        ids: Sequence[uuid.UUID],
        codec: RowCodec[ModelT],
        load: Callable[[Sequence[uuid.UUID]], Awaitable[Sequence[Row]]],
    ) -> list[ModelT | None]:
        """The row of each id (None: there is none): hits from one MGET, the rest from one
        ``load`` (then filled into Redis if still current)."""
        looked = await self._store.lookup_many(tenant, entity, ids)
        if looked is None:
            loaded = {row["id"]: codec.decode_row(row) for row in await load(ids)}
            return [loaded.get(id) for id in ids]
        payloads, shared = looked
        found = codec.decode_many(payloads)
        missing = [id for id, hit in zip(ids, found, strict=True) if hit is None]
        if not missing:
            return found
        self._store.rejected(len(missing) - payloads.count(None))
        if not self.fills:
            loaded = {row["id"]: codec.decode_row(row) for row in await load(missing)}
            return [
                loaded.get(id) if hit is None else hit for id, hit in zip(ids, found, strict=True)
            ]
        # The row tokens must be read before the database is, or a fill could be stale.
        row_tokens = await self._store.row_tokens(tenant, entity, missing)
        rows = await load(missing)
        loaded = {}
        fills = []
        token_of = dict(zip(missing, row_tokens or [], strict=False))
        for row in rows:
            loaded[row["id"]] = codec.decode_row(row)
            if row_tokens is not None:
                fills.append((row["id"], token_of[row["id"]], codec.encode(row)))
        await self._store.fill_many(
            tenant, entity, fills, Tokens("", shared.generation, shared.epoch, shared.primary)
        )
        return [loaded.get(id) if hit is None else hit for id, hit in zip(ids, found, strict=True)]

    def pipeline_transport(self) -> RedisTransport | None:
        """The cache's connection, for a command to go ahead of the invalidation on it."""
        return self._store.pipeline_transport()

    async def invalidate(
        self,
        tenant: uuid.UUID | None,
        written: Mapping[str, Set[uuid.UUID]],
        bulk_written: Set[str],
        wiped_tenants: Set[uuid.UUID],
    ) -> None:
        """After COMMIT: forget what the transaction changed."""
        for organization in wiped_tenants:
            await self._store.invalidate(organization, [], [], whole_tenant=True)
        for id in written.get(ORGANIZATION_ENTITY, ()):
            await self._store.invalidate(id, [(ORGANIZATION_ENTITY, id)], [])
        if tenant is None:
            return
        rows = [
            (entity, id)
            for entity, ids in written.items()
            if entity != ORGANIZATION_ENTITY
            for id in ids
        ]
        if rows or bulk_written:
            await self._store.invalidate(tenant, rows, sorted(bulk_written))
