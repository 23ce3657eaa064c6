"""Every rule condition the grammar allows matches the same leads in SQL and in Python: NULLs,
case and accents, JSON of every type, and times and dates on the edges of day windows in zones
far from UTC."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any

import pytest
from pydantic import JsonValue
from sqlalchemy import ColumnElement, DateTime, false, func, literal, select

from leaddb import LeadDB
from leaddb.models import Lead, LeadCreate, UserCreate
from leaddb.models.base import table_of
from leaddb.scoring import parse_rule
from leaddb.scoring.evaluate import matches
from leaddb.scoring.sql import condition, condition_values
from leaddb.sql.compile import compile_cached
from leaddb.sql.statements import aliased

from .scoring_helpers import NOW, make_org, rule, seed


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


def _recorder(bound: list[object]) -> Callable[[object, Any], ColumnElement[Any]]:
    def bind(value: object, type_: Any) -> ColumnElement[Any]:
        bound.append(value)
        return literal(value, type_)

    return bind


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
            lead = aliased(table_of(Lead), "l")
            bound: list[object] = []
            expression = condition(
                parsed, lead, literal(NOW, DateTime(timezone=True)), _recorder(bound)
            )
            # The rescoring statement is compiled once per shape and later runs send only
            # condition_values: they must be what condition binds, in its order.
            assert bound == condition_values(parsed), (field, operator, value)
            statement = select(lead.c.id, func.coalesce(expression, false()).label("hit")).where(
                lead.c.organization_id == org.id
            )
            compiled, args = compile_cached(statement)
            rows = await connection.fetch(compiled.text, *args)
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
