"""Encoding rows for the cache and decoding them back into the same table-model instances.

A hit must give what a miss gives: the same class, the same values, the same Python types. The
payload is the row as JSON (orjson); decoding validates it with a plain pydantic model that has
the table's field types (so UUIDs, datetimes, decimals and enums come back typed, parsed in
Rust), then builds the table instance the way the repositories do.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import operator
import types
import typing
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic

import orjson
from pydantic import AwareDatetime, EmailStr, JsonValue

from leaddb.repositories.hydrate import Hydrator, ModelT


def _default(value: object) -> object:
    # orjson knows uuid.UUID but not asyncpg's faster subclass of it, nor Decimal.
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"cannot cache a {type(value).__name__}")


if TYPE_CHECKING:
    from leaddb.repositories.hydrate import Row


def _plain(annotation: Any) -> Any:
    """The type without its validators: cached rows were valid when written, and checking an
    email address again costs more than the whole Redis round trip."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _plain(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, (_plain(arg) for arg in typing.get_args(annotation)))
    if origin in (list, set, frozenset):
        return origin[_plain(typing.get_args(annotation)[0])]
    if origin is dict:
        return dict[str, Any]
    if annotation is EmailStr:
        return str
    if annotation is AwareDatetime:
        return datetime.datetime
    if annotation is JsonValue:
        return Any
    return annotation


_PARSERS: dict[Any, Callable[[Any], Any]] = {
    uuid.UUID: uuid.UUID,
    datetime.datetime: datetime.datetime.fromisoformat,
    datetime.date: datetime.date.fromisoformat,
    decimal.Decimal: decimal.Decimal,
}


def _parser(annotation: Any) -> Callable[[Any], Any] | None:
    """How to turn a JSON value back into the field's Python type (None: JSON has it already)."""
    plain = _plain(annotation)
    candidates = (
        typing.get_args(plain)
        if typing.get_origin(plain) in (typing.Union, types.UnionType)
        else (plain,)
    )
    for candidate in candidates:
        if candidate in _PARSERS:
            return _PARSERS[candidate]
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return candidate
    return None


class RowCodec(Generic[ModelT]):
    """Turns rows of one table into cache payloads and payloads into instances.

    Decoding trusts the payload's shape (leaddb wrote it from a row it had read) and only turns
    JSON strings back into UUIDs, datetimes, dates, decimals and enums: about 10 µs a lead,
    where full pydantic validation (email syntax included) costs several times that.
    """

    def __init__(self, hydrator: Hydrator[ModelT]) -> None:
        self._hydrator = hydrator
        parsers = []
        for name, info in hydrator.model.model_fields.items():
            parser = _parser(info.annotation)
            if parser is not None:
                parsers.append((name, parser))
        self._parsers = tuple(parsers)

    def encode(self, row: dict[str, Any]) -> bytes:
        return orjson.dumps(row, default=_default)

    def decode_row(self, row: Row) -> ModelT:
        """An instance from a database row (a miss)."""
        return self._hydrator.one(row)

    def decode(self, payload: bytes) -> ModelT:
        """An instance from a cache payload (a hit)."""
        data = orjson.loads(payload)
        for name, parse in self._parsers:
            value = data[name]
            if value is not None:
                data[name] = parse(value)
        return self._hydrator.adopt(data)
