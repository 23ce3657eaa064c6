"""What OpenTelemetry costs a get (issue 24): off, and on with the SDK and in-memory exporters.

While telemetry is off, leaddb never imports OpenTelemetry, and every instrumented place reads
one module flag (``leaddb.telemetry.on``). So "the extra installed but no provider" and "no
extra" run the same code; the section times both in one process (the first after
``instrument()`` found no provider and stayed off, with opentelemetry imported), and separately
times the flag reads a get makes, which is all that separates leaddb from a build without the
hooks. "On" records every span to an in-memory exporter and every metric to an in-memory reader.
A fourth contender in each table is the floor of "on": the same operation with telemetry off,
followed by the spans and histogram values leaddb recorded for it, recorded again straight
through the SDK; the difference between it and "on" is what leaddb's own instrumentation costs.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.context import Bench
from bench.timing import Contender
from leaddb import LeadDB, telemetry

NO_EXTRA = "leaddb get, telemetry never asked for"
OFF = "leaddb get, extra imported, no provider (off)"
ON = "leaddb get, SDK + in-memory exporters (on)"
CACHED_NO_EXTRA = "leaddb cached get, telemetry never asked for"
CACHED_OFF = "leaddb cached get, extra imported, no provider (off)"
CACHED_ON = "leaddb cached get, SDK + in-memory exporters (on)"
FLOOR = "leaddb get (off) + its spans and metrics recorded through the SDK alone"
CACHED_FLOOR = "leaddb cached get (off) + its spans and metrics recorded through the SDK alone"

HOOKS_PER_CACHED_GET = 3
"""Flag reads of a cached get in its own unit of work: enter, exit, the cache lookup."""
HOOKS_PER_GET = 6
"""Of an uncached get: enter, exit, BEGIN, the SELECT, ROLLBACK, plus the unit's ``_trace``."""


async def telemetry_cost(bench: Bench) -> None:
    """get (cache off) and cached get, each in its own unit of work: never / off / on."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError as error:
        bench.facts["telemetry"] = f"not measured: the OpenTelemetry SDK is missing ({error})"
        return
    if telemetry.on or telemetry.instrument():
        bench.facts["telemetry"] = "not measured: a global OpenTelemetry provider is configured"
        return
    # instrument() found only OpenTelemetry's default providers and stayed off.
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    telemetry.on = False
    ids = bench.seeded.big_live_ids
    org = bench.big

    def pick(i: int) -> uuid.UUID:
        return ids[i % len(ids)]

    def get_of(
        db: LeadDB,
        choose: Callable[[int], uuid.UUID],
        *,
        on: bool = False,
        replay: Callable[[], None] | None = None,
    ) -> Callable[[int], Awaitable[object]]:
        """A get in its own unit of work; ``replay``: then the SDK records its telemetry."""

        async def run(i: int) -> object:
            # Every contender sets the flag, so each pays the same for the switching.
            telemetry.on = on
            try:
                async with db.tenant(org) as uow:
                    found = await uow.leads.get(choose(i))
                if replay is not None:
                    replay()
                return found
            finally:
                telemetry.on = False
                if (on or replay is not None) and i % 256 == 0:
                    spans.clear()

        return run

    async def recorded(db: LeadDB, choose: Callable[[int], uuid.UUID]) -> list[Any]:
        """The spans leaddb records for one get, to replay exactly those."""
        spans.clear()
        telemetry.on = True
        try:
            async with db.tenant(org) as uow:
                await uow.leads.get(choose(0))
        finally:
            telemetry.on = False
        found = list(spans.get_finished_spans())
        spans.clear()
        return found

    try:
        async with bench.db_cached.tenant(org) as uow:
            await uow.leads.get_many(ids[: min(len(ids), 2000)])
        cached_ids = ids[: min(len(ids), 2000)]

        def pick_cached(i: int) -> uuid.UUID:
            return cached_ids[i % len(cached_ids)]

        recorded_get = await recorded(bench.db, pick)
        recorded_cached_get = await recorded(bench.db_cached, pick_cached)
        replay_get = _sdk_replay(tracer_provider, meter_provider, recorded_get)
        replay_cached_get = _sdk_replay(tracer_provider, meter_provider, recorded_cached_get)
        uncached = functools.partial(get_of, bench.db, pick)
        cached = functools.partial(get_of, bench.db_cached, pick_cached)

        get_spans = f"{len(recorded_get)} spans"
        cached_spans = f"{len(recorded_cached_get)} spans"
        await bench.measure(
            "telemetry_get",
            "telemetry: get by id (cache off), each in its own unit of work",
            [
                Contender(NO_EXTRA, uncached(), "the baseline", "reference"),
                Contender(OFF, uncached(), "no provider", "leaddb"),
                Contender(ON, uncached(on=True), f"{get_spans}, histograms", "leaddb"),
                Contender(
                    FLOOR,
                    uncached(replay=replay_get),
                    f"the same {get_spans} and histogram values, no leaddb code",
                    "reference",
                ),
            ],
            floor=NO_EXTRA,
        )
        await bench.measure(
            "telemetry_cached_get",
            "telemetry: cached get by id, each in its own unit of work",
            [
                Contender(CACHED_NO_EXTRA, cached(), "the baseline", "reference"),
                Contender(CACHED_OFF, cached(), "no provider", "leaddb"),
                Contender(
                    CACHED_ON,
                    cached(on=True),
                    f"{cached_spans}, 1 histogram",
                    "leaddb",
                ),
                Contender(
                    CACHED_FLOOR,
                    cached(replay=replay_cached_get),
                    f"the same {cached_spans} and histogram value, no leaddb code",
                    "reference",
                ),
            ],
            floor=CACHED_NO_EXTRA,
        )
    finally:
        telemetry.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()
    bench.facts["telemetry hooks while off"] = (
        f"one flag read costs {_flag_read_ns():.0f} ns here; a cached get makes "
        f"{HOOKS_PER_CACHED_GET}, an uncached get {HOOKS_PER_GET}: what a build without the "
        "hooks would save (compare with the medians in µs below)"
    )


def _sdk_replay(
    tracer_provider: Any, meter_provider: Any, recorded: list[Any]
) -> Callable[[], None]:
    """What one operation's telemetry costs the SDK with no leaddb code in the way: the spans
    that leaddb recorded for it (same names, kinds and attributes, the unit of work's made
    current while its children run) and the same histogram values, recorded again straight
    through the SDK. Timed after the operation with telemetry off, it is the floor of "on"."""
    from opentelemetry import context, trace

    tracer = tracer_provider.get_tracer("bench.floor")
    meter = meter_provider.get_meter("bench.floor")
    statement_histogram = meter.create_histogram("bench.floor.statement")
    unit_histogram = meter.create_histogram("bench.floor.unit")
    unit = next(span for span in recorded if span.name == "leaddb.unit_of_work")
    unit_attributes = dict(unit.attributes or {})
    children = [
        (span.name, span.kind, dict(span.attributes or {})) for span in recorded if span is not unit
    ]
    statement_metrics = [
        {key: value for key, value in attributes.items() if key != "db.query.text"}
        for _, _, attributes in children
        if attributes.get("db.system.name") == "postgresql"
    ]
    outcome = {"leaddb.unit_of_work.kind": "tenant", "leaddb.unit_of_work.outcome": "rolled_back"}

    def replay() -> None:
        span = tracer.start_span(unit.name, attributes=unit_attributes)
        token = context.attach(trace.set_span_in_context(span))
        for name, kind, attributes in children:
            tracer.start_span(name, kind=kind, attributes=attributes).end()
        for attributes in statement_metrics:
            statement_histogram.record(0.0001, attributes)
        span.set_attribute("leaddb.unit_of_work.outcome", "rolled_back")
        span.end()
        context.detach(token)
        unit_histogram.record(0.0001, outcome)

    return replay


def _flag_read_ns() -> float:
    """The cost of one hook while off: ``telemetry.now() if telemetry.on else 0`` and its
    test, over an empty loop of the same length."""
    rounds = 1_000_000
    best_hook = best_empty = float("inf")
    for _ in range(5):
        began = time.perf_counter_ns()
        for _ in range(rounds):
            started = telemetry.now() if telemetry.on else 0
            if started:
                raise AssertionError("telemetry is off")
        best_hook = min(best_hook, time.perf_counter_ns() - began)
        began = time.perf_counter_ns()
        for _ in range(rounds):
            started = 0
            if started:
                raise AssertionError("unreachable")
        best_empty = min(best_empty, time.perf_counter_ns() - began)
    return max(0.0, (best_hook - best_empty) / rounds)
