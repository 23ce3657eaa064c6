"""The rule grammar: which fields, operators and values a scoring rule may have, and the
messages that say what is wrong with one that breaks it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import JsonValue, ValidationError

from leaddb.models import Lead, LeadScoringRuleCreate, LeadScoringRuleRead, LeadScoringRuleUpdate
from leaddb.models.base import table_of
from leaddb.models.rule_grammar import (
    MAX_RULE_LIST,
    OPERATORS_BY_KIND,
    SCORING_FIELDS,
    ScoringFieldKind,
    parse_rule,
)

OWNER = "0190b1f2-7c3a-7d4e-8f00-123456789abc"


def create(field: str, operator: str, value: JsonValue) -> LeadScoringRuleCreate:
    return LeadScoringRuleCreate.model_validate(
        {"name": "rule", "field": field, "operator": operator, "value": value, "points": 10}
    )


def test_every_scorable_field_is_a_lead_column_and_the_score_itself_is_not() -> None:
    columns = set(table_of(Lead).c.keys())
    assert set(SCORING_FIELDS) <= columns
    assert {"score", "temperature", "updated_at", "version", "deleted_at"}.isdisjoint(
        SCORING_FIELDS
    )
    assert set(OPERATORS_BY_KIND) == set(ScoringFieldKind)


@pytest.mark.parametrize(
    ("field", "operator", "value"),
    [
        ("status", "eq", "qualified"),
        ("status", "in", ["new", "won"]),
        ("source", "not_in", ["import"]),
        ("company", "eq", ""),
        ("company", "contains", "acme"),
        ("email", "in", ["a@example.com"]),
        ("job_title", "exists", False),
        ("estimated_value", "gte", 1000),
        ("estimated_value", "lt", 99.99),
        ("estimated_value", "in", [0, 0.5]),
        ("expected_close_date", "lte", "2025-01-31"),
        ("expected_close_date", "within_days", 30),
        ("last_engagement_at", "older_than_days", 0),
        ("last_engagement_at", "gt", "2024-05-01T12:00:00Z"),
        ("created_at", "lt", "2024-05-01T14:00:00+02:00"),
        ("tags", "contains", "vip"),
        ("tags", "in", ["vip", "b2b"]),
        ("tags", "exists", True),
        ("owner_id", "eq", OWNER),
        ("owner_id", "not_in", [OWNER]),
        ("custom_fields.plan", "eq", "pro"),
        ("custom_fields.seats", "gt", 10),
        ("custom_fields.trial", "eq", True),
        ("custom_fields.Region_2", "in", ["eu", 3, False]),
        ("custom_fields.interests", "contains", "ai"),
        ("custom_fields.x", "exists", False),
    ],
)
def test_rules_of_every_kind_are_accepted(field: str, operator: str, value: JsonValue) -> None:
    rule = create(field, operator, value)
    assert (rule.field, rule.operator.value, rule.value) == (field, operator, value)


@pytest.mark.parametrize(
    ("field", "operator", "value", "message"),
    [
        ("score", "gte", 50, "field 'score' cannot be scored: a rule on the score would feed"),
        ("temperature", "eq", "hot", "field 'temperature' cannot be scored"),
        ("updated_at", "within_days", 1, "field 'updated_at' cannot be scored"),
        ("custom_fields", "exists", True, "custom_fields.<key>"),
        ("revenue", "gt", 1, "unknown field 'revenue': use one of company, created_at"),
        ("Status", "eq", "new", "unknown field 'Status'"),
        ("custom_fields.", "eq", 1, "custom field key '' must be 1 to 64"),
        ("custom_fields.a.b", "eq", 1, "custom field key 'a.b'"),
        ("custom_fields." + "k" * 65, "eq", 1, "custom field key"),
        ("status", "like", "new", "Input should be 'eq', 'ne'"),
        ("status", "gt", "new", "operator 'gt' does not apply to 'status' (enum)"),
        ("company", "lt", "m", "operator 'lt' does not apply to 'company' (text)"),
        ("estimated_value", "contains", "1", "operator 'contains' does not apply"),
        ("tags", "eq", "vip", "operator 'eq' does not apply to 'tags' (tags)"),
        ("owner_id", "gt", OWNER, "operator 'gt' does not apply to 'owner_id' (uuid)"),
        ("last_engagement_at", "eq", "2024-05-01T12:00:00Z", "does not apply"),
        ("company", "within_days", 3, "operator 'within_days' does not apply to 'company'"),
        ("custom_fields.x", "older_than_days", 3, "does not apply to 'custom_fields.x' (json)"),
        ("status", "eq", "hot", "'hot' is not a status: use one of new, contacted"),
        ("source", "in", ["web", "fax"], "'fax' is not a source"),
        ("status", "eq", ["new"], "must be one value"),
        ("status", "in", "new", "the value of 'in' must be a list of 1 to 100"),
        ("tags", "not_in", [], "must be a list of 1 to 100"),
        ("tags", "in", ["t"] * (MAX_RULE_LIST + 1), "must be a list of 1 to 100"),
        ("company", "exists", "yes", "the value of 'exists' must be true or false"),
        ("company", "exists", None, "the value of 'exists' must be true or false"),
        ("company", "eq", None, "must be one value"),
        ("company", "eq", 3, "must be a string"),
        ("company", "contains", "", "must be a string of 1 to 500"),
        ("company", "eq", "x" * 501, "must be a string of 0 to 500"),
        ("company", "eq", "nul\x00", "must not contain NUL"),
        ("estimated_value", "gt", "100", "the value of 'gt' on 'estimated_value' must be a number"),
        ("estimated_value", "gt", True, "must be a number, not True"),
        ("estimated_value", "gt", 10**16, "must be a finite number within"),
        ("expected_close_date", "gt", "31/01/2025", "must be an ISO date (YYYY-MM-DD)"),
        ("expected_close_date", "gt", 20250131, "must be a string"),
        ("last_engagement_at", "gt", "2024-05-01T12:00:00", "must name its UTC offset"),
        ("last_engagement_at", "gt", "yesterday", "ISO 8601 date and time with a UTC offset"),
        ("last_engagement_at", "within_days", "7", "a whole number of days from 0 to 36500"),
        ("last_engagement_at", "within_days", 7.0, "a whole number of days"),
        ("expected_close_date", "older_than_days", -1, "a whole number of days"),
        ("expected_close_date", "older_than_days", 36_501, "a whole number of days"),
        ("owner_id", "eq", "not-a-uuid", "must be a UUID"),
        ("tags", "contains", "t" * 65, "must be a tag of 1 to 64"),
        ("custom_fields.seats", "gt", "10", "must be a number"),
        ("custom_fields.plan", "eq", {"a": 1}, "must be one value"),
        ("custom_fields.plan", "in", [["a"]], "must be a string"),
        ("custom_fields.plan", "contains", 3, "must be a string of 1 to 500"),
    ],
)
def test_invalid_rules_say_what_is_wrong(
    field: str, operator: str, value: JsonValue, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        create(field, operator, value)
    assert message in str(caught.value)


def test_an_unknown_field_is_reported_on_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        create("revenue", "gt", 1)
    assert [error["loc"] for error in caught.value.errors()] == [("field",)]


def test_parsed_values_are_typed_and_numbers_exact() -> None:
    assert parse_rule("estimated_value", "eq", 0.1).values == (Decimal("0.1"),)
    assert parse_rule("custom_fields.n", "in", [1, 2.5, True, "x"]).values == (
        Decimal(1),
        Decimal("2.5"),
        True,
        "x",
    )
    assert parse_rule("expected_close_date", "gt", "2025-01-31").values == (date(2025, 1, 31),)
    moment = parse_rule("created_at", "gt", "2024-05-01T14:00:00+02:00").values[0]
    assert moment == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_rule("owner_id", "eq", OWNER).values == (uuid.UUID(OWNER),)
    within = parse_rule("last_engagement_at", "within_days", 7)
    assert (within.days, within.values) == (7, ())
    assert parse_rule("tags", "exists", False).present is False


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"field": "score"}, "field 'score' cannot be scored"),
        ({"field": "company", "operator": "gt"}, "operator 'gt' does not apply to 'company'"),
        ({"operator": "in", "value": "vip"}, "the value of 'in' must be a list"),
        ({"operator": "exists", "value": None}, "the value of 'exists' must be true or false"),
        ({"field": "status", "operator": "eq", "value": "hot"}, "'hot' is not a status"),
    ],
)
def test_an_update_checks_the_parts_it_gives_together(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LeadScoringRuleUpdate.model_validate(patch)


@pytest.mark.parametrize(
    "patch",
    [
        {"value": 42},  # checked against the stored field and operator when scored
        {"operator": "gt"},
        {"field": "company"},
        {"field": "tags", "operator": "contains"},
        {"operator": "within_days", "value": 3},
        {"points": -20, "is_active": False},
    ],
)
def test_an_update_accepts_parts_that_can_only_be_checked_with_the_stored_rule(
    patch: dict[str, Any],
) -> None:
    assert LeadScoringRuleUpdate.model_validate(patch).model_dump(exclude_unset=True) == patch


def test_a_stored_rule_the_grammar_rejects_can_still_be_read() -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    stored = {
        "id": uuid.uuid4(),
        "organization_id": uuid.uuid4(),
        "name": "legacy",
        "field": "score",
        "operator": "gt",
        "value": 10,
        "points": 5,
        "priority": 0,
        "is_active": True,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    assert LeadScoringRuleRead.model_validate(stored).field == "score"
