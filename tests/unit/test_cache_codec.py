"""The cache's row codec without servers: every cached entity's payload decodes to the very values
and types its database row hydrates to, with nulls and without, and a payload written for another
layout decodes to nothing (a miss)."""

from __future__ import annotations

import enum
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from asyncpg.pgproto.pgproto import UUID as PgUUID
from sqlmodel import SQLModel

import leaddb.models as m
from leaddb.models.base import table_of
from leaddb.rows.codec import RowCodec
from leaddb.rows.hydrate import Hydrator
from leaddb.sql.statements import SECRET_COLUMNS

CACHED = [
    model for model in m.TABLE_MODELS if not SECRET_COLUMNS & set(table_of(model).columns.keys())
]


def column_value(column: sa.Column[Any], *, null: bool) -> object:
    """A value of the column's type as asyncpg returns it (enums as their text)."""
    if null and column.nullable:
        return None
    kind = column.type.python_type
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return list(kind)[-1].value
    samples: dict[type, object] = {
        uuid.UUID: PgUUID(str(uuid.uuid4())),
        datetime: datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        date: date(2031, 12, 31),
        Decimal: Decimal("1234.50"),
        bool: True,
        int: 2**40,
        str: 'quote " backslash \\ snowman \u2603',
        list: ["a", "ü"],
    }
    return samples.get(kind, {"n": None, "f": 1.5, "deep": [{"t": True}]})


def row_of(model: type[SQLModel], *, null: bool) -> dict[str, object]:
    columns = table_of(model).columns
    return {name: column_value(columns[name], null=null) for name in model.model_fields}


@pytest.mark.parametrize("null", [False, True], ids=["filled", "nulls"])
@pytest.mark.parametrize("model", CACHED, ids=lambda model: model.__name__)
def test_a_payload_decodes_to_what_its_row_hydrates_to(model: type[SQLModel], null: bool) -> None:
    hydrator = Hydrator(model)
    codec = RowCodec(hydrator)
    row = row_of(model, null=null)
    miss = hydrator.one(dict(row))
    hit = codec.decode(codec.encode(row))
    assert type(hit) is type(miss) is model
    for name in model.model_fields:
        ours, theirs = getattr(hit, name), getattr(miss, name)
        assert ours == theirs, name
        assert type(ours) is type(theirs), (name, type(ours), type(theirs))


def test_a_payload_of_another_layout_is_a_miss() -> None:
    lead = RowCodec(Hydrator(m.Lead))
    note = RowCodec(Hydrator(m.LeadNote))
    payload = lead.encode(row_of(m.Lead, null=False))
    assert note.decode(payload) is None
    values = orjson.loads(payload)
    assert lead.decode(orjson.dumps([*values[:-1], "1:" + values[-1][2:]])) is None
    assert lead.decode_many([None, payload, b"[]"])[0::2] == [None, None]


def test_the_layout_tag_is_the_same_in_every_process() -> None:
    script = (
        "import sys, orjson, leaddb.models as m\n"
        "from leaddb.rows.codec import RowCodec\n"
        "from leaddb.rows.hydrate import Hydrator\n"
        "payload = RowCodec(Hydrator(m.Lead)).encode(dict.fromkeys(m.Lead.model_fields))\n"
        "sys.stdout.write(orjson.loads(payload)[-1])\n"
    )
    other = subprocess.run(  # noqa: S603  (our own interpreter, a fixed script)
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    payload = RowCodec(Hydrator(m.Lead)).encode(dict.fromkeys(m.Lead.model_fields))
    assert other.stdout == orjson.loads(payload)[-1]
