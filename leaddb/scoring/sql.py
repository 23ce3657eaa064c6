"""Scoring in SQL: rule conditions as SQLAlchemy Core expressions, and the engine's statements.

Nothing a caller wrote is ever spliced into the SQL text: columns come from the rule grammar's
allow-list (:data:`leaddb.models.rule_grammar.SCORING_FIELDS`) through the leads table's Core
columns, and every rule value, custom-field key, point count, threshold and ``now`` is a bound
parameter. :func:`condition` is the SQL twin of :func:`leaddb.scoring.evaluate.matches`.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    FromClause,
    Integer,
    Numeric,
    String,
    Text,
    Uuid,
    all_,
    any_,
    case,
    cast,
    collate,
    except_,
    false,
    func,
    insert,
    literal,
    not_,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import array as postgresql_array

from leaddb.models import (
    ActivityAction,
    ActivityLog,
    Lead,
    LeadScoreHistory,
    Organization,
)
from leaddb.models.base import table_of
from leaddb.models.fields import SCORE_MAX, SCORE_MIN
from leaddb.models.organization import TemperatureThresholds
from leaddb.models.rule_grammar import ParsedRule, RuleScalar, ScoringFieldKind
from leaddb.rows.jsontext import pg_json_default
from leaddb.scoring.evaluate import CompiledRule, ascii_lower
from leaddb.sql.compile import Positional, compile_positional, inline, param
from leaddb.sql.statements import ACTION_TYPE, aliased, insert_target

__all__ = [
    "Statement",
    "condition",
    "organization_audit",
    "rescore_lead_statement",
    "rescore_organization_statement",
    "select_lead",
    "select_organization",
]

_K = ScoringFieldKind

_COMPARISONS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_TYPES: dict[ScoringFieldKind, Any] = {
    _K.TEXT: Text(),
    _K.NUMBER: Numeric(),
    _K.DATE: Date(),
    _K.DATETIME: DateTime(timezone=True),
    _K.UUID: Uuid(),
}
_LEADS = table_of(Lead)
_HISTORY = table_of(LeadScoreHistory)
_TEMPERATURE_TYPE = _LEADS.c.temperature.type
_AUDIT = table_of(ActivityLog)
_AUDIT_COLUMNS = ["organization_id", "id", "actor_user_id", "entity_type", "entity_id"]
_AUDIT_COLUMNS += ["action", "changes"]


def _fold(expression: ColumnElement[Any]) -> ColumnElement[Any]:
    # Under the "C" collation lower() folds A-Z only, whatever the server's locale, exactly
    # like ascii_lower() in Python (and much faster than translate()).
    return func.lower(collate(expression, "C"))


def _json_text(value: RuleScalar) -> str:
    """A JSON scalar as JSON text: numbers keep their exact decimal spelling."""
    return orjson.dumps(value, default=pg_json_default).decode()


def _json_constant(text: str) -> ColumnElement[Any]:
    """A JSON constant written into the statement (``'null'::jsonb``)."""
    return cast(inline(text), JSONB)


Bind = Callable[[object, Any], ColumnElement[Any]]
"""Makes the parameter of one rule value (the value, its SQL type)."""


def _literal(value: object, type_: Any) -> ColumnElement[Any]:
    return literal(value, type_)


def condition(
    rule: ParsedRule, lead: FromClause, now: ColumnElement[Any], bind: Bind = _literal
) -> ColumnElement[Any]:
    """A boolean expression over the row ``lead`` of the leads table: true when it satisfies
    ``rule``, false or NULL otherwise. ``now`` is the run's ``now``.

    Every rule value is a parameter made by ``bind``, in the order of
    :func:`condition_values`; anything else in the expression depends only on
    :func:`condition_shape`. By default the values are bound literals (for ``compile_cached``).
    """
    target = rule.target
    kind = target.kind
    operator_ = rule.operator.value
    column = lead.c[target.column]
    if kind is _K.TAGS:
        return _tags(operator_, column, rule, bind)
    if kind is _K.JSON:
        # An absent key and a JSON null are both "no value".
        key = bind(target.key, Text())
        value = func.nullif(
            column.op("->", return_type=JSONB)(key), _json_constant("null"), type_=JSONB
        )
        if operator_ == "exists":
            return value.is_not(None) if rule.present else value.is_(None)
        return _json(operator_, value, rule, bind)
    if operator_ == "exists":
        return column.is_not(None) if rule.present else column.is_(None)
    # Enums compare as enums (no text conversion per row); values are checked enum labels.
    type_ = column.type if kind is _K.ENUM else _TYPES[kind]
    if operator_ == "contains":
        needle = bind(ascii_lower(str(rule.values[0])), Text())
        return func.strpos(_fold(column), needle) > inline(0)
    if operator_ in ("within_days", "older_than_days"):
        days = func.make_interval(inline(0), inline(0), inline(0), bind(rule.days, Integer()))
        utc = func.timezone(inline("UTC"), now, type_=DateTime())
        low: ColumnElement[Any] = utc - days
        high: ColumnElement[Any] = utc + days
        if kind is _K.DATE:
            low, high = cast(low, Date()), cast(high, Date())
        else:
            low = func.timezone(inline("UTC"), low, type_=DateTime(timezone=True))
            high = func.timezone(inline("UTC"), high, type_=DateTime(timezone=True))
        if operator_ == "within_days":
            return column.between(low, high)
        return column < low
    if operator_ == "in":
        return column == any_(bind(list(rule.values), ARRAY(type_)))
    if operator_ == "not_in":
        return column != all_(bind(list(rule.values), ARRAY(type_)))
    return _COMPARISONS[operator_](column, bind(rule.values[0], type_))


def condition_shape(rule: ParsedRule) -> tuple[object, ...]:
    """What :func:`condition`'s expression depends on, its values apart."""
    target = rule.target
    return (target.column, target.kind, rule.operator.value, rule.present)


def condition_values(rule: ParsedRule) -> list[object]:
    """The values :func:`condition` binds for ``rule``, in the order it binds them."""
    target = rule.target
    operator_ = rule.operator.value
    values: list[object] = []
    if target.kind is _K.TAGS:
        return [] if operator_ == "exists" else [list(rule.values)]
    if target.kind is _K.JSON:
        values.append(target.key)
        if operator_ == "exists":
            return values
        if operator_ == "contains":
            text = str(rule.values[0])
            return [*values, ascii_lower(text), text]
        if operator_ in ("gt", "gte", "lt", "lte"):
            return [*values, rule.values[0]]
        if operator_ in ("in", "not_in"):
            return [*values, [_json_text(item) for item in rule.values]]
        return [*values, _json_text(rule.values[0])]
    if operator_ == "exists":
        return []
    if operator_ == "contains":
        return [ascii_lower(str(rule.values[0]))]
    if operator_ in ("within_days", "older_than_days"):
        return [rule.days]
    if operator_ in ("in", "not_in"):
        return [list(rule.values)]
    return [rule.values[0]]


def _tags(
    operator_: str, column: ColumnElement[Any], rule: ParsedRule, bind: Bind
) -> ColumnElement[Any]:
    if operator_ == "exists":
        count = func.cardinality(column)
        return count > inline(0) if rule.present else count == inline(0)
    tags = bind(list(rule.values), ARRAY(String()))
    if operator_ == "contains":
        return column.op("@>", return_type=Boolean)(tags)
    overlap = column.op("&&", return_type=Boolean)(tags)
    return overlap if operator_ == "in" else not_(overlap)


def _json(
    operator_: str, value: ColumnElement[Any], rule: ParsedRule, bind: Bind
) -> ColumnElement[Any]:
    if operator_ == "contains":
        text = str(rule.values[0])
        needle = bind(ascii_lower(text), Text())
        whole = cast(inline("{}"), ARRAY(Text()))
        as_text = value.op("#>>", return_type=Text)(whole)
        element = func.jsonb_build_array(bind(text, Text()), type_=JSONB)
        return case(
            (
                func.jsonb_typeof(value) == inline("string"),
                func.strpos(_fold(as_text), needle) > inline(0),
            ),
            (
                func.jsonb_typeof(value) == inline("array"),
                value.op("@>", return_type=Boolean)(element),
            ),
        )
    if operator_ in ("gt", "gte", "lt", "lte"):
        bound = bind(rule.values[0], Numeric())
        return case(
            (
                func.jsonb_typeof(value) == inline("number"),
                _COMPARISONS[operator_](cast(value, Numeric()), bound),
            )
        )
    if operator_ in ("in", "not_in"):
        items = cast(bind([_json_text(item) for item in rule.values], ARRAY(Text())), ARRAY(JSONB))
        return value == any_(items) if operator_ == "in" else value != all_(items)
    return _COMPARISONS[operator_](value, cast(bind(_json_text(rule.values[0]), Text()), JSONB))


# --- statements ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL text and its positional arguments."""

    text: str
    args: list[object]


_MASK_BITS = 63
"""Rules per bigint of a matched-rules mask (the sign bit is left alone)."""


def _bigint(value: int) -> ColumnElement[Any]:
    return cast(inline(value), BigInteger())


def _matched(scored: FromClause, count: int) -> ColumnElement[Any]:
    """The rules the lead matched (flags ``m0``...) as a bigint bit mask (an array of them past
    63 rules): far cheaper to carry, group and join on than an array of rule numbers."""
    words: list[ColumnElement[Any]] = []
    for start in range(0, count, _MASK_BITS):
        bits = [
            cast(cast(scored.c[f"m{i}"], Integer()), BigInteger()).op("<<", return_type=BigInteger)(
                inline(i - start)
            )
            for i in range(start, min(start + _MASK_BITS, count))
        ]
        word = bits[0]
        for bit in bits[1:]:
            word = word.op("|", return_type=BigInteger)(bit)
        words.append(word)
    if not words:
        return _bigint(0)
    if len(words) == 1:
        return words[0]
    return postgresql_array(words)


def _breakdown(mask: ColumnElement[Any], rules: ColumnElement[Any], count: int) -> Any:
    """The JSON breakdown of the rules set in ``mask``, in rule order; ``rules`` is the JSON
    array of every rule's part."""
    if not count:
        return func.jsonb_build_object(inline("rules"), _json_constant("[]"))
    parts = []
    for rule in range(count):
        word = mask if count <= _MASK_BITS else mask[inline(rule // _MASK_BITS + 1)]
        bit = _bigint(1).op("<<", return_type=BigInteger)(inline(rule % _MASK_BITS))
        is_set = word.op("&", return_type=BigInteger)(bit) != _bigint(0)
        parts.append(case((is_set, rules.op("->", return_type=JSONB)(inline(rule)))))
    matched = cast(postgresql_array(parts), ARRAY(JSONB))
    return func.jsonb_build_object(
        inline("rules"), func.to_jsonb(func.array_remove(matched, null()))
    )


def _temperature(
    score: ColumnElement[Any], warm: ColumnElement[Any], hot: ColumnElement[Any]
) -> ColumnElement[Any]:
    band = case(
        (score >= hot, inline("hot")), (score >= warm, inline("warm")), else_=inline("cold")
    )
    return cast(band, _TEMPERATURE_TYPE)


def rescore_organization_statement(
    rules: Sequence[CompiledRule],
    *,
    tenant: uuid.UUID,
    now: datetime,
    thresholds: TemperatureThresholds,
    reason: str,
) -> Statement:
    """One statement that rescores every live lead of ``tenant`` and writes their history.

    ``scored`` evaluates every condition once per live lead (in the ``OFFSET`` subquery, which
    the planner may not flatten, so no condition is evaluated twice), sums the points, clamps
    and classifies. ``changed`` updates only the leads whose score or temperature moved,
    bumping their version and ``updated_at``, and only while their version is still the one
    scored: a lead changed by a concurrent transaction in the meantime is left alone (the
    engine rescores it on its own afterwards) rather than given a score computed from values
    that are no longer current. ``history`` writes one row per changed lead with the rules it
    matched: ``scored`` carries them as a bit mask, and each distinct mask is turned into JSON
    once (``breakdowns``), from the rules' parts parsed once (``parts``).

    Built from Core and compiled once per shape of the rules (``condition_shape``); a later
    call with rules of the same shape only gathers their values (``condition_values``).

    The result is one row: ``scored`` (live leads), ``moved`` (leads whose score or
    temperature should change), ``changed`` (leads updated), ``conflicts`` (ids of the leads
    that moved but were changed concurrently; NULL when there are none) and ``now``.
    """
    shape = tuple(condition_shape(rule.condition) for rule in rules)
    compiled = _organization_statements.get(shape)
    if compiled is None:
        if len(_organization_statements) >= _CACHE_LIMIT:
            _organization_statements.clear()
        compiled = _organization_statements[shape] = _organization_statement(rules)
    args: list[object] = [
        tenant,
        now,
        thresholds.warm_min,
        thresholds.hot_min,
        reason,
        orjson.dumps([rule.match().as_json() for rule in rules]).decode(),
    ]
    for rule in rules:
        args += condition_values(rule.condition)
    args += [rule.points for rule in rules]
    return Statement(compiled.text, list(compiled.args(args)))


_CACHE_LIMIT = 256
_organization_statements: dict[tuple[object, ...], Positional] = {}


def _organization_statement(rules: Sequence[CompiledRule]) -> Positional:
    """The statement of ``rescore_organization_statement`` for rules of this shape."""
    lead = aliased(_LEADS, "l")
    t = aliased(_LEADS, "t")
    tenant_value = param("tenant", lead.c.organization_id.type)
    now_value = param("now", DateTime(timezone=True))
    names = iter(range(1_000_000))

    def bind(value: object, type_: Any) -> ColumnElement[Any]:
        return param(f"v{next(names)}", type_)

    # NULL (a missing value) counts as no match: coalesce once, so later CASEs see booleans.
    flags = [
        func.coalesce(condition(rule.condition, lead, now_value, bind), false()).label(f"m{i}")
        for i, rule in enumerate(rules)
    ]
    c = (
        select(
            lead.c.id,
            lead.c.version,
            lead.c.score.label("old_score"),
            lead.c.temperature.label("old_temperature"),
            *flags,
        )
        .where(lead.c.organization_id == tenant_value, lead.c.deleted_at.is_(None))
        .offset(inline(0))
        .subquery("c")
    )
    terms = [
        case((c.c[f"m{i}"], param(f"p{i}", Integer())), else_=inline(0))
        for i, rule in enumerate(rules)
    ]
    total: ColumnElement[Any] = inline(0)
    if terms:
        total = terms[0]
        for term in terms[1:]:
            total = total + term
    clamped = func.least(inline(SCORE_MAX), func.greatest(inline(SCORE_MIN), total))
    s = select(clamped.label("new_score")).correlate(c).lateral("s")
    warm = param("warm", Integer())
    hot = param("hot", Integer())
    scored = (
        select(
            c.c.id,
            c.c.version,
            c.c.old_score,
            c.c.old_temperature,
            s.c.new_score,
            _temperature(s.c.new_score, warm, hot).label("new_temperature"),
            _matched(c, len(rules)).label("matched"),
        )
        .select_from(c.join(s, true()))
        .cte("scored")
        .prefix_with("MATERIALIZED")
    )

    def moved(row: FromClause) -> ColumnElement[bool]:
        return or_(
            row.c.new_score != row.c.old_score, row.c.new_temperature != row.c.old_temperature
        )

    changed = (
        update(t)
        .ordered_values(
            (t.c.score, scored.c.new_score),
            (t.c.temperature, scored.c.new_temperature),
            (t.c.version, t.c.version + inline(1)),
            (t.c.updated_at, func.now()),
        )
        .where(
            t.c.organization_id == tenant_value,
            t.c.id == scored.c.id,
            t.c.version == scored.c.version,
            moved(scored),
        )
        .returning(
            t.c.id,
            scored.c.old_score,
            scored.c.old_temperature,
            scored.c.new_score,
            scored.c.new_temperature,
            scored.c.matched,
        )
        .cte("changed")
    )
    parts_json = cast(param("rules", Text()), JSONB)
    parts = select(parts_json.label("rules")).cte("parts").prefix_with("MATERIALIZED")
    p = select(changed.c.matched).distinct().subquery("p")
    breakdowns = (
        select(p.c.matched, _breakdown(p.c.matched, parts.c.rules, len(rules)).label("breakdown"))
        .select_from(p.join(parts, true()))
        .cte("breakdowns")
        .prefix_with("MATERIALIZED")
    )
    # One leaddb_uuid7() per statement, its last four (random) bytes replaced by the row's
    # number: still a version 7 id in time order, unique within the run by the counter and
    # across runs by the 42 random bits left. A strong random number per row
    # (gen_random_uuid()) costs more than the rest of building a history row.
    base = select(func.uuid_send(func.leaddb_uuid7()).label("base")).subquery("i")
    number = func.int4send(cast(func.row_number().over(), Integer()))
    numbered_id = cast(
        func.encode(
            func.overlay(base.c.base, number, inline(13), inline(4)),
            inline("hex"),
        ),
        Uuid(),
    )
    history_rows = select(
        tenant_value,
        numbered_id,
        changed.c.id,
        changed.c.old_score,
        changed.c.new_score,
        changed.c.old_temperature,
        changed.c.new_temperature,
        param("reason", Text()),
        breakdowns.c.breakdown,
    ).select_from(
        changed.join(breakdowns, breakdowns.c.matched == changed.c.matched).join(base, true())
    )
    history_columns = ["organization_id", "id", "lead_id", "old_score", "new_score"]
    history_columns += ["old_temperature", "new_temperature", "reason", "breakdown"]
    history = (
        insert(insert_target(_HISTORY)).from_select(history_columns, history_rows).cte("history")
    )
    counts = (
        select(
            func.count().label("scored"),
            func.count().filter(moved(scored)).label("moved"),
        )
        .select_from(scored)
        .cte("counts")
    )
    changed_count = select(func.count()).select_from(changed).scalar_subquery()
    conflicting = except_(
        select(scored.c.id).where(moved(scored)), select(changed.c.id)
    ).scalar_subquery()
    statement = select(
        counts.c.scored,
        counts.c.moved,
        changed_count.label("changed"),
        case((counts.c.moved > changed_count, func.array(conflicting))).label("conflicts"),
        now_value.label("now"),
    ).add_cte(history)
    parameters = ["tenant", "now", "warm", "hot", "reason", "rules"]
    parameters += [f"v{index}" for index in range(next(names))]
    parameters += [f"p{index}" for index in range(len(rules))]
    return compile_positional(statement, parameters)


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
