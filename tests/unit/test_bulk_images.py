"""The audit images create_many builds in Python (pure logic: no server)."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import orjson

from leaddb.repositories.bulk import AfterImages, jsonb_key_order


def test_keys_go_shorter_first_then_bytewise() -> None:
    # "é" is two bytes in UTF-8, so it sorts with the two-letter keys, after them bytewise.
    names = ["email", "é", "id", "tags", "ab", "Zz", "a"]
    assert jsonb_key_order(names) == ("a", "Zz", "ab", "id", "é", "tags", "email")


def test_an_image_holds_every_visible_value_in_jsonb_order() -> None:
    row = {
        "organization_id": uuid.UUID(int=1),
        "id": uuid.UUID(int=2),
        "email": "a@example.com",
        "password_hash": "secret",
        "score": 7,
        "estimated_value": Decimal("12.50"),
        "created_at": datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC),
        "tags": ["b", "a"],
    }
    image = orjson.loads(orjson.dumps(AfterImages(row)(row)))
    after = image["after"]
    assert list(image) == ["after"]
    assert list(after) == list(jsonb_key_order(set(row) - {"password_hash"}))
    assert after["id"] == str(uuid.UUID(int=2))
    assert after["estimated_value"] == 12.5
    assert after["tags"] == ["b", "a"]  # values keep their own order
    assert after["created_at"] == "2026-12-06T12:00:00+00:00"


def test_a_row_of_one_visible_key_is_an_image_too() -> None:
    row = {"id": uuid.UUID(int=3), "password_hash": "secret"}
    image = orjson.loads(orjson.dumps(AfterImages(row)(row)))
    assert image == {"after": {"id": str(uuid.UUID(int=3))}}
