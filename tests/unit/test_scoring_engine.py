"""Scoring in Python (the semantics every rule has, pinned down) and the SQL compiler (every
rule value a bind parameter, never SQL text)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import pytest
from pydantic import JsonValue

from leaddb.errors import InvalidValueError
from leaddb.models import Lead, LeadScoringRule, LeadStatus, LeadTemperature, ScoringOperator
from leaddb.models.organization import TemperatureThresholds
from leaddb.scoring import ScoringEngine, ScoringRules
from leaddb.scoring.evaluate import score_lead
from leaddb.scoring.sql import rescore_organization_statement

if TYPE_CHECKING:
    from leaddb.repositories.scoring_rules import LeadScoringRuleRepository
    from leaddb.repositories.work import TenantWork

ORG = uuid.UUID("0190b1f2-7c3a-7d4e-8f00-000000000001")
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
# score() never touches the database, nor the rules repository.
engine = ScoringEngine(cast("TenantWork", None), cast("LeadScoringRuleRepository", None))


def make_rule(
    field: str,
    operator: str,
    value: JsonValue,
    points: int = 10,
    *,
    priority: int = 0,
    is_active: bool = True,
    name: str | None = None,
) -> LeadScoringRule:
    # The table class does not validate: stored rules the grammar rejects can be built too.
    return LeadScoringRule(
        organization_id=ORG,
        id=uuid.uuid4(),
        name=name or f"{field} {operator} {value!r}",
        field=field,
        operator=ScoringOperator(operator),
        value=value,
        points=points,
        priority=priority,
        is_active=is_active,
    )


def make_lead(**fields: Any) -> Lead:
    values: dict[str, Any] = {
        "organization_id": ORG,
        "email": "ada@example.com",
        "tags": [],
        "custom_fields": {},
        "created_at": NOW - 10 * DAY,
    }
    values.update(fields)
    return Lead(**values)


def hits(lead: Lead, field: str, operator: str, value: JsonValue) -> bool:
    result = engine.score(lead, [make_rule(field, operator, value)], now=NOW)
    return bool(result.matches)


# --- scores, clamping, temperature, breakdown ----------------------------------------------


def test_score_is_the_sum_of_matching_rules_clamped_with_a_breakdown() -> None:
    lead = make_lead(status=LeadStatus.QUALIFIED, company="Acme", tags=["vip"])
    rules = [
        make_rule("tags", "contains", "vip", 30, priority=2, name="vip"),
        make_rule("status", "eq", "qualified", 40, priority=1, name="qualified"),
        make_rule("company", "eq", "Globex", 50, name="globex"),
        make_rule("company", "exists", True, -5, priority=3, name="has company"),
    ]
    result = engine.score(lead, rules, now=NOW)
    assert (result.score, result.points, result.temperature) == (65, 65, LeadTemperature.WARM)
    assert [(match.name, match.points) for match in result.matches] == [
        ("qualified", 40),
        ("vip", 30),
        ("has company", -5),
    ]
    assert result.breakdown() == {
        "rules": [
            {"rule_id": str(match.rule_id), "points": match.points} for match in result.matches
        ]
    }


@pytest.mark.parametrize(
    ("points", "score"), [([60, 60], 100), ([-30, 10], 0), ([100, -100, 5], 5), ([], 0)]
)
def test_score_is_clamped_to_0_100_but_points_keep_the_sum(points: list[int], score: int) -> None:
    rules = [make_rule("email", "exists", True, item) for item in points]
    result = engine.score(make_lead(), rules, now=NOW)
    assert (result.score, result.points) == (score, sum(points))


@pytest.mark.parametrize(
    ("score", "default", "custom"),
    [
        (0, "cold", "cold"),
        (29, "cold", "cold"),
        (30, "warm", "cold"),
        (49, "warm", "cold"),
        (50, "warm", "warm"),
        (69, "warm", "warm"),
        (70, "hot", "warm"),
        (89, "hot", "warm"),
        (90, "hot", "hot"),
    ],
)
def test_temperature_comes_from_the_thresholds(score: int, default: str, custom: str) -> None:
    rules = [make_rule("email", "exists", True, score)] if score else []
    bands = TemperatureThresholds(warm_min=50, hot_min=90)
    assert engine.score(make_lead(), rules, now=NOW).temperature == default
    assert engine.score(make_lead(), rules, bands, now=NOW).temperature == custom
    parsed = ScoringRules.parse(rules, bands)
    assert engine.score(make_lead(), parsed, now=NOW).temperature == custom


def test_inactive_rules_are_ignored_and_unparsable_ones_skipped_and_reported() -> None:
    rules = [
        make_rule("email", "exists", True, 10, name="ok"),
        make_rule("email", "exists", True, 50, is_active=False, name="off"),
        make_rule("score", "gt", 10, name="circular"),
        make_rule("company", "gt", "a", name="wrong operator"),
        make_rule("estimated_value", "gt", "lots", name="wrong value"),
        make_rule("email", "exists", True, 500, name="too many points"),
    ]
    result = engine.score(make_lead(), rules, now=NOW)
    assert (result.score, [match.name for match in result.matches]) == (10, ["ok"])
    reasons = {skipped.name: skipped.reason for skipped in result.skipped}
    assert set(reasons) == {"circular", "wrong operator", "wrong value", "too many points"}
    assert "cannot be scored" in reasons["circular"]
    assert "does not apply" in reasons["wrong operator"]
    assert "must be a number" in reasons["wrong value"]
    assert "points must be from -100 to 100" in reasons["too many points"]


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(InvalidValueError):
        engine.score(make_lead(), [], now=datetime(2024, 5, 1))


# --- missing values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "value"),
    [("eq", "x"), ("ne", "x"), ("in", ["x"]), ("not_in", ["x"]), ("contains", "x")],
)
def test_a_missing_value_matches_nothing(operator: str, value: JsonValue) -> None:
    lead = make_lead(company=None, custom_fields={"nothing": None})
    assert not hits(lead, "company", operator, value)
    assert not hits(lead, "custom_fields.nothing", operator, value), "JSON null is missing"
    assert not hits(lead, "custom_fields.absent", operator, value)


@pytest.mark.parametrize(
    ("field", "lead", "present"),
    [
        ("company", make_lead(company=None), False),
        ("company", make_lead(company=""), True),
        ("estimated_value", make_lead(estimated_value=Decimal(0)), True),
        ("custom_fields.x", make_lead(custom_fields={"x": None}), False),
        ("custom_fields.x", make_lead(custom_fields={"x": False}), True),
        ("custom_fields.x", make_lead(custom_fields={}), False),
        ("tags", make_lead(tags=[]), False),
        ("tags", make_lead(tags=["a"]), True),
    ],
)
def test_exists_is_about_having_a_value(field: str, lead: Lead, present: bool) -> None:
    assert hits(lead, field, "exists", True) is present
    assert hits(lead, field, "exists", False) is not present


# --- text, enums, numbers, tags ----------------------------------------------------------


def test_text_equality_is_exact_and_contains_ignores_ascii_case_only() -> None:
    lead = make_lead(company="ACME Corp", first_name="ÉMILE")
    assert hits(lead, "company", "eq", "ACME Corp")
    assert not hits(lead, "company", "eq", "acme corp")
    assert hits(lead, "company", "in", ["x", "ACME Corp"])
    assert hits(lead, "company", "not_in", ["acme corp"])
    assert hits(lead, "company", "contains", "acme c")
    assert hits(lead, "first_name", "contains", "Émi")
    assert not hits(lead, "first_name", "contains", "émi"), "only A-Z fold, like SQL translate()"


def test_enums_compare_by_value() -> None:
    lead = make_lead(status=LeadStatus.WON)
    assert hits(lead, "status", "eq", "won")
    assert hits(lead, "status", "in", ["lost", "won"])
    assert not hits(lead, "status", "not_in", ["won"])
    assert hits(lead, "source", "eq", "other"), "the default source"


def test_numbers_compare_as_exact_decimals() -> None:
    lead = make_lead(estimated_value=Decimal("0.10"))
    assert hits(lead, "estimated_value", "eq", 0.1)
    assert hits(lead, "estimated_value", "in", [1, 0.1])
    assert hits(lead, "estimated_value", "lte", 0.1)
    assert not hits(lead, "estimated_value", "gt", 0.1)
    assert hits(lead, "estimated_value", "lt", 0.11)


def test_tags_contain_exact_elements() -> None:
    lead = make_lead(tags=["vip", "b2b"])
    assert hits(lead, "tags", "contains", "vip")
    assert not hits(lead, "tags", "contains", "VIP")
    assert hits(lead, "tags", "in", ["x", "b2b"])
    assert not hits(lead, "tags", "not_in", ["x", "b2b"])
    assert hits(make_lead(tags=[]), "tags", "not_in", ["vip"])


def test_owner_ids_compare_as_uuids() -> None:
    owner = uuid.uuid4()
    lead = make_lead(owner_id=owner)
    assert hits(lead, "owner_id", "eq", str(owner).upper())
    assert hits(lead, "owner_id", "not_in", [str(uuid.uuid4())])
    assert hits(make_lead(), "owner_id", "exists", False)


# --- custom fields: jsonb equality -------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "operator", "value", "expected"),
    [
        (10, "eq", 10.0, True),
        (10.0, "eq", 10, True),
        (0.1, "eq", 0.1, True),
        ("10", "eq", 10, False),
        (True, "eq", 1, False),
        (1, "eq", True, False),
        (True, "eq", True, True),
        ("Pro", "eq", "pro", False),
        ("Pro", "in", ["pro", "Pro"], True),
        ("Pro", "not_in", ["pro"], True),
        (["Pro"], "eq", "Pro", False),
        (["Pro"], "ne", "Pro", True),
        ({"a": 1}, "ne", 1, True),
        (10, "gt", 9.5, True),
        ("10", "gt", 9, False),
        (True, "gte", 0, False),
        ("Pro plan", "contains", "PRO", True),
        (["ai", "ml"], "contains", "ai", True),
        (["AI"], "contains", "ai", False),
        (["a", ["ai"]], "contains", "ai", False),
        (5, "contains", "5", False),
    ],
)
def test_custom_fields_compare_like_jsonb(
    stored: JsonValue, operator: str, value: JsonValue, expected: bool
) -> None:
    lead = make_lead(custom_fields={"x": stored})
    assert hits(lead, "custom_fields.x", operator, value) is expected


# --- days ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "within", "older"),
    [
        (-2 * DAY - timedelta(seconds=1), False, True),
        (-2 * DAY, True, False),
        (timedelta(0), True, False),
        (2 * DAY, True, False),
        (2 * DAY + timedelta(seconds=1), False, False),
    ],
)
def test_day_windows_reach_n_days_either_side_of_now(
    offset: timedelta, within: bool, older: bool
) -> None:
    moment = (NOW + offset).astimezone(timezone(timedelta(hours=-7)))
    lead = make_lead(last_engagement_at=moment)
    assert hits(lead, "last_engagement_at", "within_days", 2) is within
    assert hits(lead, "last_engagement_at", "older_than_days", 2) is older


def test_date_windows_use_the_utc_date_of_now() -> None:
    late_evening_west = datetime(2024, 4, 30, 22, 0, tzinfo=timezone(timedelta(hours=-5)))
    # 22:00 at UTC-5 is already 2024-05-01 in UTC: "today" is May 1st.
    lead = make_lead(expected_close_date=date(2024, 4, 30))
    result = engine.score(
        lead, [make_rule("expected_close_date", "within_days", 0)], now=late_evening_west
    )
    assert not result.matches
    assert hits(lead, "expected_close_date", "older_than_days", 0)
    assert hits(
        make_lead(expected_close_date=date(2024, 5, 31)), "expected_close_date", "within_days", 30
    )


def test_a_lead_without_a_creation_time_has_no_age() -> None:
    lead = make_lead(created_at=None)
    assert not hits(lead, "created_at", "older_than_days", 0)
    assert hits(lead, "created_at", "exists", False)


# --- the SQL compiler ----------------------------------------------------------------------


HOSTILE = "x'; DROP TABLE leads; --"


def test_every_rule_value_is_a_bind_parameter_never_sql_text() -> None:
    rules = ScoringRules.parse(
        [
            make_rule("company", "eq", HOSTILE),
            make_rule("company", "contains", HOSTILE),
            make_rule("email", "in", [HOSTILE, "b"]),
            make_rule("tags", "contains", "t'ag"),
            make_rule("custom_fields.k_1", "eq", HOSTILE),
            make_rule("custom_fields.k_1", "contains", HOSTILE),
            make_rule("custom_fields.k_2", "in", [HOSTILE, 7]),
            make_rule("estimated_value", "gt", 123.45),
            make_rule("expected_close_date", "within_days", 4321),
            make_rule("last_engagement_at", "older_than_days", 3),
            make_rule("status", "not_in", ["won"]),
            make_rule("owner_id", "eq", "0190b1f2-7c3a-7d4e-8f00-123456789abc"),
        ]
    )
    assert not rules.skipped
    statement = rescore_organization_statement(
        rules.rules,
        tenant=ORG,
        now=NOW,
        thresholds=rules.thresholds,
        reason="test",
    )
    for needle in ("DROP", "t'ag", "k_1", "k_2", "123.45", "'won'", "0190b1f2", "4321", "x';"):
        assert needle not in statement.text, needle
    placeholders = {int(number) for number in re.findall(r"\$(\d+)", statement.text)}
    assert placeholders == set(range(1, len(statement.args) + 1)), "each argument used, no gaps"
    assert HOSTILE in statement.args
    assert "k_1" in statement.args
    assert [HOSTILE, "b"] in statement.args


def test_no_rules_compile_to_a_statement_that_scores_zero() -> None:
    statement = rescore_organization_statement(
        [],
        tenant=ORG,
        now=NOW,
        thresholds=TemperatureThresholds(),
        reason="test",
    )
    # No rule flags, and the clamped total is the constant 0 (bound, like every value).
    assert " AS m0" not in statement.text
    assert "greatest(" in statement.text
    placeholders = {int(number) for number in re.findall(r"\$(\d+)", statement.text)}
    assert placeholders == set(range(1, len(statement.args) + 1)), "each argument used, no gaps"
    assert ORG in statement.args
    assert NOW in statement.args
    assert score_lead(make_lead(), ScoringRules(()), NOW).score == 0
