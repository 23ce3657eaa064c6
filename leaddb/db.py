"""``LeadDB``: the engine, the Redis client and the entry points a service holds for life."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import asyncpg
import orjson
from pydantic import SecretStr
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from leaddb import migrate as migrations
from leaddb import telemetry
from leaddb.cache.store import CacheStore
from leaddb.cache.unit import SingleFlight, UnitCache
from leaddb.connections.pool import ConnectionPool
from leaddb.connections.pooler import SEARCH_PATH
from leaddb.connections.redis_topology import (
    PRIMARY_KEY,
    AnyRedis,
    close_client,
    create_client,
    parse_redis_url,
)
from leaddb.connections.redis_transport import open_transport
from leaddb.connections.replicas import Replica, ReplicaRouter
from leaddb.connections.retry import (
    FAILOVER,
    FAILOVER_SECONDS,
    TRANSACTION_ATTEMPTS,
    TRANSACTION_CONFLICT,
)
from leaddb.connections.session_role import APP_ROLE, SessionRoles
from leaddb.connections.tenant_context import ContextSigner
from leaddb.embedded import EmbeddedPostgres, EmbeddedRedis, start_postgres, start_redis
from leaddb.errors import MIGRATE_HINT, ConfigurationError, ConnectionFailedError, RetryableError
from leaddb.pending import PendingInvalidations
from leaddb.repositories.pagination import CursorCodec
from leaddb.sessions import SessionStore
from leaddb.settings import LeadDBSettings, masked_url
from leaddb.sql import system
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
        redis: AnyRedis,
        info: ServerInfo,
        *,
        roles: SessionRoles | None = None,
        router: ReplicaRouter | None = None,
        embedded: tuple[EmbeddedPostgres | None, EmbeddedRedis | None] = (None, None),
    ) -> None:
        self.settings = settings
        # Migrations and introspection only: a session of a service's own on it would skip the
        # tenant, the audit trail and the cache invalidation (use ``uow.session``).
        self.engine = engine
        # Private: a connection borrowed from it would skip everything a unit of work does to
        # keep tenants apart (the signed context, the reset of raw SQL's leftovers).
        self._pool = pool
        self.redis = redis
        self.info = info
        self.cursors = CursorCodec(_cursor_key(settings, None))
        self.signer: ContextSigner | None = None
        self.cache = CacheStore(
            open_transport(settings),
            ttl_ms=settings.cache_ttl_seconds * 1000,
            enabled=settings.cache_enabled,
            primary_key=(
                PRIMARY_KEY
                if parse_redis_url(settings.redis_url_value()).kind == "sentinel"
                else None
            ),
        )
        self._flights = SingleFlight()
        self.pending = PendingInvalidations(self, settings.pending_poll_seconds)
        self.cache.note_lost = self.pending.note_epoch
        self.cache.repair = self.pending.repair
        self.sessions = SessionStore(
            open_transport(settings),
            settings,
            is_active_member=self._is_active_member,
            repair=self.pending.repair,
        )
        self.assumes_app_role = False
        self.session_roles = roles or SessionRoles()
        self._router = router
        self._embedded = embedded
        self._closed = False
        self.telemetry_name = telemetry.watch(self, pool, self.cache)
        """What this instance's metrics carry as ``leaddb.client`` (and the pool's name)."""
        self.schema_notice: str | None = None
        """Set by ``connect`` when the schema is missing or behind; said once, at the first unit
        of work that is not preceded by ``migrate()`` (which clears it)."""

    def tenant(
        self,
        organization_id: uuid.UUID,
        *,
        actor: uuid.UUID | None = None,
        read_only: bool = False,
    ) -> TenantUnitOfWork:
        """A unit of work scoped to one organization; ``actor`` is recorded in the audit trail.

        ``read_only``: ``BEGIN READ ONLY`` (a write raises ReadOnlyError), on a replica that has
        replayed the tenant's last commit when ``replica_urls`` names one, else on the primary.
        """
        self._say_schema_notice()
        return TenantUnitOfWork(
            self,
            self._pool,
            organization_id,
            actor_id=actor,
            read_only=read_only,
            router=self._router,
        )

    async def run_in_tenant(
        self,
        organization_id: uuid.UUID,
        work: Callable[[TenantUnitOfWork], Awaitable[T]],
        *,
        actor: uuid.UUID | None = None,
        attempts: int = TRANSACTION_ATTEMPTS,
    ) -> T:
        """Run ``work`` in a new tenant unit of work and commit it, retrying the whole unit of
        work when PostgreSQL reports a serialization failure or a deadlock (RetryableError), and
        when its connection failed before its COMMIT was sent (ConnectionFailedError: a
        failover, for up to 30 s while a standby is promoted).

        ``work`` must be safe to run again: it gets a fresh unit of work each time, and nothing
        of a failed attempt was committed. A connection lost after COMMIT was sent is raised:
        that commit may have happened.
        """
        attempt = failures = 0
        started = time.monotonic()
        while True:
            uow = self.tenant(organization_id, actor=actor)
            try:
                async with uow:
                    result = await work(uow)
                    await uow.commit()
                    return result
            except RetryableError:
                attempt += 1
                if attempt >= attempts:
                    raise
                await asyncio.sleep(TRANSACTION_CONFLICT.delay(attempt))
            except ConnectionFailedError:
                failures += 1
                if uow.commit_sent or time.monotonic() - started > FAILOVER_SECONDS:
                    raise
                await asyncio.sleep(FAILOVER.delay(failures))

    def platform(
        self, *, actor: uuid.UUID | None = None, read_only: bool = False
    ) -> PlatformUnitOfWork:
        """A unit of work for organizations (and cross-tenant user lookup for login);
        ``read_only`` as for ``tenant()``."""
        self._say_schema_notice()
        return PlatformUnitOfWork(
            self, self._pool, actor_id=actor, read_only=read_only, router=self._router
        )

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
            settings = LeadDBSettings()  # a bad variable: ConfigurationError, in one line
        if settings.telemetry and not telemetry.on:
            _instrument_globally()
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
            postgres_version, schema_revision = await _check_postgres(engine, settings)
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
        router = None
        if settings.replica_urls is not None:
            router = ReplicaRouter(
                [
                    Replica(masked_url(dsn), create_replica_pool(settings, roles, dsn))
                    for dsn in settings.replica_dsns()
                ],
                open_transport(settings),
                poll_seconds=settings.replica_poll_ms / 1000,
                retry_seconds=settings.replica_retry_seconds,
                position_sql=system.WAL_INSERT_POSITION.text,
                position_and_report_sql=system.WAL_POSITION_AND_REPORT.text,
            )
        info = ServerInfo(
            database_url=masked_url(settings.sqlalchemy_url().render_as_string(False)),
            postgres_version=postgres_version,
            redis_url=masked_url(settings.redis_url_value()),
            redis_version=redis_version,
            embedded=embedded_pg is not None or embedded_redis is not None,
        )
        db = cls(
            settings,
            engine,
            pool,
            redis,
            info,
            roles=roles,
            router=router,
            embedded=(embedded_pg, embedded_redis),
        )
        try:
            await db._check_app_role()
            await db._load_keys()
        except BaseException:
            await db.close()
            raise
        db.schema_notice = _schema_notice(schema_revision)
        db.pending.start()
        return db

    def _say_schema_notice(self) -> None:
        # Not at connect: `leaddb migrate`, the demo and a service's start-up connect to an
        # unmigrated database in order to migrate it, and should not be told to.
        if self.schema_notice is not None:
            logger.warning("%s", self.schema_notice)
            self.schema_notice = None

    async def _is_active_member(self, user: uuid.UUID, organization: uuid.UUID) -> bool:
        async with self.platform() as uow:
            connection = await uow.statement_connection()
            statement = system.ACTIVE_MEMBER
            member = await connection.fetchval(
                statement.text, *statement.args((user, organization))
            )
            return bool(member)

    @property
    def pool_size(self) -> int:
        """Connections open or being opened, idle or in use."""
        return self._pool.get_size()

    async def _check_context_key(self, signer: ContextSigner) -> None:
        """A key given in settings that the login cannot compare: the database judges it."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(f"SET LOCAL leaddb.platform = '{signer.platform}'")
            if not await connection.fetchval(system.PLATFORM_VERIFIED.text):
                raise ConfigurationError(
                    "LEADDB_TENANT_CONTEXT_KEY is not the database's tenant-context key"
                )

    async def _check_app_role(self) -> None:
        """Whether units of work assume the application role (RLS on, and migrated)."""
        if not self.settings.row_level_security:
            self.assumes_app_role = False
            return
        async with self._pool.acquire() as connection:
            exists = await connection.fetchval(system.ROLE_EXISTS.text, APP_ROLE)
        self.assumes_app_role = exists is not None

    async def _load_keys(self) -> None:
        """The tenant-context key and the cursor key, from settings or from the database.

        Read with the login's own rights, on a connection that never ran anyone's SQL: the
        application role itself cannot read the context key.
        """
        configured = self.settings.tenant_context_key
        context_key = None if configured is None else bytes.fromhex(configured.get_secret_value())
        present, stored_context, stored_cursor = await _stored_keys(self.engine)
        if context_key is None:
            context_key = stored_context
        elif stored_context is not None and stored_context != context_key:
            raise ConfigurationError(
                "LEADDB_TENANT_CONTEXT_KEY is not the database's tenant-context key: "
                "run `leaddb migrate` (or `await db.migrate()`) with it to install it"
            )
        # Before migration 0007 there is no key, and the policies still read plain contexts.
        if context_key is None and present and self.assumes_app_role:
            raise ConfigurationError(
                "this login cannot read leaddb's tenant-context key "
                "(leaddb_private.context_key): set LEADDB_TENANT_CONTEXT_KEY to it"
            )
        self.signer = None if context_key is None else ContextSigner(context_key)
        if self.signer is not None and present and stored_context is None:
            await self._check_context_key(self.signer)
        self.cursors = CursorCodec(_cursor_key(self.settings, stored_cursor))

    async def migrate(self, revision: str = "head") -> str | None:
        """Upgrade the schema (Alembic, from the installed package); returns the new revision."""
        try:
            reached = await migrations.upgrade(self.engine, revision)
        except (SQLAlchemyError, OSError) as error:
            raise ConnectionFailedError(f"migration failed: {_describe(error)}") from error
        configured = self.settings.tenant_context_key
        if configured is not None:
            await _install_context_key(self.engine, bytes.fromhex(configured.get_secret_value()))
        self.schema_notice = None
        # Connections opened before the role and policies existed must not outlive them.
        await self._pool.expire_connections()
        await self._check_app_role()
        await self._load_keys()
        self.pending.start()
        return reached

    async def close(self) -> None:
        """Close the pool and the Redis client. Embedded servers stop when the last process
        using them exits (leaddb.embedded), not here: a process may connect again."""
        if self._closed:
            return
        telemetry.unwatch(self)
        self._closed = True
        await self.pending.stop()
        await self._pool.close()
        if self._router is not None:
            await self._router.close()
        await self.engine.dispose()
        await self.cache.redis.close()
        await self.sessions.close()
        await close_client(self.redis)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _instrument_globally() -> None:
    try:
        switched_on = telemetry.instrument()
    except ImportError:
        raise ConfigurationError(
            "LEADDB_TELEMETRY needs OpenTelemetry: pip install 'leaddb[otel]'"
        ) from None
    if not switched_on:
        logger.info(
            "LEADDB_TELEMETRY is set but no OpenTelemetry tracer or meter provider is; "
            "telemetry stays off"
        )


def create_engine(settings: LeadDBSettings) -> AsyncEngine:
    """The SQLAlchemy engine (migrations, Alembic, introspection), configured from settings."""
    server_settings = {"application_name": "leaddb"}
    connect_args: dict[str, Any] = {"timeout": settings.connect_timeout_seconds}
    url = settings.sqlalchemy_url()
    if settings.transaction_pooler:
        # SQLAlchemy's asyncpg dialect prepares a statement of its own for each query: the
        # unnamed one, which the next replaces, so none stays on the server connection for
        # another client to meet (unique names, SQLAlchemy's recipe, each stayed there until
        # the server connection closed). With no statement cache asyncpg parses it again in the
        # message that runs it. No startup settings: PgBouncer refuses those it does not track.
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unnamed_statement
        url = url.update_query_dict({"prepared_statement_cache_size": "0"})
    elif settings.statement_timeout_seconds:
        server_settings["statement_timeout"] = str(int(settings.statement_timeout_seconds * 1000))
    connect_args["server_settings"] = server_settings
    # Migrations and introspection only: the data path has its own asyncpg pool, so this
    # engine keeps no idle connections.
    return create_async_engine(
        url,
        poolclass=NullPool,
        echo=settings.echo_sql,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args=connect_args,
    )


def _unnamed_statement() -> str:
    return ""


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
    pool = ConnectionPool(
        _connector(settings, roles, settings.asyncpg_dsn()),
        min_size=1,
        max_size=settings.pool_size + settings.max_overflow,
    )
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


def create_replica_pool(settings: LeadDBSettings, roles: SessionRoles, dsn: str) -> ConnectionPool:
    """A replica's pool: opens nothing until asked, so a replica down at start is only
    skipped (leaddb.connections.replicas)."""
    return ConnectionPool(
        _connector(settings, roles, dsn),
        min_size=0,
        max_size=settings.pool_size + settings.max_overflow,
    )


def _connector(
    settings: LeadDBSettings, roles: SessionRoles, dsn: str
) -> Callable[[], Awaitable[asyncpg.Connection[Record]]]:
    server_settings = {"application_name": "leaddb"}
    pooled = settings.transaction_pooler
    # Behind a transaction pooler these go into every BEGIN instead (leaddb.connections.pooler).
    if not pooled:
        # Temporary tables last: pg_temp is otherwise searched first, and a temporary table
        # named like one of leaddb's would take its place in leaddb's own statements.
        server_settings["search_path"] = SEARCH_PATH
        if settings.statement_timeout_seconds:
            timeout_ms = int(settings.statement_timeout_seconds * 1000)
            server_settings["statement_timeout"] = str(timeout_ms)
    options: dict[str, Any] = {"server_settings": server_settings}
    if pooled:
        options["statement_cache_size"] = 0

    async def connect() -> asyncpg.Connection[Record]:
        connection: asyncpg.Connection[Record] = await asyncpg.connect(
            dsn, timeout=settings.connect_timeout_seconds, **options
        )
        try:
            await _init_connection(connection)
            if settings.row_level_security and not pooled:
                await roles.assume(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    return connect


def _cursor_key(settings: LeadDBSettings, stored: bytes | None) -> bytes:
    """The key that signs pagination cursors: the configured secret, else the random one that
    migration 0007 keeps in the database (every process of a deployment reads the same), else
    (an unmigrated database) a random key of this process alone."""
    if settings.cursor_secret is not None:
        material = settings.cursor_secret.get_secret_value().encode()
    elif stored is not None:
        material = stored
    else:
        material = secrets.token_bytes(32)
    return hashlib.sha256(b"leaddb-cursor\x00" + material).digest()


async def _stored_keys(engine: AsyncEngine) -> tuple[bool, bytes | None, bytes | None]:
    """Whether the database keeps keys (migration 0007), and the context and cursor keys that
    this login may read (None where it may not)."""
    try:
        async with engine.connect() as connection:
            usage = (await connection.execute(system.private_schema_usage())).scalar_one_or_none()
            if not usage:
                return usage is not None, None, None
            may_context, may_cursor = (await connection.execute(system.key_privileges())).one()
            context_key = cursor_key = None
            if may_context:
                context_key = await connection.scalar(system.context_key())
            if may_cursor:
                cursor_key = await connection.scalar(system.cursor_key())
    except (SQLAlchemyError, OSError, TimeoutError) as error:
        raise ConnectionFailedError(f"cannot read leaddb's keys: {_describe(error)}") from None
    return (
        True,
        None if context_key is None else bytes(context_key),
        None if cursor_key is None else bytes(cursor_key),
    )


async def _install_context_key(engine: AsyncEngine, key: bytes) -> None:
    """Make ``key`` the database's tenant-context key (the schema's owner may)."""
    try:
        async with engine.begin() as connection:
            await connection.execute(system.install_context_key(key))
    except SQLAlchemyError as error:
        raise ConfigurationError(
            f"cannot install LEADDB_TENANT_CONTEXT_KEY: {_describe(error)} "
            "(run the migration as the schema's owner)"
        ) from None


def create_redis(settings: LeadDBSettings) -> AnyRedis:
    """The Redis client leaddb uses (one Redis, a Cluster or a Sentinel-managed primary, as
    ``LEADDB_REDIS_URL`` says): short timeouts, because the cache must never stall a call."""
    return create_client(
        parse_redis_url(settings.redis_url_value()),
        timeout=settings.redis_socket_timeout_seconds,
        retries=True,
        watch_primary=True,
    )


async def _check_postgres(
    engine: AsyncEngine, settings: LeadDBSettings
) -> tuple[str, SchemaRevision]:
    """The server's version, and the schema revision Alembic recorded."""
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text("SHOW server_version"))
            version = str(result.scalar_one())
            # Alembic's own table, read in the connection connect() opens anyway.
            present, readable = (await connection.execute(system.version_table())).one()
            if not present or not readable:
                return version, SchemaRevision(None, known=not present)
            revision = await connection.execute(system.schema_revision())
            return version, SchemaRevision(revision.scalar_one_or_none(), known=True)
    except (SQLAlchemyError, OSError, TimeoutError) as error:
        where = masked_url(settings.sqlalchemy_url().render_as_string(False))
        raise ConnectionFailedError(
            f"cannot connect to PostgreSQL at {where} (LEADDB_DATABASE_URL): {_describe(error)}"
        ) from None


@dataclass(frozen=True)
class SchemaRevision:
    """The revision Alembic recorded (None: never migrated), when this login may read it: a
    service that logs in with no more than the application role may not (``known`` False)."""

    revision: str | None
    known: bool


def _schema_notice(schema: SchemaRevision) -> str | None:
    """What to say when the schema is missing or behind (None: it is at the head, or this
    login cannot tell). Not an error: ``db.migrate()`` itself needs a connection to such a
    database; a statement that meets a missing table raises SchemaNotMigratedError."""
    head, revision = migrations.head_revision(), schema.revision
    if not schema.known or revision == head:
        return None
    state = "has no leaddb schema" if revision is None else f"is at revision {revision}, not {head}"
    return f"the database {state}: {MIGRATE_HINT}"


async def _check_redis(redis: AnyRedis, settings: LeadDBSettings) -> str | None:
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
