"""What the ``leaddb`` commands share: the URL options, the console, the settings from the
environment and the command line, one-line failures, and running a coroutine.

Below both ``leaddb.cli`` and ``leaddb.seed``: the ``seed`` command uses them without importing
the CLI that registers it. Like ``leaddb.cli``, it imports only typer with itself (rich, pydantic
and the settings when a command uses them), so ``leaddb --help`` starts at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from leaddb.settings import LeadDBSettings

__all__ = ["DatabaseUrl", "RedisUrl", "Settings", "console", "fail", "load_settings", "run"]

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
