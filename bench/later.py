"""Room for the benchmarks later issues add: lead scoring and the soak run.

* Scoring: ``uow.scoring.rescore_organization()`` (one set-based statement plus history) on the
  seeded 100,000 leads, against the same computation in raw SQL.
* Soak: many units of work from concurrent tasks for a bounded time against the local servers,
  reporting throughput, latency percentiles, pool waits, cache hit rate and stale reads.

Each adds ``(name, section)`` pairs to ``SECTIONS`` (a section is ``async def (Bench) -> None``
that appends ``OperationResult`` s through ``Bench.measure``) and its goals to ``targets``; the
report picks both up with no other change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.context import Bench, OperationResult
from bench.targets import Target

Section = Callable[[Bench], Awaitable[None]]

SECTIONS: list[tuple[str, Section]] = []
"""Scoring and soak sections, run after the others (none yet)."""


def targets(results: dict[str, OperationResult]) -> list[Target]:
    """The scoring and soak goals, computed from their results (none yet)."""
    return []
