"""Encoding rows for the cache and decoding them back into the same table-model instances.

A hit must give what a miss gives: the same class, the same values, the same Python types. The
payload is a JSON array (orjson) of the row's values in the model's field order, then a tag.
Decoding is on the path of every hit, so it does as little as possible: one ``orjson.loads``,
then only the columns JSON cannot carry are parsed, each by a parser chosen once per model
(UUIDs by asyncpg's own UUID class, the one a miss returns, which parses in C at a tenth of the
cost of ``uuid.UUID``; enums by a dict lookup), and the instance is built by the repositories'
``Hydrator.adopt``. About 6 µs a lead, where validating the same row with pydantic costs ten
times that.

The values are not validated again: leaddb wrote them from rows it had read. What is checked is
that a value is one this code wrote: the tag names the format and a fingerprint of the model's
columns (names, types, order), so a value written by a process with another version of the
model (a rolling deploy) or in an older format is a miss, never values in the wrong fields. A
value that is not a JSON array of the expected length with that tag, or that a parser refuses,
is a miss too (``decode`` returns None): the reader then goes to PostgreSQL and fills afresh.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import hashlib
import operator
import types
import typing
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic

import orjson

# asyncpg's C UUID class (why, and the test that guards it: leaddb.cache.keys): a cached row's
# ids come back as the same type asyncpg gives a miss, and parse faster than uuid.UUID(str).
from asyncpg.pgproto.pgproto import UUID as PgUUID
from pydantic import AwareDatetime, EmailStr, JsonValue

from leaddb.rows.hydrate import Hydrator, ModelT, enum_lookup
from leaddb.rows.jsontext import exact_json_default

if TYPE_CHECKING:
    from leaddb.rows.hydrate import Row

FORMAT = "2"
"""Bumped whenever the payload's layout or a column's encoding changes."""

_REFUSED = (ValueError, TypeError, KeyError, ArithmeticError)
"""What the parsers raise on values this code did not write (ArithmeticError: Decimal)."""


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
    uuid.UUID: PgUUID,
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
            return enum_lookup(candidate)
    return None


def _tag(hydrator: Hydrator[Any]) -> str:
    """The format and a fingerprint of the columns: stable across processes (no ids, no
    addresses), different as soon as a column is added, removed, renamed, retyped or moved."""
    model = hydrator.model
    columns = model.__table__.c
    layout = [
        (name, type(columns[name].type).__name__, repr(_plain(info.annotation)))
        for name, info in model.model_fields.items()
    ]
    digest = hashlib.sha256(repr((model.__name__, layout)).encode()).hexdigest()
    return f"{FORMAT}:{digest[:16]}"


def _nullable(annotation: Any) -> bool:
    plain = _plain(annotation)
    return typing.get_origin(plain) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(plain)
    )


def _builder(
    model_name: str,
    names: tuple[str, ...],
    parsers: dict[int, tuple[Callable[[Any], Any], bool]],
) -> Callable[[list[Any]], dict[str, Any]]:
    """A function from the decoded array to the instance's dict, made once per model.

    Generated, so that the dict is one dict display with each column's parser called inline: a
    loop over the parsers and then ``dict(zip(names, values))`` cost half as much again, and was
    the largest part of a 50-row hit after the Redis round trip. The source is made of field
    names (identifiers) and indexes only.
    """
    namespace: dict[str, Any] = {}
    items = []
    for index, name in enumerate(names):
        value = f"v[{index}]"
        if index in parsers:
            parse, nullable = parsers[index]
            namespace[f"parse{index}"] = parse
            parsed = f"parse{index}({value})"
            value = f"None if {value} is None else {parsed}" if nullable else parsed
        items.append(f"{name!r}: {value}")
    source = f"def build(v):\n    return {{{', '.join(items)}}}\n"
    exec(compile(source, f"<cache decoder of {model_name}>", "exec"), namespace)  # noqa: S102
    build: Callable[[list[Any]], dict[str, Any]] = namespace["build"]
    return build


class RowCodec(Generic[ModelT]):
    """Turns rows of one table into cache payloads and payloads into instances."""

    def __init__(self, hydrator: Hydrator[ModelT]) -> None:
        self._hydrator = hydrator
        fields = hydrator.model.model_fields
        self._names = tuple(fields)
        self._tag = _tag(hydrator)
        self._width = len(self._names) + 1
        parsers = {}
        for index, (name, info) in enumerate(fields.items()):
            parser = hydrator.converter(name) or _parser(info.annotation)
            if parser is not None:
                parsers[index] = (parser, _nullable(info.annotation))
        self._build = _builder(hydrator.model.__name__, self._names, parsers)

    def encode(self, row: Row) -> bytes:
        values = [row[name] for name in self._names]
        values.append(self._tag)
        return orjson.dumps(values, default=exact_json_default)

    def decode_row(self, row: Row) -> ModelT:
        """An instance from a database row (a miss)."""
        return self._hydrator.one(row)

    def decode(self, payload: bytes) -> ModelT | None:
        """An instance from a cache payload (a hit), or None when the payload is not one this
        code wrote (then it is a miss)."""
        return self.decode_many((payload,))[0]

    def decode_many(self, payloads: Iterable[bytes | None]) -> list[ModelT | None]:
        """``decode`` of each payload (None stays None), in one loop: a get_many of 50 hits
        spends most of its time here."""
        loads, build, adopt = orjson.loads, self._build, self._hydrator.adopt
        width, tag = self._width, self._tag
        decoded: list[ModelT | None] = []
        for payload in payloads:
            data = None
            if payload is not None:
                try:
                    values = loads(payload)
                    if type(values) is list and len(values) == width and values.pop() == tag:
                        data = build(values)
                except _REFUSED:
                    pass
            decoded.append(None if data is None else adopt(data))
        return decoded
