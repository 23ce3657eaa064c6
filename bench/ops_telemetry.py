"""What OpenTelemetry costs a get (issue 24): off, and on with the SDK and in-memory exporters.

While telemetry is off, leaddb never imports OpenTelemetry, and every instrumented place reads
one module flag (``leaddb.telemetry.on``). So "the extra installed but no provider" and "no
extra" run the same code; the section times both in one process (the first after
``instrument()`` found no provider and stayed off, with opentelemetry imported), and separately
times the flag reads a get makes, which is all that separates leaddb from a build without the
hooks. "On" records every span to an in-memory exporter and every metric to an in-memory reader.
"""

from __future__ import annotations

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

    def get_with(db: LeadDB, on: bool) -> Callable[[int], Awaitable[object]]:
        async def run(i: int) -> object:
            # Every contender sets the flag, so each pays the same for the switching.
            telemetry.on = on
            try:
                async with db.tenant(org) as uow:
                    return await uow.leads.get(pick(i))
            finally:
                telemetry.on = False
                if on and i % 256 == 0:
                    spans.clear()

        return run

    try:
        async with bench.db_cached.tenant(org) as uow:
            await uow.leads.get_many(ids[: min(len(ids), 2000)])
        cached_ids = ids[: min(len(ids), 2000)]

        def pick_cached(i: int) -> uuid.UUID:
            return cached_ids[i % len(cached_ids)]

        def cached_with(on: bool) -> Callable[[int], Awaitable[object]]:
            async def run(i: int) -> object:
                telemetry.on = on
                try:
                    async with bench.db_cached.tenant(org) as uow:
                        return await uow.leads.get(pick_cached(i))
                finally:
                    telemetry.on = False
                    if on and i % 256 == 0:
                        spans.clear()

            return run

        await bench.measure(
            "telemetry_get",
            "telemetry: get by id (cache off), each in its own unit of work",
            [
                Contender(NO_EXTRA, get_with(bench.db, False), "the baseline", "reference"),
                Contender(OFF, get_with(bench.db, False), "no provider", "leaddb"),
                Contender(ON, get_with(bench.db, True), "5 spans, 2 histograms", "leaddb"),
            ],
            floor=NO_EXTRA,
        )
        await bench.measure(
            "telemetry_cached_get",
            "telemetry: cached get by id, each in its own unit of work",
            [
                Contender(CACHED_NO_EXTRA, cached_with(False), "the baseline", "reference"),
                Contender(CACHED_OFF, cached_with(False), "no provider", "leaddb"),
                Contender(CACHED_ON, cached_with(True), "2 spans, 1 histogram", "leaddb"),
            ],
            floor=CACHED_NO_EXTRA,
        )
        floor = _sdk_floor_us(tracer_provider, meter_provider, spans.clear)
    finally:
        telemetry.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()
    bench.facts["telemetry on: the SDK's own cost"] = (
        f"what a cached get records (2 spans, one of them made current, 1 histogram value), "
        f"done with the SDK directly and no leaddb code: {floor:.1f} µs here; the difference "
        "between the cached get's on and off medians below is that, not leaddb's"
    )
    bench.facts["telemetry hooks while off"] = (
        f"one flag read costs {_flag_read_ns():.0f} ns here; a cached get makes "
        f"{HOOKS_PER_CACHED_GET}, an uncached get {HOOKS_PER_GET}: what a build without the "
        "hooks would save (compare with the medians in µs below)"
    )


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


def _sdk_floor_us(tracer_provider: Any, meter_provider: Any, clear: Callable[[], None]) -> float:
    """Microseconds per cached get's worth of recording, straight through the SDK."""
    from opentelemetry import context, trace

    tracer = tracer_provider.get_tracer("bench")
    histogram = meter_provider.get_meter("bench").create_histogram("bench.floor")
    tenant = str(uuid.uuid4())
    rounds = 5_000
    began = time.perf_counter()
    for i in range(rounds):
        unit = tracer.start_span("unit", attributes={"kind": "tenant", "tenant": tenant})
        token = context.attach(trace.set_span_in_context(unit))
        lookup = tracer.start_span(
            "MGET", attributes={"system": "redis", "op": "MGET", "entity": "lead", "hit": True}
        )
        lookup.end()
        unit.set_attribute("outcome", "rolled_back")
        unit.end()
        context.detach(token)
        histogram.record(0.0001, {"kind": "tenant", "outcome": "rolled_back"})
        if i % 256 == 0:
            clear()
    return (time.perf_counter() - began) / rounds * 1e6
