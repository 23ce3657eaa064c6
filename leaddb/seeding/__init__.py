"""Seeding: realistic, repeatable organizations, users and leads (``leaddb seed``, the demo)."""

from leaddb.seeding.load import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    SeededOrganization,
    SeedResult,
    seed,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONCURRENCY",
    "SeedResult",
    "SeededOrganization",
    "seed",
]
