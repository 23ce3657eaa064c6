"""Configuration: ``LeadDBSettings`` reads ``LEADDB_*`` environment variables and ``.env``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from leaddb.errors import ConfigurationError

ENV_PREFIX = "LEADDB_"

_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}
_REDIS_SCHEMES = {"redis", "rediss", "unix", "redis+cluster", "redis+sentinel"}


def _env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _default_data_dir() -> Path:
    # Unix socket paths are limited to ~107 bytes, and pgserver puts its socket in the data
    # directory, so the default stays short.
    return Path.home() / ".leaddb"


class LeadDBSettings(BaseSettings):
    """Every setting of leaddb. Each field is read from ``LEADDB_<NAME>`` (or a ``.env`` file).

    URLs are secrets: their passwords never appear in a repr, a log line or an error message.
    A bad value raises ``ConfigurationError`` with one line naming the variable, however the
    settings are made (``LeadDBSettings()``, ``from_env``, ``model_validate``); pydantic's
    ``ValidationError``, with every detail, is its ``__cause__``.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql:// URL; unset starts the embedded PostgreSQL (extra 'embedded').",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://, rediss:// or unix:// URL of one Redis, "
        "redis+cluster://host:port,host:port of a Redis Cluster, or "
        "redis+sentinel://host:port,host:port/<service>/<db> of a Sentinel-managed primary; "
        "unset starts the embedded Redis.",
    )
    pool_size: Annotated[int, Field(ge=1, le=1000)] = 10
    max_overflow: Annotated[int, Field(ge=0, le=1000)] = 10
    pool_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    statement_timeout_seconds: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0
    cache_enabled: bool = True
    cache_ttl_seconds: Annotated[int, Field(ge=1, le=30 * 86_400)] = 300
    redis_socket_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 0.25
    redis_client: Literal["lean", "redis-py"] = Field(
        default="lean",
        description="The Redis client of the cache and the sessions: lean (LeanRedis, one "
        "pipelined connection to a single Redis, the fastest) or redis-py (its asyncio client). "
        "A redis+cluster:// or redis+sentinel:// URL always uses redis-py.",
    )
    session_idle_ttl_seconds: Annotated[int, Field(ge=1, le=365 * 86_400)] = 7 * 86_400
    session_absolute_ttl_seconds: Annotated[int, Field(ge=1, le=365 * 86_400)] = 30 * 86_400
    session_max_per_user: Annotated[int, Field(ge=1, le=10_000)] = 20
    embedded_data_dir: Path = Field(default_factory=_default_data_dir)
    credentials_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s), comma-separated (newest first), for integration credentials.",
    )
    max_json_bytes: Annotated[int, Field(ge=256, le=64 * 1024 * 1024)] = 256 * 1024
    max_json_depth: Annotated[int, Field(ge=2, le=200)] = 32
    max_page_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    row_level_security: bool = Field(
        default=True,
        description="Pooled connections assume the leaddb_app role, so PostgreSQL's row-level "
        "security policies hold even for a superuser or owner login.",
    )
    cursor_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs pagination cursors; unset: the random key that migration "
        "0007 keeps in the database.",
    )
    tenant_context_key: SecretStr | None = Field(
        default=None,
        description="The database's tenant-context key, in hex (`leaddb_private.context_key`). "
        "Unset: read from the database at connect, which only a login that may read it (the "
        "schema's owner) can; a plain login is given it here.",
    )
    pending_poll_seconds: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description="How often each process applies the durable list of session revocations "
        "and cache invalidations that Redis missed (0: only after this process saw Redis "
        "fail). Bounds how long another process's lost invalidation can go unapplied.",
    )
    replica_urls: SecretStr | None = Field(
        default=None,
        description="Comma-separated postgresql:// URLs of streaming replicas: read-only units "
        "of work run there once the replica has replayed their tenant's last commit.",
    )
    replica_poll_ms: Annotated[int, Field(ge=1, le=60_000)] = Field(
        default=100,
        description="At most how often a replica is asked how far it has replayed (off the "
        "read path: routing never waits for the answer).",
    )
    replica_retry_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    transaction_pooler: bool = Field(
        default=False,
        description="True when database_url points at a transaction pooler (PgBouncer or pgcat "
        "in pool_mode=transaction): no statement cache, no startup settings, the role, "
        "search_path and timeout set in every transaction (leaddb.connections.pooler).",
    )
    echo_sql: bool = False
    telemetry: bool = Field(
        default=False,
        description="OpenTelemetry spans and metrics (extra 'otel') through the global tracer and "
        "meter providers, which must be set before connecting; off, it costs nothing.",
    )
    bulk_pauses_gc: bool = Field(
        default=False,
        description="Opt-in: create_many of 200 rows or more holds back Python's cyclic garbage "
        "collector, which is the whole process's, while it runs (leaddb.repositories.collector). "
        "Off by default: a library changes nothing process-wide unless asked.",
    )

    if not TYPE_CHECKING:  # type checkers keep the signature pydantic derives from the fields

        def __init__(self, **values: Any) -> None:
            # Settings are built in a service's own start-up code (`LeadDBSettings()`), usually from
            # the environment: a typo there is a configuration problem, reported as leaddb's own
            # error in one line rather than as a multi-line validation traceback. pydantic runs a
            # model's own __init__ for model_validate too, and lets an error that is not a
            # ValueError through as it is, so every way of making settings ends here.
            try:
                super().__init__(**values)
            except ValidationError as error:
                raise ConfigurationError(settings_error_line(error)) from error

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        url = _parse_url(value.get_secret_value(), "database_url")
        if url.drivername not in _POSTGRES_SCHEMES:
            raise ValueError(
                f"{_env_name('database_url')} must be a postgresql:// URL, not {url.drivername}://"
            )
        if not url.database:
            raise ValueError(f"{_env_name('database_url')} names no database")
        return value

    @field_validator("replica_urls")
    @classmethod
    def _check_replica_urls(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        for raw in value.get_secret_value().split(","):
            url = _parse_url(raw, "replica_urls")
            if url.drivername not in _POSTGRES_SCHEMES or not url.database:
                raise ValueError(
                    f"{_env_name('replica_urls')} must list postgresql:// URLs naming a database"
                )
        return value

    def replica_dsns(self) -> list[str]:
        """Each replica's URL for asyncpg (password included)."""
        if self.replica_urls is None:
            return []
        return [
            _asyncpg_dsn(_parse_url(raw, "replica_urls"))
            for raw in self.replica_urls.get_secret_value().split(",")
        ]

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        scheme = value.get_secret_value().split("://", 1)[0].lower()
        if "://" not in value.get_secret_value() or scheme not in _REDIS_SCHEMES:
            raise ValueError(
                f"{_env_name('redis_url')} must be a redis://, rediss://, unix://, "
                f"redis+cluster:// or redis+sentinel:// URL, not {scheme!r}"
            )
        # Checked here, so a malformed node list or service fails at startup with its reason.
        parse_redis_url(value.get_secret_value())
        return value

    @field_validator("tenant_context_key")
    @classmethod
    def _check_context_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            key = bytes.fromhex(value.get_secret_value().strip())
        except ValueError:
            raise ValueError(f"{_env_name('tenant_context_key')} must be hex") from None
        if not 16 <= len(key) <= 64:
            raise ValueError(f"{_env_name('tenant_context_key')} must be 16 to 64 bytes")
        return SecretStr(key.hex())

    @field_validator("embedded_data_dir")
    @classmethod
    def _check_data_dir(cls, value: Path) -> Path:
        value = value.expanduser()
        # pgserver's socket is <dir>/.s.PGSQL.5432; sun_path holds 107 bytes.
        if len(str(value.absolute())) > 80:
            raise ValueError(
                f"{_env_name('embedded_data_dir')} is too long for a unix socket path "
                "(keep it under 80 characters)"
            )
        return value

    @classmethod
    def from_env(cls, env_file: Path | str | None = ".env") -> LeadDBSettings:
        """Read the environment and ``env_file`` (None: the environment alone)."""
        options: dict[str, Any] = {"_env_file": env_file}
        return cls(**options)

    def sqlalchemy_url(self) -> URL:
        """The database URL with the asyncpg driver, for SQLAlchemy (password included)."""
        if self.database_url is None:
            raise ValueError("database_url is not set")
        url = _parse_url(self.database_url.get_secret_value(), "database_url")
        return url.set(drivername="postgresql+asyncpg")

    def asyncpg_dsn(self) -> str:
        """The database URL for asyncpg (password included), several hosts as ``h1:p1,h2:p2``:
        asyncpg reads a port per host only in that form."""
        return _asyncpg_dsn(self.sqlalchemy_url())

    def redis_url_value(self) -> str:
        """The Redis URL as a plain string, for redis-py."""
        if self.redis_url is None:
            raise ValueError("redis_url is not set")
        return self.redis_url.get_secret_value()


def settings_error_line(error: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """A settings ``ValidationError`` in one line, each problem naming where the value came
    from: ``LEADDB_<NAME>``, or what ``names`` maps the field to (``--database-url``)."""
    problems = []
    for item in error.errors():
        field = "_".join(str(part) for part in item["loc"])
        env_name = _env_name(field)
        name = (names or {}).get(field, env_name)
        message = str(item["msg"]).removeprefix("Value error, ")
        if message.startswith(env_name):
            problems.append(name + message.removeprefix(env_name))
        else:
            problems.append(f"{name}: {message}")
    return "; ".join(problems)


def _parse_url(raw: str, field: str) -> URL:
    raw = _hosts_as_query(raw.strip())
    try:
        return make_url(raw)
    except ArgumentError:
        raise ValueError(f"{_env_name(field)} is not a valid URL") from None


def asyncpg_dsn(url: str) -> str:
    """A database URL (SQLAlchemy's or libpq's form, several hosts included) as asyncpg takes
    it, password included."""
    return _asyncpg_dsn(_parse_url(url, "database_url"))


def _asyncpg_dsn(url: URL) -> str:
    url = url.set(drivername="postgresql")
    hosts = url.query.get("host")
    if not isinstance(hosts, tuple) or len(hosts) < 2:
        return url.render_as_string(hide_password=False)
    parts = urlsplit(url.difference_update_query(["host"]).render_as_string(hide_password=False))
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{','.join(hosts)}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _hosts_as_query(raw: str) -> str:
    """``postgresql://u@h1:p1,h2:p2/db?...`` (libpq's and asyncpg's multi-host form, which
    SQLAlchemy's URL parser refuses) as ``postgresql://u@/db?host=h1:p1&host=h2:p2&...``
    (SQLAlchemy's, which asyncpg takes too)."""
    parts = urlsplit(raw)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return raw
    query = "&".join(f"host={host}" for host in hosts.split(",") if host)
    if parts.query:
        query += "&" + parts.query
    return urlunsplit((parts.scheme, f"{userinfo}{at}", parts.path, query, parts.fragment))


def masked_url(raw: str) -> str:
    """A URL with its password replaced, safe to print."""
    scheme, found, rest = raw.partition("://")
    if found and scheme.lower() in ("redis+cluster", "redis+sentinel"):
        # Its host:port list is what a reader needs to see, as written; only the password goes.
        auth, at, hosts = rest.rpartition("@")
        if not at:
            return raw
        user, has_password, _password = auth.partition(":")
        return f"{scheme}://{user}{':***' if has_password else ''}@{hosts}"
    try:
        return make_url(_hosts_as_query(raw)).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


RedisKind = Literal["single", "cluster", "sentinel"]


@dataclass(frozen=True)
class RedisTopology:
    """What a ``LEADDB_REDIS_URL`` names."""

    kind: RedisKind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_redis_url(url: str) -> RedisTopology:
    """The topology of a Redis URL; ``ValueError`` says what is wrong with a malformed one."""
    scheme, _, _rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in ("redis+cluster", "redis+sentinel"):
        return RedisTopology("single", url)
    split = urlsplit(url)
    auth, _, hosts = split.netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if auth:
        user, has_password, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    nodes = tuple(_node(part, scheme) for part in hosts.split(",") if part.strip())
    if not nodes:
        raise ValueError(f"a {scheme}:// URL names no host:port")
    if scheme == "redis+cluster":
        if split.path.strip("/"):
            raise ValueError("a redis+cluster:// URL takes no path: a Redis Cluster has db 0 only")
        return RedisTopology("cluster", url, nodes, username=username, password=password)
    parts = [part for part in split.path.split("/") if part]
    if len(parts) not in (1, 2):
        raise ValueError("a redis+sentinel:// URL ends in /<service> or /<service>/<db>")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"the db of a redis+sentinel:// URL is a number, not {parts[1]!r}")
        db = int(parts[1])
    return RedisTopology(
        "sentinel", url, nodes, unquote(parts[0]), db, username=username, password=password
    )


def _node(part: str, scheme: str) -> tuple[str, int]:
    host, _, port = part.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{part!r} in a {scheme}:// URL is not host:port")
    return host.strip("[]"), int(port)
