"""Running the Alembic migrations that ship inside the package."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

# Any constant will do; it only has to be the same for every process that migrates.
_MIGRATION_LOCK_KEY = 0x1EAD_DB


def migrations_dir() -> Path:
    """The Alembic script directory: inside the wheel, or at the top of a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("leaddb's migrations are missing from this installation")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for leaddb's migrations, with no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest revision the installed migrations know."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str | None:
    """Upgrade the database to ``revision``; returns the revision it is at afterwards.

    An advisory lock serialises concurrent callers (several service replicas starting at once),
    so each later caller finds the work done instead of failing on "already exists".
    """
    async with engine.begin() as connection:
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
        )
        return await connection.run_sync(_run, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> str | None:
    """Downgrade the database to ``revision`` (``base`` drops everything leaddb created)."""
    async with engine.begin() as connection:
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
        )
        return await connection.run_sync(_run, "downgrade", revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


def _run(connection: Connection, direction: str, revision: str) -> str | None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if direction == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)
    return _current(connection)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def offline_sql(revision: str = "head") -> None:
    """Print the DDL of every migration up to ``revision`` as a plain SQL script (to stdout)."""
    config = alembic_config("postgresql+asyncpg://offline/leaddb")
    command.upgrade(config, revision, sql=True)
