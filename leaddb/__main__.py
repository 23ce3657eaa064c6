"""``leaddb`` and ``python -m leaddb``: the command line, when the ``cli`` extra is installed.

A service installs plain ``leaddb``; the command, its demo and its seed need typer, rich and faker
from the extra. Without them the command says what to install in one line instead of a
traceback, except ``leaddb migrate``: a deploy step, it works from the plain install.
"""

from __future__ import annotations

import importlib.util
import sys

CLI_EXTRA = ("typer", "rich", "faker")
INSTALL_HINT = "pip install 'leaddb[cli]'"


def missing_cli_packages() -> list[str]:
    """The packages of the ``cli`` extra that cannot be imported (found, not imported: quick)."""
    missing = []
    for name in CLI_EXTRA:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def plain_migrate(argv: list[str]) -> int:
    """``leaddb migrate [--database-url URL] [--revision REV]`` without the ``cli`` extra."""
    import argparse
    import asyncio

    from leaddb.errors import LeadDBError

    parser = argparse.ArgumentParser(prog="leaddb migrate")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: LEADDB_DATABASE_URL)")
    parser.add_argument("--revision", default="head", help="target revision")
    args = parser.parse_args(argv)

    async def job() -> str:
        from leaddb.db import LeadDB
        from leaddb.settings import LeadDBSettings

        overrides = {"database_url": args.database_url} if args.database_url else {}
        async with await LeadDB.connect(LeadDBSettings(**overrides)) as db:
            reached = await db.migrate(args.revision)
            return f"database {db.info.database_url} is at revision {reached}"

    try:
        print(asyncio.run(job()))
    except LeadDBError as error:
        message = str(error)
        if args.database_url:
            message = message.replace("LEADDB_DATABASE_URL", "--database-url")
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


def main() -> None:
    """Entry point of the ``leaddb`` console script."""
    missing = missing_cli_packages()
    if missing and sys.argv[1:2] == ["migrate"]:
        raise SystemExit(plain_migrate(sys.argv[2:]))
    if missing:
        print(
            f"leaddb: the command needs {', '.join(missing)} from the cli extra: {INSTALL_HINT}",
            file=sys.stderr,
        )
        raise SystemExit(1)
    from leaddb.cli import main as run_cli

    run_cli()


if __name__ == "__main__":
    main()
