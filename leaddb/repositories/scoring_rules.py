"""Lead-scoring rules."""

from __future__ import annotations

import uuid
from typing import ClassVar

from sqlalchemy import select

from leaddb.connections.driver_errors import run
from leaddb.models import LeadScoringRule, LeadScoringRuleCreate, LeadScoringRuleUpdate
from leaddb.models.base import table_of
from leaddb.repositories.base import Repository
from leaddb.repositories.filters import Eq
from leaddb.repositories.reads import as_uuid
from leaddb.sql.compile import Positional, compile_positional, param

_CONDITION = frozenset({"field", "operator", "value"})


# The row lock keeps a concurrent patch of another part of the condition from landing between
# this check and the write (each patch alone valid, the two together not).
def _lock_rule() -> Positional:
    rules = table_of(LeadScoringRule)
    statement = (
        select(rules.c.name, rules.c.field, rules.c.operator, rules.c.value, rules.c.points)
        .where(
            rules.c.organization_id == param("tenant", rules.c.organization_id.type),
            rules.c.id == param("id", rules.c.id.type),
        )
        .with_for_update(key_share=True)
    )
    return compile_positional(statement, ("tenant", "id"))


_LOCK_RULE = _lock_rule()


class LeadScoringRuleRepository(
    Repository[LeadScoringRule, LeadScoringRuleCreate, LeadScoringRuleUpdate]
):
    """Scoring rules of one organization."""

    model: ClassVar[type[LeadScoringRule]] = LeadScoringRule
    default_order: ClassVar[tuple[str, ...]] = ("priority", "id")

    async def update(
        self,
        id: uuid.UUID,
        patch: LeadScoringRuleUpdate,
        *,
        expected_version: int | None = None,
    ) -> LeadScoringRule:
        """Change the fields set in ``patch``, as ``Repository.update`` does.

        A patch that touches the condition (``field``, ``operator`` or ``value``) is merged
        with the stored rule and the result checked exactly as ``create`` checks a new rule:
        a ValidationError naming the problem, and nothing written. (The patch alone cannot
        tell: changing just the operator may leave a value of the wrong type for it.)
        """
        if patch.model_fields_set & _CONDITION:
            key = as_uuid(id)
            if key is None:
                raise self._not_found(id)
            connection = await self._connection()
            row = await run(
                connection.fetchrow,
                _LOCK_RULE.text,
                *_LOCK_RULE.args((self._uow.require_tenant(), key)),
            )
            if row is None:
                raise self._not_found(key)
            merged = dict(row)
            merged.update(patch.model_dump(include=set(patch.model_fields_set & _CONDITION)))
            LeadScoringRuleCreate.model_validate(merged)
        return await super().update(id, patch, expected_version=expected_version)

    async def active(self) -> list[LeadScoringRule]:
        """The active rules, by priority."""
        rules: list[LeadScoringRule] = []
        after = None
        while True:
            page = await self.list(Eq("is_active", True), limit=1000, after=after)
            rules.extend(page.items)
            if page.next_cursor is None:
                return rules
            after = page.next_cursor
