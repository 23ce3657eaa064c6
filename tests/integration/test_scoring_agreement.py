"""The set-based rescoring stores exactly the scores of the Python evaluation: a property test
over generated leads and rules (every kind of field and operator, values on the edges of day
windows, organization thresholds), checking every score, temperature, version and history row."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import JsonValue

from leaddb import LeadDB
from leaddb.models import (
    Lead,
    LeadCreate,
    LeadScoringRuleCreate,
    LeadSource,
    LeadStatus,
    LeadTemperature,
    UserCreate,
)
from leaddb.models.organization import TemperatureThresholds
from leaddb.scoring import OPERATORS_BY_KIND, SCORING_FIELDS, ScoringFieldKind

from .scoring_helpers import NOW, make_org

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


async def test_more_rules_than_one_bigint_of_the_mask_keeps_every_breakdown_exact(
    db: LeadDB,
) -> None:
    """Past 63 rules the matched-rules mask becomes an array of bigints: the edges of each word
    (rules 62 and 63) and a lead matching all 70 rules still get the Python breakdown."""
    rules: list[dict[str, JsonValue]] = [
        {
            "name": f"k{index}",
            "field": f"custom_fields.k{index}",
            "operator": "eq",
            "value": True,
            "points": 1 + index % 3,
            "priority": index,
        }
        for index in range(70)
    ]
    picks = [[], [0], [62], [63], [62, 63], [0, 5, 64, 69], list(range(70))]
    leads = [{"custom_fields": {f"k{index}": True for index in pick}} for pick in picks]
    await assert_both_paths_agree(db, leads, rules)
