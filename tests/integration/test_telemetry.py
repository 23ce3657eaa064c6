"""OpenTelemetry: the spans and metrics of reads, writes, cache hits, refused fills, rollbacks
and failed commits, read back from the SDK's in-memory exporters."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from asyncio.subprocess import PIPE
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import SecretStr

import leaddb
from leaddb import LeadDB, LeadDBSettings, telemetry
from leaddb.errors import ConflictError, TransactionFailedError
from leaddb.models import LeadCreate, LeadUpdate

from .factories import make_lead, make_org, make_user
from .session_helpers import DEAD_REDIS

if TYPE_CHECKING:
    from conftest import TestServers


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
    assert idle.value == db._pool.get_idle_size()
    assert idle.value + used.value == db._pool.get_size()
    assert recorded.value("db.client.connection.max", **pool).value == db._pool.get_max_size()
    assert recorded.value("db.client.connection.pending_requests", **pool).value == 0


async def test_a_session_resolve_is_a_span_that_says_whether_it_found_one(
    db: LeadDB, recorded: Recorded
) -> None:
    org = await make_org(db)
    user = (await make_user(db, org.id)).id
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


async def test_an_unreachable_redis_is_an_error_on_the_lookup_span_and_opens_the_breaker_gauge(
    settings: LeadDBSettings, recorded: Recorded
) -> None:
    async with await LeadDB.connect(settings) as db:
        org = await make_org(db)
        lead = await make_lead(db, org.id)
    dead = settings.model_copy(update={"redis_url": SecretStr(DEAD_REDIS)})
    async with await LeadDB.connect(dead) as db:
        recorded.spans.clear()
        async with db.tenant(org.id) as uow:
            assert await uow.leads.get(lead.id) is not None

        [lookup] = recorded.named("MGET leaddb.cache.lookup")
        assert lookup.status.status_code is StatusCode.ERROR
        assert lookup.attributes is not None
        assert lookup.attributes["error.type"] in {"ConnectionError", "ConnectionRefusedError"}
        assert [event.name for event in lookup.events] == ["exception"]
        name = {"leaddb.client": db.telemetry_name}
        assert recorded.value("leaddb.cache.breaker.open", **name).value == 1
        assert recorded.value("leaddb.cache.errors", **name).value == db.cache.stats().errors == 1


async def test_while_off_no_hook_does_any_work(db: LeadDB, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("telemetry is off: nothing of it may run")

    assert telemetry.on is False
    for name in ("statement", "cache_call", "now", "start_unit", "session_resolve"):
        monkeypatch.setattr(telemetry, name, refuse)
    org = await make_org(db)
    lead = await make_lead(db, org.id)
    async with db.tenant(org.id) as uow:
        await uow.leads.get(lead.id)
        await uow.leads.get(lead.id)
        await uow.leads.update(lead.id, LeadUpdate(score=3), expected_version=lead.version)
        await uow.commit()
    member = await make_user(db, org.id)
    token = await db.sessions.create(user_id=member.id, organization_id=org.id)
    assert await db.sessions.get(token) is not None


async def test_telemetry_setting_without_a_provider_stays_off_and_says_so(
    settings: LeadDBSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="leaddb")
    async with await LeadDB.connect(settings.model_copy(update={"telemetry": True})):
        assert telemetry.on is False
    assert "no OpenTelemetry tracer or meter provider" in caplog.text


CHECKOUT = str(Path(leaddb.__file__).resolve().parents[1])
"""Where this leaddb is imported from, for the subprocess to import the same one."""

GLOBAL_PROVIDERS = """
import asyncio, sys
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from leaddb import LeadDB, LeadDBSettings

spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


async def main() -> None:
    async with await LeadDB.connect(LeadDBSettings(telemetry=True)) as db:
        async with db.platform() as uow:
            await uow.organizations.list()
        names = {m.name for r in reader.get_metrics_data().resource_metrics
                 for s in r.scope_metrics for m in s.metrics}
    print(sorted({span.name for span in spans.get_finished_spans()}))
    print("db.client.connection.count" in names, "leaddb.unit_of_work.duration" in names)


asyncio.run(main())
"""


async def test_the_setting_uses_the_global_providers_set_before_connecting(
    settings: LeadDBSettings, servers: TestServers, tmp_path: Path
) -> None:
    # The global providers can be set once per process: this runs in a process of its own.
    script = tmp_path / "global_providers.py"
    script.write_text(GLOBAL_PROVIDERS, encoding="utf-8")
    assert settings.database_url is not None
    env = {name: value for name, value in os.environ.items() if not name.startswith("LEADDB_")}
    env["LEADDB_DATABASE_URL"] = settings.database_url.get_secret_value()
    env["LEADDB_REDIS_URL"] = servers.redis_url
    env["PYTHONPATH"] = CHECKOUT
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode().splitlines() == [
        "['BEGIN', 'ROLLBACK', 'SELECT organizations', 'leaddb.unit_of_work']",
        "True True",
    ]
