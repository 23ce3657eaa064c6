"""What the scoring tests share: the one ``now`` of every run, and organizations, rules and
leads made through leaddb's public API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import JsonValue

from leaddb import LeadDB
from leaddb.models import (
    Lead,
    LeadCreate,
    LeadScoringRule,
    LeadScoringRuleCreate,
    Organization,
    OrganizationCreate,
)

NOW = datetime.now(UTC).replace(microsecond=0)
"""The one `now` of every run of the scoring tests, so day-based rules are deterministic."""


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
