"""Lead-scoring rules."""

from __future__ import annotations

from typing import ClassVar

from leaddb.models import LeadScoringRule, LeadScoringRuleCreate, LeadScoringRuleUpdate
from leaddb.repositories.base import Repository
from leaddb.repositories.filters import Eq


class LeadScoringRuleRepository(
    Repository[LeadScoringRule, LeadScoringRuleCreate, LeadScoringRuleUpdate]
):
    """Scoring rules of one organization."""

    model: ClassVar[type[LeadScoringRule]] = LeadScoringRule
    default_order: ClassVar[tuple[str, ...]] = ("priority", "id")

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
