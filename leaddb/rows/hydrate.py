"""Building table-model instances from database rows, fast.

Rows come from leaddb's own statements, so they are trusted: instead of validating them again
(pydantic, ~60 us for a lead) or going through the ORM's loading machinery, an instance is made
the way SQLAlchemy's loader makes one: an empty object, its ``__dict__`` set from the row, and an
instrumentation state so the mapped attributes work. Enum columns arrive from asyncpg as plain
strings and are turned back into their ``StrEnum`` by a dict lookup (calling the enum class costs
ten times as much). The cache's codec builds its instances through ``adopt`` too, so a hit and
a miss are made the same way.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlmodel import SQLModel

if TYPE_CHECKING:
    from _typeshed import SupportsKeysAndGetItem

    Row: TypeAlias = SupportsKeysAndGetItem[str, Any]
    """A database row (asyncpg ``Record``) or a dict: anything ``dict()`` takes."""

ModelT = TypeVar("ModelT", bound=SQLModel)


class _Members(dict[Any, enum.Enum]):
    """Value (or member) -> member; anything else fails as calling the enum class would."""

    def __init__(self, enum_type: type[enum.Enum]) -> None:
        super().__init__({member.value: member for member in enum_type})
        self.update({member: member for member in enum_type})
        self._enum_type = enum_type

    def __missing__(self, value: Any) -> enum.Enum:
        return self._enum_type(value)


def enum_lookup(enum_type: type[enum.Enum]) -> Callable[[Any], enum.Enum]:
    """``enum_type(value)`` at a tenth of the cost, for values known in advance."""
    return _Members(enum_type).__getitem__


def _enum_of(annotation: Any) -> type[enum.Enum] | None:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _enum_of(arg)
            if found is not None:
                return found
    return None


class Hydrator(Generic[ModelT]):
    """Makes ``model`` instances from mappings of column name to value."""

    __slots__ = ("_converters", "_field_names", "adopt", "model")

    def __init__(self, model: type[ModelT]) -> None:
        self.model = model
        self._field_names = frozenset(model.model_fields)
        self.adopt: Callable[[dict[str, Any]], ModelT] = self._first_adopt
        """An instance that takes a dict of every field (already of the right types) as its own
        state."""
        converters: list[tuple[str, Callable[[Any], Any]]] = []
        for name, info in model.model_fields.items():
            enum_type = _enum_of(info.annotation)
            if enum_type is not None:
                converters.append((name, enum_lookup(enum_type)))
        self._converters = tuple(converters)

    def converter(self, name: str) -> Callable[[Any], Any] | None:
        """How ``one`` turns the database's value of field ``name`` into the field's type."""
        return dict(self._converters).get(name)

    def one(self, row: Row) -> ModelT:
        """An instance from one row; the row must hold every column of the model."""
        data = dict(row)
        for name, convert in self._converters:
            value = data[name]
            if value is not None:
                data[name] = convert(value)
        return self.adopt(data)

    def _first_adopt(self, data: dict[str, Any]) -> ModelT:
        # Built on first use: the mappers can only be configured once every model is defined,
        # after this Hydrator. A caller that kept this method (a loop's local) goes on through it.
        if self.adopt == self._first_adopt:
            self.adopt = self._adopter()
        return self.adopt(data)

    def _adopter(self) -> Callable[[dict[str, Any]], ModelT]:
        configure_mappers()
        model = self.model
        manager = manager_of_class(model)
        # SQLAlchemy's private ClassManager._state_constructor (the InstanceState class bound
        # for this mapper): the public ClassManager.new_instance() does the same with checks,
        # at 1.9 us against 1.0 us per instance measured here (a 50-row page: ~45 us more).
        # tests/unit/test_library_internals.py fails if an upgrade changes it.
        new_state = manager._state_constructor
        field_names = self._field_names
        new = object.__new__
        set_attribute = object.__setattr__

        def adopt(data: dict[str, Any]) -> ModelT:
            # SQLModel.__new__ only presets pydantic's own attributes, which are all set below.
            instance: ModelT = new(model)
            # What SQLAlchemy's loader does (ClassManager._new_state_if_none), without its
            # checks: the instance is new, and the state goes straight into the new __dict__.
            data["_sa_instance_state"] = new_state(instance, manager)
            set_attribute(instance, "__dict__", data)
            # pydantic's documented instance attributes, set as any attribute is (going through
            # BaseModel's slot descriptors instead measured 1.12x faster: not worth depending
            # on how pydantic stores them).
            set_attribute(instance, "__pydantic_fields_set__", set(field_names))
            set_attribute(instance, "__pydantic_extra__", None)
            set_attribute(instance, "__pydantic_private__", None)
            return instance

        return adopt

    def many(self, rows: Iterable[Row]) -> list[ModelT]:
        one = self.one
        return [one(row) for row in rows]
