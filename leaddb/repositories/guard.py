"""Checks on values before they are sent: what pydantic lets through but PostgreSQL or the JSON
encoder would refuse with a driver exception (and an aborted transaction)."""

from __future__ import annotations

import datetime
import decimal
import enum
import math
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from leaddb.errors import InvalidValueError
from leaddb.models.fields import non_finite_path

_NON_FINITE = -1


def _depth(value: Any, limit: int, level: int = 1) -> int:
    """How deep ``value`` nests (stopping past ``limit``), or ``_NON_FINITE`` when it holds NaN
    or an infinity: one walk for both checks (a second walk cost a lead row 1.5 µs)."""
    if level > limit:
        return level
    items = value.values() if isinstance(value, dict) else value
    deepest = level
    for item in items:
        if isinstance(item, dict | list | tuple):
            found = _depth(item, limit, level + 1)
            if found == _NON_FINITE:
                return found
            deepest = max(deepest, found)
        elif isinstance(item, float) and not math.isfinite(item):
            return _NON_FINITE
    return deepest


def _check_text(entity: str, field: str, text: str) -> None:
    if "\x00" in text:
        raise InvalidValueError(f"{entity}.{field}: text cannot hold a NUL byte", field=field)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidValueError(
                f"{entity}.{field}: text is not valid Unicode (lone surrogate)", field=field
            ) from None


# Values of these types are whatever pydantic made of them and always storable; skipping them by
# exact type first keeps a 10,000-row create_many from paying an isinstance chain per field.
_STORABLE = frozenset(
    {type(None), bool, int, uuid.UUID, datetime.datetime, datetime.date, decimal.Decimal}
)


def _non_finite(entity: str, field: str, path: str) -> InvalidValueError:
    where = f" at {path}" if path else ""
    return InvalidValueError(
        f"{entity}.{field}: JSON numbers must be finite, not NaN or Infinity{where}", field=field
    )


def check_values(
    entity: str, values: Mapping[str, Any], *, max_json_bytes: int, max_json_depth: int
) -> None:
    """Raise InvalidValueError for the first value that cannot be stored."""
    for field, value in values.items():
        kind = type(value)
        if kind is str:
            # Plain ASCII without NUL (most text) needs no call: _check_text only refuses NUL
            # and, in non-ASCII text, lone surrogates.
            if "\x00" in value or not value.isascii():
                _check_text(entity, field, value)
        elif kind in _STORABLE or isinstance(value, enum.Enum):
            continue
        elif kind is float:
            # Only JSON columns hold floats (a scoring rule's value): orjson would write NaN as
            # null, so a table instance built without validation must not get that far.
            if not math.isfinite(value):
                raise _non_finite(entity, field, "")
        elif isinstance(value, str):
            _check_text(entity, field, value)
        elif kind is list and all(type(item) is str for item in value):
            # A text array (tags): each element is text, nothing nests.
            for item in value:
                if "\x00" in item or not item.isascii():
                    _check_text(entity, field, item)
        elif isinstance(value, dict | list):
            depth = _depth(value, max_json_depth)
            if depth == _NON_FINITE:
                raise _non_finite(entity, field, non_finite_path(value) or "")
            if depth > max_json_depth:
                raise InvalidValueError(
                    f"{entity}.{field}: JSON nested deeper than {max_json_depth} levels "
                    "(LEADDB_MAX_JSON_DEPTH)",
                    field=field,
                )
            try:
                encoded = orjson.dumps(value)
            except (orjson.JSONEncodeError, TypeError) as error:
                raise InvalidValueError(
                    f"{entity}.{field}: not storable JSON: {error}", field=field
                ) from None
            if len(encoded) > max_json_bytes:
                raise InvalidValueError(
                    f"{entity}.{field}: JSON of {len(encoded)} bytes exceeds {max_json_bytes} "
                    "(LEADDB_MAX_JSON_BYTES)",
                    field=field,
                )
            if b"\\u0000" in encoded:
                raise InvalidValueError(
                    f"{entity}.{field}: JSON text cannot hold a NUL byte", field=field
                )
