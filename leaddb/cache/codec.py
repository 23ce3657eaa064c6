"""Encoding rows for the cache and decoding them back into the same table-model instances.

A hit must give what a miss gives: the same class, the same values, the same Python types. The
payload is the row as JSON (orjson); decoding validates it with a plain pydantic model that has
the table's field types (so UUIDs, datetimes, decimals and enums come back typed, parsed in
Rust), then builds the table instance the way the repositories do.
"""

from __future__ import annotations

import decimal
import uuid
from typing import TYPE_CHECKING, Any, Generic

import orjson
from pydantic import BaseModel, ConfigDict, create_model

from leaddb.repositories.hydrate import Hydrator, ModelT


def _default(value: object) -> object:
    # orjson knows uuid.UUID but not asyncpg's faster subclass of it, nor Decimal.
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"cannot cache a {type(value).__name__}")


if TYPE_CHECKING:
    from leaddb.repositories.hydrate import Row


class RowCodec(Generic[ModelT]):
    """Turns rows of one table into cache payloads and payloads into instances."""

    def __init__(self, hydrator: Hydrator[ModelT]) -> None:
        self._hydrator = hydrator
        model = hydrator.model
        fields: dict[str, Any] = {
            name: (info.annotation, ...) for name, info in model.model_fields.items()
        }
        self._schema: type[BaseModel] = create_model(
            f"{model.__name__}CacheRow",
            __config__=ConfigDict(extra="ignore", arbitrary_types_allowed=True),
            **fields,
        )

    def encode(self, row: dict[str, Any]) -> bytes:
        return orjson.dumps(row, default=_default)

    def decode_row(self, row: Row) -> ModelT:
        """An instance from a database row (a miss)."""
        return self._hydrator.one(row)

    def decode(self, payload: bytes) -> ModelT:
        """An instance from a cache payload (a hit)."""
        validated = self._schema.model_validate_json(payload)
        return self._hydrator.one(validated.__dict__)
