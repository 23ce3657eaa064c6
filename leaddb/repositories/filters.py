"""Filters: small objects that add a condition to a statement.

Each filter names a field of the entity, checked against the table when it is applied, and binds
its value as a parameter: no text from a caller reaches the SQL. Entity repositories offer typed
keyword arguments that build these (``uow.leads.list(status=LeadStatus.NEW)``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import ColumnElement, Table, and_, any_, bindparam, not_, or_
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from leaddb.errors import InvalidFilterError
from leaddb.models.base import is_secret
from leaddb.models.fields import non_finite_path

OrderableT = TypeVar("OrderableT", int, float, Decimal, datetime, date)

MAX_IN_VALUES = 10_000
MAX_SEARCH_LENGTH = 200


class Filter(Protocol):
    """Something that can produce a WHERE condition over a table."""

    def condition(self, table: Table) -> ColumnElement[bool]: ...


def column(table: Table, field: str) -> ColumnElement[Any]:
    """The column named ``field``, or InvalidFilterError naming the fields that exist (secret
    columns are neither named nor usable)."""
    if not isinstance(field, str) or field not in table.c:
        known = ", ".join(sorted(name for name, col in table.c.items() if not is_secret(col)))
        raise InvalidFilterError(f"{table.name} has no field {field!r}; fields are: {known}")
    found = table.c[field]
    if is_secret(found):
        # A filter on a secret is an oracle: comparing guesses against it reads it out.
        raise InvalidFilterError(f"{table.name}.{field} holds a secret and cannot be filtered on")
    return found


@dataclass(frozen=True, slots=True)
class Eq:
    """``field = value`` (``field IS NULL`` for None)."""

    field: str
    value: object

    def condition(self, table: Table) -> ColumnElement[bool]:
        col = column(table, self.field)
        return col.is_(None) if self.value is None else col == self.value


@dataclass(frozen=True, slots=True)
class In:
    """``field`` is one of ``values`` (an empty collection matches nothing)."""

    field: str
    values: Collection[object]

    def condition(self, table: Table) -> ColumnElement[bool]:
        col = column(table, self.field)
        if isinstance(self.values, str | bytes) or len(self.values) > MAX_IN_VALUES:
            raise InvalidFilterError(f"{self.field}: give at most {MAX_IN_VALUES} values as a list")
        # One array parameter (= ANY($n)) rather than one parameter per value: the statement
        # keeps one shape, so it is compiled once and prepared once whatever the list's length.
        values = bindparam(None, list(self.values), type_=ARRAY(col.type))
        condition: ColumnElement[bool] = col == any_(values)
        return condition


@dataclass(frozen=True, slots=True)
class NotIn:
    """``field`` is none of ``values``."""

    field: str
    values: Collection[object]

    def condition(self, table: Table) -> ColumnElement[bool]:
        return not_(In(self.field, self.values).condition(table))


@dataclass(frozen=True, slots=True)
class Range(Generic[OrderableT]):
    """Bounds on an orderable field; unset bounds are open. Also usable as a keyword value."""

    gte: OrderableT | None = None
    gt: OrderableT | None = None
    lte: OrderableT | None = None
    lt: OrderableT | None = None

    def on(self, field: str) -> FieldRange:
        return FieldRange(field, self)


@dataclass(frozen=True, slots=True)
class FieldRange:
    field: str
    bounds: Range[Any]

    def condition(self, table: Table) -> ColumnElement[bool]:
        col = column(table, self.field)
        parts: list[ColumnElement[bool]] = []
        if self.bounds.gte is not None:
            parts.append(col >= self.bounds.gte)
        if self.bounds.gt is not None:
            parts.append(col > self.bounds.gt)
        if self.bounds.lte is not None:
            parts.append(col <= self.bounds.lte)
        if self.bounds.lt is not None:
            parts.append(col < self.bounds.lt)
        if not parts:
            raise InvalidFilterError(f"{self.field}: a range needs at least one bound")
        return and_(*parts)


@dataclass(frozen=True, slots=True)
class IsNull:
    """``field IS NULL`` (or ``IS NOT NULL`` with ``null=False``)."""

    field: str
    null: bool = True

    def condition(self, table: Table) -> ColumnElement[bool]:
        col = column(table, self.field)
        return col.is_(None) if self.null else col.is_not(None)


@dataclass(frozen=True, slots=True)
class ArrayContains:
    """An array field holds every one of ``values`` (uses a GIN index)."""

    field: str
    values: Sequence[str]

    def condition(self, table: Table) -> ColumnElement[bool]:
        col = column(table, self.field)
        return col.contains(list(self.values))


@dataclass(frozen=True, slots=True)
class ArrayOverlaps:
    """An array field holds at least one of ``values``."""

    field: str
    values: Sequence[str]

    def condition(self, table: Table) -> ColumnElement[bool]:
        col = column(table, self.field)
        condition: ColumnElement[bool] = col.overlap(list(self.values))
        return condition


@dataclass(frozen=True, slots=True)
class JsonContains:
    """A JSONB field contains ``value`` (``@>``; uses a GIN index)."""

    field: str
    value: dict[str, Any]

    def condition(self, table: Table) -> ColumnElement[bool]:
        col = column(table, self.field)
        if not isinstance(col.type, JSONB):
            raise InvalidFilterError(f"{self.field} is not a JSON field")
        path = non_finite_path(self.value)
        if path is not None:
            # orjson would send NaN as null: the filter would match something else.
            raise InvalidFilterError(f"{self.field}: JSON numbers must be finite (at {path!r})")
        return col.contains(self.value)


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one of the filters holds."""

    filters: Sequence[Filter]

    def condition(self, table: Table) -> ColumnElement[bool]:
        return or_(*(item.condition(table) for item in self.filters))


def keyword(field: str, value: object) -> Filter:
    """The filter a typed keyword argument stands for.

    A ``Range`` is a range; a list, tuple, set or frozenset is membership; anything else is
    equality (None: IS NULL).
    """
    if isinstance(value, Range):
        return value.on(field)
    if isinstance(value, list | tuple | set | frozenset):
        return In(field, value)
    return Eq(field, value)
