"""Connecting, migrating and the embedded servers, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from pydantic import SecretStr

from leaddb import LeadDB, LeadDBSettings
from leaddb import migrate as migrations
from leaddb.errors import ConnectionFailedError


async def test_connect_reports_both_servers(db: LeadDB) -> None:
    assert int(db.info.postgres_version.split(".")[0]) >= 15
    assert db.info.redis_version is not None
    assert await db.redis.ping()


async def test_migrate_twice_is_a_no_op_at_head(db: LeadDB) -> None:
    head = migrations.head_revision()
    assert head is not None
    assert await db.migrate() == head
    assert await db.migrate() == head
    assert await migrations.current_revision(db.engine) == head


async def test_concurrent_migrations_serialise_on_the_lock(db: LeadDB) -> None:
    results = await asyncio.gather(*(db.migrate() for _ in range(3)))
    assert set(results) == {migrations.head_revision()}


async def test_unreachable_database_is_one_clear_error() -> None:
    settings = LeadDBSettings.model_validate(
        {
            "database_url": "postgresql://app:hunter2@127.0.0.1:1/leads",
            "redis_url": "redis://127.0.0.1:1/0",
        }
    )
    with pytest.raises(ConnectionFailedError) as caught:
        await LeadDB.connect(settings)
    message = str(caught.value)
    assert "LEADDB_DATABASE_URL" in message
    assert "hunter2" not in message
    assert "\n" not in message


async def test_unknown_database_is_one_clear_error(settings: LeadDBSettings) -> None:
    assert settings.database_url is not None
    url = settings.sqlalchemy_url().set(database="no_such_database_here")
    broken = settings.model_copy(
        update={"database_url": SecretStr(url.render_as_string(hide_password=False))}
    )
    with pytest.raises(ConnectionFailedError, match="no_such_database_here"):
        await LeadDB.connect(broken)


async def test_unreachable_redis_does_not_stop_connect(
    settings: LeadDBSettings, caplog: pytest.LogCaptureFixture
) -> None:
    no_redis = settings.model_copy(update={"redis_url": SecretStr("redis://127.0.0.1:1/0")})
    async with await LeadDB.connect(no_redis) as db:
        assert db.info.redis_version is None
    assert "LEADDB_REDIS_URL" in caplog.text


async def test_embedded_servers_start_when_no_url_is_set_and_are_reused() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="ldbe", dir="/tmp"))
    settings = LeadDBSettings.model_validate({"embedded_data_dir": data_dir})
    try:
        async with await LeadDB.connect(settings) as first:
            assert first.info.embedded
            await first.migrate()
            first_pid = (data_dir / "pg" / "postmaster.pid").read_text().split()[0]
        async with await LeadDB.connect(settings) as second:
            # The same PostgreSQL, already migrated: the second start reuses the first.
            assert (data_dir / "pg" / "postmaster.pid").read_text().split()[0] == first_pid
            assert await migrations.current_revision(second.engine) == migrations.head_revision()
    finally:
        postgres, redis = first._embedded
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
