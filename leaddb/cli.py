"""The ``leaddb`` command: migrate, demo, seed, the embedded servers, and the schema tools.

Only typer is imported with this module, so ``leaddb --help`` starts at once: each command
imports what it needs (SQLAlchemy, asyncpg, the models, Faker) when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leaddb.cli_support import (
    DatabaseUrl,
    RedisUrl,
    Settings,
    console,
    fail,
    load_settings,
    run,
)
from leaddb.seed import register as register_seed

# The helpers every command shares are leaddb.cli_support's (`leaddb seed` uses them too); they
# stay importable from here.
__all__ = [
    "DatabaseUrl",
    "RedisUrl",
    "Settings",
    "app",
    "console",
    "fail",
    "load_settings",
    "main",
    "run",
]

app = typer.Typer(
    help="leaddb: the typed async data layer for multi-tenant lead management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
register_seed(app)


@app.command()
def migrate(
    database_url: DatabaseUrl = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database schema to the newest revision."""
    from leaddb.db import LeadDB

    loaded = load_settings(database_url, None)

    async def job() -> None:
        async with await LeadDB.connect(loaded.settings) as db:
            reached = await db.migrate(revision)
            console().print(f"database {db.info.database_url} is at revision {reached}")

    run(job, loaded)


@app.command()
def demo(database_url: DatabaseUrl = None, redis_url: RedisUrl = None) -> None:
    """Connect (embedded servers by default), migrate, and show what leaddb does."""
    from leaddb.demo import run_demo

    loaded = load_settings(database_url, redis_url)
    run(lambda: run_demo(loaded.settings, console()), loaded)


servers = typer.Typer(
    help="The embedded PostgreSQL and Redis: they stop when the last process using them exits; "
    "these show and stop any left running (a process killed outright leaves them).",
    no_args_is_help=True,
)
app.add_typer(servers, name="servers")

DataDir = Annotated[
    Path | None,
    typer.Option(help="Their data directory (default: LEADDB_EMBEDDED_DATA_DIR, else ~/.leaddb)."),
]


def _data_dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return data_dir.expanduser().absolute()
    return load_settings(None, None).settings.embedded_data_dir.expanduser().absolute()


@servers.command("status")
def servers_status(data_dir: DataDir = None) -> None:
    """Which embedded servers run in the data directory, and whether a process uses them."""
    from leaddb.embedded import in_use, status

    root = _data_dir(data_dir)
    out = console()
    out.print(f"data directory: {root}", highlight=False, soft_wrap=True)
    for state in status(root):
        running = f"running, pid {state.pid}" if state.pid else "stopped"
        out.print(f"{state.name}: {running} ({state.location})", highlight=False, soft_wrap=True)
    used = in_use(root)
    left = not used and any(state.pid for state in status(root))
    hint = " (left running: `leaddb servers stop` stops them)" if left else ""
    out.print(f"in use by a running process: {'yes' if used else 'no'}{hint}", highlight=False)


@servers.command("stop")
def servers_stop(data_dir: DataDir = None) -> None:
    """Stop the embedded servers of the data directory (refused while a process uses them)."""
    from leaddb.embedded import stop_unused

    root = _data_dir(data_dir)
    stopped = stop_unused(root)
    if stopped is None:
        fail(f"the embedded servers in {root} are in use by a running process: end it first")
    if not stopped:
        console().print(f"no embedded server was running in {root}", highlight=False)
    for state in stopped:
        console().print(f"stopped {state.name} (pid {state.pid})", highlight=False)


@app.command()
def sql(
    revision: Annotated[str, typer.Option(help="Last revision to include.")] = "head",
    citus: Annotated[
        bool, typer.Option(help="Add the Citus statements that distribute the tenant tables.")
    ] = False,
) -> None:
    """Print the schema's DDL as a plain SQL script (Alembic offline mode), for psql or review.

    The script creates everything `leaddb migrate` would on an empty database, including the
    alembic_version table, so the database can be migrated online afterwards.
    """
    from alembic.util import CommandError

    from leaddb.migrate import offline_sql

    try:
        offline_sql(revision)
    except CommandError as error:
        fail(str(error))
    if citus:
        from sqlmodel import SQLModel

        import leaddb.models  # noqa: F401  (registers every table in the metadata)
        from leaddb.citus import citus_script

        typer.echo(citus_script(SQLModel.metadata))


@app.command()
def erd(
    markdown: Annotated[
        bool, typer.Option(help="The whole docs/schema.md instead of the bare diagram.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of standard output.")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="With --output: fail if the file differs, write nothing.")
    ] = False,
) -> None:
    """Print the Mermaid ER diagram generated from the models (or the schema documentation)."""
    from leaddb.erd import REGENERATE_COMMAND, mermaid_erd, schema_markdown
    from leaddb.models import metadata, views_metadata

    text = schema_markdown(metadata, views_metadata) if markdown else mermaid_erd(metadata)
    if output is None:
        if check:
            fail("--check needs --output")
        typer.echo(text, nl=False)
        return
    if check:
        current = output.read_text(encoding="utf-8") if output.is_file() else None
        if current != text:
            fail(f"{output} is out of date; regenerate it with `{REGENERATE_COMMAND}`")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")


def main() -> None:
    """Entry point of the ``leaddb`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
