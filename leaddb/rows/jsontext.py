"""How leaddb writes the values orjson does not know as JSON: the one place that is decided.

Two spellings, because two readers exist:

* ``pg_json_default``: as PostgreSQL's ``to_jsonb`` writes them (a numeric is a JSON number),
  for JSON that PostgreSQL stores or reads back (audit images, rows sent as a JSON array,
  scoring rule values).
* ``exact_json_default``: as text that leaddb's own decoders turn back into the same value
  (a Decimal as its string, which a float could not keep exactly), for cache payloads and
  page cursors.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson


def pg_json_default(value: object) -> object:
    """orjson's ``default`` for JSON that PostgreSQL reads: what ``to_jsonb`` would write."""
    if isinstance(value, Decimal):
        # numeric is a JSON number in to_jsonb, and str() of a finite Decimal is JSON number
        # text; NaN and the infinities, which JSON has no number for, are strings there too.
        return orjson.Fragment(str(value).encode()) if value.is_finite() else str(value)
    if isinstance(value, uuid.UUID):  # asyncpg's UUID class, which orjson does not know
        return str(value)
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def exact_json_default(value: object) -> object:
    """orjson's ``default`` for JSON that leaddb decodes itself: Decimal and UUID as strings."""
    # orjson knows uuid.UUID but not asyncpg's faster subclass of it, nor Decimal.
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
