"""Building table-model instances from database rows, fast.

Rows come from leaddb's own statements, so they are trusted: instead of validating them again
(pydantic, ~60 us for a lead) or going through the ORM's loading machinery, an instance is made
the way SQLAlchemy's loader makes one: an empty object, its ``__dict__`` set from the row, and an
instrumentation state so the mapped attributes work. Enum columns arrive from asyncpg as plain
strings and are turned back into their ``StrEnum``.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.instrumentation import ClassManager, manager_of_class
from sqlmodel import SQLModel

if TYPE_CHECKING:
    from _typeshed import SupportsKeysAndGetItem

    Row: TypeAlias = SupportsKeysAndGetItem[str, Any]
    """A database row (asyncpg ``Record``) or a dict: anything ``dict()`` takes."""

ModelT = TypeVar("ModelT", bound=SQLModel)


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

    __slots__ = ("_converters", "_field_names", "_manager", "model")

    def __init__(self, model: type[ModelT]) -> None:
        self.model = model
        self._manager: ClassManager[ModelT] | None = None
        self._field_names = frozenset(model.model_fields)
        converters: list[tuple[str, Callable[[Any], Any]]] = []
        for name, info in model.model_fields.items():
            enum_type = _enum_of(info.annotation)
            if enum_type is not None:
                converters.append((name, enum_type))
        self._converters = tuple(converters)

    def _class_manager(self) -> ClassManager[ModelT]:
        if self._manager is None:
            configure_mappers()
            self._manager = manager_of_class(self.model)
        return self._manager

    def one(self, row: Row) -> ModelT:
        """An instance from one row; the row must hold every column of the model."""
        data = dict(row)
        for name, convert in self._converters:
            value = data[name]
            if value is not None:
                data[name] = convert(value)
        return self.adopt(data)

    def adopt(self, data: dict[str, Any]) -> ModelT:
        """An instance that takes ``data`` (already of the right types) as its own state."""
        manager = self._manager or self._class_manager()
        instance: ModelT = self.model.__new__(self.model)
        # What SQLAlchemy's loader does (ClassManager._new_state_if_none), without its checks:
        # the instance is new, and the state goes straight into the new __dict__.
        data["_sa_instance_state"] = manager._state_constructor(instance, manager)
        object.__setattr__(instance, "__dict__", data)
        object.__setattr__(instance, "__pydantic_fields_set__", set(self._field_names))
        object.__setattr__(instance, "__pydantic_extra__", None)
        object.__setattr__(instance, "__pydantic_private__", None)
        return instance

    def many(self, rows: Iterable[Row]) -> list[ModelT]:
        one = self.one
        return [one(row) for row in rows]
