"""Scoring in SQL: rule conditions compiled to expressions, and the statements of the engine.

Nothing a caller wrote is ever spliced into the SQL text: column names come from the rule
grammar's allow-list (:data:`leaddb.models.rule_grammar.SCORING_FIELDS`) and are quoted, the
constants (enum type names, audit action) come from this package's own code, and every rule
value, custom-field key, point count, threshold and ``now`` is a ``$n`` bind parameter.
:func:`condition` is the SQL twin of :func:`leaddb.scoring.evaluate.matches`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Integer, Text, cast, func, insert, null, select, update
from sqlalchemy.dialects.postgresql import JSONB

from leaddb.models import (
    ActivityAction,
    ActivityLog,
    Lead,
    LeadScoreHistory,
    LeadSource,
    LeadStatus,
    LeadTemperature,
    Organization,
)
from leaddb.models.base import table_of
from leaddb.models.fields import SCORE_MAX, SCORE_MIN, enum_type
from leaddb.models.organization import TemperatureThresholds
from leaddb.models.rule_grammar import ParsedRule, RuleScalar, ScoringFieldKind
from leaddb.rows.jsontext import pg_json_default
from leaddb.scoring.evaluate import CompiledRule, ascii_lower
from leaddb.sql.compile import Positional, compile_positional, inline, param
from leaddb.sql.statements import ACTION_TYPE, aliased, insert_target, quote

__all__ = [
    "Binder",
    "Statement",
    "condition",
    "organization_audit",
    "rescore_lead_statement",
    "rescore_organization_statement",
    "select_lead",
    "select_organization",
]

_K = ScoringFieldKind


def _type_name(enum: type[StrEnum]) -> str:
    """The PostgreSQL enum type of ``enum``, as its one migration created it."""
    name = enum_type(enum).name
    if name is None:  # every leaddb enum type is named
        raise TypeError(f"{enum.__name__} has no PostgreSQL type name")
    return name


_TEMPERATURE = _type_name(LeadTemperature)
_ENUM_TYPES = {"status": _type_name(LeadStatus), "source": _type_name(LeadSource)}
_COMPARISONS = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_CASTS = {
    _K.TEXT: "text",
    _K.NUMBER: "numeric",
    _K.DATE: "date",
    _K.DATETIME: "timestamptz",
    _K.UUID: "uuid",
}


@dataclass
class Binder:
    """Collects the bind parameters of a statement; ``bind`` returns the placeholder."""

    first: int
    values: list[object] = field(default_factory=list)

    def bind(self, value: object, cast: str) -> str:
        """``$n::cast`` for ``value`` (the cast is one of this module's type names)."""
        self.values.append(value)
        return f"${self.first + len(self.values) - 1}::{cast}"


def _fold(expression: str) -> str:
    # Under the "C" collation lower() folds A-Z only, whatever the server's locale, exactly
    # like ascii_lower() in Python (and much faster than translate()).
    return f'lower(({expression}) COLLATE "C")'


def _json_text(value: RuleScalar) -> str:
    """A JSON scalar as JSON text: numbers keep their exact decimal spelling."""
    return orjson.dumps(value, default=pg_json_default).decode()


def condition(rule: ParsedRule, binder: Binder, now: str) -> str:
    """A boolean SQL expression over the lead ``l``: true when it satisfies ``rule``, false or
    NULL otherwise. ``now`` is the placeholder of the run's ``now``."""
    target = rule.target
    kind = target.kind
    operator = rule.operator.value
    column = f"l.{quote(target.column)}"
    if kind is _K.TAGS:
        return _tags(operator, column, rule, binder)
    if kind is _K.JSON:
        # An absent key and a JSON null are both "no value".
        key = binder.bind(target.key, "text")
        value = f"NULLIF({column} -> {key}, 'null'::jsonb)"
        if operator == "exists":
            return f"{value} IS {'NOT ' if rule.present else ''}NULL"
        return _json(operator, value, rule, binder)
    if operator == "exists":
        return f"{column} IS {'NOT ' if rule.present else ''}NULL"
    # Enums compare as enums (no text conversion per row); values are checked enum labels.
    cast = _ENUM_TYPES[target.column] if kind is _K.ENUM else _CASTS[kind]
    if operator == "contains":
        needle = binder.bind(ascii_lower(str(rule.values[0])), "text")
        return f"strpos({_fold(column)}, {needle}) > 0"
    if operator in ("within_days", "older_than_days"):
        days = binder.bind(rule.days, "int")
        utc = f"({now} AT TIME ZONE 'UTC')"
        low = f"({utc} - make_interval(days => {days}))"
        high = f"({utc} + make_interval(days => {days}))"
        if kind is _K.DATE:
            low, high = f"{low}::date", f"{high}::date"
        else:
            low, high = f"({low} AT TIME ZONE 'UTC')", f"({high} AT TIME ZONE 'UTC')"
        if operator == "within_days":
            return f"{column} BETWEEN {low} AND {high}"
        return f"{column} < {low}"
    if operator == "in":
        return f"{column} = ANY({binder.bind(list(rule.values), cast + '[]')})"
    if operator == "not_in":
        return f"{column} <> ALL({binder.bind(list(rule.values), cast + '[]')})"
    return f"{column} {_COMPARISONS[operator]} {binder.bind(rule.values[0], cast)}"


def _tags(operator: str, column: str, rule: ParsedRule, binder: Binder) -> str:
    if operator == "exists":
        return f"cardinality({column}) {'>' if rule.present else '='} 0"
    tags = binder.bind(list(rule.values), "varchar[]")
    if operator == "contains":
        return f"{column} @> {tags}"
    overlap = f"{column} && {tags}"
    return overlap if operator == "in" else f"NOT ({overlap})"


def _json(operator: str, value: str, rule: ParsedRule, binder: Binder) -> str:
    if operator == "contains":
        text = str(rule.values[0])
        needle = binder.bind(ascii_lower(text), "text")
        element = binder.bind(text, "text")
        as_text = f"({value} #>> '{{}}')"
        return (
            f"CASE jsonb_typeof({value}) "
            f"WHEN 'string' THEN strpos({_fold(as_text)}, {needle}) > 0 "
            f"WHEN 'array' THEN {value} @> jsonb_build_array({element}) END"
        )
    if operator in ("gt", "gte", "lt", "lte"):
        bound = binder.bind(rule.values[0], "numeric")
        return (
            f"CASE WHEN jsonb_typeof({value}) = 'number' "
            f"THEN ({value})::numeric {_COMPARISONS[operator]} {bound} END"
        )
    if operator in ("in", "not_in"):
        items = binder.bind([_json_text(item) for item in rule.values], "text[]")
        quantified = "= ANY" if operator == "in" else "<> ALL"
        return f"{value} {quantified}({items}::jsonb[])"
    operand = binder.bind(_json_text(rule.values[0]), "text")
    return f"{value} {_COMPARISONS[operator]} {operand}::jsonb"


# --- statements ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL text and its positional arguments."""

    text: str
    args: list[object]


# One leaddb_uuid7() per statement, its last four (random) bytes replaced by the row's number:
# still a version 7 id in time order, unique within the run by the counter and across runs by
# the 42 random bits left. A strong random number per row (gen_random_uuid()) costs more than
# the rest of building a history row.
_NUMBERED_UUID7 = (
    "encode(overlay(i.base PLACING int4send((row_number() OVER ())::int) FROM 13 FOR 4), "
    "'hex')::uuid"
)


_MASK_BITS = 63
"""Rules per bigint of a matched-rules mask (the sign bit is left alone)."""


def _matched(count: int) -> str:
    """The rules the lead ``c`` matched as a bigint bit mask (an array of them past 63 rules):
    far cheaper to carry, group and join on than an array of rule numbers."""
    words = [
        " | ".join(
            f"(c.m{i}::int::bigint << {i - start})"
            for i in range(start, min(start + _MASK_BITS, count))
        )
        for start in range(0, count, _MASK_BITS)
    ]
    if not words:
        return "0::bigint"
    if len(words) == 1:
        return f"({words[0]})"
    return "ARRAY[" + ", ".join(f"({word})" for word in words) + "]"


def _breakdown(mask: str, count: int) -> str:
    """The JSON breakdown of the rules set in ``mask``, in rule order; ``r.rules`` is the JSON
    array of every rule's part."""
    if not count:
        return "jsonb_build_object('rules', '[]'::jsonb)"
    parts = []
    for rule in range(count):
        word = mask if count <= _MASK_BITS else f"{mask}[{rule // _MASK_BITS + 1}]"
        bit = f"(1::bigint << {rule % _MASK_BITS})"
        parts.append(f"CASE WHEN ({word} & {bit}) <> 0 THEN r.rules -> {rule} END")
    matched = ",\n            ".join(parts)
    return (
        "jsonb_build_object('rules', to_jsonb(array_remove(ARRAY[\n            "
        f"{matched}\n        ]::jsonb[], NULL)))"
    )


def _temperature(score: str, warm: str, hot: str) -> str:
    return (
        f"(CASE WHEN {score} >= {hot} THEN 'hot' WHEN {score} >= {warm} THEN 'warm' "
        f"ELSE 'cold' END)::{_TEMPERATURE}"
    )


def rescore_organization_statement(
    rules: Sequence[CompiledRule],
    *,
    tenant: uuid.UUID,
    now: datetime,
    thresholds: TemperatureThresholds,
    reason: str,
) -> Statement:
    """One statement that rescores every live lead of ``tenant`` and writes their history.

    ``scored`` evaluates every condition once per live lead (in the ``OFFSET 0`` subquery,
    which the planner may not flatten, so no condition is evaluated twice), sums the points,
    clamps and classifies. ``changed`` updates only the leads whose score or temperature moved,
    bumping their version and ``updated_at``, and only while their version is still the one
    scored: a lead changed by a concurrent transaction in the meantime is left alone (the
    engine rescores it on its own afterwards) rather than given a score computed from values
    that are no longer current. ``history`` writes one row per changed lead with the rules it
    matched: ``scored`` carries them as a bit mask, and each distinct mask is turned into JSON
    once (``breakdowns``), from the rules' parts parsed once (``parts``).

    The result is one row: ``scored`` (live leads), ``moved`` (leads whose score or
    temperature should change), ``changed`` (leads updated), ``conflicts`` (ids of the leads
    that moved but were changed concurrently; NULL when there are none) and ``now``.
    """
    binder = Binder(first=7)
    now_param = "$2::timestamptz"
    # NULL (a missing value) counts as no match: coalesce once, so later CASEs see booleans.
    flags = "".join(
        f",\n            coalesce({condition(rule.condition, binder, now_param)}, false) AS m{i}"
        for i, rule in enumerate(rules)
    )
    terms = [
        f"CASE WHEN c.m{i} THEN {binder.bind(rule.points, 'int')} ELSE 0 END"
        for i, rule in enumerate(rules)
    ]
    total = " + ".join(terms) if terms else "0"
    moved = "(s.new_score <> s.old_score OR s.new_temperature <> s.old_temperature)"
    # Identifiers and constants come from this package only; every value is a bind parameter.
    text = f"""
WITH scored AS MATERIALIZED (
    SELECT c.id, c.version, c.old_score, c.old_temperature, s.new_score,
        {_temperature("s.new_score", "$3::int", "$4::int")} AS new_temperature,
        {_matched(len(rules))} AS matched
    FROM (
        SELECT l.id, l.version, l.score AS old_score, l.temperature AS old_temperature{flags}
        FROM leads l
        WHERE l.organization_id = $1 AND l.deleted_at IS NULL
        OFFSET 0
    ) c
    CROSS JOIN LATERAL (
        SELECT LEAST({SCORE_MAX}, GREATEST({SCORE_MIN}, {total})) AS new_score
    ) s
), changed AS (
    UPDATE leads t
    SET score = s.new_score, temperature = s.new_temperature,
        version = t.version + 1, updated_at = now()
    FROM scored s
    WHERE t.organization_id = $1 AND t.id = s.id AND t.version = s.version AND {moved}
    RETURNING t.id, s.old_score, s.old_temperature, s.new_score, s.new_temperature, s.matched
), parts AS MATERIALIZED (
    SELECT $6::text::jsonb AS rules
), breakdowns AS MATERIALIZED (
    SELECT p.matched, {_breakdown("p.matched", len(rules))} AS breakdown
    FROM (SELECT DISTINCT matched FROM changed) p CROSS JOIN parts r
), history AS (
    INSERT INTO lead_score_history (organization_id, id, lead_id, old_score, new_score,
        old_temperature, new_temperature, reason, breakdown)
    SELECT $1, {_NUMBERED_UUID7}, c.id, c.old_score, c.new_score,
        c.old_temperature, c.new_temperature, $5::text, b.breakdown
    FROM changed c JOIN breakdowns b ON b.matched = c.matched
        CROSS JOIN (SELECT uuid_send(leaddb_uuid7()) AS base) i
), counts AS (
    SELECT count(*) AS scored, count(*) FILTER (WHERE {moved}) AS moved FROM scored s
)
SELECT n.scored, n.moved, (SELECT count(*) FROM changed) AS changed,
    CASE WHEN n.moved > (SELECT count(*) FROM changed) THEN ARRAY(
        SELECT s.id FROM scored s WHERE {moved} EXCEPT SELECT c.id FROM changed c
    ) END AS conflicts,
    $2::timestamptz AS now
FROM counts n
"""  # noqa: S608
    args: list[object] = [
        tenant,
        now,
        thresholds.warm_min,
        thresholds.hot_min,
        reason,
        orjson.dumps([rule.match().as_json() for rule in rules]).decode(),
        *binder.values,
    ]
    return Statement(text, args)


_LEADS = table_of(Lead)
_HISTORY = table_of(LeadScoreHistory)
_TEMPERATURE_TYPE = _LEADS.c.temperature.type
_AUDIT = table_of(ActivityLog)
_AUDIT_COLUMNS = ["organization_id", "id", "actor_user_id", "entity_type", "entity_id"]
_AUDIT_COLUMNS += ["action", "changes"]


def _json_param(name: str) -> ColumnElement[Any]:
    """A parameter sent as JSON text and read as jsonb by the server."""
    return cast(param(name, Text()), JSONB)


def select_lead() -> Positional:
    """The live lead by key, locked as its UPDATE will lock it; parameters: tenant, id."""
    t = aliased(_LEADS, "t")
    statement = (
        select(*t.c)
        .where(
            t.c.organization_id == param("tenant", t.c.organization_id.type),
            t.c.id == param("id", t.c.id.type),
            t.c.deleted_at.is_(None),
        )
        .with_for_update(key_share=True)
    )
    return compile_positional(statement, ("tenant", "id"))


def select_organization() -> Positional:
    """The organization by id; parameter: the id."""
    organizations = table_of(Organization)
    statement = select(*organizations.c).where(
        organizations.c.id == param("id", organizations.c.id.type)
    )
    return compile_positional(statement, ("id",))


def rescore_lead_statement(*, audit: bool) -> Positional:
    """The single UPDATE of ``rescore(lead_id)``, with its history row (and audit row).

    Parameters: tenant, lead id, new score, new temperature, old score, old temperature,
    reason, breakdown (JSON text), and with ``audit`` the actor and the audit changes (JSON
    text). No row when the lead is not live.
    """
    t = aliased(_LEADS, "t")
    written = (
        update(t)
        .ordered_values(
            (t.c.score, param("score", Integer())),
            (t.c.temperature, param("temperature", _TEMPERATURE_TYPE)),
            (t.c.version, t.c.version + inline(1)),
            (t.c.updated_at, func.now()),
        )
        .where(
            t.c.organization_id == param("tenant", t.c.organization_id.type),
            t.c.id == param("id", t.c.id.type),
            t.c.deleted_at.is_(None),
        )
        .returning(*t.c)
        .cte("w")
    )
    history_rows = select(
        written.c.organization_id,
        func.leaddb_uuid7(),
        written.c.id,
        param("old_score", Integer()),
        written.c.score,
        param("old_temperature", _TEMPERATURE_TYPE),
        written.c.temperature,
        param("reason", Text()),
        _json_param("breakdown"),
    )
    history_columns = ["organization_id", "id", "lead_id", "old_score", "new_score"]
    history_columns += ["old_temperature", "new_temperature", "reason", "breakdown"]
    history = (
        insert(insert_target(_HISTORY))
        .from_select(history_columns, history_rows)
        .returning(_HISTORY.c.id)
        .cte("history")
    )
    parameters = ["tenant", "id", "score", "temperature", "old_score", "old_temperature"]
    parameters += ["reason", "breakdown"]
    audit_id: ColumnElement[Any] = cast(null(), _AUDIT.c.id.type)
    if audit:
        log_rows = select(
            written.c.organization_id,
            func.leaddb_uuid7(),
            param("actor", _AUDIT.c.actor_user_id.type),
            inline(Lead.__entity_name__),
            written.c.id,
            cast(inline(ActivityAction.RESCORED.value), ACTION_TYPE),
            _json_param("changes"),
        )
        log = (
            insert(insert_target(_AUDIT))
            .from_select(_AUDIT_COLUMNS, log_rows)
            .returning(_AUDIT.c.id)
            .cte("log")
        )
        audit_id = select(log.c.id).scalar_subquery()
        parameters += ["actor", "changes"]
    statement = select(
        *written.c,
        select(history.c.id).scalar_subquery().label("_history_id"),
        audit_id.label("_audit_id"),
    )
    return compile_positional(statement, parameters)


def organization_audit() -> Positional:
    """The one audit row of ``rescore_organization()``: tenant, actor, changes (JSON text)."""
    tenant = param("tenant", _AUDIT.c.organization_id.type)
    statement = (
        insert(insert_target(_AUDIT))
        .values(
            organization_id=tenant,
            id=func.leaddb_uuid7(),
            actor_user_id=param("actor", _AUDIT.c.actor_user_id.type),
            entity_type=inline(Organization.__entity_name__),
            entity_id=tenant,
            action=cast(inline(ActivityAction.RESCORED.value), ACTION_TYPE),
            changes=_json_param("changes"),
        )
        .returning(_AUDIT.c.id)
    )
    return compile_positional(statement, ("tenant", "actor", "changes"))
