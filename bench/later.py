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


_SEED: dict[str, float] = {}


async def _seed_command(bench: Bench) -> None:
    """Issue 25: what ``leaddb seed`` does (``leaddb.seeding.seed`` in its garbage-collector
    settings, the cache on), writing ``sizes.seed_leads`` leads into one organization of its
    own: the README's "a million leads" figure."""
    from leaddb.seed import _few_collections
    from leaddb.seeding import seed

    with _few_collections():
        result = await seed(
            bench.db_cached, organizations=1, leads=bench.sizes.seed_leads, prefix="bench-seed"
        )
    bench.servers.tenants.update(item.organization.id for item in result.organizations)
    rate = result.rows_per_second
    _SEED.update(
        leads=float(result.leads_added),
        seconds=result.lead_seconds,
        million_seconds=1_000_000 / rate if rate else float("nan"),
    )
    bench.facts["leaddb seed"] = (
        f"{result.leads_added:,} leads (each with its audit row) in {result.lead_seconds:.1f} s: "
        f"{rate:,.0f} rows/s, so a million leads in {_SEED['million_seconds']:.0f} s"
    )


SECTIONS: list[tuple[str, Section]] = [("scoring", _scoring)]
"""Scoring (issue 8); the soak has its own session (nox -s soak, docs/soak.md)."""

LAST_SECTIONS: list[tuple[str, Section]] = [("seed_command", _seed_command)]
"""After every other section: the leads they add would change what the others read."""


def targets(results: dict[str, OperationResult]) -> list[Target]:
    """The scoring goals and the seed's, computed from those sections' figures."""
    found = []
    if _SEED:
        found.append(
            Target(
                issue=25,
                goal="a million leads through `leaddb seed` (rate measured on "
                f"{int(_SEED['leads']):,}), seconds",
                measured=_SEED["million_seconds"],
                limit=180.0,
                unit=" s",
            )
        )
    if not _SCORING:
        return found
    return [
        *found,
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
