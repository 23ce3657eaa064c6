"""A seed's defaults, importable without the database stack (``leaddb seed --help`` shows them)."""

from __future__ import annotations

DEFAULT_BATCH_SIZE = 10_000
"""Leads per COPY batch and transaction."""
# Three batches in flight keep both Python (generating and checking) and PostgreSQL busy: on
# two cores, 6% more rows/s than two; more only adds memory.
DEFAULT_CONCURRENCY = 3
"""Batches in flight (they commit in order)."""
