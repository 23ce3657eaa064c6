"""Query plans on realistic volumes: 100,000 leads over 20 organizations (plus communications,
workflow runs and audit rows), seeded with COPY into a database of this module's own and
analysed, then EXPLAIN of every query pattern the repositories make must show an index on the
big table, never a sequential scan. The statements are built with SQLAlchemy Core from the
models (the search condition is ``lead_search_condition`` itself) and sent with ``$n``
parameters, as the repositories send them."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import sqlalchemy as sa
import uuid_utils
from conftest import asyncpg_dsn, run_settings
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url
from uuid_utils.compat import uuid7 as compat_uuid7

from leaddb import migrate as migrations
from leaddb.db import create_engine
from leaddb.models import (
    ActivityLog,
    Communication,
    Lead,
    LeadSource,
    LeadStatus,
    LeadTemperature,
    WorkflowExecution,
    lead_search_condition,
    table_of,
)

if TYPE_CHECKING:
    from conftest import TestServers

ORGANIZATIONS = 20
LEADS = 100_000
USERS_PER_ORG = 10
WORKFLOWS_PER_ORG = 5
COMMUNICATIONS = 50_000
EXECUTIONS = 25_000
ACTIVITY = 50_000
NOW = datetime(2026, 11, 1, tzinfo=UTC)
TAGS = ["eu", "us", "apac", "smb", "enterprise", "inbound", "outbound", "trial", "churn-risk"]
INDUSTRIES = ["aerospace", "banking", "retail", "energy", "media", "health", "telecom",
              "education", "logistics", "software"]  # fmt: skip
_DIALECT = asyncpg_dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]

leads, communications = table_of(Lead), table_of(Communication)
executions, activity = table_of(WorkflowExecution), table_of(ActivityLog)


@dataclass
class Seeded:
    """The seeded database and the rows the queries look for."""

    connection: asyncpg.Connection
    org: uuid.UUID
    owner: uuid.UUID
    lead: uuid.UUID
    workflow: uuid.UUID
    cursor: tuple[datetime, uuid.UUID]
    seconds: float


def _ids(count: int) -> list[uuid.UUID]:
    return [compat_uuid7() for _ in range(count)]


def _row_ids(count: int) -> list[uuid_utils.UUID]:
    """UUIDv7s made natively (no stdlib conversion): asyncpg sends anything with ``.bytes``."""
    return [uuid_utils.uuid7() for _ in range(count)]


def _lead_records(
    rng: random.Random, orgs: list[uuid.UUID], users: dict[uuid.UUID, list[uuid.UUID]]
) -> list[tuple[Any, ...]]:
    """LEADS rows, column by column from small pools (rng.choices is fast; per-row calls and
    object construction are what make Python seeding slow)."""
    moments = [NOW - timedelta(seconds=rng.randrange(365 * 86400)) for _ in range(20_000)]
    tag_pool = [rng.sample(TAGS, rng.randrange(4)) for _ in range(990)]
    tag_pool += [[*rng.sample(TAGS, rng.randrange(3)), "vip"] for _ in range(10)]  # 1 % vip
    fields_pool = [{"industry": i, "employees": e} for i in INDUSTRIES for e in range(0, 5000, 50)]
    org_of = [orgs[n % ORGANIZATIONS] for n in range(LEADS)]
    owners = [rng.choice([*users[org], None]) for org in org_of]  # about 9 % unowned
    columns = zip(
        org_of, _row_ids(LEADS),
        (f"lead{n}@example.com" for n in range(LEADS)),
        (f"First{n % 500}" for n in range(LEADS)),
        (f"Surname{n % 2000:04d}" for n in range(LEADS)),  # 50 leads per surname
        (f"Company {n % 700}" for n in range(LEADS)),
        rng.choices([source.value for source in LeadSource], k=LEADS),
        rng.choices([status.value for status in LeadStatus], k=LEADS),
        rng.choices(range(101), k=LEADS),
        rng.choices([temperature.value for temperature in LeadTemperature], k=LEADS),
        rng.choices([Decimal(cents) / 100 for cents in range(0, 10**7, 9973)], k=LEADS),
        rng.choices([*moments, *[None] * 2000], k=LEADS),  # about 9 % never engaged
        owners,
        rng.choices(tag_pool, k=LEADS),
        rng.choices(fields_pool, k=LEADS),
        (created := rng.choices(moments, k=LEADS)),
        created,
        rng.choices([None] * 49 + [NOW], k=LEADS),  # 2 % soft-deleted
        strict=True,
    )  # fmt: skip
    return list(columns)


@asynccontextmanager
async def _bulk_load(connection: asyncpg.Connection, tables: list[str]) -> AsyncIterator[None]:
    """Drop the secondary indexes and foreign keys of ``tables``, and put them back, exactly as
    pg_catalog describes them, once the block has loaded its rows: building an index or
    validating a key once over 100,000 rows is many times faster than maintaining it per row."""
    indexes = await connection.fetch(
        "SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS definition "
        "FROM pg_index WHERE indrelid::regclass::text = ANY($1) AND NOT indisprimary "
        "AND NOT EXISTS (SELECT FROM pg_constraint WHERE conindid = indexrelid)",
        tables,
    )
    keys = await connection.fetch(
        "SELECT conrelid::regclass::text AS table_name, conname AS name, "
        "pg_get_constraintdef(oid) AS definition FROM pg_constraint "
        "WHERE contype = 'f' AND conrelid::regclass::text = ANY($1)",
        tables,
    )
    for key in keys:
        await connection.execute(f"ALTER TABLE {key['table_name']} DROP CONSTRAINT {key['name']}")
    for index in indexes:
        await connection.execute(f"DROP INDEX {index['name']}")
    yield
    await connection.execute("SET maintenance_work_mem = '256MB'")
    for index in indexes:
        await connection.execute(index["definition"])
    for key in keys:
        await connection.execute(
            f"ALTER TABLE {key['table_name']} ADD CONSTRAINT {key['name']} {key['definition']}"
        )


async def _seed(connection: asyncpg.Connection) -> Seeded:
    rng = random.Random(20261125)
    orgs = _ids(ORGANIZATIONS)
    users = {org: _ids(USERS_PER_ORG) for org in orgs}
    flows = {org: _ids(WORKFLOWS_PER_ORG) for org in orgs}
    await connection.copy_records_to_table(
        "organizations", columns=["id", "name", "slug"],
        records=[(org, f"Org {n}", f"org-{n}") for n, org in enumerate(orgs)],
    )  # fmt: skip
    await connection.copy_records_to_table(
        "users", columns=["organization_id", "id", "email", "full_name", "timezone"],
        records=[(org, user, f"u{n}@org.example", f"User {n}", "UTC")
                 for org in orgs for n, user in enumerate(users[org])],
    )  # fmt: skip
    await connection.copy_records_to_table(
        "workflows", columns=["organization_id", "id", "name", "n8n_workflow_id"],
        records=[(org, flow, f"Flow {n}", f"n8n-{n}")
                 for org in orgs for n, flow in enumerate(flows[org])],
    )  # fmt: skip
    big = ["leads", "communications", "workflow_executions", "activity_logs"]
    async with _bulk_load(connection, big):
        lead_rows = _lead_records(rng, orgs, users)
        lead_ids = [(row[0], row[1]) for row in lead_rows]
        moments = [row[15] for row in lead_rows]
        await connection.copy_records_to_table(
            "leads", records=lead_rows,
            columns=["organization_id", "id", "email", "first_name", "last_name", "company",
                     "source", "status", "score", "temperature", "estimated_value",
                     "last_engagement_at", "owner_id", "tags", "custom_fields", "created_at",
                     "updated_at", "deleted_at"],
        )  # fmt: skip
        contacted = lead_ids[: COMMUNICATIONS // 5]
        await connection.copy_records_to_table(
            "communications",
            columns=["organization_id", "id", "lead_id", "channel", "direction", "status",
                     "subject", "sent_at", "created_at", "updated_at"],
            records=[(org, id, lead, "email", "outbound", "sent", "Hello", at, at, at)
                     for (org, lead), id, at in zip(contacted * 5, _row_ids(COMMUNICATIONS),
                                                    rng.choices(moments, k=COMMUNICATIONS),
                                                    strict=True)],
        )  # fmt: skip
        await connection.copy_records_to_table(
            "workflow_executions",
            columns=["organization_id", "id", "workflow_id", "lead_id", "status", "created_at"],
            records=[(org, id, flows[org][n % WORKFLOWS_PER_ORG], lead, "succeeded", at)
                     for n, ((org, lead), id, at) in enumerate(zip(
                         rng.choices(lead_ids, k=EXECUTIONS), _row_ids(EXECUTIONS),
                         rng.choices(moments, k=EXECUTIONS), strict=True))],
        )  # fmt: skip
        await connection.copy_records_to_table(
            "activity_logs",
            columns=["organization_id", "id", "entity_type", "entity_id", "action", "created_at"],
            records=[(org, id, "lead", lead, "updated", at)
                     for (org, lead), id, at in zip(rng.choices(lead_ids, k=ACTIVITY),
                                                    _row_ids(ACTIVITY),
                                                    rng.choices(moments, k=ACTIVITY), strict=True)],
        )  # fmt: skip
    await connection.execute(
        "ANALYZE organizations, users, workflows, leads, communications, workflow_executions, "
        "activity_logs"
    )
    org = orgs[0]
    lead = uuid.UUID(bytes=contacted[0][1].bytes)
    cursor = await connection.fetchrow(
        "SELECT created_at, id FROM leads WHERE organization_id = $1 AND status = 'new' "
        "ORDER BY created_at, id OFFSET 100 LIMIT 1",
        org,
    )
    assert cursor is not None
    return Seeded(connection, org, users[org][0], lead, flows[org][0], (cursor[0], cursor[1]), 0.0)


@pytest.fixture(scope="module")
async def seeded(servers: TestServers) -> AsyncIterator[Seeded]:
    """A database of the module's own, migrated, seeded with COPY and analysed; dropped after."""
    name = f"leaddb_plans_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(servers.admin_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(servers.admin_url).set(database=name).render_as_string(hide_password=False)
        engine = create_engine(run_settings(url, servers.redis_url))
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await connection.set_type_codec(
                "jsonb", schema="pg_catalog", format="binary",
                encoder=lambda value: b"\x01" + json.dumps(value).encode(),
                decoder=lambda data: json.loads(data[1:]),
            )  # fmt: skip
            started = time.perf_counter()
            seeded = await _seed(connection)
            seeded.seconds = time.perf_counter() - started
            yield seeded
        finally:
            await connection.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plan(
    connection: asyncpg.Connection, statement: sa.Select[Any], *, analyze: bool = False
) -> list[dict[str, Any]]:
    """Every node of the plan PostgreSQL picks for ``statement`` sent with ``$n`` parameters
    (with ``analyze``, run, with the actual figures)."""
    compiled = statement.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    names = tuple(getattr(compiled, "positiontup", None) or ())
    args = [compiled.params[name] for name in names]
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    raw = await connection.fetchval(f"EXPLAIN ({options}) {compiled}", *args)
    return list(_nodes(json.loads(raw)[0]["Plan"]))


def _live(table: sa.Table, org: uuid.UUID) -> list[sa.ColumnElement[bool]]:
    return [table.c.organization_id == org, table.c.deleted_at.is_(None)]


def _patterns(s: Seeded) -> dict[str, tuple[sa.Select[Any], set[str]]]:
    """Each query pattern, and the indexes any one of which should serve it."""
    since = NOW - timedelta(days=300)
    return {
        "status_keyset": (
            sa.select(leads).where(*_live(leads, s.org), leads.c.status == LeadStatus.NEW,
                                   sa.tuple_(leads.c.created_at, leads.c.id) > s.cursor)
            .order_by(leads.c.created_at, leads.c.id).limit(51),
            {"ix_leads_organization_id_status_created_at_id"},
        ),
        "top_scored": (
            sa.select(leads).where(*_live(leads, s.org))
            .order_by(leads.c.score.desc(), leads.c.id.desc()).limit(11),
            # No index on score (rescoring must stay HOT, see the Lead model): any index that
            # finds the tenant's rows will do; test_top_scored_... below checks what it costs.
            {"ix_leads_organization_id_owner_id", "ix_leads_organization_id_created_at_id",
             "pk_leads"},
        ),
        "by_owner": (
            sa.select(leads).where(*_live(leads, s.org), leads.c.owner_id == s.owner)
            .order_by(leads.c.created_at, leads.c.id).limit(51),
            {"ix_leads_organization_id_owner_id"},
        ),
        "stale": (
            sa.select(leads).where(*_live(leads, s.org), leads.c.last_engagement_at < since)
            .order_by(leads.c.last_engagement_at).limit(51),
            {"ix_leads_organization_id_last_engagement_at"},
        ),
        "stale_or_never_engaged": (
            sa.select(leads).where(*_live(leads, s.org), sa.or_(
                leads.c.last_engagement_at.is_(None), leads.c.last_engagement_at < since)),
            {"ix_leads_organization_id_last_engagement_at"},
        ),
        "tags": (
            sa.select(leads).where(*_live(leads, s.org), leads.c.tags.contains(["vip"])),
            {"ix_leads_tags"},
        ),
        "custom_fields": (
            sa.select(leads).where(*_live(leads, s.org),
                                   leads.c.custom_fields.contains({"industry": "aerospace"})),
            {"ix_leads_custom_fields"},
        ),
        "search": (
            sa.select(leads).where(*_live(leads, s.org), lead_search_condition("surname0042")),
            {"ix_leads_search"},
        ),
        "communications_of_lead": (
            sa.select(communications).where(communications.c.organization_id == s.org,
                                            communications.c.lead_id == s.lead)
            .order_by(communications.c.created_at.desc()).limit(50),
            {"ix_communications_organization_id_lead_id_created_at"},
        ),
        "executions_of_workflow": (
            sa.select(executions).where(executions.c.organization_id == s.org,
                                        executions.c.workflow_id == s.workflow)
            .order_by(executions.c.created_at.desc()).limit(50),
            {"ix_workflow_executions_organization_id_workflow_id_created_at"},
        ),
        "activity_of_entity": (
            sa.select(activity).where(activity.c.organization_id == s.org,
                                      activity.c.entity_type == "lead",
                                      activity.c.entity_id == s.lead)
            .order_by(activity.c.created_at).limit(50),
            {"ix_activity_logs_entity_history"},
        ),
    }  # fmt: skip


PATTERNS = [
    "status_keyset", "top_scored", "by_owner", "stale", "stale_or_never_engaged", "tags",
    "custom_fields", "search", "communications_of_lead", "executions_of_workflow",
    "activity_of_entity",
]  # fmt: skip


async def test_seeding_is_fast_and_complete(seeded: Seeded) -> None:
    counts = await seeded.connection.fetchrow(
        "SELECT (SELECT count(*) FROM leads) AS leads, "
        "(SELECT count(DISTINCT organization_id) FROM leads) AS orgs, "
        "(SELECT count(*) FROM communications) AS communications"
    )
    assert counts is not None
    assert (counts["leads"], counts["orgs"], counts["communications"]) == (
        LEADS, ORGANIZATIONS, COMMUNICATIONS
    )  # fmt: skip
    assert seeded.seconds < 60, f"seeding took {seeded.seconds:.1f} s"


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_query_pattern_uses_an_index_not_a_sequential_scan(
    seeded: Seeded, pattern: str
) -> None:
    statement, expected = _patterns(seeded)[pattern]
    table = statement.get_final_froms()[0]
    assert isinstance(table, sa.Table)
    nodes = await _plan(seeded.connection, statement)
    shape = [(node["Node Type"], node.get("Index Name") or node.get("Relation Name"))
             for node in nodes]  # fmt: skip
    seq_scans = [n for n in nodes if n["Node Type"] == "Seq Scan"]
    assert not [n for n in seq_scans if n.get("Relation Name") == table.name], shape
    used = {node["Index Name"] for node in nodes if "Index Name" in node}
    assert used & expected, f"{pattern}: expected one of {sorted(expected)}, plan {shape}"


async def test_top_scored_reads_only_the_tenants_live_leads_and_keeps_the_best_in_memory(
    seeded: Seeded,
) -> None:
    """Without an index on score the top-scored query reads the tenant's leads (one in twenty
    here) and keeps the best few in a bounded top-N heap: never the other tenants' rows, never
    a full sort."""
    statement, _ = _patterns(seeded)["top_scored"]
    nodes = await _plan(seeded.connection, statement, analyze=True)
    live = await seeded.connection.fetchval(
        "SELECT count(*) FROM leads WHERE organization_id = $1 AND deleted_at IS NULL", seeded.org
    )
    sort = next(node for node in nodes if node["Node Type"] == "Sort")
    assert sort["Sort Method"] == "top-N heapsort", sort
    scan = next(node for node in nodes if node.get("Relation Name") == "leads")
    assert scan["Actual Rows"] == live < LEADS / ORGANIZATIONS, scan
