"""What a scoring rule may say: the scorable lead fields, the operators each kind of field
takes, and the JSON values each operator takes.

Declared once and used twice: the Create / Update schemas of :mod:`leaddb.models.scoring` reject
a rule that breaks it, and the engine parses stored rules with the same :func:`parse_rule`,
skipping (and reporting) a stored rule that no longer parses instead of failing the whole run.

Semantics shared by the Python and the SQL evaluation (see :mod:`leaddb.scoring.evaluate` and
:mod:`leaddb.scoring.sql`): a rule on a missing value (SQL NULL, an absent custom field or a
JSON null) matches only ``exists false``; ``eq``/``in`` on text are exact; ``contains`` on text
ignores the case of ASCII letters; ``contains`` on tags (or on a JSON list) wants that exact
element; numbers compare exactly as decimals; times compare as instants and dates as UTC dates;
``within_days N`` holds within N days either side of the run's ``now`` and
``older_than_days N`` more than N days before it.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Final, TypeAlias

from pydantic import JsonValue

from leaddb.models.enums import LeadSource, LeadStatus, ScoringOperator
from leaddb.models.fields import TAG_MAX_LENGTH

__all__ = [
    "CUSTOM_FIELD_PREFIX",
    "MAX_RULE_DAYS",
    "MAX_RULE_LIST",
    "MAX_RULE_NUMBER",
    "MAX_RULE_TEXT",
    "OPERATORS_BY_KIND",
    "SCORING_FIELDS",
    "ParsedRule",
    "RuleScalar",
    "RuleTarget",
    "ScoringFieldKind",
    "check_operand_shape",
    "check_operator",
    "parse_rule",
    "rule_target",
]


class ScoringFieldKind(StrEnum):
    """The kind of value a scorable field holds; it decides the operators and values allowed."""

    TEXT = "text"
    ENUM = "enum"
    NUMBER = "number"
    DATE = "date"
    DATETIME = "datetime"
    TAGS = "tags"
    UUID = "uuid"
    JSON = "json"
    """A ``custom_fields`` entry: any JSON value."""


_K = ScoringFieldKind
SCORING_FIELDS: Final[Mapping[str, ScoringFieldKind]] = MappingProxyType(
    {
        "status": _K.ENUM,
        "source": _K.ENUM,
        "estimated_value": _K.NUMBER,
        "expected_close_date": _K.DATE,
        "last_engagement_at": _K.DATETIME,
        "created_at": _K.DATETIME,
        "company": _K.TEXT,
        "job_title": _K.TEXT,
        "email": _K.TEXT,
        "phone": _K.TEXT,
        "linkedin_url": _K.TEXT,
        "first_name": _K.TEXT,
        "last_name": _K.TEXT,
        "tags": _K.TAGS,
        "owner_id": _K.UUID,
    }
)
"""The lead columns a rule may name (plus ``custom_fields.<key>``), and their kinds."""

_ENUMS: Final[Mapping[str, type[StrEnum]]] = MappingProxyType(
    {"status": LeadStatus, "source": LeadSource}
)

# Columns a rule may not name, and why (anything else outside the allow-list is "unknown").
_UNSCORABLE: Final[Mapping[str, str]] = MappingProxyType(
    {
        "score": "a rule on the score would feed the score back into itself",
        "temperature": "the temperature is derived from the score, so a rule on it is circular",
        "updated_at": "rescoring changes updated_at itself",
        "version": "rescoring changes the version itself",
        "deleted_at": "deleted leads are never scored",
        "custom_fields": "name one entry, as custom_fields.<key>",
    }
)

CUSTOM_FIELD_PREFIX: Final = "custom_fields."
_CUSTOM_KEY: Final = re.compile(r"[A-Za-z0-9_]{1,64}")

_O = ScoringOperator
_EQUALITY: Final = frozenset({_O.EQ, _O.NE, _O.IN, _O.NOT_IN})
_ORDER: Final = frozenset({_O.GT, _O.GTE, _O.LT, _O.LTE})
_AGE: Final = frozenset({_O.WITHIN_DAYS, _O.OLDER_THAN_DAYS})
_LISTS: Final = frozenset({_O.IN, _O.NOT_IN})
OPERATORS_BY_KIND: Final[Mapping[ScoringFieldKind, frozenset[ScoringOperator]]] = MappingProxyType(
    {
        # Text is not ordered: PostgreSQL's collation and Python's code points disagree.
        _K.TEXT: _EQUALITY | {_O.CONTAINS, _O.EXISTS},
        _K.ENUM: _EQUALITY | {_O.EXISTS},
        _K.NUMBER: _EQUALITY | _ORDER | {_O.EXISTS},
        _K.DATE: _EQUALITY | _ORDER | _AGE | {_O.EXISTS},
        # Equality to the microsecond says nothing about a lead; compare or age instead.
        _K.DATETIME: _ORDER | _AGE | {_O.EXISTS},
        _K.TAGS: _LISTS | {_O.CONTAINS, _O.EXISTS},
        _K.UUID: _EQUALITY | {_O.EXISTS},
        _K.JSON: _EQUALITY | _ORDER | {_O.CONTAINS, _O.EXISTS},
    }
)
"""The operators that apply to each kind of field."""

MAX_RULE_DAYS: Final = 36_500
MAX_RULE_LIST: Final = 100
MAX_RULE_TEXT: Final = 500
MAX_RULE_NUMBER: Final = 10**15

RuleScalar: TypeAlias = str | bool | Decimal | date | datetime | uuid.UUID
"""One parsed rule value: numbers are Decimals, dates and datetimes (UTC) and UUIDs are parsed."""


@dataclass(frozen=True, slots=True)
class RuleTarget:
    """What a rule's ``field`` names: the lead column, its kind, and a custom-field key."""

    field: str
    kind: ScoringFieldKind
    column: str
    key: str | None = None
    choices: tuple[str, ...] = ()
    """The allowed values of an enum field."""


@dataclass(frozen=True, slots=True)
class ParsedRule:
    """A rule's condition, checked and parsed.

    ``values`` holds the one operand of a comparison or ``contains``, or the list of ``in`` /
    ``not_in`` (empty for ``exists`` and the day operators); ``days`` is the operand of
    ``within_days`` / ``older_than_days`` and ``present`` that of ``exists``.
    """

    target: RuleTarget
    operator: ScoringOperator
    values: tuple[RuleScalar, ...] = ()
    days: int = 0
    present: bool = True


def rule_target(field: str) -> RuleTarget:
    """The target a rule's ``field`` names; ValueError saying why when it names none."""
    if field.startswith(CUSTOM_FIELD_PREFIX):
        key = field.removeprefix(CUSTOM_FIELD_PREFIX)
        if not _CUSTOM_KEY.fullmatch(key):
            raise ValueError(
                f"custom field key {key!r} must be 1 to 64 letters, digits or underscores"
            )
        return RuleTarget(field, _K.JSON, "custom_fields", key)
    kind = SCORING_FIELDS.get(field)
    if kind is None:
        why = _UNSCORABLE.get(field)
        if why is not None:
            raise ValueError(f"field {field!r} cannot be scored: {why}")
        allowed = ", ".join(sorted(SCORING_FIELDS))
        raise ValueError(
            f"unknown field {field!r}: use one of {allowed}, or {CUSTOM_FIELD_PREFIX}<key>"
        )
    enum = _ENUMS.get(field)
    choices = tuple(str(member.value) for member in enum) if enum is not None else ()
    return RuleTarget(field, kind, field, None, choices)


def check_operator(target: RuleTarget, operator: ScoringOperator) -> None:
    """ValueError when ``operator`` does not apply to the target's kind of field."""
    allowed = OPERATORS_BY_KIND[target.kind]
    if operator not in allowed:
        names = ", ".join(sorted(str(item.value) for item in allowed))
        raise ValueError(
            f"operator {operator.value!r} does not apply to {target.field!r} "
            f"({target.kind.value}); use one of {names}"
        )


def check_operand_shape(operator: ScoringOperator, value: JsonValue) -> None:
    """The checks of ``value`` that do not depend on the field (for partial updates)."""
    if operator is _O.EXISTS:
        if not isinstance(value, bool):
            raise ValueError(f"the value of 'exists' must be true or false, not {value!r}")
    elif operator in _AGE:
        _days(operator, value)
    elif operator in _LISTS:
        _items(operator, value)
    elif value is None or isinstance(value, list | dict):
        raise ValueError(f"the value of {operator.value!r} must be one value, not {value!r}")


def parse_rule(field: str, operator: ScoringOperator | str, value: JsonValue) -> ParsedRule:
    """Check a rule's field, operator and value together and parse the value.

    Raises ValueError naming the problem: an unknown field, an operator that does not apply
    to it, or a value of the wrong type or out of range.
    """
    target = rule_target(field)
    try:
        operator = ScoringOperator(operator)
    except ValueError:
        raise ValueError(f"unknown operator {operator!r}") from None
    check_operator(target, operator)
    check_operand_shape(operator, value)
    if operator is _O.EXISTS:
        return ParsedRule(target, operator, present=bool(value))
    if operator in _AGE:
        return ParsedRule(target, operator, days=_days(operator, value))
    items = _items(operator, value) if operator in _LISTS else [value]
    parsed = tuple(_scalar(target, operator, item) for item in items)
    return ParsedRule(target, operator, parsed)


def _days(operator: ScoringOperator, value: JsonValue) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RULE_DAYS:
        raise ValueError(
            f"the value of {operator.value!r} must be a whole number of days from 0 to "
            f"{MAX_RULE_DAYS}, not {value!r}"
        )
    return value


def _items(operator: ScoringOperator, value: JsonValue) -> list[JsonValue]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RULE_LIST:
        raise ValueError(
            f"the value of {operator.value!r} must be a list of 1 to {MAX_RULE_LIST} values, "
            f"not {value!r}"
        )
    return value


def _scalar(target: RuleTarget, operator: ScoringOperator, value: JsonValue) -> RuleScalar:
    """One operand, parsed for the target's kind (ValueError naming what was expected)."""
    kind = target.kind
    where = f"{operator.value!r} on {target.field!r}"
    if kind is _K.JSON and operator in _ORDER:
        kind = _K.NUMBER  # custom fields are ordered only as numbers
    if kind is _K.JSON:
        if operator is _O.CONTAINS:
            return _text(value, where, min_length=1)
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return _number(value, where)
        return _text(value, where)
    if kind is _K.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"the value of {where} must be a number, not {value!r}")
        return _number(value, where)
    if kind is _K.TAGS:
        tag = _text(value, where, min_length=1)
        if len(tag) > TAG_MAX_LENGTH:
            raise ValueError(f"the value of {where} must be a tag of 1 to {TAG_MAX_LENGTH} chars")
        return tag
    if kind is _K.TEXT:
        return _text(value, where, min_length=1 if operator is _O.CONTAINS else 0)
    text = _text(value, where)
    if kind is _K.ENUM:
        if text not in target.choices:
            raise ValueError(
                f"{text!r} is not a {target.field}: use one of {', '.join(target.choices)}"
            )
        return text
    try:
        if kind is _K.UUID:
            return uuid.UUID(text)
        if kind is _K.DATE:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        expected = {_K.UUID: "a UUID", _K.DATE: "an ISO date (YYYY-MM-DD)"}.get(
            kind, "an ISO 8601 date and time with a UTC offset"
        )
        raise ValueError(f"the value of {where} must be {expected}, not {text!r}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"the value of {where} must name its UTC offset (e.g. 2024-05-01T12:00:00Z), "
            f"not {text!r}"
        )
    return moment


def _text(value: JsonValue, where: str, *, min_length: int = 0) -> str:
    if not isinstance(value, str) or not min_length <= len(value) <= MAX_RULE_TEXT:
        raise ValueError(
            f"the value of {where} must be a string of {min_length} to {MAX_RULE_TEXT} "
            f"characters, not {value!r}"
        )
    if "\x00" in value:
        raise ValueError(f"the value of {where} must not contain NUL characters")
    return value


def _number(value: int | float, where: str) -> Decimal:
    # repr() of a float is its shortest round-trip spelling, which is also what JSON and
    # PostgreSQL's numeric hold: 0.1 stays 0.1, not 0.1000000000000000055...
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_RULE_NUMBER:
        raise ValueError(
            f"the value of {where} must be a finite number within ±{MAX_RULE_NUMBER:.0e}"
        )
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))
