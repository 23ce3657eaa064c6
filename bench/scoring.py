"""Benchmark of lead scoring: one set-based rescoring statement against scoring lead by lead.

``bench_rescoring`` seeds a scratch organization in the given (migrated or migratable)
database with ``leads`` leads (COPY) and ``rules`` active rules of every kind, then times:

* the set-based path, ``uow.scoring.rescore_organization()`` plus commit, twice: the first run
  changes most leads (history row and version bump each), the second changes none;
* the lead-by-lead path through the repositories, on a sample (``LEAD_BY_LEAD_SAMPLE`` leads):
  ``uow.leads.get()`` (read through the cache), ``uow.scoring.score()`` in Python, and for a
  changed lead ``uow.leads.update()`` (audited) plus a ``uow.score_history.create()``, all in one
  committed transaction. Its time is extrapolated linearly to every lead: each lead costs the
  same round trips, so the estimate is the sample's time per lead times ``leads``.

The sample is scored first and put back to its seeded score afterwards, so the first set-based
run does the same work for every lead. The scratch organization is deleted at the end.

Standalone (creates and drops a scratch database on the server of ``--database-url``)::

    python -m bench.scoring --database-url postgresql://postgres@127.0.0.1:5432/postgres \\
        --redis-url redis://127.0.0.1:6379/13 --leads 100000 --rules 20
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic import JsonValue, SecretStr
from sqlalchemy.engine import make_url
from uuid_utils.compat import uuid7

from leaddb import LeadDB, LeadDBSettings
from leaddb.models import (
    LeadScoreHistoryCreate,
    LeadScoringRuleCreate,
    LeadSource,
    LeadStatus,
    LeadUpdate,
    OrganizationCreate,
)
from leaddb.settings import asyncpg_dsn

__all__ = ["LEAD_BY_LEAD_SAMPLE", "bench_rescoring"]

LEAD_BY_LEAD_SAMPLE = 2_000
"""Leads scored one by one through the repositories; the rest is extrapolated."""

SEED = 8
COMPANIES = ["Acme Inc", "Globex", "Initech", "Umbrella Corp", "Hooli", "Stark Industries"]
TITLES = ["CEO", "CTO", "VP Sales", "Founder", "Engineer", "Analyst", "Office Manager"]
TAGS = ["vip", "enterprise", "b2b", "smb", "newsletter", "webinar", "partner", "churn-risk"]
PLANS = ["free", "starter", "pro", "enterprise"]

RULES: list[tuple[str, str, JsonValue, int]] = [
    ("status", "in", ["qualified", "proposal", "negotiation"], 25),
    ("status", "eq", "lost", -40),
    ("source", "in", ["referral", "event"], 15),
    ("estimated_value", "gte", 50_000, 20),
    ("estimated_value", "exists", False, -5),
    ("expected_close_date", "within_days", 30, 15),
    ("expected_close_date", "older_than_days", 30, -10),
    ("last_engagement_at", "within_days", 7, 20),
    ("last_engagement_at", "older_than_days", 60, -15),
    ("created_at", "within_days", 14, 5),
    ("company", "contains", "inc", 5),
    ("job_title", "in", ["CEO", "CTO", "VP Sales", "Founder"], 15),
    ("email", "contains", "@example1.", 3),
    ("phone", "exists", True, 5),
    ("linkedin_url", "exists", True, 5),
    ("tags", "contains", "vip", 20),
    ("tags", "in", ["enterprise", "b2b"], 10),
    ("custom_fields.plan", "eq", "enterprise", 15),
    ("custom_fields.seats", "gt", 100, 10),
    ("custom_fields.trial", "eq", True, -5),
]
"""Twenty rules of every kind of field and most operators; more are made by cycling them."""

LEAD_COLUMNS = (
    "organization_id",
    "id",
    "email",
    "first_name",
    "last_name",
    "company",
    "job_title",
    "phone",
    "linkedin_url",
    "source",
    "status",
    "estimated_value",
    "expected_close_date",
    "last_engagement_at",
    "tags",
    "custom_fields",
)


def _lead_rows(organization: uuid.UUID, count: int, now: datetime) -> list[tuple[Any, ...]]:
    """``count`` varied leads, the same for the same seed (one in ten misses most fields)."""
    rng = random.Random(SEED)  # noqa: S311 - reproducible data, not secrets
    today = now.date()
    statuses, sources = list(LeadStatus), list(LeadSource)
    rows = []
    for index in range(count):
        sparse = index % 10 == 0
        rows.append(
            (
                organization,
                uuid7(),
                f"lead{index}@example{index % 7}.com",
                None if sparse else f"First{index % 97}",
                None if sparse else f"Last{index % 89}",
                None if sparse else rng.choice(COMPANIES),
                None if sparse else rng.choice(TITLES),
                None if sparse or rng.random() < 0.5 else f"+1 555 {index % 10_000:04d}",
                None if rng.random() < 0.7 else f"https://www.linkedin.com/in/lead{index}",
                rng.choice(sources).value,
                rng.choice(statuses).value,
                None if sparse else Decimal(rng.randrange(0, 10_000_000)) / 100,
                None if sparse else today + timedelta(days=rng.randint(-90, 90)),
                None if sparse else now - timedelta(seconds=rng.randint(0, 120 * 86_400)),
                rng.sample(TAGS, rng.randint(0, 3)),
                {}
                if sparse
                else {
                    "plan": rng.choice(PLANS),
                    "seats": rng.randint(1, 500),
                    "trial": rng.random() < 0.2,
                },
            )
        )
    return rows


def _rule_payloads(count: int) -> list[LeadScoringRuleCreate]:
    payloads = []
    for index in range(count):
        field, operator, value, points = RULES[index % len(RULES)]
        payloads.append(
            LeadScoringRuleCreate.model_validate(
                {
                    "name": f"{field} {operator} #{index}",
                    "field": field,
                    "operator": operator,
                    "value": value,
                    "points": points,
                    "priority": index,
                }
            )
        )
    return payloads


@dataclass
class _Scratch:
    organization: uuid.UUID
    lead_ids: list[uuid.UUID]


async def _seed(db: LeadDB, leads: int, rules: int, now: datetime) -> _Scratch:
    slug = f"bench-scoring-{uuid.uuid4().hex[:8]}"
    async with db.platform() as platform:
        organization = await platform.organizations.create(
            OrganizationCreate(name="Scoring benchmark", slug=slug)
        )
        await platform.commit()
    rows = _lead_rows(organization.id, leads, now)
    async with db.tenant(organization.id) as uow:
        connection = await uow.connection()
        # COPY cannot write a table under row-level security; a temporary table has none, and
        # INSERT ... SELECT from it is checked by the tenant policy like any other insert.
        await connection.execute(
            "CREATE TEMP TABLE _bench_leads (LIKE leads INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await connection.copy_records_to_table(
            "_bench_leads", records=rows, columns=list(LEAD_COLUMNS)
        )
        names = ", ".join(LEAD_COLUMNS)
        await connection.execute(
            f"INSERT INTO leads ({names}) SELECT {names} FROM _bench_leads"  # noqa: S608
        )
        for payload in _rule_payloads(rules):
            await uow.scoring_rules.create(payload)
        await uow.commit()
    return _Scratch(organization.id, [row[1] for row in rows])


async def _analyze(database_url: str) -> None:
    """Fresh planner statistics, as autovacuum would have them on a database in use."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute("ANALYZE leads")
    except asyncpg.InsufficientPrivilegeError:
        pass  # only the owner may; the planner then works from the defaults
    finally:
        await connection.close()


async def _set_based(db: LeadDB, organization: uuid.UUID, now: datetime) -> tuple[float, int]:
    started = time.perf_counter()
    async with db.tenant(organization) as uow:
        summary = await uow.scoring.rescore_organization(now=now)
        await uow.commit()
    return time.perf_counter() - started, summary.changed


async def _lead_by_lead(
    db: LeadDB, organization: uuid.UUID, ids: list[uuid.UUID], now: datetime
) -> tuple[float, int]:
    """Score ``ids`` one by one through the repositories, in one committed transaction."""
    changed = 0
    started = time.perf_counter()
    async with db.tenant(organization) as uow:
        rules = await uow.scoring.load_rules()
        for lead_id in ids:
            lead = await uow.leads.get_one(lead_id)
            result = uow.scoring.score(lead, rules, now=now)
            if (result.score, result.temperature) == (lead.score, lead.temperature):
                continue
            await uow.leads.update(
                lead_id,
                LeadUpdate(score=result.score, temperature=result.temperature),
                expected_version=lead.version,
            )
            await uow.score_history.create(
                LeadScoreHistoryCreate(
                    lead_id=lead_id,
                    old_score=lead.score,
                    new_score=result.score,
                    old_temperature=lead.temperature,
                    new_temperature=result.temperature,
                    reason="lead_by_lead",
                    breakdown=result.breakdown(),
                )
            )
            changed += 1
        await uow.commit()
    return time.perf_counter() - started, changed


async def _reset(db: LeadDB, organization: uuid.UUID, ids: list[uuid.UUID]) -> None:
    """Put the sample back to its seeded score, so the set-based run changes it too."""
    async with db.tenant(organization) as uow:
        connection = await uow.connection()
        await connection.execute(
            "UPDATE leads SET score = 0, temperature = 'cold' "
            "WHERE organization_id = $1 AND id = ANY($2::uuid[])",
            organization,
            ids,
        )
        uow.record_bulk_write("lead")
        await uow.commit()


async def _drop(db: LeadDB, organization: uuid.UUID) -> None:
    async with db.platform() as platform:
        await platform.organizations.delete(organization)
        await platform.commit()


async def bench_rescoring(
    database_url: str, redis_url: str, *, leads: int, rules: int
) -> dict[str, float]:
    """Time rescoring ``leads`` leads with ``rules`` active rules, set-based and lead by lead.

    Returns seconds, leads per second and the speedup of the set-based path over the
    (extrapolated) lead-by-lead path; see the module docstring for what each figure covers.
    """
    if leads < 1 or rules < 1:
        raise ValueError("the scoring benchmark needs at least one lead and one rule")
    settings = LeadDBSettings.model_validate(
        {
            "database_url": SecretStr(database_url),
            "redis_url": SecretStr(redis_url),
            "statement_timeout_seconds": 0,  # the teardown deletes hundreds of thousands of rows
        }
    )
    now = datetime.now(UTC)
    db = await LeadDB.connect(settings)
    try:
        await db.migrate()
        started = time.perf_counter()
        scratch = await _seed(db, leads, rules, now)
        seed_seconds = time.perf_counter() - started
        try:
            await _analyze(database_url)
            sample = scratch.lead_ids[: min(LEAD_BY_LEAD_SAMPLE, leads)]
            sample_seconds, sample_changed = await _lead_by_lead(
                db, scratch.organization, sample, now
            )
            await _reset(db, scratch.organization, sample)
            first_seconds, first_changed = await _set_based(db, scratch.organization, now)
            second_seconds, second_changed = await _set_based(db, scratch.organization, now)
        finally:
            await _drop(db, scratch.organization)
    finally:
        await db.close()
    per_lead = sample_seconds / len(sample)
    lead_by_lead_seconds = per_lead * leads
    return {
        "leads": float(leads),
        "rules": float(rules),
        "seed_seconds": seed_seconds,
        "set_based_first_seconds": first_seconds,
        "set_based_first_changed": float(first_changed),
        "set_based_first_leads_per_second": leads / first_seconds,
        "set_based_second_seconds": second_seconds,
        "set_based_second_changed": float(second_changed),
        "set_based_second_leads_per_second": leads / second_seconds,
        "lead_by_lead_sample": float(len(sample)),
        "lead_by_lead_sample_changed": float(sample_changed),
        "lead_by_lead_sample_seconds": sample_seconds,
        "lead_by_lead_seconds_estimate": lead_by_lead_seconds,
        "lead_by_lead_leads_per_second": 1 / per_lead,
        "speedup": lead_by_lead_seconds / first_seconds,
    }


# --- standalone run -----------------------------------------------------------------------------


async def _standalone(admin_url: str, redis_url: str, leads: int, rules: int) -> dict[str, float]:
    """Run the benchmark in a scratch database created (and dropped) on ``admin_url``'s server."""
    name = f"leaddb_bench_scoring_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        return await bench_rescoring(url, redis_url, leads=leads, rules=rules)
    finally:
        admin = await asyncpg.connect(asyncpg_dsn(admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__)
    parser.add_argument(
        "--database-url", required=True, help="a server where we may CREATE DATABASE"
    )
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--rules", type=int, default=20)
    options = parser.parse_args()
    figures = asyncio.run(
        _standalone(options.database_url, options.redis_url, options.leads, options.rules)
    )
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:,.3f}")


if __name__ == "__main__":
    main()
