"""``leaddb`` and ``python -m leaddb``: the command line, when the ``cli`` extra is installed.

A service installs plain ``leaddb``; the command, its demo and its seed need typer, rich and faker
from the extra. Without them the command says what to install in one line instead of a
traceback.
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


def main() -> None:
    """Entry point of the ``leaddb`` console script."""
    missing = missing_cli_packages()
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
