"""The one JSON spelling of values orjson does not know, and the one retry policy."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg.pgproto.pgproto as pgproto
import orjson
import pytest

from leaddb.connections.retry import REDIS_OUTAGE, TRANSACTION_CONFLICT, Backoff
from leaddb.rows.jsontext import exact_json_default, pg_json_default


def test_postgres_json_writes_numeric_as_a_number_and_exact_json_as_a_string() -> None:
    value = {"amount": Decimal("12.50"), "id": uuid.UUID(int=7)}
    assert orjson.loads(orjson.dumps(value, default=pg_json_default)) == {
        "amount": 12.5,
        "id": "00000000-0000-0000-0000-000000000007",
    }
    assert orjson.dumps(value, default=pg_json_default).startswith(b'{"amount":12.50,')
    assert orjson.loads(orjson.dumps(value, default=exact_json_default)) == {
        "amount": "12.50",
        "id": "00000000-0000-0000-0000-000000000007",
    }


def test_asyncpg_uuid_non_finite_numeric_and_bytes_are_written_as_to_jsonb_writes_them() -> None:
    asyncpg_uuid = pgproto.UUID("00000000-0000-0000-0000-000000000009")
    assert orjson.loads(orjson.dumps([asyncpg_uuid], default=pg_json_default)) == [
        "00000000-0000-0000-0000-000000000009"
    ]
    assert orjson.loads(orjson.dumps([Decimal("NaN"), b"\x01\xff"], default=pg_json_default)) == [
        "NaN",
        "\\x01ff",
    ]


@pytest.mark.parametrize("default", [pg_json_default, exact_json_default])
def test_an_unknown_type_is_refused_not_guessed(default: object) -> None:
    with pytest.raises(TypeError):
        orjson.dumps({"x": object()}, default=default)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_its_cap() -> None:
    steady = Backoff(base=0.25, cap=30.0)
    assert [steady.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert steady.delay(50) == 30.0
    assert REDIS_OUTAGE.delay(1) == 0.5


def test_jittered_backoff_stays_within_its_bound() -> None:
    delays = [TRANSACTION_CONFLICT.delay(2) for _ in range(200)]
    assert all(0 <= delay <= 0.08 for delay in delays)
    assert len(set(delays)) > 1
