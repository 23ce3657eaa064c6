"""OpenTelemetry spans and metrics (extra ``otel``), following the semantic conventions for
database and cache clients.

Off until asked for, and then only if a tracer or meter provider is there to take what it
records: ``LeadDBSettings(telemetry=True)`` switches it on at ``LeadDB.connect`` with the global
providers, ``instrument(tracer_provider=..., meter_provider=...)`` with given ones. While it is
off, each instrumented place reads the module-level flag ``on`` and does nothing else: no span,
no attribute dict, no clock read. This module imports OpenTelemetry only when switched on, so the
plain install (without the extra) runs the same code.

What is recorded:

* a span per unit of work (``leaddb.unit_of_work``: tenant, actor, outcome committed /
  rolled_back / failed), current while the block runs, so what runs inside nests under it;
* a child span per statement leaddb sends (``db.system.name=postgresql``, operation, table, the
  statement's text with every literal replaced by ``?``: the repositories send values only as
  ``$n`` parameters, and parameters are never recorded);
* a span per Redis round trip of the cache (hit / miss / fill refused as attributes) and per
  session resolve;
* metrics: the cache's counters (read from ``db.cache.stats()`` itself, so both always agree),
  the breaker's state, the pool's connections (idle / used / max / waiting), the duration and
  outcome of units of work, commit failures, and the duration of each statement.
"""

from __future__ import annotations

import itertools
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, Counter, Histogram, MeterProvider
    from opentelemetry.metrics import Observation as ObservationType
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

T = TypeVar("T")

on = False
"""Whether telemetry is switched on. The only thing instrumented code reads while it is off."""

_NAME = "leaddb"
_CLIENT_NAME = "leaddb.client"


class _Pool(Protocol):
    def get_size(self) -> int: ...
    def get_idle_size(self) -> int: ...
    def get_max_size(self) -> int: ...
    def get_waiting(self) -> int: ...


class CacheStats(Protocol):
    """What the metrics read of ``CacheStore.stats()`` (kept here: telemetry sits below the
    cache in the layers)."""

    hits: int
    misses: int
    fills: int
    refused_fills: int
    invalidations: int
    errors: int
    breaker_open: bool


class _Cache(Protocol):
    def stats(self) -> CacheStats: ...


_watched: weakref.WeakKeyDictionary[object, tuple[str, _Pool, _Cache]] = weakref.WeakKeyDictionary()
_client_numbers = itertools.count(1)


def watch(db: object, pool: _Pool, cache: _Cache) -> str:
    """Report ``db``'s pool and cache in the metrics while ``db`` lives (``LeadDB`` does this
    itself); returns the name its metrics carry as ``leaddb.client``."""
    name = f"leaddb-{next(_client_numbers)}"
    _watched[db] = (name, pool, cache)
    return name


def unwatch(db: object) -> None:
    _watched.pop(db, None)


@dataclass
class _State:
    tracer: Tracer
    statement_duration: Histogram
    unit_duration: Histogram
    commit_failures: Counter
    # OpenTelemetry's names, looked up once rather than imported on every call.
    client: SpanKind
    error_code: StatusCode
    status: type[Status]
    attach: Callable[[Context], Token[Context]]
    detach: Callable[[Token[Context]], None]
    in_context: Callable[[Span], Context]

    def failed(self, span: Span, error: BaseException) -> None:
        described = type(error).__qualname__
        span.record_exception(error)
        span.set_attribute("error.type", described)
        span.set_status(self.status(self.error_code, described))


_state: _State | None = None


def instrument(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> bool:
    """Switch telemetry on, with these providers or else the global ones; True if it is on.

    Without any provider to record to (the global ones are OpenTelemetry's defaults, which
    drop everything), it stays off, so a service that installed the extra but configured no
    SDK pays nothing. Set the global providers before connecting. Calling it again replaces
    the providers.
    """
    global on, _state
    from opentelemetry import context, metrics, trace

    if tracer_provider is None and _is_configured(trace.get_tracer_provider()):
        tracer_provider = trace.get_tracer_provider()
    if meter_provider is None and _is_configured(metrics.get_meter_provider()):
        meter_provider = metrics.get_meter_provider()
    if tracer_provider is None and meter_provider is None:
        return on
    tracer = trace.get_tracer(_NAME, tracer_provider=tracer_provider or trace.NoOpTracerProvider())
    meter = metrics.get_meter(_NAME, meter_provider=meter_provider or metrics.NoOpMeterProvider())
    _observe(meter)
    _state = _State(
        tracer=tracer,
        statement_duration=meter.create_histogram(
            "db.client.operation.duration", unit="s", description="Duration of each statement"
        ),
        unit_duration=meter.create_histogram(
            "leaddb.unit_of_work.duration",
            unit="s",
            description="Duration of units of work, by outcome",
        ),
        commit_failures=meter.create_counter(
            "leaddb.unit_of_work.commit_failures",
            unit="{commit}",
            description="COMMITs that failed or were answered with ROLLBACK",
        ),
        client=trace.SpanKind.CLIENT,
        error_code=trace.StatusCode.ERROR,
        status=trace.Status,
        attach=context.attach,
        detach=context.detach,
        in_context=trace.set_span_in_context,
    )
    on = True
    return True


def uninstrument() -> None:
    """Switch telemetry off again (instruments already handed to a meter stay registered)."""
    global on, _state
    on = False
    _state = None


def _is_configured(provider: object) -> bool:
    # The API's own providers (no-op, or the proxy standing in until one is set) record
    # nothing; an SDK's (or any other implementation's) come from another package.
    module = type(provider).__module__
    return not module.startswith(("opentelemetry.trace", "opentelemetry.metrics"))


# -- metrics read at collection time --------------------------------------------------------


def _observe(meter: Any) -> None:
    from opentelemetry.metrics import Observation

    def stats() -> Iterator[tuple[str, CacheStats]]:
        for name, _, cache in list(_watched.values()):
            yield name, cache.stats()

    def counter(field: str) -> Callable[[CallbackOptions], Iterable[ObservationType]]:
        def callback(options: CallbackOptions) -> Iterable[ObservationType]:
            return [
                Observation(getattr(counts, field), {_CLIENT_NAME: name})
                for name, counts in stats()
            ]

        return callback

    for field, description in (
        ("hits", "Cache lookups answered from Redis"),
        ("misses", "Cache lookups that went to PostgreSQL"),
        ("fills", "Rows written into the cache"),
        ("refused_fills", "Fills refused because the row changed since it was read"),
        ("invalidations", "Rows, entities and tenants invalidated after commits"),
        ("errors", "Redis calls of the cache that failed"),
    ):
        meter.create_observable_counter(
            f"leaddb.cache.{field}", [counter(field)], unit="{operation}", description=description
        )

    def breaker(options: CallbackOptions) -> Iterable[ObservationType]:
        return [
            Observation(int(counts.breaker_open), {_CLIENT_NAME: name}) for name, counts in stats()
        ]

    meter.create_observable_gauge(
        "leaddb.cache.breaker.open",
        [breaker],
        unit="1",
        description="1 while the cache's circuit breaker keeps Redis out of use, else 0",
    )

    def pools() -> Iterator[tuple[str, _Pool]]:
        for name, pool, _ in list(_watched.values()):
            yield name, pool

    def connections(options: CallbackOptions) -> Iterable[ObservationType]:
        found = []
        for name, pool in pools():
            size, idle = pool.get_size(), pool.get_idle_size()
            pool_name = {"db.client.connection.pool.name": name}
            found.append(Observation(idle, {**pool_name, "db.client.connection.state": "idle"}))
            found.append(
                Observation(size - idle, {**pool_name, "db.client.connection.state": "used"})
            )
        return found

    def maximum(options: CallbackOptions) -> Iterable[ObservationType]:
        return [
            Observation(pool.get_max_size(), {"db.client.connection.pool.name": name})
            for name, pool in pools()
        ]

    def waiting(options: CallbackOptions) -> Iterable[ObservationType]:
        return [
            Observation(pool.get_waiting(), {"db.client.connection.pool.name": name})
            for name, pool in pools()
        ]

    meter.create_observable_up_down_counter(
        "db.client.connection.count", [connections], unit="{connection}"
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.max", [maximum], unit="{connection}"
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.pending_requests", [waiting], unit="{request}"
    )


# -- statements -----------------------------------------------------------------------------

# A quoted literal ('it''s', E'..') or a number that is not a $n placeholder or part of a name.
_LITERAL = re.compile(r"[Ee]?'(?:[^']|'')*'|(?<![\w$.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE|TABLE|JOIN)\s+(?:ONLY\s+)?"?([A-Za-z_][\w.]*)"?', re.I)
_WRITE = re.compile(
    r'(?<!FOR\s)\b(INSERT|UPDATE|DELETE)\s+(?:INTO\s+|FROM\s+)?"?([A-Za-z_][\w.]*)"?', re.I
)
_SHAPE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class _Shape:
    summary: str
    attributes: dict[str, str]
    metric_attributes: dict[str, str]


_shapes: dict[str, _Shape] = {}


def _shape(text: str | None) -> _Shape:
    if text is None:
        # COPY, sent by asyncpg's copy_records_to_table: no text of leaddb's.
        text = "COPY"
    shape = _shapes.get(text)
    if shape is not None:
        return shape
    sanitized = _LITERAL.sub("?", text)
    words = sanitized.split(None, 1)
    operation = words[0].upper().rstrip(";") if words else ""
    table_match = _TABLE.search(sanitized)
    table = table_match.group(1) if table_match else None
    if operation == "WITH":
        # leaddb's writes are CTEs (the row, then its audit row): named after their first write.
        write = _WRITE.search(sanitized)
        operation = write.group(1).upper() if write else "SELECT"
        table = write.group(2) if write else table
    summary = f"{operation} {table}" if table else operation
    metric_attributes = {"db.system.name": "postgresql", "db.operation.name": operation}
    if table:
        metric_attributes["db.collection.name"] = table
    attributes = {**metric_attributes, "db.query.text": sanitized, "db.query.summary": summary}
    shape = _Shape(summary, attributes, metric_attributes)
    if len(_shapes) >= _SHAPE_LIMIT:
        _shapes.clear()
    _shapes[text] = shape
    return shape


async def statement(method: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    """``await method(*args)`` inside a statement span; ``args[0]`` is the SQL text, if any.

    Called only while ``on``: ``await (telemetry.statement(c.execute, (sql,)) if telemetry.on
    else c.execute(sql))``."""
    state = _state
    if state is None:  # switched off since the caller looked
        return await method(*args)
    text = args[0] if args and isinstance(args[0], str) else None
    shape = _shape(text)
    # Not made current: nothing runs inside a statement, and attaching a context costs.
    span = state.tracer.start_span(shape.summary, kind=state.client, attributes=shape.attributes)
    started = time.perf_counter()
    try:
        result = await method(*args)
    except BaseException as error:
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str):
            span.set_attribute("db.response.status_code", sqlstate)
        state.failed(span, error)
        span.end()
        state.statement_duration.record(
            time.perf_counter() - started,
            {**shape.metric_attributes, "error.type": type(error).__qualname__},
        )
        raise
    span.end()
    state.statement_duration.record(time.perf_counter() - started, shape.metric_attributes)
    return result


# -- cache round trips ----------------------------------------------------------------------


def now() -> int:
    """The start of a round trip, for ``cache_call`` (read only while ``on``)."""
    return time.time_ns()


def cache_call(
    started: int,
    operation: str,
    action: str,
    entity: str | None,
    *,
    error: BaseException | None = None,
    **outcome: bool | int,
) -> None:
    """Record a Redis round trip of the cache that began at ``started`` (``now()``) and has
    just ended: ``outcome`` holds its result (``hit=True``, ``fill_refused=False``, ...), as
    ``leaddb.cache.<name>`` attributes."""
    state = _state
    if state is None or not started:
        return
    attributes: dict[str, str | bool | int] = {
        "db.system.name": "redis",
        "db.operation.name": operation,
        "leaddb.cache.action": action,
    }
    if entity is not None:
        attributes["leaddb.cache.entity"] = entity
    for name, value in outcome.items():
        attributes[f"leaddb.cache.{name}"] = value
    span = state.tracer.start_span(
        f"{operation} leaddb.cache.{action}",
        kind=state.client,
        attributes=attributes,
        start_time=started,
    )
    if error is not None:
        state.failed(span, error)
    span.end()


# -- sessions -------------------------------------------------------------------------------


async def session_resolve(resolve: Awaitable[T]) -> T:
    """Await a session lookup inside a ``leaddb.session.resolve`` span (found: true / false)."""
    state = _state
    if state is None:
        return await resolve
    span = state.tracer.start_span("leaddb.session.resolve")
    try:
        result = await resolve
    except BaseException as error:
        state.failed(span, error)
        span.end()
        raise
    span.set_attribute("leaddb.session.found", result is not None)
    span.end()
    return result


# -- units of work --------------------------------------------------------------------------


class UnitTrace:
    """The span and clock of one unit of work, from ``async with`` to its end."""

    __slots__ = ("_kind", "_span", "_started", "_state", "_token", "outcome")

    def __init__(self, state: _State, tenant_id: object | None, actor_id: object | None) -> None:
        kind = "tenant" if tenant_id is not None else "platform"
        attributes = {"leaddb.unit_of_work.kind": kind}
        if tenant_id is not None:
            attributes["leaddb.tenant.id"] = str(tenant_id)
        if actor_id is not None:
            attributes["leaddb.actor.id"] = str(actor_id)
        self._state = state
        self._kind = kind
        self._span = span = state.tracer.start_span("leaddb.unit_of_work", attributes=attributes)
        # Current while the block runs, so its statements and the caller's own spans nest.
        self._token = state.attach(state.in_context(span))
        self._started = time.perf_counter()
        self.outcome: str | None = None
        """None until ``commit()`` begins; "committing" while it runs; "committed" after."""

    def end(self, error: BaseException | None) -> None:
        state = self._state
        outcome = self.outcome
        if outcome == "committing":
            outcome = "failed"
            state.commit_failures.add(1, {"leaddb.unit_of_work.kind": self._kind})
        elif outcome is None:
            outcome = "rolled_back" if error is None else "failed"
        span = self._span
        span.set_attribute("leaddb.unit_of_work.outcome", outcome)
        if error is not None:
            if outcome == "failed":
                state.failed(span, error)
            else:  # raised after the commit: recorded, but the unit of work did its job
                span.record_exception(error)
        span.end()
        # Detached in the context it was attached in; in another one (an ``async with`` whose
        # exit runs in another task), OpenTelemetry logs that and carries on.
        state.detach(self._token)
        state.unit_duration.record(
            time.perf_counter() - self._started,
            {"leaddb.unit_of_work.kind": self._kind, "leaddb.unit_of_work.outcome": outcome},
        )


def start_unit(tenant_id: object | None, actor_id: object | None) -> UnitTrace | None:
    """The span of a unit of work entering its block, made current until ``end``."""
    state = _state
    return None if state is None else UnitTrace(state, tenant_id, actor_id)
