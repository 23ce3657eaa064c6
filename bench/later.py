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

_SCORING: dict[str, float] = {}


async def _scoring(bench: Bench) -> None:
    """Issue 8: rescoring the seeded number of leads with 20 active rules (bench.scoring)."""
    from bench.scoring import bench_rescoring

    figures = await bench_rescoring(
        bench.servers.database_url, bench.servers.redis_url, leads=bench.sizes.leads, rules=20
    )
    _SCORING.update(figures)
    bench.facts["rescoring"] = (
        f"{int(figures['leads']):,} leads, 20 rules: set-based first run "
        f"{figures['set_based_first_seconds']:.2f} s ({int(figures['set_based_first_changed']):,} "
        f"changed), second run {figures['set_based_second_seconds']:.2f} s "
        f"({int(figures['set_based_second_changed']):,} changed); lead by lead through the "
        f"repository, extrapolated from {int(figures['lead_by_lead_sample']):,} leads: "
        f"{figures['lead_by_lead_seconds_estimate']:.0f} s; speedup "
        f"{figures['speedup']:.1f}x"
    )


SECTIONS: list[tuple[str, Section]] = [("scoring", _scoring)]
"""Scoring (issue 8); the soak has its own session (nox -s soak, docs/soak.md)."""


def targets(results: dict[str, OperationResult]) -> list[Target]:
    """The scoring goals, computed from the scoring section's figures."""
    if not _SCORING:
        return []
    return [
        Target(
            issue=8,
            goal="rescore the seeded leads with 20 rules, set-based (first run), seconds",
            measured=_SCORING["set_based_first_seconds"],
            limit=5.0,
            unit=" s",
        ),
        Target(
            issue=8,
            goal="set-based speedup over lead by lead through the repository",
            measured=_SCORING["speedup"],
            limit=20.0,
            higher_is_better=True,
        ),
    ]
