"""``LeadDB``: the engine, the Redis client and the entry points a service holds for life."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import asyncpg
import orjson
import redis.asyncio as aioredis
from pydantic import SecretStr, ValidationError
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from leaddb import migrate as migrations
from leaddb.cache.store import CacheStore
from leaddb.cache.unit import SingleFlight, UnitCache
from leaddb.connections.pool import ConnectionPool
from leaddb.connections.redis_transport import open_transport
from leaddb.connections.retry import TRANSACTION_ATTEMPTS, TRANSACTION_CONFLICT
from leaddb.connections.session_role import APP_ROLE, SessionRoles
from leaddb.embedded import EmbeddedPostgres, EmbeddedRedis, start_postgres, start_redis
from leaddb.errors import ConfigurationError, ConnectionFailedError, RetryableError
from leaddb.repositories.pagination import CursorCodec
from leaddb.sessions import SessionStore
from leaddb.settings import LeadDBSettings, masked_url, settings_problems
from leaddb.uow import PlatformUnitOfWork, TenantUnitOfWork

if TYPE_CHECKING:
    from asyncpg import Record

logger = logging.getLogger("leaddb")

T = TypeVar("T")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class ServerInfo:
    """What ``LeadDB.connect`` found: server versions and where they are (passwords masked)."""

    database_url: str
    postgres_version: str
    redis_url: str
    redis_version: str | None
    embedded: bool


class LeadDB:
    """One per process: owns the connection pool and the Redis client.

    Create it with ``await LeadDB.connect(settings)`` and close it with ``await db.close()``
    (or use it as an async context manager).
    """

    def __init__(
        self,
        settings: LeadDBSettings,
        engine: AsyncEngine,
        pool: ConnectionPool,
        redis: aioredis.Redis,
        info: ServerInfo,
        *,
        roles: SessionRoles | None = None,
        embedded: tuple[EmbeddedPostgres | None, EmbeddedRedis | None] = (None, None),
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.pool = pool
        self.redis = redis
        self.info = info
        self.cursors = CursorCodec(_cursor_key(settings))
        self.cache = CacheStore(
            open_transport(settings),
            ttl_ms=settings.cache_ttl_seconds * 1000,
            enabled=settings.cache_enabled,
        )
        self._flights = SingleFlight()
        self.sessions = SessionStore(open_transport(settings), settings)
        self.assumes_app_role = False
        self.session_roles = roles or SessionRoles()
        self._embedded = embedded
        self._closed = False

    def tenant(
        self, organization_id: uuid.UUID, *, actor: uuid.UUID | None = None
    ) -> TenantUnitOfWork:
        """A unit of work scoped to one organization; ``actor`` is recorded in the audit trail."""
        return TenantUnitOfWork(self, organization_id, actor_id=actor)

    async def run_in_tenant(
        self,
        organization_id: uuid.UUID,
        work: Callable[[TenantUnitOfWork], Awaitable[T]],
        *,
        actor: uuid.UUID | None = None,
        attempts: int = TRANSACTION_ATTEMPTS,
    ) -> T:
        """Run ``work`` in a new tenant unit of work and commit it, retrying the whole unit of
        work when PostgreSQL reports a serialization failure or a deadlock (RetryableError).

        ``work`` must be safe to run again: it gets a fresh unit of work each time, and nothing
        of a failed attempt was committed.
        """
        for attempt in range(1, attempts + 1):
            try:
                async with self.tenant(organization_id, actor=actor) as uow:
                    result = await work(uow)
                    await uow.commit()
                    return result
            except RetryableError:
                if attempt == attempts:
                    raise
                await asyncio.sleep(TRANSACTION_CONFLICT.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def platform(self, *, actor: uuid.UUID | None = None) -> PlatformUnitOfWork:
        """A unit of work for organizations (and cross-tenant user lookup for login)."""
        return PlatformUnitOfWork(self, actor_id=actor)

    def cache_unit(self) -> UnitCache | None:
        """The cache's share of a new unit of work (None when the cache is off)."""
        if not self.cache.enabled:
            return None
        return UnitCache(self.cache, self._flights)

    @classmethod
    async def connect(cls, settings: LeadDBSettings | None = None) -> LeadDB:
        """Connect to PostgreSQL and Redis, starting embedded servers for unset URLs.

        Raises ConfigurationError for bad settings and ConnectionFailedError when PostgreSQL
        cannot be reached; an unreachable Redis only logs a warning (the cache is optional).
        """
        if settings is None:
            try:
                settings = LeadDBSettings()
            except ValidationError as error:
                raise ConfigurationError(settings_problems(error)) from None
        embedded_pg: EmbeddedPostgres | None = None
        embedded_redis: EmbeddedRedis | None = None
        if settings.database_url is None:
            embedded_pg = await asyncio.to_thread(start_postgres, settings.embedded_data_dir)
            settings = settings.model_copy(update={"database_url": SecretStr(embedded_pg.url)})
        if settings.redis_url is None:
            embedded_redis = await asyncio.to_thread(start_redis, settings.embedded_data_dir)
            settings = settings.model_copy(update={"redis_url": SecretStr(embedded_redis.url)})

        engine = create_engine(settings)
        try:
            postgres_version = await _check_postgres(engine, settings)
        except BaseException:
            await engine.dispose()
            raise
        roles = SessionRoles()
        try:
            pool = await create_pool(settings, roles)
        except BaseException:
            await engine.dispose()
            raise
        redis = create_redis(settings)
        redis_version = await _check_redis(redis, settings)
        info = ServerInfo(
            database_url=masked_url(settings.sqlalchemy_url().render_as_string(False)),
            postgres_version=postgres_version,
            redis_url=masked_url(settings.redis_url_value()),
            redis_version=redis_version,
            embedded=embedded_pg is not None or embedded_redis is not None,
        )
        db = cls(
            settings, engine, pool, redis, info, roles=roles, embedded=(embedded_pg, embedded_redis)
        )
        await db._check_app_role()
        return db

    async def _check_app_role(self) -> None:
        """Whether units of work assume the application role (RLS on, and migrated)."""
        if not self.settings.row_level_security:
            self.assumes_app_role = False
            return
        async with self.pool.acquire() as connection:
            exists = await connection.fetchval(
                "SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE
            )
        self.assumes_app_role = exists is not None

    async def migrate(self, revision: str = "head") -> str | None:
        """Upgrade the schema (Alembic, from the installed package); returns the new revision."""
        try:
            reached = await migrations.upgrade(self.engine, revision)
        except (SQLAlchemyError, OSError) as error:
            raise ConnectionFailedError(f"migration failed: {_describe(error)}") from error
        # Connections opened before the role and policies existed must not outlive them.
        await self.pool.expire_connections()
        await self._check_app_role()
        return reached

    async def close(self) -> None:
        """Close the pool and the Redis client. Embedded servers keep running for the next start."""
        if self._closed:
            return
        self._closed = True
        await self.pool.close()
        await self.engine.dispose()
        await self.cache.redis.close()
        await self.sessions.close()
        await self.redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def create_engine(settings: LeadDBSettings) -> AsyncEngine:
    """The SQLAlchemy engine (migrations, Alembic, introspection), configured from settings."""
    server_settings = {"application_name": "leaddb"}
    if settings.statement_timeout_seconds:
        server_settings["statement_timeout"] = str(int(settings.statement_timeout_seconds * 1000))
    # Migrations and introspection only: the data path has its own asyncpg pool, so this
    # engine keeps no idle connections.
    return create_async_engine(
        settings.sqlalchemy_url(),
        poolclass=NullPool,
        echo=settings.echo_sql,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={
            "timeout": settings.connect_timeout_seconds,
            "server_settings": server_settings,
        },
    )


def _jsonb_encode(value: Any) -> bytes:
    # JSONB's binary format: a version byte, then the JSON text.
    return b"\x01" + orjson.dumps(value)


def _jsonb_decode(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_jsonb_encode, decoder=_jsonb_decode, format="binary"
    )
    await connection.set_type_codec(
        "json", schema="pg_catalog", encoder=_json_dumps, decoder=orjson.loads, format="text"
    )


async def create_pool(settings: LeadDBSettings, roles: SessionRoles) -> ConnectionPool:
    """The pool of asyncpg connections the units of work draw from (leaddb.connections.pool).

    SQLAlchemy's engine serves migrations and introspection; the data path runs on asyncpg
    directly (see leaddb.sql.compile for why).
    """
    url = settings.sqlalchemy_url().set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)
    server_settings = {"application_name": "leaddb"}
    if settings.statement_timeout_seconds:
        server_settings["statement_timeout"] = str(int(settings.statement_timeout_seconds * 1000))

    async def connect() -> asyncpg.Connection[Record]:
        connection = await asyncpg.connect(
            dsn, timeout=settings.connect_timeout_seconds, server_settings=server_settings
        )
        try:
            await _init_connection(connection)
            if settings.row_level_security:
                await roles.assume(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    pool = ConnectionPool(connect, min_size=1, max_size=settings.pool_size + settings.max_overflow)
    try:
        await pool.open()
    except (asyncpg.PostgresError, OSError, TimeoutError) as error:
        pool.terminate()
        raise ConnectionFailedError(
            f"cannot connect to PostgreSQL at {masked_url(url.render_as_string(False))} "
            f"(LEADDB_DATABASE_URL): {_describe(error)}"
        ) from None
    except BaseException:
        pool.terminate()
        raise
    return pool


def _cursor_key(settings: LeadDBSettings) -> bytes:
    """The key that signs pagination cursors: the configured secret, else one derived from the
    database URL, which every process of a deployment shares and no client knows."""
    if settings.cursor_secret is not None:
        material = settings.cursor_secret.get_secret_value()
    else:
        material = settings.sqlalchemy_url().render_as_string(hide_password=False)
    return hashlib.sha256(b"leaddb-cursor\x00" + material.encode()).digest()


def create_redis(settings: LeadDBSettings) -> aioredis.Redis:
    """The Redis client leaddb uses: short timeouts, because the cache must never stall a call."""
    timeout = settings.redis_socket_timeout_seconds
    return aioredis.Redis.from_url(
        settings.redis_url_value(),
        socket_timeout=timeout,
        socket_connect_timeout=max(timeout, 1.0),
        decode_responses=False,
    )


async def _check_postgres(engine: AsyncEngine, settings: LeadDBSettings) -> str:
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text("SHOW server_version"))
            return str(result.scalar_one())
    except (SQLAlchemyError, OSError, TimeoutError) as error:
        where = masked_url(settings.sqlalchemy_url().render_as_string(False))
        raise ConnectionFailedError(
            f"cannot connect to PostgreSQL at {where} (LEADDB_DATABASE_URL): {_describe(error)}"
        ) from None


async def _check_redis(redis: aioredis.Redis, settings: LeadDBSettings) -> str | None:
    try:
        server = await redis.info("server")
        return str(server.get("redis_version"))
    except (RedisError, OSError) as error:
        logger.warning(
            "Redis at %s (LEADDB_REDIS_URL) is unreachable, reads go to PostgreSQL: %s",
            masked_url(settings.redis_url_value()),
            _describe(error),
        )
        return None


def _describe(error: BaseException) -> str:
    """The driver's own reason in one line, without SQLAlchemy's boilerplate."""
    cause: BaseException = error
    original = getattr(error, "orig", None)
    if isinstance(original, BaseException):
        cause = original
    while cause.__cause__ is not None and not str(cause):
        cause = cause.__cause__
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {message}" if message else type(cause).__name__
