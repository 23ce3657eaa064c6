"""asyncpg's private parts leaddb relies on, against a real PostgreSQL (the reasons are given
where each is used; pyproject's upper bounds are the versions these passed on)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest
from asyncpg.exceptions import _base as pgbase
from asyncpg.pgproto.pgproto import UUID as PgUUID

from leaddb.connections.driver_errors import translate
from leaddb.errors import ConnectionFailedError, ConstraintViolationError, InvalidValueError


async def test_asyncpg_returns_uuids_as_its_own_uuid_class(pg: asyncpg.Connection) -> None:
    assert type(await pg.fetchval("SELECT gen_random_uuid()")) is PgUUID


async def test_an_argument_asyncpg_cannot_encode_is_a_leaddb_error(pg: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.DataError) as caught:
        await pg.fetchval("SELECT $1::int", "not a number")
    assert isinstance(translate(caught.value), ConstraintViolationError)
    # The client-side kind (asyncpg's private exceptions._base.DataError), as translate tells it
    # apart through public classes.
    assert isinstance(translate(pgbase.DataError("refused")), InvalidValueError)
    assert isinstance(translate(asyncpg.ClientConfigurationError("bad")), ConnectionFailedError)


async def test_asyncpg_protocol_reports_a_cancellation_in_flight(pg: asyncpg.Connection) -> None:
    # leaddb.connections.pool checks this before trusting a returned connection's state.
    protocol = pg._protocol  # type: ignore[attr-defined]
    assert protocol._is_cancelling() is False
    query = asyncio.ensure_future(pg.fetchval("SELECT pg_sleep(5)"))
    await asyncio.sleep(0.1)
    query.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await query
    # The server's answer to the cancellation is still due: the pool must not trust the
    # connection's transaction state yet.
    assert protocol._is_cancelling() is True
    assert await pg.fetchval("SELECT 1") == 1  # asyncpg waits that answer out first
    assert protocol._is_cancelling() is False
