"""What the scoring engine returns: typed, immutable results of scoring and rescoring."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import JsonValue

from leaddb.models import Lead, LeadTemperature

__all__ = ["LeadRescore", "RescoreSummary", "RuleMatch", "ScoreResult", "SkippedRule"]


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule that matched a lead, and the points it gave (negative rules take points away)."""

    rule_id: uuid.UUID
    name: str
    points: int

    def as_json(self) -> dict[str, JsonValue]:
        """The entry of this match in a score-history ``breakdown``: the rule's id and points
        (not its name, which may change later and would make every history row longer)."""
        return {"rule_id": str(self.rule_id), "points": self.points}


@dataclass(frozen=True, slots=True)
class SkippedRule:
    """A stored active rule the engine cannot evaluate (it breaks the rule grammar, e.g. it was
    stored before a check existed): it is left out of every score, and reported here."""

    rule_id: uuid.UUID
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """A lead's score under a set of rules.

    ``points`` is the plain sum of the matching rules; ``score`` is that sum clamped to 0..100,
    and ``temperature`` the organization's band for ``score``.
    """

    score: int
    temperature: LeadTemperature
    points: int
    matches: tuple[RuleMatch, ...]
    skipped: tuple[SkippedRule, ...] = ()

    def breakdown(self) -> dict[str, JsonValue]:
        """``{"rules": [{"rule_id", "points"}, ...]}``, as score history stores it."""
        return {"rules": [match.as_json() for match in self.matches]}


@dataclass(frozen=True, slots=True)
class LeadRescore:
    """The outcome of ``rescore(lead_id)``: the lead as stored afterwards, and what changed."""

    lead: Lead
    result: ScoreResult
    old_score: int
    old_temperature: LeadTemperature

    @property
    def changed(self) -> bool:
        """Whether the score or the temperature changed (and so a history row was written)."""
        return (self.old_score, self.old_temperature) != (self.lead.score, self.lead.temperature)


@dataclass(frozen=True, slots=True)
class RescoreSummary:
    """The outcome of ``rescore_organization()``.

    ``scored`` live leads were evaluated and ``changed`` of them got a new score or temperature
    (each with one history row); ``retried`` of those were changed by a concurrent transaction
    while the statement ran and so were rescored one by one right after it. ``rules`` are the
    ids of the rules applied, in order; ``skipped`` the active rules that could not be.
    """

    scored: int
    changed: int
    retried: int
    rules: tuple[uuid.UUID, ...]
    skipped: tuple[SkippedRule, ...]
    now: datetime
