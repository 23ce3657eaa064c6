"""The private parts of other libraries leaddb still uses, each for a measured reason given
where it is used: these fail loudly when an upgrade moves or changes one of them (the upper
bounds in pyproject are the versions they passed on)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from asyncpg.pgproto.pgproto import UUID as PgUUID
from pydantic import ValidationError
from sqlalchemy import Select, inspect, select
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlmodel import SQLModel
from sqlmodel._compat import SQLModelConfig

from leaddb.cache.keys import canonical
from leaddb.models import Lead, LeadStatus, table_of
from leaddb.rows.hydrate import Hydrator
from leaddb.sql.compile import compile_cached, compile_sql


def lead_row() -> dict[str, object]:
    now = datetime.now(UTC)
    row: dict[str, object] = dict.fromkeys(Lead.model_fields)
    row.update(
        organization_id=uuid.uuid4(),
        id=uuid.uuid4(),
        email="ada@example.com",
        first_name="Ada",
        status="new",
        source="other",
        temperature="cold",
        score=0,
        tags=[],
        custom_fields={},
        version=1,
        created_at=now,
        updated_at=now,
    )
    return row


def test_sqlalchemy_class_manager_still_has_the_state_constructor_hydrate_uses() -> None:
    lead = Hydrator(Lead).one(lead_row())  # configures the mappers first
    manager = manager_of_class(Lead)
    assert callable(manager._state_constructor)
    state = inspect(lead)
    assert state.transient  # a new object of the session's point of view, as a loader's is
    assert state.manager is manager
    lead.first_name = "Grace"
    # The instrumented attribute saw the change: the state is the one SQLAlchemy tracks.
    assert state.attrs.first_name.history.added == ["Grace"]


def test_an_adopted_instance_is_a_whole_pydantic_model() -> None:
    row = lead_row()
    lead = Hydrator(Lead).one(dict(row))
    assert lead.model_fields_set == set(Lead.model_fields)
    assert lead.model_extra is None
    assert lead.__pydantic_private__ is None
    assert lead.status is LeadStatus.NEW
    dumped = lead.model_dump()
    assert dumped["email"] == "ada@example.com"
    assert set(dumped) == set(Lead.model_fields)


def test_sqlmodel_config_is_still_where_the_models_import_it_from() -> None:
    class Strict(SQLModel):
        model_config = SQLModelConfig(extra="forbid")
        name: str

    with pytest.raises(ValidationError):
        Strict.model_validate({"name": "x", "unknown": 1})


def test_asyncpg_uuid_class_is_a_uuid_that_formats_the_same() -> None:
    plain = uuid.uuid4()
    fast = PgUUID(plain.bytes)
    assert isinstance(fast, uuid.UUID)
    assert fast == plain
    assert str(fast) == str(plain)
    assert canonical(plain) == canonical(fast) == str(plain)
    assert PgUUID(str(plain)) == plain  # the codec parses cached ids so


def test_sqlalchemy_cache_key_maps_each_calls_values_onto_the_compiled_shape() -> None:
    table = table_of(Lead)
    first, second = uuid.uuid4(), uuid.uuid4()

    def page(tenant: uuid.UUID, score: int) -> Select[tuple[uuid.UUID]]:
        return select(table.c.id).where(table.c.organization_id == tenant, table.c.score > score)

    key, other = page(first, 1)._generate_cache_key(), page(second, 2)._generate_cache_key()
    assert key is not None
    assert other is not None
    assert key.key == other.key
    one, one_args = compile_cached(page(first, 1))
    two, two_args = compile_cached(page(second, 2))
    assert one is two  # compiled once
    assert one_args == [first, 1]
    assert two_args == [second, 2]
    fresh = compile_sql(page(second, 2))
    assert fresh.text == two.text
    assert fresh.args({}) == two_args
