"""The cache's Redis keys. Every key of a tenant carries the tenant in a hash tag
(``leaddb:{<org_id>}:...``), so each multi-key command and script stays in one slot (DESIGN.md).
"""

from __future__ import annotations

import functools
import uuid

# asyncpg's undocumented C UUID class (the type of every uuid asyncpg returns): str() of it
# measured 45-83 ns against 390-790 ns for uuid.UUID, 200-500 ns converting first; no public
# name exists. tests/unit/test_library_internals.py fails if an upgrade moves or changes it.
from asyncpg.pgproto.pgproto import UUID as PgUUID

_PREFIX = "leaddb"


def canonical(id: uuid.UUID) -> str:
    """``str(id)`` in a third of the time for a ``uuid.UUID``, whose ``__str__`` runs in Python
    (a get_many formats one key per id): asyncpg's UUID formats in C."""
    return str(id if type(id) is PgUUID else PgUUID(id.bytes))


# A cache hit names four keys, and formatting the tenant's id into each was a good part of the
# hit's own Python. A process serves a bounded set of tenants, so their parts are remembered.
_TENANTS = 4096


@functools.lru_cache(maxsize=_TENANTS)
def tenant_tag(tenant: uuid.UUID) -> str:
    return f"{_PREFIX}:{{{canonical(tenant)}}}"


@functools.lru_cache(maxsize=_TENANTS * 4)
def entity_prefix(tenant: uuid.UUID, entity: str) -> str:
    """What every value key of ``entity`` in ``tenant`` starts with."""
    return f"{tenant_tag(tenant)}:{entity}:"


def value_key(tenant: uuid.UUID, entity: str, id: uuid.UUID) -> str:
    return entity_prefix(tenant, entity) + canonical(id)


def token_key(tenant: uuid.UUID, entity: str, id: uuid.UUID) -> str:
    return value_key(tenant, entity, id) + ":t"


def row_keys(tenant: uuid.UUID, entity: str, id: uuid.UUID) -> tuple[str, str]:
    """``value_key`` and ``token_key`` of a row, the id formatted once."""
    value = value_key(tenant, entity, id)
    return value, value + ":t"


@functools.lru_cache(maxsize=_TENANTS * 4)
def generation_key(tenant: uuid.UUID, entity: str) -> str:
    return f"{tenant_tag(tenant)}:{entity}:gen"


@functools.lru_cache(maxsize=_TENANTS)
def epoch_key(tenant: uuid.UUID) -> str:
    return f"{tenant_tag(tenant)}:epoch"
