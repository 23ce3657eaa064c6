"""The Alembic migrations against real PostgreSQL, each test on scratch databases of its own:
upgrade / downgrade / upgrade, idempotence, no autogenerate drift, enum types that already exist
or gain a value, the offline SQL script of ``leaddb sql``, and the migrations inside the wheel."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import alembic_postgresql_enum  # noqa: F401  (as env.py: registers the enum comparators)
import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from conftest import asyncpg_dsn, run_settings
from sqlalchemy.engine import Connection, make_url
from typer.testing import CliRunner

from leaddb import LeadDB
from leaddb import migrate as migrations
from leaddb.cli import app
from leaddb.db import create_engine
from leaddb.errors import SchemaNotMigratedError
from leaddb.models import LeadSource, LeadStatus, metadata

from .test_schema import assert_same_schema, snapshot

if TYPE_CHECKING:
    from conftest import TestServers

REPOSITORY = Path(__file__).resolve().parents[2]
ENUMS: dict[str, list[str]] = {
    column.type.name: list(column.type.enums)
    for table in metadata.tables.values()
    for column in table.columns
    if isinstance(column.type, sa.Enum) and column.type.name is not None
}
"""Every enum type of the models and its labels."""
# The options of migrations/env.py's context.configure, which autogenerate runs with.
AUTOGENERATE_OPTIONS: dict[str, Any] = {
    "target_metadata": metadata,
    "compare_type": True,
    "compare_server_default": True,
    "include_schemas": False,
}
NewDatabase = Callable[[], Awaitable[str]]


@pytest.fixture
async def new_database(servers: TestServers) -> AsyncIterator[NewDatabase]:
    """Makes empty scratch databases (SQLAlchemy URLs), all dropped after the test."""
    names: list[str] = []

    async def create() -> str:
        name = f"leaddb_mig_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(asyncpg_dsn(servers.admin_url))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        names.append(name)
        return make_url(servers.admin_url).set(database=name).render_as_string(hide_password=False)

    yield create
    admin = await asyncpg.connect(asyncpg_dsn(servers.admin_url))
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _upgrade(
    url: str, servers: TestServers, revision: str = "head", *, down: bool = False
) -> str | None:
    """Upgrade (or with ``down``, downgrade) the database at ``url`` as LeadDB.migrate() does."""
    engine = create_engine(run_settings(url, servers.redis_url))
    try:
        return await (migrations.downgrade if down else migrations.upgrade)(engine, revision)
    finally:
        await engine.dispose()


async def _with_connection(url: str, servers: TestServers, job: Callable[[Connection], Any]) -> Any:
    """Run ``job`` on a synchronous SQLAlchemy connection inside one committed transaction."""
    engine = create_engine(run_settings(url, servers.redis_url))
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(job)
    finally:
        await engine.dispose()


async def _fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


async def _execute(url: str, script: str) -> None:
    """Run a whole SQL script (several statements, no parameters)."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(script)
    finally:
        await connection.close()


# --- upgrade, downgrade, idempotence, drift ----------------------------------------------------


async def test_upgrade_downgrade_upgrade_is_clean_and_leaves_nothing_behind(
    servers: TestServers, new_database: NewDatabase
) -> None:
    url = await new_database()
    head = migrations.head_revision()
    assert await _upgrade(url, servers) == head
    first = await snapshot(url)
    assert {row[0] for row in first["relations"] if row[1] == "r"} >= set(metadata.tables)

    assert await _upgrade(url, servers, "base", down=True) is None
    left = await snapshot(url)
    assert [row[0] for row in left["relations"]] == ["alembic_version"]
    assert left["enums"] == left["views"] == left["functions"] == left["policies"] == []
    assert left["alembic_version"] == []

    assert await _upgrade(url, servers) == head
    assert_same_schema(await snapshot(url), first)


async def test_upgrading_a_database_at_head_again_changes_nothing(
    servers: TestServers, new_database: NewDatabase
) -> None:
    url = await new_database()
    await _upgrade(url, servers)
    before = await snapshot(url)
    assert await _upgrade(url, servers) == migrations.head_revision()
    assert_same_schema(await snapshot(url), before)


async def test_autogenerate_finds_no_difference_between_models_and_migrated_database(
    servers: TestServers, new_database: NewDatabase
) -> None:
    url = await new_database()
    await _upgrade(url, servers)

    def diffs(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts=AUTOGENERATE_OPTIONS)
        return list(compare_metadata(context, metadata))

    def check_through_env_py(connection: Connection) -> None:
        config = migrations.alembic_config()
        config.attributes["connection"] = connection
        command.check(config)  # raises AutogenerateDiffsDetected on any difference

    assert await _with_connection(url, servers, diffs) == []
    await _with_connection(url, servers, check_through_env_py)

    # The comparison is not vacuous: it sees a missing index and an enum that gained a value.
    await _execute(url, "DROP INDEX ix_leads_tags; ALTER TYPE lead_source ADD VALUE 'partner'")
    found = await _with_connection(url, servers, diffs)
    kinds = {diff[0] if isinstance(diff, tuple) else type(diff).__name__ for diff in found}
    assert "add_index" in kinds, found
    assert "change_enum_variants" in kinds, found


# --- enum types --------------------------------------------------------------------------------


@pytest.mark.parametrize("precreated", [["lead_status"], sorted(ENUMS)], ids=["one", "all"])
async def test_enum_types_that_already_exist_do_not_stop_the_upgrade(
    servers: TestServers, new_database: NewDatabase, precreated: list[str]
) -> None:
    url = await new_database()
    by_name = {name: ENUMS[name] for name in precreated}
    statements = "; ".join(
        f"CREATE TYPE {name} AS ENUM ({', '.join(repr(v) for v in values)})"
        for name, values in by_name.items()
    )
    await _execute(url, statements)
    assert await _upgrade(url, servers) == migrations.head_revision()
    rows = await _fetch(url, "SELECT enum_range(NULL::lead_status)::text[] AS labels")
    assert rows[0]["labels"] == [status.value for status in LeadStatus]


async def test_a_later_revision_adds_enum_values_that_are_usable_at_once(
    servers: TestServers, new_database: NewDatabase, tmp_path: Path
) -> None:
    url = await new_database()
    head = migrations.head_revision()
    await _upgrade(url, servers)
    org = uuid.uuid4()
    await _fetch(url, "INSERT INTO organizations (id, name, slug) VALUES ($1, 'Acme', 'acme')", org)
    await _fetch(
        url,
        "INSERT INTO leads (organization_id, id, email, source) "
        "VALUES ($1, leaddb_uuid7(), 'old@example.com', 'web')",
        org,
    )
    # A copy of the shipped migrations plus one revision, as a service's next release would add.
    scripts = tmp_path / "migrations"
    shutil.copytree(migrations.migrations_dir(), scripts, ignore=shutil.ignore_patterns("__py*"))
    sources = [source.value for source in LeadSource]
    (scripts / "versions" / "20991231_9001_partner_source.py").write_text(
        textwrap.dedent(
            f"""\
            from alembic import op
            from alembic_postgresql_enum import TableReference

            revision, down_revision, branch_labels, depends_on = "9001", {head!r}, None, None
            SOURCE = [TableReference(table_schema="public", table_name="leads",
                                     column_name="source",
                                     existing_server_default="'other'::lead_source")]

            def upgrade():
                # What alembic-postgresql-enum's autogenerate writes (it rebuilds the type) ...
                op.sync_enum_values(enum_schema="public", enum_name="lead_source",
                                    new_values={[*sources, "partner"]!r}, affected_columns=SOURCE)
                # ... and ADD VALUE, for a type a view reads (leads.status: lead_pipeline).
                op.execute("ALTER TYPE lead_status ADD VALUE IF NOT EXISTS 'nurturing' "
                           "AFTER 'qualified'")

            def downgrade():
                op.sync_enum_values(enum_schema="public", enum_name="lead_source",
                                    new_values={sources!r}, affected_columns=SOURCE)
            """
        )
    )
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("path_separator", "os")

    def run(action: Callable[[Config, str], None], revision: str) -> Callable[[Connection], None]:
        def job(connection: Connection) -> None:
            config.attributes["connection"] = connection
            action(config, revision)

        return job

    await _with_connection(url, servers, run(command.upgrade, "head"))
    await _with_connection(url, servers, run(command.upgrade, "head"))  # again: a no-op
    await _fetch(
        url,
        "INSERT INTO leads (organization_id, id, email, source, status) "
        "VALUES ($1, leaddb_uuid7(), 'new@example.com', 'partner', 'nurturing')",
        org,
    )
    rows = await _fetch(
        url,
        "SELECT email, source::text, status::text, "
        "enum_range(NULL::lead_status)::text[] AS statuses, "
        "(SELECT count(*) FROM lead_pipeline WHERE status = 'nurturing') AS in_view, "
        "(SELECT version_num FROM alembic_version) AS revision FROM leads ORDER BY email",
    )
    assert [(r["email"], r["source"], r["status"]) for r in rows] == [
        ("new@example.com", "partner", "nurturing"),
        ("old@example.com", "web", "new"),
    ]
    assert rows[0]["statuses"][3] == "nurturing"
    assert (rows[0]["in_view"], rows[0]["revision"]) == (1, "9001")

    # Back down: the rebuilt type loses the value again (once no row uses it).
    await _fetch(url, "DELETE FROM leads WHERE source = 'partner'")
    await _with_connection(url, servers, run(command.downgrade, str(head)))
    labels = await _fetch(url, "SELECT enum_range(NULL::lead_source)::text[] AS labels")
    assert labels[0]["labels"] == sources


# --- leaddb sql --------------------------------------------------------------------------------


async def _run_script_with_psql(url: str, script: str) -> None:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed")
    process = await asyncio.create_subprocess_exec(
        psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", asyncpg_dsn(url), "-f", "-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, errors = await process.communicate(script.encode())
    assert process.returncode == 0, errors.decode()


@pytest.mark.parametrize("runner", ["asyncpg", "psql"])
async def test_leaddb_sql_script_builds_the_schema_the_online_migrations_build(
    servers: TestServers, new_database: NewDatabase, runner: str
) -> None:
    result = CliRunner().invoke(app, ["sql"])
    assert result.exit_code == 0, result.output
    script = result.stdout
    assert script.startswith("BEGIN;")
    assert script.rstrip().endswith("COMMIT;")
    assert "DO $$ BEGIN CREATE TYPE lead_status AS ENUM" in script
    assert "CREATE OR REPLACE FUNCTION leaddb_uuid7()" in script

    offline, online = await new_database(), await new_database()
    if runner == "psql":
        await _run_script_with_psql(offline, script)
    else:
        await _execute(offline, script)
    await _upgrade(online, servers)
    assert_same_schema(await snapshot(offline), await snapshot(online))
    # The script left the database at head, so online migrations take over from there.
    assert await _upgrade(offline, servers) == migrations.head_revision()


def test_leaddb_sql_names_an_unknown_revision_in_one_line() -> None:
    result = CliRunner().invoke(app, ["sql", "--revision", "nope"])
    assert result.exit_code == 2
    assert "nope" in result.stderr


# --- the wheel ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """leaddb's wheel, built from this checkout once for the module."""
    out = tmp_path_factory.mktemp("wheel")
    # With hatchling at hand the build needs no network; otherwise pip fetches it.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    build = subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(out), *isolation],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    return next(out.glob("leaddb-*.whl"))


def test_wheel_ships_the_alembic_environment_and_every_revision(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"leaddb/_migrations/env.py", "leaddb/_migrations/script.py.mako"} <= names
    revisions = {path.name for path in (REPOSITORY / "migrations" / "versions").glob("*.py")}
    assert revisions
    assert {f"leaddb/_migrations/versions/{name}" for name in revisions} <= names
    assert {"leaddb/py.typed", "leaddb/erd.py", "leaddb/migrate.py"} <= names


async def test_installed_wheel_migrates_from_its_own_migrations(
    servers: TestServers, new_database: NewDatabase, wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    install = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
        str(wheel), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await install.communicate()
    assert install.returncode == 0, output.decode()
    url = await new_database()
    program = textwrap.dedent(
        f"""\
        import asyncio, leaddb
        from leaddb import LeadDB, LeadDBSettings
        from leaddb.migrate import migrations_dir
        print(leaddb.__file__)
        print(migrations_dir())
        async def main():
            settings = LeadDBSettings.model_validate(
                {{"database_url": {url!r}, "redis_url": {servers.redis_url!r}}})
            async with await LeadDB.connect(settings) as db:
                print(await db.migrate())
        asyncio.run(main())
        """
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEADDB_")}
    env.update(PYTHONPATH=str(site), LEADDB_REDIS_URL=servers.redis_url)
    for argv in (["-c", program], ["-m", "leaddb.cli", "migrate", "--database-url", url]):
        process = await asyncio.create_subprocess_exec(
            sys.executable, *argv, cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        lines = stdout.decode().splitlines()
        if argv[0] == "-c":
            assert lines[0] == str(site / "leaddb" / "__init__.py")
            assert lines[1] == str(site / "leaddb" / "_migrations")
            assert lines[2] == migrations.head_revision()
        else:
            # rich may wrap the line: compare with the whitespace collapsed.
            said = " ".join(stdout.decode().split())
            assert said.endswith(f"is at revision {migrations.head_revision()}")
    rows = await _fetch(url, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'")
    assert rows[0]["n"] == len(metadata.tables) + 1


async def test_an_unmigrated_database_connects_warns_and_its_first_use_says_to_migrate(
    new_database: NewDatabase, servers: TestServers, caplog: pytest.LogCaptureFixture
) -> None:
    url = await new_database()
    settings = run_settings(url, servers.redis_url)
    db = await LeadDB.connect(settings)  # db.migrate() needs this connection: no refusal
    try:
        assert db.schema_notice is not None
        with caplog.at_level(logging.WARNING, logger="leaddb"):
            async with db.platform() as uow:  # the first unit of work says it, once
                with pytest.raises(SchemaNotMigratedError) as missing:
                    await uow.organizations.get_by_slug("acme")
            async with db.platform():
                pass
        assert caplog.text.count("has no leaddb schema") == 1
        assert "`leaddb migrate` (or `await db.migrate()`)" in caplog.text
        message = str(missing.value)
        assert 'relation "organizations" does not exist' in message
        assert "schema is missing or older" in message
        assert "`leaddb migrate` (or `await db.migrate()`)" in message
        # Behind: a database at an older revision is named with both revisions.
        await db.migrate("0001")
        async with await LeadDB.connect(settings) as behind:
            assert behind.schema_notice == (
                f"the database is at revision 0001, not {migrations.head_revision()}: "
                "`leaddb migrate` (or `await db.migrate()`) brings it to the newest revision"
            )
            # Connecting in order to migrate says nothing.
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="leaddb"):
                await behind.migrate()
                async with behind.platform() as uow:
                    assert await uow.organizations.get_by_slug("acme") is None
            assert caplog.text == ""
        async with await LeadDB.connect(settings) as migrated:
            assert migrated.schema_notice is None
    finally:
        await db.close()


async def test_leaddb_migrate_works_without_the_cli_extra(
    new_database: NewDatabase, servers: TestServers, tmp_path: Path
) -> None:
    # A deploy step: a service installs plain leaddb, without typer, rich and faker.
    url = await new_database()
    program = textwrap.dedent(
        f"""\
        import sys
        sys.modules.update(typer=None, rich=None, faker=None)  # as if not installed
        sys.argv = ["leaddb", "migrate", "--database-url", {url!r}]
        from leaddb.__main__ import main
        main()
        """
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEADDB_")}
    env.update(PYTHONPATH=str(REPOSITORY), LEADDB_REDIS_URL=servers.redis_url)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", program, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip().endswith(f"is at revision {migrations.head_revision()}")
    assert "typer" not in stderr.decode()


async def test_a_login_that_cannot_read_the_version_table_connects_without_a_notice(
    new_database: NewDatabase, servers: TestServers
) -> None:
    url = await new_database()
    await _upgrade(url, servers)
    role = f"leaddb_t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(asyncpg_dsn(url))
    try:
        # No grant on alembic_version: a service logging in with a role of its own.
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        login = make_url(url).set(username=role, password=None)
        settings = run_settings(
            login.render_as_string(hide_password=False),
            servers.redis_url,
            row_level_security=False,
        )
        async with await LeadDB.connect(settings) as db:
            assert db.schema_notice is None
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
