"""The scoring engine against real PostgreSQL and Redis: the set-based rescoring gives exactly
the scores of the Python evaluation (a property test over generated leads and rules, and every
condition checked lead by lead in both), history only on change, one audit row per run, fresh
reads through the cache after commit, concurrent changes never overwritten with stale scores,
tenant isolation, and rules that cannot be evaluated skipped instead of failing the run."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import JsonValue, ValidationError

from leaddb import LeadDB
from leaddb.errors import NotFoundError
from leaddb.models import (
    Lead,
    LeadCreate,
    LeadScoringRule,
    LeadScoringRuleCreate,
    LeadSource,
    LeadStatus,
    LeadTemperature,
    Organization,
    OrganizationCreate,
    UserCreate,
)
from leaddb.models.organization import TemperatureThresholds
from leaddb.scoring import (
    OPERATORS_BY_KIND,
    SCORING_FIELDS,
    RescoreSummary,
    ScoringFieldKind,
    parse_rule,
)
from leaddb.scoring.evaluate import matches
from leaddb.scoring.sql import Binder, condition

NOW = datetime.now(UTC).replace(microsecond=0)
"""The one `now` of every run in this module, so day-based rules are deterministic."""

OWNER = "owner"
"""Stands for the example's user id in generated rules (users exist only once it runs)."""

TEXT = "aAbBé É"
TAGS = ["vip", "VIP", "b2b", "hot-lead", "é"]
CUSTOM_KEYS = ["plan", "size", "flag"]
FLOATS = [0.5, 1.0, 2.5, -0.1, 99.99]
DAYS = 12
"""Dates and times are generated within this many days of NOW, and so are rule windows, so
that leads often sit exactly on a window's edge."""


def moments(days: int = DAYS) -> st.SearchStrategy[datetime]:
    """Times near NOW: often a whole number of days away (give or take a second), in any zone
    at a quarter-hour offset."""
    edges = st.tuples(st.integers(-days, days), st.sampled_from([-1, 0, 1])).map(
        lambda pair: pair[0] * 86400 + pair[1]
    )
    seconds = st.one_of(edges, st.integers(-days * 86400, days * 86400))
    zones = st.integers(-12 * 4, 14 * 4).map(lambda quarters: timedelta(minutes=15 * quarters))
    return st.tuples(seconds, zones).map(
        lambda pair: (NOW + timedelta(seconds=pair[0])).astimezone(timezone(pair[1]))
    )


def dates(days: int = DAYS) -> st.SearchStrategy[date]:
    return st.integers(-days, days).map(lambda offset: NOW.date() + timedelta(days=offset))


async def make_org(db: LeadDB, thresholds: tuple[int, int] | None = None) -> Organization:
    slug = f"org-{uuid.uuid4().hex[:10]}"
    settings: dict[str, JsonValue] = {}
    if thresholds is not None:
        settings["lead_temperature"] = {"warm_min": thresholds[0], "hot_min": thresholds[1]}
    async with db.platform() as uow:
        org = await uow.organizations.create(
            OrganizationCreate(name=slug, slug=slug, settings=settings)
        )
        await uow.commit()
    return org


def rule(
    field: str, operator: str, value: JsonValue, points: int, **more: Any
) -> LeadScoringRuleCreate:
    return LeadScoringRuleCreate.model_validate(
        {
            "name": f"{field} {operator}",
            "field": field,
            "operator": operator,
            "value": value,
            "points": points,
            **more,
        }
    )


async def by_id(pg: asyncpg.Connection, sql: str) -> dict[uuid.UUID, Any]:
    """``{first column: second column}`` of a query's rows."""
    return {row[0]: row[1] for row in await pg.fetch(sql)}


async def seed(
    db: LeadDB, org: Organization, leads: list[LeadCreate], rules: list[LeadScoringRuleCreate]
) -> tuple[list[Lead], list[LeadScoringRule]]:
    async with db.tenant(org.id) as uow:
        created = [await uow.leads.create(lead) for lead in leads]
        stored = [await uow.scoring_rules.create(item) for item in rules]
        await uow.commit()
    return created, stored


# --- the property: SQL and Python agree ------------------------------------------------------


def _scalar(kind: ScoringFieldKind, field: str, operator: str) -> st.SearchStrategy[JsonValue]:
    if kind is ScoringFieldKind.TEXT:
        return st.text(alphabet=TEXT, min_size=1 if operator == "contains" else 0, max_size=3)
    if kind is ScoringFieldKind.ENUM:
        enum = LeadStatus if field == "status" else LeadSource
        return st.sampled_from([member.value for member in enum])
    if kind is ScoringFieldKind.NUMBER:
        return st.one_of(st.integers(0, 1000), st.sampled_from([0.5, 250.25, 99.99]))
    if kind is ScoringFieldKind.DATE:
        return dates().map(date.isoformat)
    if kind is ScoringFieldKind.DATETIME:
        return moments().map(datetime.isoformat)
    if kind is ScoringFieldKind.UUID:
        return st.one_of(st.just(OWNER), st.uuids().map(str))
    if kind is ScoringFieldKind.TAGS:
        return st.sampled_from(TAGS)
    # custom fields
    if operator == "contains":
        return st.text(alphabet=TEXT, min_size=1, max_size=2)
    numbers = st.one_of(st.integers(-5, 5), st.sampled_from(FLOATS))
    if operator in ("gt", "gte", "lt", "lte"):
        return numbers
    return st.one_of(st.booleans(), numbers, st.text(alphabet=TEXT, max_size=2))


@st.composite
def rule_payloads(draw: st.DrawFn) -> dict[str, JsonValue]:
    fields = sorted(SCORING_FIELDS) + [f"custom_fields.{key}" for key in CUSTOM_KEYS]
    field = draw(st.sampled_from(fields))
    kind = SCORING_FIELDS.get(field, ScoringFieldKind.JSON)
    operator = draw(st.sampled_from(sorted(OPERATORS_BY_KIND[kind])))
    value: JsonValue
    if operator == "exists":
        value = draw(st.booleans())
    elif operator in ("within_days", "older_than_days"):
        value = draw(st.integers(0, DAYS))
    elif operator in ("in", "not_in"):
        value = draw(st.lists(_scalar(kind, field, operator), min_size=1, max_size=3))
    else:
        value = draw(_scalar(kind, field, operator))
    return {
        "name": f"{field} {operator}",
        "field": field,
        "operator": operator.value,
        "value": value,
        # Mostly positive, so that scores do not all clamp to 0.
        "points": draw(st.one_of(st.integers(1, 60), st.integers(-100, 100))),
        "priority": draw(st.integers(0, 3)),
        "is_active": draw(st.sampled_from([True, True, True, False])),
    }


_json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from(FLOATS),
    st.text(alphabet=TEXT, max_size=3),
    st.lists(st.text(alphabet=TEXT, max_size=2), max_size=2),
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def lead_payloads(draw: st.DrawFn) -> dict[str, Any]:
    text = st.text(alphabet=TEXT, max_size=4)
    return {
        "email": draw(st.sampled_from(["ada", "Ada", "bob"])) + "@Example.com",
        "first_name": draw(_maybe(text)),
        "last_name": draw(_maybe(text)),
        "company": draw(_maybe(text)),
        "job_title": draw(_maybe(text)),
        "phone": draw(_maybe(st.sampled_from(["+1 555 0100", "(555) 010-2030"]))),
        "linkedin_url": draw(_maybe(st.just("https://www.linkedin.com/in/aAb"))),
        "status": draw(st.sampled_from(list(LeadStatus))),
        "source": draw(st.sampled_from(list(LeadSource))),
        "score": draw(st.integers(0, 100)),
        "temperature": draw(st.sampled_from(list(LeadTemperature))),
        "estimated_value": draw(
            _maybe(st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False))
        ),
        "expected_close_date": draw(_maybe(dates())),
        "last_engagement_at": draw(_maybe(moments())),
        "tags": draw(st.lists(st.sampled_from(TAGS), max_size=3, unique=True)),
        "owner": draw(st.booleans()),
        "custom_fields": draw(
            st.dictionaries(st.sampled_from(CUSTOM_KEYS), _json_values, max_size=3)
        ),
    }


async def assert_both_paths_agree(
    db: LeadDB,
    leads: list[dict[str, Any]],
    rules: list[dict[str, JsonValue]],
    bands: tuple[int, int] | None = None,
) -> None:
    """Create the leads and rules in a new organization, rescore it set-based, and check every
    stored score, temperature, version and history row against the Python evaluation."""
    org = await make_org(db, bands)
    async with db.tenant(org.id) as uow:
        owner = await uow.users.create(UserCreate(email="owner@example.com", full_name="Owner"))
        before: list[Lead] = []
        for index, payload in enumerate(leads):
            fields = {"email": "lead@example.com", **payload}
            fields["email"] = f"{index}-{fields['email']}"
            fields["owner_id"] = owner.id if fields.pop("owner", False) else None
            before.append(await uow.leads.create(LeadCreate.model_validate(fields)))
        for payload in rules:
            if payload["value"] == OWNER:
                payload = {**payload, "value": str(owner.id)}
            elif isinstance(payload["value"], list):
                swapped = [str(owner.id) if item == OWNER else item for item in payload["value"]]
                payload = {**payload, "value": swapped}
            await uow.scoring_rules.create(LeadScoringRuleCreate.model_validate(payload))
        await uow.commit()

    async with db.tenant(org.id) as uow:
        # A zone far from UTC, with daylight saving: the SQL must not depend on the session's.
        await (await uow.connection()).execute("SET LOCAL TimeZone = 'Pacific/Chatham'")
        summary = await uow.scoring.rescore_organization(now=NOW)
        await uow.commit()

    async with db.tenant(org.id) as uow:
        ruleset = await uow.scoring.load_rules()
        after = {lead.id: lead for lead in (await uow.leads.list(limit=100)).items}
        history = (await uow.score_history.list(limit=100)).items
        results = {id: uow.scoring.score(lead, ruleset, now=NOW) for id, lead in after.items()}
    if bands is not None:
        assert ruleset.thresholds == TemperatureThresholds(warm_min=bands[0], hot_min=bands[1])
    assert not ruleset.skipped
    assert summary.scored == len(before)
    expected_changes = {}
    for old in before:
        stored, result = after[old.id], results[old.id]
        assert (stored.score, stored.temperature) == (result.score, result.temperature), (
            stored,
            result,
        )
        if (result.score, result.temperature) != (old.score, old.temperature):
            expected_changes[old.id] = (old, result)
            assert stored.version == old.version + 1
            assert stored.updated_at > old.updated_at
        else:
            assert stored.version == old.version
            assert stored.updated_at == old.updated_at
    assert summary.changed == len(expected_changes)
    assert len(history) == len(expected_changes)
    assert {row.lead_id for row in history} == set(expected_changes)
    for row in history:
        old, result = expected_changes[row.lead_id]
        assert (row.old_score, row.old_temperature) == (old.score, old.temperature)
        assert (row.new_score, row.new_temperature) == (result.score, result.temperature)
        assert row.breakdown == result.breakdown()


BOUNDED = hypothesis_settings(
    max_examples=40,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@BOUNDED
@given(
    leads=st.lists(lead_payloads(), min_size=1, max_size=8),
    rules=st.lists(rule_payloads(), min_size=1, max_size=8),
    bands=st.integers(1, 99).flatmap(
        lambda warm: st.tuples(st.just(warm), st.integers(warm + 1, 100))
    ),
)
async def test_set_based_rescoring_stores_exactly_the_python_scores(
    db: LeadDB,
    leads: list[dict[str, Any]],
    rules: list[dict[str, JsonValue]],
    bands: tuple[int, int],
) -> None:
    await assert_both_paths_agree(db, leads, rules, bands)


def condition_cases(owner: uuid.UUID) -> list[tuple[str, str, JsonValue]]:
    """(field, operator, value) of rules covering every kind of field and every operator it
    takes, with values on the edges of the leads of :func:`condition_leads`."""
    today = NOW.date()
    cases: list[tuple[str, str, JsonValue]] = []
    for field in ("company", "first_name", "email"):
        cases += [
            (field, "eq", "ACME"),
            (field, "eq", ""),
            (field, "ne", "ACME"),
            (field, "in", ["ACME", "Acme Corp", "Zoë"]),
            (field, "not_in", ["ACME"]),
            (field, "contains", "acme"),
            (field, "contains", "CORP"),
            (field, "contains", "é"),
            (field, "contains", "É"),
            (field, "contains", "@EXAMPLE"),
            (field, "exists", True),
            (field, "exists", False),
        ]
    cases += [
        ("status", "eq", "qualified"),
        ("status", "ne", "qualified"),
        ("status", "in", ["qualified", "won"]),
        ("status", "not_in", ["new"]),
        ("source", "eq", "web"),
        ("source", "exists", False),
        ("estimated_value", "eq", 0.1),
        ("estimated_value", "gt", 0),
        ("estimated_value", "gte", 0.1),
        ("estimated_value", "lt", 10.5),
        ("estimated_value", "lte", 10.5),
        ("estimated_value", "in", [0.1, 1000]),
        ("estimated_value", "not_in", [0]),
        ("estimated_value", "exists", False),
        ("expected_close_date", "eq", today.isoformat()),
        ("expected_close_date", "ne", today.isoformat()),
        ("expected_close_date", "gt", today.isoformat()),
        ("expected_close_date", "lte", (today - timedelta(days=2)).isoformat()),
        ("expected_close_date", "in", [today.isoformat(), (today + timedelta(days=3)).isoformat()]),
        ("last_engagement_at", "gt", NOW.astimezone(timezone(timedelta(hours=2))).isoformat()),
        ("last_engagement_at", "gte", (NOW - timedelta(days=2)).isoformat()),
        ("last_engagement_at", "lt", NOW.isoformat().replace("+00:00", "Z")),
        ("last_engagement_at", "lte", (NOW + timedelta(days=2)).isoformat()),
        ("created_at", "gt", (NOW - timedelta(days=1)).isoformat()),
        ("created_at", "within_days", 0),
        ("created_at", "within_days", 1),
        ("created_at", "older_than_days", 0),
        ("tags", "contains", "vip"),
        ("tags", "contains", "VIP"),
        ("tags", "in", ["vip", "é"]),
        ("tags", "not_in", ["vip"]),
        ("tags", "exists", True),
        ("tags", "exists", False),
        ("owner_id", "eq", str(owner)),
        ("owner_id", "ne", str(owner)),
        ("owner_id", "in", [str(owner)]),
        ("owner_id", "not_in", [str(uuid.uuid4())]),
        ("owner_id", "exists", False),
    ]
    for field in ("last_engagement_at", "expected_close_date"):
        for days in range(4):
            cases += [(field, "within_days", days), (field, "older_than_days", days)]
    for key in ("plan", "size", "flag", "ratio", "nothing", "obj", "missing"):
        field = f"custom_fields.{key}"
        cases += [
            (field, "eq", "Pro"),
            (field, "ne", "Pro"),
            (field, "in", ["pro", "Pro", 10]),
            (field, "not_in", ["Pro", True]),
            (field, "contains", "pro"),
            (field, "contains", "B"),
            (field, "eq", 10),
            (field, "gt", 5),
            (field, "lte", 10),
            (field, "gte", 0.1),
            (field, "eq", 0.1),
            (field, "eq", True),
            (field, "eq", 1),
            (field, "ne", 1),
            (field, "exists", True),
            (field, "exists", False),
        ]
    return cases


def condition_leads(owner: uuid.UUID) -> list[LeadCreate]:
    """Leads with NULLs, case and accent variants, JSON of every type, and times and dates on
    the edges of day windows (in several zones)."""
    today = NOW.date()
    day, second = timedelta(days=1), timedelta(seconds=1)
    east, west = (
        timezone(timedelta(hours=5, minutes=45)),
        timezone(timedelta(hours=-9, minutes=-30)),
    )
    rows: list[dict[str, Any]] = [
        {},
        {
            "company": "Acme Corp",
            "first_name": "Zoë",
            "status": "qualified",
            "source": "web",
            "estimated_value": "0.10",
            "expected_close_date": today,
            "last_engagement_at": NOW,
            "tags": ["vip", "b2b"],
            "owner_id": owner,
            "custom_fields": {
                "plan": "Pro",
                "size": 10,
                "flag": True,
                "ratio": 0.1,
                "nothing": None,
                "obj": {"a": 1},
            },
        },
        {
            "company": "ACME",
            "first_name": "ÉMILE",
            "status": "won",
            "estimated_value": "1000.00",
            "expected_close_date": today - 2 * day,
            "last_engagement_at": (NOW - 2 * day).astimezone(east),
            "tags": ["VIP"],
            "custom_fields": {"plan": "pro", "size": 10.0, "flag": 1, "ratio": "0.1"},
        },
        {
            "company": "",
            "first_name": "",
            "estimated_value": "0",
            "expected_close_date": today + 2 * day,
            "last_engagement_at": NOW + 2 * day + second,
            "custom_fields": {"size": -1, "plan": ["Pro", "B"], "flag": False, "ratio": 0.05},
        },
        {
            "company": "acme",
            "first_name": "émile",
            "expected_close_date": today - 3 * day,
            "last_engagement_at": (NOW - 2 * day - second).astimezone(west),
            "tags": ["é"],
            "custom_fields": {"size": 1000.5, "plan": "PRO plan", "obj": [1]},
        },
        {
            "company": "Globex",
            "estimated_value": "10.50",
            "expected_close_date": today + 3 * day,
            "last_engagement_at": NOW + 2 * day,
            "custom_fields": {"plan": "", "size": "10", "flag": "true", "ratio": [0.1]},
        },
        {
            "last_engagement_at": NOW - day + second,
            "expected_close_date": today - day,
            "custom_fields": {"plan": "Pro ", "size": 5, "nothing": "x"},
        },
    ]
    return [
        LeadCreate.model_validate({"email": f"lead{index}@Example.com", **row})
        for index, row in enumerate(rows)
    ]


@pytest.mark.parametrize("zone", ["Pacific/Chatham", "America/St_Johns"])
async def test_every_condition_matches_the_same_leads_in_sql_and_in_python(
    db: LeadDB, zone: str
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        owner = await uow.users.create(UserCreate(email="owner@example.com", full_name="Owner"))
        leads = [await uow.leads.create(lead) for lead in condition_leads(owner.id)]
        connection = await uow.connection()
        await connection.execute(f"SET LOCAL TimeZone = '{zone}'")
        mismatches = []
        checked = 0
        for field, operator, value in condition_cases(owner.id):
            try:
                parsed = parse_rule(field, operator, value)
            except ValueError:
                continue  # e.g. `contains` with a number: not a rule anyone can store
            binder = Binder(first=3)
            expression = condition(parsed, binder, "$2::timestamptz")
            rows = await connection.fetch(
                f"SELECT l.id, coalesce({expression}, false) AS hit, $2::timestamptz AS now "
                "FROM leads l WHERE l.organization_id = $1",
                org.id,
                NOW,
                *binder.values,
            )
            in_sql = {row["id"] for row in rows if row["hit"]}
            in_python = {lead.id for lead in leads if matches(parsed, lead, NOW)}
            checked += 1
            if in_sql != in_python:
                names = {lead.id: lead.email.split("@")[0] for lead in leads}
                mismatches.append(
                    (field, operator, value, sorted(names[id] for id in in_sql ^ in_python))
                )
    assert not mismatches
    assert checked > 150


# --- one lead ------------------------------------------------------------------------------


async def test_rescore_updates_one_lead_with_history_version_and_audit(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    (lead, other), _ = await seed(
        db,
        org,
        [
            LeadCreate(email="ada@example.com", status=LeadStatus.QUALIFIED, tags=["vip"]),
            LeadCreate(email="bob@example.com", tags=["vip"]),
        ],
        [rule("status", "eq", "qualified", 40), rule("tags", "contains", "vip", 35)],
    )
    async with db.tenant(org.id) as uow:
        outcome = await uow.scoring.rescore(lead.id, now=NOW)
        await uow.commit()
    assert outcome.changed
    assert (outcome.old_score, outcome.old_temperature) == (0, LeadTemperature.COLD)
    assert (outcome.lead.score, outcome.lead.temperature) == (75, LeadTemperature.HOT)
    assert outcome.result.points == 75
    assert [match.points for match in outcome.result.matches] == [40, 35]
    assert outcome.lead.version == lead.version + 1
    row = await pg.fetchrow("SELECT score, temperature, version FROM leads WHERE id = $1", lead.id)
    assert row is not None
    assert tuple(row) == (75, "hot", 2)
    untouched = await pg.fetchrow("SELECT score, version FROM leads WHERE id = $1", other.id)
    assert untouched is not None
    assert tuple(untouched) == (0, 1), "only the lead named is rescored"
    history = await pg.fetch("SELECT * FROM lead_score_history WHERE lead_id = $1", lead.id)
    assert len(history) == 1
    assert (history[0]["old_score"], history[0]["new_score"]) == (0, 75)
    assert (history[0]["old_temperature"], history[0]["new_temperature"]) == ("cold", "hot")
    assert orjson.loads(history[0]["breakdown"]) == outcome.result.breakdown()
    audit = await pg.fetch(
        "SELECT entity_type, changes FROM activity_logs "
        "WHERE entity_id = $1 AND action = 'rescored'",
        lead.id,
    )
    assert [row["entity_type"] for row in audit] == ["lead"]
    changes = orjson.loads(audit[0]["changes"])
    assert changes["before"] == {"score": 0, "temperature": "cold"}
    assert changes["after"] == {"score": 75, "temperature": "hot"}

    async with db.tenant(org.id) as uow:
        again = await uow.scoring.rescore(lead.id, now=NOW)
        await uow.commit()
    assert not again.changed
    assert again.lead.version == 2, "an unchanged score bumps nothing"
    count = await pg.fetchval("SELECT count(*) FROM lead_score_history WHERE lead_id = $1", lead.id)
    assert count == 1, "no history row without a change"


async def test_rescore_of_an_unknown_or_deleted_lead_is_not_found(db: LeadDB) -> None:
    org = await make_org(db)
    (lead,), _ = await seed(db, org, [LeadCreate(email="ada@example.com")], [])
    async with db.tenant(org.id) as uow:
        await uow.leads.delete(lead.id)
        await uow.commit()
    async with db.tenant(org.id) as uow:
        for missing in (lead.id, uuid.uuid4()):
            with pytest.raises(NotFoundError):
                await uow.scoring.rescore(missing)


# --- the whole organization -----------------------------------------------------------------


async def test_history_rows_only_for_leads_whose_score_or_temperature_changed(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    leads, _ = await seed(
        db,
        org,
        [
            LeadCreate(email="match@example.com", company="Acme Corp"),
            LeadCreate(email="none@example.com", company="Globex"),
            LeadCreate(
                email="same@example.com",
                company="ACME",
                score=50,
                temperature=LeadTemperature.WARM,
            ),
            LeadCreate(
                email="band@example.com", company="Initech", temperature=LeadTemperature.HOT
            ),
        ],
        [rule("company", "contains", "acme", 50)],
    )
    match, none, same, band = leads
    async with db.tenant(org.id) as uow:
        summary = await uow.scoring.rescore_organization(now=NOW)
        await uow.commit()
    assert (summary.scored, summary.changed) == (4, 2)
    rows = await pg.fetch(
        "SELECT lead_id, old_temperature, new_temperature FROM lead_score_history"
    )
    assert {row["lead_id"] for row in rows} == {match.id, band.id}
    versions = await by_id(pg, "SELECT id, version FROM leads")
    assert versions == {match.id: 2, none.id: 1, same.id: 1, band.id: 2}

    async with db.tenant(org.id) as uow:
        second = await uow.scoring.rescore_organization(now=NOW)
        await uow.commit()
    assert (second.scored, second.changed) == (4, 0)
    assert await pg.fetchval("SELECT count(*) FROM lead_score_history") == 2
    assert await by_id(pg, "SELECT id, version FROM leads") == versions


async def test_each_run_writes_exactly_one_audit_row(db: LeadDB, pg: asyncpg.Connection) -> None:
    org = await make_org(db)
    _, stored = await seed(
        db,
        org,
        [LeadCreate(email=f"lead{n}@example.com", status=LeadStatus.WON) for n in range(5)],
        [rule("status", "eq", "won", 80), rule("source", "eq", "web", 10, priority=1)],
    )
    before = await pg.fetchval("SELECT count(*) FROM activity_logs")
    for run in range(2):
        async with db.tenant(org.id) as uow:
            await uow.scoring.rescore_organization(now=NOW)
            await uow.commit()
        assert await pg.fetchval("SELECT count(*) FROM activity_logs") == before + run + 1
    rows = await pg.fetch(
        "SELECT entity_type, entity_id, action, changes FROM activity_logs "
        "WHERE action = 'rescored' ORDER BY id"
    )
    assert [(row["entity_type"], row["entity_id"]) for row in rows] == [
        ("organization", org.id)
    ] * 2
    first, second = (orjson.loads(row["changes"]) for row in rows)
    assert (first["scored"], first["changed"]) == (5, 5)
    assert (second["scored"], second["changed"]) == (5, 0)
    assert first["rules"] == [str(item.id) for item in stored]
    assert first["skipped"] == []


async def test_cached_leads_are_read_fresh_after_a_rescore_commits(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    (lead, single), _ = await seed(
        db,
        org,
        [LeadCreate(email="ada@example.com", tags=["vip"]), LeadCreate(email="bob@example.com")],
        [rule("tags", "contains", "vip", 90), rule("email", "contains", "BOB@", 40)],
    )
    async with db.tenant(org.id) as uow:
        assert (await uow.leads.get_one(lead.id)).score == 0  # fills the cache
        assert (await uow.leads.get_one(single.id)).score == 0
    # Behind the cache's back: a cached read still says 0, so the cache is really serving.
    await pg.execute("UPDATE leads SET job_title = 'behind' WHERE id = $1", lead.id)
    async with db.tenant(org.id) as uow:
        assert (await uow.leads.get_one(lead.id)).job_title is None

    async with db.tenant(org.id) as uow:
        summary = await uow.scoring.rescore_organization(now=NOW)
        inside = await uow.leads.get_one(lead.id)  # the transaction's own write, not the cache
        assert (inside.score, summary.changed) == (90, 2)
        await uow.commit()
    async with db.tenant(org.id) as uow:
        fresh = await uow.leads.get_one(lead.id)
        assert (fresh.score, fresh.temperature, fresh.job_title) == (90, "hot", "behind")
        assert (await uow.leads.get_one(single.id)).score == 40

    await pg.execute("UPDATE lead_scoring_rules SET points = 10 WHERE field = 'email'")
    async with db.tenant(org.id) as uow:
        assert (await uow.leads.get_one(single.id)).score == 40  # cached again
        await uow.scoring.rescore(single.id, now=NOW)
        await uow.commit()
    async with db.tenant(org.id) as uow:
        assert (await uow.leads.get_one(single.id)).score == 10


async def test_a_rolled_back_rescore_changes_nothing(db: LeadDB, pg: asyncpg.Connection) -> None:
    org = await make_org(db)
    (lead,), _ = await seed(
        db, org, [LeadCreate(email="ada@example.com")], [rule("source", "eq", "other", 30)]
    )
    async with db.tenant(org.id) as uow:
        assert (await uow.scoring.rescore_organization()).changed == 1
    assert await pg.fetchval("SELECT score FROM leads WHERE id = $1", lead.id) == 0
    assert await pg.fetchval("SELECT count(*) FROM lead_score_history") == 0
    assert await pg.fetchval("SELECT count(*) FROM activity_logs WHERE action = 'rescored'") == 0


async def test_a_lead_changed_while_the_run_waits_is_rescored_from_its_new_values(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    (lead, other), _ = await seed(
        db,
        org,
        [LeadCreate(email="a@example.com", company="Acme"), LeadCreate(email="b@example.com")],
        [rule("company", "eq", "Acme", 40), rule("company", "eq", "Globex", 80)],
    )

    async def rescore() -> RescoreSummary:
        async with db.tenant(org.id) as uow:
            summary = await uow.scoring.rescore_organization(now=NOW)
            await uow.commit()
        return summary

    # Another transaction changes the lead and holds its row lock: the run scores the lead
    # from its snapshot (Acme: 40), then waits on the lock when it comes to update it.
    concurrent = pg.transaction()
    await concurrent.start()
    await pg.execute(
        "UPDATE leads SET company = 'Globex', version = version + 1 WHERE id = $1", lead.id
    )
    task = asyncio.create_task(rescore())
    for _ in range(500):
        await pg.execute("SELECT pg_stat_clear_snapshot()")
        waiting = await pg.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'leaddb' AND wait_event_type = 'Lock'"
        )
        if waiting or task.done():
            break
        await asyncio.sleep(0.02)
    assert waiting == 1, "the run should be waiting for the lead's row lock"
    await concurrent.commit()
    summary = await task

    assert (summary.scored, summary.changed, summary.retried) == (2, 1, 1)
    stored = await pg.fetchrow("SELECT score, version FROM leads WHERE id = $1", lead.id)
    assert stored is not None
    assert tuple(stored) == (80, 3), "scored from Globex, not from the stale Acme"
    assert await pg.fetchval("SELECT score FROM leads WHERE id = $1", other.id) == 0
    history = await pg.fetch("SELECT lead_id, new_score FROM lead_score_history")
    assert [(row["lead_id"], row["new_score"]) for row in history] == [(lead.id, 80)]
    assert await pg.fetchval("SELECT count(*) FROM activity_logs WHERE action = 'rescored'") == 1


async def test_rules_of_one_organization_never_score_another_organizations_leads(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    first, second = await make_org(db), await make_org(db)
    (theirs,), _ = await seed(db, first, [LeadCreate(email="ada@example.com")], [])
    (ours,), _ = await seed(
        db, second, [LeadCreate(email="ada@example.com")], [rule("email", "contains", "ada", 60)]
    )
    async with db.tenant(first.id) as uow:
        assert (await uow.scoring.rescore_organization()).scored == 1
        await uow.commit()
    async with db.tenant(second.id) as uow:
        summary = await uow.scoring.rescore_organization()
        await uow.commit()
    assert (summary.scored, summary.changed) == (1, 1)
    scores = await by_id(pg, "SELECT id, score FROM leads")
    assert scores == {theirs.id: 0, ours.id: 60}
    history = await pg.fetch("SELECT organization_id, lead_id FROM lead_score_history")
    assert [(row["organization_id"], row["lead_id"]) for row in history] == [(second.id, ours.id)]
    async with db.tenant(second.id) as uow:
        with pytest.raises(NotFoundError):
            await uow.scoring.rescore(theirs.id)


async def test_a_stored_rule_the_engine_cannot_evaluate_is_skipped_and_reported(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    (lead,), stored = await seed(
        db, org, [LeadCreate(email="ada@example.com")], [rule("source", "eq", "other", 30)]
    )
    # Written behind the schema's back, as an older release or a manual fix might have.
    broken = uuid.uuid4()
    await pg.execute(
        "INSERT INTO lead_scoring_rules (organization_id, id, name, field, operator, value, points)"
        " VALUES ($1, $2, 'circular', 'score', 'gt', '10', 50)",
        org.id,
        broken,
    )
    async with db.tenant(org.id) as uow:
        summary = await uow.scoring.rescore_organization(now=NOW)
        single = await uow.scoring.rescore(lead.id, now=NOW)
        await uow.commit()
    assert summary.rules == (stored[0].id,)
    assert [(skipped.rule_id, skipped.name) for skipped in summary.skipped] == [
        (broken, "circular")
    ]
    assert "cannot be scored" in summary.skipped[0].reason
    assert single.result.skipped == summary.skipped
    assert await pg.fetchval("SELECT score FROM leads WHERE id = $1", lead.id) == 30
    changes = await pg.fetchval("SELECT changes FROM activity_logs WHERE action = 'rescored'")
    assert orjson.loads(changes)["skipped"] == [str(broken)]


async def test_temperature_follows_the_organizations_thresholds_in_both_paths(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db, (10, 20))
    (a, b), _ = await seed(
        db,
        org,
        [LeadCreate(email="a@example.com"), LeadCreate(email="b@example.com")],
        [rule("email", "eq", "a@example.com", 15), rule("email", "eq", "b@example.com", 25)],
    )
    async with db.tenant(org.id) as uow:
        one = await uow.scoring.rescore(a.id)
        summary = await uow.scoring.rescore_organization()
        await uow.commit()
    assert one.lead.temperature is LeadTemperature.WARM
    assert summary.changed == 1, "a was already rescored in the same transaction"
    rows = await by_id(pg, "SELECT id, temperature FROM leads")
    assert rows == {a.id: "warm", b.id: "hot"}


# --- invalid rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "operator", "value", "message"),
    [
        ("score", "gt", 10, "field 'score' cannot be scored"),
        ("temperature", "eq", "hot", "field 'temperature' cannot be scored"),
        ("salary", "gt", 10, "unknown field 'salary'"),
        ("custom_fields.a b", "eq", 1, "custom field key 'a b'"),
        ("status", "like", "new", "Input should be 'eq'"),
        ("status", "eq", "hot", "'hot' is not a status"),
        ("company", "gt", "a", "operator 'gt' does not apply to 'company'"),
        ("estimated_value", "gte", "10", "must be a number"),
        ("tags", "in", "vip", "must be a list"),
        ("created_at", "within_days", -1, "whole number of days"),
        ("expected_close_date", "lt", "next week", "must be an ISO date"),
    ],
)
async def test_invalid_rules_are_rejected_with_a_message_naming_the_problem(
    db: LeadDB,
    pg: asyncpg.Connection,
    field: str,
    operator: str,
    value: JsonValue,
    message: str,
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        with pytest.raises(ValidationError, match=message):
            await uow.scoring_rules.create(rule(field, operator, value, 5))
        await uow.commit()
    assert await pg.fetchval("SELECT count(*) FROM lead_scoring_rules") == 0


async def test_day_windows_include_their_edges_to_the_second(db: LeadDB) -> None:
    org = await make_org(db, (1, 100))
    day = timedelta(days=1)
    second = timedelta(seconds=1)
    moments = {
        "before": NOW - 2 * day - second,
        "low": NOW - 2 * day,
        "high": NOW + 2 * day,
        "after": NOW + 2 * day + second,
    }
    await seed(
        db,
        org,
        [
            LeadCreate(email=f"{name}@example.com", last_engagement_at=moment)
            for name, moment in moments.items()
        ],
        [
            rule("last_engagement_at", "within_days", 2, 10),
            rule("last_engagement_at", "older_than_days", 2, 1),
        ],
    )
    async with db.tenant(org.id) as uow:
        await (await uow.connection()).execute("SET LOCAL TimeZone = 'Pacific/Chatham'")
        await uow.scoring.rescore_organization(now=NOW)
        stored = {lead.email: lead.score for lead in (await uow.leads.list()).items}
        await uow.commit()
    assert stored == {
        "before@example.com": 1,
        "low@example.com": 10,
        "high@example.com": 10,
        "after@example.com": 0,
    }
