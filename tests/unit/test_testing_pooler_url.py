"""LEADDB_TEST_POOLER_URL: the plugin's LeadDBs reach the run's database through a transaction
pooler's host and port with transaction_pooler=True; unset, nothing changes (issue 23)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from leaddb.testing import _fixture_settings

RUN_DATABASE = "postgresql://postgres@127.0.0.1:5432/leaddb_test_0123456789ab"
REDIS = "redis://127.0.0.1:6379/6"


def _url(database_url: SecretStr | None) -> str:
    assert database_url is not None
    return database_url.get_secret_value()


def test_unset_the_fixtures_use_the_run_database_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADDB_TEST_POOLER_URL", raising=False)
    settings = _fixture_settings(RUN_DATABASE, REDIS)
    assert _url(settings.database_url) == RUN_DATABASE
    assert settings.transaction_pooler is False


def test_set_the_fixtures_go_through_the_pooler_to_the_run_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADDB_TEST_POOLER_URL", "postgresql://postgres@127.0.0.1:6432/postgres")
    settings = _fixture_settings(RUN_DATABASE, REDIS)
    url = make_url(_url(settings.database_url))
    assert (url.host, url.port, url.database) == ("127.0.0.1", 6432, "leaddb_test_0123456789ab")
    assert url.username == "postgres"
    assert settings.transaction_pooler is True
    assert settings.pool_size == 5  # otherwise run_settings' own
