"""Scoring rules that cannot be evaluated never get stored: created or patched, a rule with an
unknown field or operator, or a value of the wrong type for them, is a ValidationError naming
the problem, and nothing is written."""

from __future__ import annotations

import uuid

import asyncpg
import orjson
import pytest
from pydantic import JsonValue, ValidationError

from leaddb import LeadDB
from leaddb.errors import NotFoundError
from leaddb.models import LeadScoringRuleUpdate, ScoringOperator

from .scoring_helpers import make_org, rule


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


@pytest.mark.parametrize(
    ("stored", "patch", "message"),
    [
        # The patch alone is fine; merged with the stored rule it is not.
        (("estimated_value", "gte", 10), {"operator": "in"}, "must be a list"),
        (("estimated_value", "gte", 10), {"operator": "contains"}, "does not apply to"),
        (("estimated_value", "gte", 10), {"value": "ten"}, "must be a number"),
        (("status", "eq", "won"), {"value": "hot"}, "'hot' is not a status"),
        (("tags", "in", ["vip"]), {"value": "vip"}, "must be a list"),
        (("created_at", "within_days", 7), {"value": -1}, "whole number of days"),
        (("company", "contains", "inc"), {"field": "estimated_value"}, "does not apply to"),
        (("company", "eq", "Acme"), {"field": "owner_id"}, "must be a UUID"),
        (("custom_fields.plan", "eq", "pro"), {"operator": "gt"}, "must be a number"),
    ],
)
async def test_a_patch_that_leaves_an_invalid_rule_is_rejected_and_changes_nothing(
    db: LeadDB,
    pg: asyncpg.Connection,
    stored: tuple[str, str, JsonValue],
    patch: dict[str, JsonValue],
    message: str,
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        created = await uow.scoring_rules.create(rule(*stored, 5))
        await uow.commit()
    before = await pg.fetchrow("SELECT * FROM lead_scoring_rules WHERE id = $1", created.id)
    async with db.tenant(org.id) as uow:
        with pytest.raises(ValidationError, match=message):
            await uow.scoring_rules.update(
                created.id, LeadScoringRuleUpdate.model_validate(patch), expected_version=1
            )
        await uow.commit()
    assert await pg.fetchrow("SELECT * FROM lead_scoring_rules WHERE id = $1", created.id) == before


async def test_a_patch_that_leaves_a_valid_rule_is_applied(
    db: LeadDB, pg: asyncpg.Connection
) -> None:
    org = await make_org(db)
    async with db.tenant(org.id) as uow:
        created = await uow.scoring_rules.create(rule("estimated_value", "gte", 10, 5))
        await uow.commit()
    async with db.tenant(org.id) as uow:
        listed = await uow.scoring_rules.update(
            created.id, LeadScoringRuleUpdate(operator=ScoringOperator.IN, value=[10, 20])
        )
        renamed = await uow.scoring_rules.update(created.id, LeadScoringRuleUpdate(points=7))
        with pytest.raises(NotFoundError):
            await uow.scoring_rules.update(uuid.uuid4(), LeadScoringRuleUpdate(value=1))
        await uow.commit()
    assert (listed.operator, listed.value, listed.version) == (ScoringOperator.IN, [10, 20], 2)
    assert (renamed.points, renamed.version) == (7, 3)
    row = await pg.fetchrow("SELECT operator, value, points FROM lead_scoring_rules")
    assert row is not None
    assert (row["operator"], orjson.loads(row["value"]), row["points"]) == ("in", [10, 20], 7)
