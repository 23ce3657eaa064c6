"""Keyset pagination: pages and their opaque, signed cursors.

A page is ``WHERE (k1, k2, id) > (:last_k1, :last_k2, :last_id) ORDER BY k1, k2, id LIMIT n``:
with an index on the order, page 1,000 costs what page 1 costs, and the primary key as the last
key means rows with equal sort values are neither skipped nor repeated at page boundaries.

The cursor carries the last row's key values and a fingerprint of the query it belongs to (the
entity, the tenant, the order and the filters), signed with HMAC. A cursor that was edited, cut
short, or made for another query or tenant is refused with InvalidCursorError before any SQL runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import orjson

from leaddb.errors import InvalidCursorError
from leaddb.rows.jsontext import exact_json_default

ItemT = TypeVar("ItemT")

MAX_CURSOR_LENGTH = 2048
_SIGNATURE_BYTES = 16


@dataclass(frozen=True, slots=True)
class Page(Generic[ItemT]):
    """One page of results; ``next_cursor`` is None on the last page."""

    items: list[ItemT]
    next_cursor: str | None

    def __len__(self) -> int:
        return len(self.items)


def _encode_value(value: object) -> object:
    if isinstance(value, uuid.UUID | Decimal):
        return exact_json_default(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot put {type(value).__name__} in a cursor")


def _decode_value(raw: object, kind: type[Any]) -> object:
    if raw is None:
        return None
    if kind is uuid.UUID and isinstance(raw, str):
        return uuid.UUID(raw)
    if kind is datetime and isinstance(raw, str):
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            raise ValueError("naive datetime")
        return parsed
    if kind is date and isinstance(raw, str):
        return date.fromisoformat(raw)
    if kind is Decimal and isinstance(raw, str):
        return Decimal(raw)
    if kind is bool and isinstance(raw, bool):
        return raw
    if kind is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind is float and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if kind is str and isinstance(raw, str):
        return raw
    raise ValueError(f"expected {kind.__name__}")


class CursorCodec:
    """Signs and checks cursors with a key shared by every process of one deployment."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sign(self, fingerprint: str, payload: bytes) -> bytes:
        message = fingerprint.encode() + b"\x00" + payload
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, fingerprint: str, values: Sequence[object]) -> str:
        payload = orjson.dumps([_encode_value(value) for value in values])
        token = self._sign(fingerprint, payload) + payload
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode()

    def decode(self, fingerprint: str, cursor: object, kinds: Sequence[type[Any]]) -> list[object]:
        if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
            raise InvalidCursorError("not a cursor of this query")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise InvalidCursorError("not a cursor of this query") from None
        signature, payload = raw[:_SIGNATURE_BYTES], raw[_SIGNATURE_BYTES:]
        if not hmac.compare_digest(signature, self._sign(fingerprint, payload)):
            raise InvalidCursorError("cursor was altered, or belongs to another query or tenant")
        try:
            values = orjson.loads(payload)
            if not isinstance(values, list) or len(values) != len(kinds):
                raise ValueError("wrong length")
            return [_decode_value(value, kind) for value, kind in zip(values, kinds, strict=True)]
        except (orjson.JSONDecodeError, ValueError, TypeError):
            raise InvalidCursorError("cursor content is not valid for this query") from None
