"""OpenTelemetry: the spans and metrics of reads, writes, cache hits, refused fills, rollbacks
and failed commits, read back from the SDK's in-memory exporters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from leaddb import LeadDB, telemetry
from leaddb.errors import ConflictError, TransactionFailedError
from leaddb.models import LeadCreate, LeadUpdate

from .factories import make_lead, make_org


@dataclass
class Recorded:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name.startswith(prefix)]

    def units(self) -> list[ReadableSpan]:
        return self.named("leaddb.unit_of_work")

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        found = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += list(metric.data.data_points)
        return found

    def value(self, name: str, **attributes: object) -> Any:
        matching = [
            point
            for point in self.points(name)
            if all(point.attributes.get(key) == value for key, value in attributes.items())
        ]
        assert len(matching) == 1, (name, attributes, matching)
        return matching[0]


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    assert telemetry.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Recorded(spans, reader)
    finally:
        telemetry.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()


def children_of(parent: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        span
        for span in spans
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    ]


def all_attribute_values(spans: list[ReadableSpan]) -> str:
    return " ".join(str(value) for span in spans for value in (span.attributes or {}).values())


async def test_a_read_is_a_unit_span_with_its_statement_and_cache_round_trips_as_children(
    db: LeadDB, recorded: Recorded
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id, email="secret-ada@example.com", first_name="Adalind")
    recorded.spans.clear()
    user = uuid.uuid4()

    async with db.tenant(org.id, actor=user) as uow:
        assert await uow.leads.get(lead.id) is not None
        await uow.commit()

    spans = recorded.finished()
    [unit] = recorded.units()
    assert unit.attributes is not None
    assert unit.attributes["leaddb.tenant.id"] == str(org.id)
    assert unit.attributes["leaddb.actor.id"] == str(user)
    assert unit.attributes["leaddb.unit_of_work.outcome"] == "committed"
    children = children_of(unit, spans)
    names = [span.name for span in children]
    assert "MGET leaddb.cache.lookup" in names
    assert "SELECT leads" in names
    assert "EVALSHA leaddb.cache.fill" in names
    [select] = [span for span in children if span.name == "SELECT leads"]
    assert select.attributes is not None
    assert select.attributes["db.system.name"] == "postgresql"
    assert select.attributes["db.operation.name"] == "SELECT"
    assert select.attributes["db.collection.name"] == "leads"
    assert "$1" in str(select.attributes["db.query.text"])
    [lookup] = [span for span in children if span.name == "MGET leaddb.cache.lookup"]
    assert lookup.attributes is not None
    assert lookup.attributes["leaddb.cache.hit"] is False
    assert lookup.attributes["db.system.name"] == "redis"
    [fill] = [span for span in children if span.name == "EVALSHA leaddb.cache.fill"]
    assert fill.attributes is not None
    assert fill.attributes["leaddb.cache.fill_refused"] is False
    # The BEGIN carries the tenant in a literal: recorded without it.
    [begin] = [span for span in children if span.name == "BEGIN"]
    assert begin.attributes is not None
    assert str(org.id) not in str(begin.attributes["db.query.text"])
    everything = all_attribute_values(spans)
    assert "secret-ada" not in everything
    assert "Adalind" not in everything
    assert str(lead.id) not in everything


async def test_a_write_records_its_insert_commit_and_invalidation(
    db: LeadDB, recorded: Recorded
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    recorded.spans.clear()

    async with db.tenant(org.id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(score=80), expected_version=lead.version)
        created = await uow.leads.create(LeadCreate(email="grace@example.com"))
        await uow.commit()

    [unit] = recorded.units()
    children = children_of(unit, recorded.finished())
    names = [span.name for span in children]
    assert "UPDATE leads" in names
    assert "INSERT leads" in names
    assert "COMMIT" in names
    [invalidate] = [span for span in children if span.name == "EVALSHA leaddb.cache.invalidate"]
    assert invalidate.attributes is not None
    assert invalidate.attributes["leaddb.cache.invalidations"] == 1
    assert "grace@example.com" not in all_attribute_values(recorded.finished())
    assert str(created.id) not in all_attribute_values(recorded.finished())
    duration = recorded.value(
        "leaddb.unit_of_work.duration",
        **{"leaddb.unit_of_work.outcome": "committed", "leaddb.unit_of_work.kind": "tenant"},
    )
    assert duration.count >= 1
    statements = recorded.value(
        "db.client.operation.duration",
        **{"db.operation.name": "UPDATE", "db.collection.name": "leads"},
    )
    assert statements.count == 1


async def test_a_cache_hit_sends_no_statement(db: LeadDB, recorded: Recorded) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        await uow.leads.get(lead.id)
    recorded.spans.clear()

    async with db.tenant(org.id) as uow:
        assert await uow.leads.get(lead.id) is not None

    [unit] = recorded.units()
    assert unit.attributes is not None
    assert unit.attributes["leaddb.unit_of_work.outcome"] == "rolled_back"
    children = children_of(unit, recorded.finished())
    assert [span.name for span in children] == ["MGET leaddb.cache.lookup"]
    assert children[0].attributes is not None
    assert children[0].attributes["leaddb.cache.hit"] is True


async def test_a_fill_refused_after_a_commit_is_recorded_and_counted(
    db: LeadDB, recorded: Recorded
) -> None:
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    looked = await db.cache.lookup(org.id, "lead", lead.id)
    assert looked is not None
    payload, tokens = looked
    assert payload is None
    # The row changes between the reader's lookup and its fill: the fill must be refused.
    async with db.tenant(org.id) as uow:
        await uow.leads.update(lead.id, LeadUpdate(score=5), expected_version=lead.version)
        await uow.commit()
    recorded.spans.clear()

    await db.cache.fill(org.id, "lead", lead.id, tokens, b"stale")

    [fill] = recorded.named("EVALSHA leaddb.cache.fill")
    assert fill.attributes is not None
    assert fill.attributes["leaddb.cache.fill_refused"] is True
    assert fill.attributes["leaddb.cache.entity"] == "lead"
    refused = recorded.value("leaddb.cache.refused_fills", **{"leaddb.client": db.telemetry_name})
    assert refused.value == db.cache.stats().refused_fills == 1


async def test_a_rollback_records_the_rollback_and_its_outcome(
    db: LeadDB, recorded: Recorded
) -> None:
    org = await make_org(db)
    recorded.spans.clear()

    async with db.tenant(org.id) as uow:
        await uow.leads.create(LeadCreate(email="never@example.com"))

    [unit] = recorded.units()
    assert unit.attributes is not None
    assert unit.attributes["leaddb.unit_of_work.outcome"] == "rolled_back"
    assert unit.status.status_code is not StatusCode.ERROR
    assert "ROLLBACK" in [span.name for span in children_of(unit, recorded.finished())]
    duration = recorded.value(
        "leaddb.unit_of_work.duration", **{"leaddb.unit_of_work.outcome": "rolled_back"}
    )
    assert duration.count == 1


async def test_a_failed_commit_marks_the_unit_failed_and_counts_a_commit_failure(
    db: LeadDB, recorded: Recorded
) -> None:
    org = await make_org(db)
    await make_lead(db, org.id, email="taken@example.com")
    recorded.spans.clear()

    async def insert_twice_then_commit() -> None:
        async with db.tenant(org.id) as uow:
            with pytest.raises(ConflictError):
                await uow.leads.create(LeadCreate(email="taken@example.com"))
            await uow.commit()

    with pytest.raises(TransactionFailedError):
        await insert_twice_then_commit()

    [unit] = recorded.units()
    assert unit.attributes is not None
    assert unit.attributes["leaddb.unit_of_work.outcome"] == "failed"
    assert unit.status.status_code is StatusCode.ERROR
    assert unit.attributes["error.type"] == "TransactionFailedError"
    assert [event.name for event in unit.events] == ["exception"]
    [insert] = recorded.named("INSERT leads")
    assert insert.status.status_code is StatusCode.ERROR
    assert insert.attributes is not None
    assert insert.attributes["db.response.status_code"] == "23505"
    failures = recorded.value("leaddb.unit_of_work.commit_failures")
    assert failures.value == 1


async def test_cache_and_pool_metrics_agree_with_stats_and_the_pool(
    db: LeadDB, recorded: Recorded
) -> None:
    org = await make_org(db)
    leads = [await make_lead(db, org.id) for _ in range(3)]
    for _ in range(2):
        async with db.tenant(org.id) as uow:
            await uow.leads.get_many([lead.id for lead in leads])
            await uow.leads.get(leads[0].id)
    async with db.tenant(org.id) as uow:
        await uow.leads.update(leads[0].id, LeadUpdate(score=1), expected_version=1)
        await uow.commit()

    stats = db.cache.stats()
    name = {"leaddb.client": db.telemetry_name}
    assert stats.hits > 0
    assert stats.misses > 0
    assert stats.invalidations > 0
    for field in ("hits", "misses", "fills", "refused_fills", "invalidations", "errors"):
        assert recorded.value(f"leaddb.cache.{field}", **name).value == getattr(stats, field)
    assert recorded.value("leaddb.cache.breaker.open", **name).value == 0
    pool = {"db.client.connection.pool.name": db.telemetry_name}
    idle = recorded.value(
        "db.client.connection.count", **pool, **{"db.client.connection.state": "idle"}
    )
    used = recorded.value(
        "db.client.connection.count", **pool, **{"db.client.connection.state": "used"}
    )
    assert idle.value == db.pool.get_idle_size()
    assert idle.value + used.value == db.pool.get_size()
    assert recorded.value("db.client.connection.max", **pool).value == db.pool.get_max_size()
    assert recorded.value("db.client.connection.pending_requests", **pool).value == 0


async def test_a_session_resolve_is_a_span_that_says_whether_it_found_one(
    db: LeadDB, recorded: Recorded
) -> None:
    org = await make_org(db)
    user = uuid.uuid4()
    token = await db.sessions.create(user_id=user, organization_id=org.id)
    recorded.spans.clear()

    assert await db.sessions.get(token) is not None
    assert await db.sessions.get(token[:-2] + "xx") is None

    resolved = recorded.named("leaddb.session.resolve")
    assert [(span.attributes or {}).get("leaddb.session.found") for span in resolved] == [
        True,
        False,
    ]
    assert token not in all_attribute_values(recorded.finished())
