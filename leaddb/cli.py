"""The ``leaddb`` command: migrate, demo, and the schema tools (``sql``, ``erd``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console

from leaddb.db import LeadDB
from leaddb.errors import LeadDBError
from leaddb.seed import register as register_seed
from leaddb.settings import LeadDBSettings, settings_problems

app = typer.Typer(
    help="leaddb: the typed async data layer for multi-tenant lead management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
register_seed(app)
console = Console()
error_console = Console(stderr=True)

T = TypeVar("T")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="PostgreSQL URL (default: LEADDB_DATABASE_URL, else the embedded server)."),
]
RedisUrl = Annotated[
    str | None,
    typer.Option(help="Redis URL (default: LEADDB_REDIS_URL, else the embedded server)."),
]


def load_settings(database_url: str | None, redis_url: str | None) -> LeadDBSettings:
    """Settings from the environment, with the command line's URLs taking precedence."""
    try:
        settings = LeadDBSettings.from_env()
        overrides: dict[str, SecretStr] = {}
        if database_url:
            overrides["database_url"] = SecretStr(database_url)
        if redis_url:
            overrides["redis_url"] = SecretStr(redis_url)
        if overrides:
            # Re-validate so a bad --database-url fails the same way as a bad variable.
            settings = LeadDBSettings.model_validate({**settings.model_dump(), **overrides})
    except ValidationError as error:
        fail(settings_problems(error))
    return settings


def fail(message: str) -> typer.Exit:
    error_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def run(job: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning leaddb's errors into one line on stderr and exit code 2."""
    try:
        return asyncio.run(_await(job))
    except LeadDBError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None


async def _await(job: Callable[[], Awaitable[T]]) -> T:
    return await job()


@app.command()
def migrate(
    database_url: DatabaseUrl = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database schema to the newest revision."""
    settings = load_settings(database_url, None)

    async def job() -> None:
        async with await LeadDB.connect(settings) as db:
            reached = await db.migrate(revision)
            console.print(f"database {db.info.database_url} is at revision {reached}")

    run(job)


@app.command()
def demo(database_url: DatabaseUrl = None, redis_url: RedisUrl = None) -> None:
    """Connect (embedded servers by default), migrate, and show what leaddb does."""
    from leaddb.demo import run_demo

    settings = load_settings(database_url, redis_url)
    run(lambda: run_demo(settings, console))


@app.command()
def sql(
    revision: Annotated[str, typer.Option(help="Last revision to include.")] = "head",
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
        raise fail(str(error)) from None


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
            raise fail("--check needs --output")
        typer.echo(text, nl=False)
        return
    if check:
        current = output.read_text(encoding="utf-8") if output.is_file() else None
        if current != text:
            raise fail(f"{output} is out of date; regenerate it with `{REGENERATE_COMMAND}`")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")


def main() -> None:
    """Entry point of the ``leaddb`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
