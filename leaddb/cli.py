"""The ``leaddb`` command: migrate, demo, seed, the embedded servers, and the schema tools.

Only typer is imported with this module, so ``leaddb --help`` starts at once: each command
imports what it needs (SQLAlchemy, asyncpg, the models, Faker) when it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from leaddb.seed import register as register_seed

if TYPE_CHECKING:
    from rich.console import Console

    from leaddb.settings import LeadDBSettings

app = typer.Typer(
    help="leaddb: the typed async data layer for multi-tenant lead management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
register_seed(app)

T = TypeVar("T")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="PostgreSQL URL (default: LEADDB_DATABASE_URL, else the embedded server)."),
]
RedisUrl = Annotated[
    str | None,
    typer.Option(help="Redis URL (default: LEADDB_REDIS_URL, else the embedded server)."),
]

_consoles: dict[bool, Console] = {}


def console(*, stderr: bool = False) -> Console:
    """The command's rich console (standard output, or standard error), made on first use."""
    if stderr not in _consoles:
        from rich.console import Console

        _consoles[stderr] = Console(stderr=stderr)
    return _consoles[stderr]


class Settings:
    """The settings a command runs with, and the option each URL came from (when it did)."""

    def __init__(self, settings: LeadDBSettings, options: Mapping[str, str]) -> None:
        self.settings = settings
        self.options = dict(options)
        """``LEADDB_DATABASE_URL`` -> ``--database-url`` for the URLs given on the command line."""

    def name_options(self, message: str) -> str:
        """``message`` with each variable the command line overrode replaced by its option."""
        for variable, option in self.options.items():
            message = message.replace(variable, option)
        return message


def load_settings(database_url: str | None, redis_url: str | None) -> Settings:
    """Settings from the environment, with the command line's URLs taking precedence."""
    from pydantic import SecretStr, ValidationError

    from leaddb.errors import ConfigurationError
    from leaddb.settings import LeadDBSettings, settings_error_line

    try:
        settings = LeadDBSettings.from_env()
    except ConfigurationError as error:
        fail(str(error))
    overrides: dict[str, SecretStr] = {}
    options: dict[str, str] = {}
    if database_url:
        overrides["database_url"] = SecretStr(database_url)
        options["LEADDB_DATABASE_URL"] = "--database-url"
    if redis_url:
        overrides["redis_url"] = SecretStr(redis_url)
        options["LEADDB_REDIS_URL"] = "--redis-url"
    if overrides:
        try:
            # Re-validated, so a bad --database-url fails the same way as a bad variable.
            settings = LeadDBSettings.model_validate({**settings.model_dump(), **overrides})
        except ConfigurationError as error:
            if not isinstance(error.__cause__, ValidationError):
                fail(str(error))
            names = {"database_url": "--database-url", "redis_url": "--redis-url"}
            fail(settings_error_line(error.__cause__, names))
    return Settings(settings, options)


def fail(message: str) -> NoReturn:
    """One line on standard error, exit code 2."""
    # soft_wrap: one line however narrow the terminal, for scripts that read it.
    console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def run(job: Callable[[], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run a coroutine, turning leaddb's errors into one line on stderr and exit code 2."""
    import asyncio

    from leaddb.errors import LeadDBError

    try:
        return asyncio.run(_await(job))
    except LeadDBError as error:
        message = str(error)
        fail(settings.name_options(message) if settings else message)
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
