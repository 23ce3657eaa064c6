"""Alembic environment for leaddb.

Three ways in: ``leaddb migrate`` / ``LeadDB.migrate()`` hand over a live connection (inside the
caller's event loop and advisory lock); the ``alembic`` command line gets its URL from
``LEADDB_DATABASE_URL``; ``leaddb sql`` runs offline and prints the DDL.
"""

from __future__ import annotations

import asyncio

import alembic_postgresql_enum  # noqa: F401  (registers enum-aware autogenerate and operations)
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from leaddb.models import metadata
from leaddb.settings import LeadDBSettings

config = context.config
target_metadata = metadata


def _url() -> str:
    configured = config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    return LeadDBSettings().sqlalchemy_url().render_as_string(hide_password=False)


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        include_schemas=False,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(_url())
    async with engine.begin() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
