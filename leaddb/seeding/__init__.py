"""Seeding: realistic, repeatable organizations, users and leads (``leaddb seed``, the demo)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leaddb.seeding.defaults import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY

if TYPE_CHECKING:
    from leaddb.seeding.load import SeededOrganization, SeedResult, seed

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONCURRENCY",
    "SeedResult",
    "SeededOrganization",
    "seed",
]


def __getattr__(name: str) -> Any:
    # The writer (and with it SQLAlchemy, asyncpg and the models) loads on first use: the
    # command line reads the defaults above without it.
    if name in {"SeedResult", "SeededOrganization", "seed"}:
        from leaddb.seeding import load

        return getattr(load, name)
    raise AttributeError(f"module 'leaddb.seeding' has no attribute {name!r}")
