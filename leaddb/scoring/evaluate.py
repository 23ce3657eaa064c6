"""Scoring in Python: parsed rule sets, and the score of one lead under them.

The semantics are those of :mod:`leaddb.models.rule_grammar`, and :mod:`leaddb.scoring.sql` compiles
the very same semantics into SQL; a property test checks that both give the same scores.
"""

from __future__ import annotations

import math
import string
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from leaddb.errors import InvalidValueError
from leaddb.models import LeadBase, LeadScoringRule
from leaddb.models.fields import SCORE_MAX, SCORE_MIN
from leaddb.models.organization import DEFAULT_TEMPERATURE_THRESHOLDS, TemperatureThresholds
from leaddb.models.rule_grammar import ParsedRule, RuleScalar, ScoringFieldKind, parse_rule
from leaddb.models.scoring import POINTS_MAX, POINTS_MIN
from leaddb.scoring.results import RuleMatch, ScoreResult, SkippedRule

__all__ = ["CompiledRule", "ScoringRules", "ascii_lower", "clamp", "matches", "score_lead"]

_K = ScoringFieldKind
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_lower(text: str) -> str:
    """``text`` with A-Z lowered and every other character kept: the case folding of
    ``contains``, identical to SQL's ``lower(... COLLATE "C")`` whatever the server's locale."""
    return text.translate(_ASCII_LOWER)


def clamp(points: int) -> int:
    """A sum of points as a score: 0..100."""
    return max(SCORE_MIN, min(SCORE_MAX, points))


def utc_now(now: datetime | None) -> datetime:
    """``now`` (timezone-aware) in UTC, or the current time; one per scoring run."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidValueError("scoring needs a timezone-aware `now`")
    return now.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """An active rule the engine can evaluate: its identity, points and parsed condition."""

    rule_id: uuid.UUID
    name: str
    points: int
    condition: ParsedRule

    def match(self) -> RuleMatch:
        return RuleMatch(self.rule_id, self.name, self.points)


@dataclass(frozen=True, slots=True)
class ScoringRules:
    """An organization's active rules, parsed once, in evaluation order (priority, then id),
    with the temperature thresholds to classify scores by; rules that do not parse are
    listed in ``skipped`` and score nothing."""

    rules: tuple[CompiledRule, ...]
    skipped: tuple[SkippedRule, ...] = ()
    thresholds: TemperatureThresholds = DEFAULT_TEMPERATURE_THRESHOLDS

    @classmethod
    def parse(
        cls, rules: Iterable[LeadScoringRule], thresholds: TemperatureThresholds | None = None
    ) -> ScoringRules:
        """Parse ``rules``; inactive ones are left out, unparsable ones skipped and reported."""
        compiled: list[CompiledRule] = []
        skipped: list[SkippedRule] = []
        ordered = sorted(
            (rule for rule in rules if rule.is_active), key=lambda rule: (rule.priority, rule.id)
        )
        for rule in ordered:
            try:
                if not POINTS_MIN <= rule.points <= POINTS_MAX:
                    raise ValueError(f"points must be from {POINTS_MIN} to {POINTS_MAX}")
                condition = parse_rule(rule.field, rule.operator, rule.value)
            except (ValueError, TypeError) as error:
                skipped.append(SkippedRule(rule.id, rule.name, str(error)))
                continue
            compiled.append(CompiledRule(rule.id, rule.name, rule.points, condition))
        return cls(tuple(compiled), tuple(skipped), thresholds or DEFAULT_TEMPERATURE_THRESHOLDS)


def score_lead(lead: LeadBase, rules: ScoringRules, now: datetime) -> ScoreResult:
    """The score of ``lead`` under ``rules`` at ``now`` (UTC, aware)."""
    matched = tuple(rule.match() for rule in rules.rules if matches(rule.condition, lead, now))
    points = sum(match.points for match in matched)
    score = clamp(points)
    return ScoreResult(score, rules.thresholds.classify(score), points, matched, rules.skipped)


# --- one condition -----------------------------------------------------------------------------


def matches(rule: ParsedRule, lead: LeadBase, now: datetime) -> bool:
    """Whether ``lead`` satisfies ``rule`` at ``now``: the Python twin of
    :func:`leaddb.scoring.sql.condition`."""
    target = rule.target
    raw: object = getattr(lead, target.column, None)
    if target.key is not None:
        raw = raw.get(target.key) if isinstance(raw, dict) else None
        if isinstance(raw, float) and not math.isfinite(raw):
            raw = None  # JSON has no NaN or infinity: stored, it would be null
    operator = rule.operator.value
    kind = target.kind
    if operator == "exists":
        present = bool(raw) if kind is _K.TAGS else raw is not None
        return present is rule.present
    if raw is None:
        return False  # a missing value matches nothing but `exists false`
    if kind is _K.TAGS:
        return _tags(operator, _as_tags(raw), rule.values)
    if kind is _K.JSON:
        return _json(operator, raw, rule.values)
    value = _comparable(kind, raw)
    if operator == "contains":
        return ascii_lower(str(rule.values[0])) in ascii_lower(str(value))
    if operator in ("within_days", "older_than_days"):
        low, high = _window(kind, now, rule.days)
        return bool(low <= value <= high) if operator == "within_days" else bool(value < low)
    return _compare(operator, value, rule.values)


def _compare(operator: str, value: Any, operands: tuple[Any, ...]) -> bool:
    # Operands were parsed for the same kind as `value`, so the two compare like for like.
    first = operands[0]
    if operator == "eq":
        return bool(value == first)
    if operator == "ne":
        return bool(value != first)
    if operator == "in":
        return bool(value in operands)
    if operator == "not_in":
        return bool(value not in operands)
    if operator == "gt":
        return bool(value > first)
    if operator == "gte":
        return bool(value >= first)
    if operator == "lt":
        return bool(value < first)
    if operator == "lte":
        return bool(value <= first)
    raise AssertionError(f"unhandled operator {operator}")  # the grammar admits no other


def _comparable(kind: ScoringFieldKind, raw: object) -> Any:
    """A column value in the form its rule operands were parsed into."""
    if kind is _K.ENUM:
        return raw.value if isinstance(raw, Enum) else str(raw)
    if kind is _K.NUMBER:
        return _decimal(raw)
    if kind is _K.DATETIME and isinstance(raw, datetime):
        # A timestamptz is an instant; a naive value can only have come from Python: read it as UTC.
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
    if kind is _K.DATE and isinstance(raw, datetime):
        return raw.date()
    if kind is _K.UUID and not isinstance(raw, uuid.UUID):
        return uuid.UUID(str(raw))
    return raw


def _decimal(raw: object) -> Decimal:
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, float):
        return Decimal(repr(raw))
    return Decimal(str(raw))


def _window(kind: ScoringFieldKind, now: datetime, days: int) -> tuple[Any, Any]:
    """``now`` minus and plus ``days``: instants for times, UTC calendar dates for dates."""
    delta = timedelta(days=days)
    if kind is _K.DATE:
        today: date = now.date()
        return today - delta, today + delta
    return now - delta, now + delta


def _as_tags(raw: object) -> list[str]:
    return [str(tag) for tag in raw] if isinstance(raw, list | tuple) else []


def _tags(operator: str, tags: list[str], operands: tuple[RuleScalar, ...]) -> bool:
    if operator == "contains":
        return operands[0] in tags
    hit = any(operand in tags for operand in operands)
    return hit if operator == "in" else not hit


def _json(operator: str, raw: object, operands: tuple[RuleScalar, ...]) -> bool:
    """A custom-field condition, with jsonb's notion of equality: values of different JSON
    types never equal, numbers compare as decimals, strings exactly."""
    value = _json_key(raw)
    if operator == "contains":
        needle = str(operands[0])
        if isinstance(raw, str):
            return ascii_lower(needle) in ascii_lower(raw)
        if isinstance(raw, list):
            return any(isinstance(item, str) and item == needle for item in raw)
        return False
    if operator in ("gt", "gte", "lt", "lte"):
        if value[0] != "n":
            return False
        return _compare(operator, value[1], operands)
    return _compare(operator, value, tuple(_json_key(operand) for operand in operands))


def _json_key(value: object) -> tuple[str, Any]:
    """A JSON value tagged with its JSON type, so that true never equals 1."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float | Decimal):
        return ("n", _decimal(value))
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("a", None)
    return ("o", None)
