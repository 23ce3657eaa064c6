"""Facts leaddb.uow.orm relies on that need no server."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, cast

import sqlalchemy as sa

import leaddb.repositories
from leaddb.models import Lead, Organization
from leaddb.models.activity import ActivityLog
from leaddb.repositories.reads import ReadRepository
from leaddb.uow.orm import UNAUDITED_ENTITIES, _tenant_models


def _repository_classes() -> list[type[ReadRepository[Any]]]:
    for module in pkgutil.iter_modules(leaddb.repositories.__path__):
        importlib.import_module(f"leaddb.repositories.{module.name}")

    found: list[type[ReadRepository[Any]]] = []
    pending: list[type[ReadRepository[Any]]] = [ReadRepository]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "model" in cls.__dict__:
            found.append(cls)
    return found


def test_unaudited_entities_match_the_repositories() -> None:
    unaudited = {cls.model.__entity_name__ for cls in _repository_classes() if not cls.audited}
    assert unaudited | {"activity_log"} == UNAUDITED_ENTITIES


def test_every_tenant_table_gets_the_criteria() -> None:
    tenant_tables = {
        table.name for table in Lead.metadata.sorted_tables if "organization_id" in table.c
    }
    assert {model.__table__.name for model in _tenant_models()} == tenant_tables  # type: ignore[attr-defined]
    assert Organization.__tablename__ not in {model.__tablename__ for model in _tenant_models()}


def test_versioned_tables_lock_optimistically_and_fetch_server_values() -> None:
    assert sa.inspect(Lead).version_id_col is Lead.__table__.c.version  # type: ignore[attr-defined]
    assert sa.inspect(Lead).eager_defaults is True
    assert sa.inspect(ActivityLog).version_id_col is None


def test_the_pool_hooks_leaddb_overrides_still_exist() -> None:
    # leaddb.uow.orm.BorrowedPool relies on these private hooks of SQLAlchemy's Pool.
    from sqlalchemy.pool import NullPool, Pool

    for name in ("_do_get", "_do_return_conn", "_create_connection"):
        assert callable(getattr(Pool, name)), name
    pool = NullPool(lambda: cast(Any, None))
    for name in ("_creator", "_reset_on_return", "_dialect"):
        assert hasattr(pool, name), name


def test_the_dialect_hooks_leaddb_replaces_still_exist() -> None:
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    for name in ("setup_asyncpg_json_codec", "setup_asyncpg_jsonb_codec"):
        assert callable(getattr(PGDialect_asyncpg, name)), name
    assert PGDialect_asyncpg.supports_native_json_deserialization is True
